// Issue 14 (5, 6): rebalancing end to end with the real binaries. A dispatcher with `rebalance`
// on, two gateways, and `imgate load --reconnect` clients that all sit on gw1 because gw2 was
// disabled while they logged in. Once gw2 is enabled, the dispatcher asks gw1 (POST /rebalance)
// to move its excess; the redirected clients ask the dispatcher again (excluding gw1) and land on
// gw2. Asserted: the sessions end at the fair share on both, gw1 never goes below it, exactly the
// excess is moved, no faster than the configured rate, and the moving stops.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "../support/tool_process.hpp"
#include "fault_fixture.hpp"

namespace imgate::test {
namespace {

using namespace std::chrono_literals;
using fault::admin_token;

constexpr int clients = 40;       // fair share 20 on each gateway (equal weights)
constexpr double move_rate = 10;  // sessions per second asked of gw1

int sessions_of(fault::fleet& f, const std::string& id) {
    auto s = http_get(f.admin_addr(id), "/status").json();
    return s.is_object() && s.contains("sessions") ? s["sessions"].get<int>() : -1;
}

http_result disp_post(fault::fleet& f, const std::string& target) {
    return http_request(f.disp_admin(), boost::beast::http::verb::post, target, "",
                        {{"Authorization", "Bearer " + admin_token}});
}

int status_connected(const std::string& path) {
    auto j = nlohmann::json::parse(read_file(path), nullptr, false);
    return j.is_object() ? j.value("connected", -1) : -1;
}

TEST(StormRebalance, MovesTheExcessToTheFairShareAtTheRateAndStops) {
    fault::fleet::options o;
    o.gateways = 2;
    o.dispatcher = true;
    o.cluster = true;
    o.dispatcher_yaml =
        "admin: {token_file: admin.token}\n"
        "reconnect: {base: 100ms, max: 1s, jitter: 200ms}\n"
        "rebalance: {enabled: true, threshold: 0.1, rate: 10, max_per_request: 1000, "
        "interval: 300ms, token_file: admin.token}\n";
    fault::fleet f(o);
    ASSERT_TRUE(f.start());
    ASSERT_TRUE(f.mesh_up());
    ASSERT_EQ(disp_post(f, "/gateways/disable?id=gw2").status, 200);

    auto& dir = f.dir();
    tool_process load(dir, "load",
                      {"load",
                       "--dispatcher",
                       "http://" + f.public_addr(),
                       "--reconnect",
                       "--clients",
                       std::to_string(clients),
                       "--rate",
                       "0",
                       "--rooms",
                       "0",
                       "--room-share",
                       "0",
                       "--duration",
                       "60s",
                       "--run-id",
                       "rebal",
                       "--events",
                       dir.file("events.jsonl"),
                       "--status-file",
                       dir.file("status.json"),
                       "--secret-file",
                       dir.file("token.secret"),
                       "--json",
                       "-q"});
    ASSERT_TRUE(
        eventually([&] { return status_connected(dir.file("status.json")) == clients; }, 20s))
        << load.err();
    ASSERT_EQ(sessions_of(f, "gw1"), clients);
    ASSERT_EQ(sessions_of(f, "gw2"), 0);

    auto enabled_at = std::chrono::steady_clock::now();
    ASSERT_EQ(disp_post(f, "/gateways/enable?id=gw2").status, 200);
    int min_gw1 = clients;
    bool balanced = eventually(
        [&] {
            int a = sessions_of(f, "gw1"), b = sessions_of(f, "gw2");
            if (a >= 0) min_gw1 = std::min(min_gw1, a);
            return a == clients / 2 && b == clients / 2;
        },
        30s, 20ms);
    ASSERT_TRUE(balanced) << "gw1 " << sessions_of(f, "gw1") << " gw2 " << sessions_of(f, "gw2")
                          << "\n"
                          << load.err();
    auto took = std::chrono::steady_clock::now() - enabled_at;
    EXPECT_GE(min_gw1, clients / 2) << "rebalancing took gw1 below its fair share";
    EXPECT_EQ(fault::metric(f.admin_addr("gw1"), "imgate_gateway_rebalance_redirects_total"),
              clients / 2);
    // 20 moves at 10 per second: the 20th can come no sooner than 1.9 s after the first.
    EXPECT_GE(took, std::chrono::milliseconds(int64_t(1000 * (clients / 2 - 1) / move_rate)));

    // The redirected clients saw REDIRECT reason rebalance and came back on gw2 (the events file
    // is flushed with each 200 ms status tick: read it until the last login is in).
    std::set<int> moved, relogged_gw2;
    std::vector<std::string> wrong;
    auto read_events = [&] {
        moved.clear();
        relogged_gw2.clear();
        wrong.clear();
        std::ifstream ev(dir.file("events.jsonl"));
        std::string line;
        while (std::getline(ev, line)) {
            auto e = nlohmann::json::parse(line, nullptr, false);
            if (!e.is_object()) continue;
            if (e["event"] == "lost") {
                if (e["gateway"] != "gw1" || e["reason"] != "redirect:rebalance")
                    wrong.push_back(line);
                moved.insert(e["client"].get<int>());
            } else if (e["event"] == "login" && e["gateway"] == "gw2") {
                relogged_gw2.insert(e["client"].get<int>());
            }
        }
        return relogged_gw2.size() >= size_t(clients / 2);
    };
    EXPECT_TRUE(eventually(read_events, 5s));
    EXPECT_TRUE(wrong.empty()) << wrong.front();
    EXPECT_EQ(moved.size(), size_t(clients / 2));
    EXPECT_EQ(moved, relogged_gw2);

    // Stops: once the dispatcher's pulls show the balance, later intervals ask nothing and move
    // nobody.
    ASSERT_TRUE(eventually([&] {
        auto st = http_get(f.disp_admin(), "/status").json();
        int seen = 0;
        for (auto& g : st["gateways"])
            if (g.value("connections", nlohmann::json()).is_number() &&
                g["connections"].get<int>() == clients / 2)
                ++seen;
        return seen == 2;
    }));
    double asked = fault::metric(f.disp_admin(),
                                 R"(imgate_dispatcher_rebalance_requests_total{gateway="gw1")");
    auto hold_until = std::chrono::steady_clock::now() + 1500ms;
    EXPECT_FALSE(eventually(
        [&] {
            return fault::metric(f.admin_addr("gw1"), "imgate_gateway_rebalance_redirects_total") !=
                   clients / 2;
        },
        std::chrono::duration_cast<std::chrono::milliseconds>(hold_until -
                                                              std::chrono::steady_clock::now())));
    EXPECT_EQ(fault::metric(f.disp_admin(),
                            R"(imgate_dispatcher_rebalance_requests_total{gateway="gw1")"),
              asked);
    EXPECT_EQ(sessions_of(f, "gw1"), clients / 2);
    EXPECT_EQ(sessions_of(f, "gw2"), clients / 2);
}

}  // namespace
}  // namespace imgate::test
