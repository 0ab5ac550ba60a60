// GET/POST /presence (docs/admin-api.md) on real gateways in announced mode: three gateways in a
// mesh, users logging in and out, a second device, a gateway that goes silent (its users held,
// then gone after cluster_rpc.unreachable_hold) and one that is killed; and the request errors.
// In redis mode: exact counts from every gateway, and "unknown" while Redis is down.
#include <gtest/gtest.h>
#include <signal.h>

#include "../support/redis_server.hpp"
#include "fault_fixture.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace imgate::test::fault;
using namespace std::chrono_literals;
namespace http = boost::beast::http;

namespace {

const std::string zoe = "zoë@example.com";
const std::string zoe_q = "zo%C3%AB%40example.com";
const std::string bob = "böb@example.com";
const std::string bob_q = "b%C3%B6b%40example.com";
const std::string carol = "王伟";
const std::string carol_q = "%E7%8E%8B%E4%BC%9F";
const std::string nobody = "nobody@example.com";

struct presence_fleet {
    presence_fleet() : presence_fleet(options()) {}
    explicit presence_fleet(fleet::options o) : f(std::move(o)) {}
    fleet f;

    // Three gateways in a mesh; a fast watchdog and a short hold, so a silent gateway is held
    // and then dropped within seconds.
    static fleet::options options() {
        fleet::options o;
        o.gateways = 3;
        o.cluster = true;
        o.gateway_yaml =
            "cluster_rpc:\n  call_timeout: 1s\n  connect_timeout: 500ms\n"
            "  ping_interval: 250ms\n  peer_timeout: 1s\n  backoff_min: 50ms\n"
            "  backoff_max: 300ms\n  unreachable_hold: 2s\n";
        return o;
    }

    http_result get(const std::string& gw, const std::string& query,
                    const std::string& token = admin_token) {
        std::vector<std::pair<std::string, std::string>> h;
        if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
        return http_request(f.admin_addr(gw), http::verb::get, "/presence?" + query, "", h);
    }
    http_result post(const std::string& gw, const std::string& body,
                     const std::string& token = admin_token) {
        std::vector<std::pair<std::string, std::string>> h{{"Content-Type", "application/json"}};
        if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
        return http_request(f.admin_addr(gw), http::verb::post, "/presence", body, h);
    }
    // One user's answer from gateway gw (null json on any failure).
    nlohmann::json one(const std::string& gw, const std::string& user_q) {
        auto r = get(gw, "user=" + user_q);
        if (r.status != 200) return nullptr;
        return r.json();
    }
    // The "gateways" of an answer as "id:devices[:held]" strings, in answer order.
    static std::vector<std::string> where(const nlohmann::json& a) {
        std::vector<std::string> out;
        if (!a.is_object() || !a.contains("gateways")) return out;
        for (auto& g : a["gateways"]) {
            std::string s = g["id"].get<std::string>() + ":" +
                            (g["devices"].is_null() ? "null" : g["devices"].dump());
            if (g.value("held", false)) s += ":held";
            out.push_back(s);
        }
        return out;
    }
    // Waits until gw answers `want` for user (by where()); sorted: in any order (gateways other
    // than the answering one come in the directory's order).
    ::testing::AssertionResult sees_sorted(const std::string& gw, const std::string& user_q,
                                           std::vector<std::string> want,
                                           std::chrono::milliseconds timeout = 10s) {
        std::sort(want.begin(), want.end());
        nlohmann::json last;
        bool ok = eventually(
            [&] {
                last = one(gw, user_q);
                auto w = where(last);
                std::sort(w.begin(), w.end());
                return w == want;
            },
            timeout);
        if (ok) return ::testing::AssertionSuccess();
        return ::testing::AssertionFailure() << gw << " answered " << last.dump() << logs();
    }
    // The end of each running gateway's log, to explain a failure.
    std::string logs() {
        std::string out;
        for (auto& id : f.ids()) {
            try {
                f.gw(id);
            } catch (const std::out_of_range&) {
                continue;  // never started
            }
            if (!f.gw(id).running()) continue;
            auto l = f.gw(id).log();
            out += "\n--- " + id + " log (end) ---\n" +
                   l.substr(l.size() > 3000 ? l.size() - 3000 : 0);
        }
        return out;
    }
    // Waits until gw answers `want` for user (by where()); the last answer on failure.
    ::testing::AssertionResult sees(const std::string& gw, const std::string& user_q,
                                    std::vector<std::string> want,
                                    std::chrono::milliseconds timeout = 10s) {
        nlohmann::json last;
        if (eventually(
                [&] {
                    last = one(gw, user_q);
                    return where(last) == want;
                },
                timeout))
            return ::testing::AssertionSuccess();
        return ::testing::AssertionFailure() << gw << " answered " << last.dump() << logs();
    }
};

}  // namespace

TEST(Presence, AcrossThreeGatewaysThroughLoginsLogoutsDevicesAndAGatewayLost) {
    presence_fleet t;
    ASSERT_TRUE(t.f.start());
    ASSERT_TRUE(t.f.mesh_up());

    // Nobody yet: a definite "offline".
    auto a = t.one("gw3", zoe_q);
    ASSERT_TRUE(a.is_object());
    EXPECT_EQ(a, (nlohmann::json{{"user", zoe},
                                 {"online", false},
                                 {"devices", 0},
                                 {"gateways", nlohmann::json::array()},
                                 {"known", true}}));

    auto zoe_phone = t.f.client("gw1", zoe, "phone");
    auto bob_phone = t.f.client("gw2", bob, "phone");
    auto carol_pc = t.f.client("gw3", carol, "pc");
    ASSERT_TRUE(zoe_phone && bob_phone && carol_pc);

    // Its own gateway counts exactly; the others know "online there" (announced: no count).
    ASSERT_TRUE(t.sees("gw1", zoe_q, {"gw1:1"}));
    a = t.one("gw1", zoe_q);
    EXPECT_EQ(a["online"], true);
    EXPECT_EQ(a["devices"], 1);
    EXPECT_EQ(a["known"], true);
    ASSERT_TRUE(t.sees("gw3", zoe_q, {"gw1:null"}));
    a = t.one("gw3", zoe_q);
    EXPECT_EQ(a["online"], true);
    EXPECT_TRUE(a["devices"].is_null());
    ASSERT_TRUE(t.sees("gw2", carol_q, {"gw3:null"}));

    // A second device on the same gateway, then a third on another one.
    auto zoe_tablet = t.f.client("gw1", zoe, "tablet");
    ASSERT_TRUE(zoe_tablet);
    ASSERT_TRUE(t.sees("gw1", zoe_q, {"gw1:2"}));
    auto zoe_laptop = t.f.client("gw2", zoe, "laptop");
    ASSERT_TRUE(zoe_laptop);
    ASSERT_TRUE(t.sees("gw1", zoe_q, {"gw1:2", "gw2:null"}));
    ASSERT_TRUE(t.sees("gw2", zoe_q, {"gw2:1", "gw1:null"}));
    ASSERT_TRUE(t.sees_sorted("gw3", zoe_q, {"gw1:null", "gw2:null"}));

    // Logouts: the laptop leaves gw2, then the tablet leaves gw1.
    zoe_laptop.reset();
    ASSERT_TRUE(t.sees("gw3", zoe_q, {"gw1:null"}));
    ASSERT_TRUE(t.sees("gw2", zoe_q, {"gw1:null"}));
    zoe_tablet.reset();
    ASSERT_TRUE(t.sees("gw1", zoe_q, {"gw1:1"}));

    // Batches answer in request order, a repeated id twice, an unknown id offline.
    auto r = t.post("gw3", nlohmann::json{{"users", {bob, nobody, zoe, bob}}}.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    auto users = r.json()["users"];
    ASSERT_EQ(users.size(), 4u);
    EXPECT_EQ(users[0]["user"], bob);
    EXPECT_EQ(presence_fleet::where(users[0]), (std::vector<std::string>{"gw2:null"}));
    EXPECT_EQ(users[1]["user"], nobody);
    EXPECT_EQ(users[1]["online"], false);
    EXPECT_EQ(users[2]["user"], zoe);
    EXPECT_EQ(presence_fleet::where(users[2]), (std::vector<std::string>{"gw1:null"}));
    EXPECT_EQ(users[3], users[0]);
    r = t.get("gw2", "user=" + carol_q + "&user=" + bob_q);
    ASSERT_EQ(r.status, 200) << r.body;
    users = r.json()["users"];
    ASSERT_EQ(users.size(), 2u);
    EXPECT_EQ(users[0]["user"], carol);
    EXPECT_EQ(presence_fleet::where(users[0]), (std::vector<std::string>{"gw3:null"}));
    EXPECT_EQ(users[1]["user"], bob);
    EXPECT_EQ(presence_fleet::where(users[1]), (std::vector<std::string>{"gw2:1"}));

    // gw2 goes silent (SIGSTOP: sockets open, nothing comes out): bob is held on the others —
    // maybe still there, not reachable now — and gone once the hold (2 s) has run out.
    t.f.gw("gw2").signal(SIGSTOP);
    ASSERT_TRUE(t.sees("gw1", bob_q, {"gw2:null:held"}));
    a = t.one("gw1", bob_q);
    EXPECT_EQ(a["online"], true);
    EXPECT_EQ(a["known"], true);
    ASSERT_TRUE(t.sees("gw1", bob_q, {}, 15s));
    a = t.one("gw1", bob_q);
    EXPECT_EQ(a["online"], false);
    EXPECT_EQ(a["known"], true);

    // gw3 is killed: the kernel closes its links (a FIN drops carol at once; a reset, when a
    // ping was in flight, holds her for the 2 s first): gone from gw1 either way.
    t.f.gw("gw3").signal(SIGKILL);
    ASSERT_TRUE(t.sees("gw1", carol_q, {}, 5s));
    // zoe on gw1 is still answered exactly by her own gateway.
    EXPECT_EQ(presence_fleet::where(t.one("gw1", zoe_q)), (std::vector<std::string>{"gw1:1"}));
    t.f.gw("gw2").signal(SIGCONT);
}

TEST(Presence, RequestErrorsAreClear400sAnd401WithoutTheToken) {
    presence_fleet t;
    ASSERT_TRUE(t.f.start_gateway("gw1"));
    auto message = [](const http_result& r) { return r.json().value("message", ""); };

    auto r = t.get("gw1", "user=" + zoe_q, "");
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.json()["error"], "unauthorized");
    r = t.get("gw1", "user=" + zoe_q, "wrong-token");
    EXPECT_EQ(r.status, 401);
    r = t.post("gw1", R"({"users":["a@example.com"]})", "");
    EXPECT_EQ(r.status, 401);

    r = t.get("gw1", "");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.json()["error"], "bad_request");
    EXPECT_EQ(message(r), "give at least one user");
    r = t.get("gw1", "uid=" + zoe_q);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(message(r), "the only query parameter is user=ID (repeatable)");
    r = t.get("gw1", "user=%ZZ");
    EXPECT_EQ(message(r), "bad percent-encoding in query");
    r = t.get("gw1", "user=" + zoe_q + "&user=");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(message(r), "user 2 of 2: id is empty");
    r = t.get("gw1", "user=two%20words");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(message(r).rfind("user 1 of 1: id is ", 0), 0u) << message(r);
    r = t.get("gw1", "user=" + std::string(200, 'x'));
    EXPECT_EQ(message(r), "user 1 of 1: id is too long");

    r = t.post("gw1", "not json");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(message(r).rfind("body must be a JSON object", 0), 0u) << message(r);
    r = t.post("gw1", R"({"users":["a@example.com"],"extra":1})");
    EXPECT_EQ(r.status, 400);
    r = t.post("gw1", R"({"users":"a@example.com"})");
    EXPECT_EQ(r.status, 400);
    r = t.post("gw1", R"({"users":["a@example.com",7]})");
    EXPECT_EQ(message(r), "\"users\" must hold strings only");
    r = t.post("gw1", R"({"users":[]})");
    EXPECT_EQ(message(r), "give at least one user");
    r = t.post("gw1", "{\"users\":[\"ok@example.com\",\"bad\\u0001\"]}");
    EXPECT_EQ(message(r).rfind("user 2 of 2: id is ", 0), 0u) << message(r);

    nlohmann::json many{{"users", nlohmann::json::array()}};
    for (int i = 0; i < 1000; ++i)
        many["users"].push_back("u" + std::to_string(i) + "@example.com");
    r = t.post("gw1", many.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["users"].size(), 1000u);
    EXPECT_EQ(r.json()["users"][999]["user"], "u999@example.com");
    many["users"].push_back("one-too-many@example.com");
    r = t.post("gw1", many.dump());
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(message(r), "at most 1000 users per request");

    EXPECT_EQ(t.f.gw_metric("gw1", R"(imgate_gateway_presence_requests_total{result="ok"})"), 1);
    EXPECT_EQ(
        t.f.gw_metric("gw1", R"(imgate_gateway_presence_requests_total{result="bad_request"})"),
        13);
}

// Redis mode (directory.mode redis): every gateway's count is known, and with Redis gone the
// answer says what it cannot know (known false, online null for a user seen nowhere locally).
TEST(Presence, RedisModeCountsEveryGatewayAndSaysWhenItCannotKnow) {
    IMGATE_REQUIRE_REDIS();
    redis_server rs;
    fleet::options o = presence_fleet::options();
    o.gateway_yaml +=
        "directory:\n  mode: redis\n  lease: 1s\n  cache_ttl: 0ms\nredis:\n  address: " +
        rs.address() +
        "\n  connect_timeout: 300ms\n  command_timeout: 300ms\n  backoff_min: 50ms\n"
        "  backoff_max: 200ms\n";
    presence_fleet t{o};
    ASSERT_TRUE(t.f.start());
    ASSERT_TRUE(t.f.mesh_up());
    auto phone = t.f.client("gw1", zoe, "phone");
    auto tablet = t.f.client("gw1", zoe, "tablet");
    auto laptop = t.f.client("gw2", zoe, "laptop");
    ASSERT_TRUE(phone && tablet && laptop);

    ASSERT_TRUE(t.sees_sorted("gw3", zoe_q, {"gw1:2", "gw2:1"}));
    auto a = t.one("gw3", zoe_q);
    EXPECT_EQ(a["devices"], 3);
    EXPECT_EQ(a["online"], true);
    EXPECT_EQ(a["known"], true);
    ASSERT_TRUE(t.sees("gw2", zoe_q, {"gw2:1", "gw1:2"}));
    tablet.reset();
    ASSERT_TRUE(t.sees("gw2", zoe_q, {"gw2:1", "gw1:1"}));

    // gw1 is killed: once its lease (1 s) has run out and its link is down, its session is in
    // no answer any more, and the device count is what is left. (The phone stays connected
    // until the kill, so gw1's field is still in Redis: only its lease and link can retire it.)
    t.f.gw("gw1").signal(SIGKILL);
    ASSERT_TRUE(t.sees("gw3", zoe_q, {"gw2:1"}));
    a = t.one("gw3", zoe_q);
    EXPECT_EQ(a["devices"], 1);
    EXPECT_EQ(a["online"], true);

    rs.kill();
    // gw3 has no session of zoë and cannot ask: unknown, not offline.
    ASSERT_TRUE(eventually([&] { return t.one("gw3", zoe_q)["known"] == false; }, 10s));
    a = t.one("gw3", zoe_q);
    EXPECT_TRUE(a["online"].is_null()) << a.dump();
    EXPECT_TRUE(a["devices"].is_null());
    EXPECT_TRUE(a["gateways"].empty());
    // gw2 still knows its own session exactly.
    a = t.one("gw2", zoe_q);
    EXPECT_EQ(a["known"], false);
    EXPECT_EQ(a["online"], true);
    EXPECT_EQ(presence_fleet::where(a), (std::vector<std::string>{"gw2:1"}));
    EXPECT_TRUE(a["devices"].is_null());
}
