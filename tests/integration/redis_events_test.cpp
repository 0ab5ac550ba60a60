// Upstream events (docs/events.md) with a real redis-server and real gateways: the stream holds
// every login, message (1:1 and room, UTF-8 ids, binary payloads) in send order per sender, push
// and logout with its reason; Redis stopped and started again loses nothing that fits the buffer;
// a tiny buffer drops (overflow drop) or refuses sends (overflow refuse) exactly as configured;
// and the example consumer docs/examples/events-consumer.sh reads what a gateway wrote.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <cstdlib>
#include <map>
#include <set>

#include "../support/redis_server.hpp"
#include "fault_fixture.hpp"
#include "gateway_fixture.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace std::chrono_literals;
namespace proto = imgate::proto;

namespace {

const std::string zoe = "zoë@example.com";
const std::string bob = "böb@example.com";
const std::string room = "café-lovers";
const std::string stream = "imgate:events";

struct entry {
    std::string id;
    std::map<std::string, std::string> f;
    const std::string& operator[](const std::string& k) const {
        static const std::string none;
        auto it = f.find(k);
        return it == f.end() ? none : it->second;
    }
};

// The whole stream, read with hiredis (binary-safe: payloads come back byte for byte).
std::vector<entry> read_stream(uint16_t port) {
    std::vector<entry> out;
    redisContext* c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        if (c) redisFree(c);
        return out;
    }
    auto* r =
        static_cast<redisReply*>(redisCommand(c, "XRANGE %b - +", stream.data(), stream.size()));
    if (r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; ++i) {
            auto* e = r->element[i];
            entry en;
            en.id.assign(e->element[0]->str, e->element[0]->len);
            auto* kv = e->element[1];
            for (size_t j = 0; j + 1 < kv->elements; j += 2)
                en.f[std::string(kv->element[j]->str, kv->element[j]->len)] =
                    std::string(kv->element[j + 1]->str, kv->element[j + 1]->len);
            out.push_back(std::move(en));
        }
    }
    if (r) freeReplyObject(r);
    redisFree(c);
    return out;
}

std::vector<entry> of_type(const std::vector<entry>& all, const std::string& type) {
    std::vector<entry> out;
    for (auto& e : all)
        if (e["type"] == type) out.push_back(e);
    return out;
}

std::string events_yaml(uint16_t redis_port, const std::string& events_extra) {
    return "redis:\n  address: 127.0.0.1:" + std::to_string(redis_port) +
           "\n  connect_timeout: 300ms\n  command_timeout: 500ms\n  backoff_min: 50ms\n"
           "  backoff_max: 200ms\nevents:\n  enabled: true\n  stream: " +
           stream + "\n  messages: true\n" + events_extra;
}

// A payload no text encoding would survive, distinct per message.
std::string binary_payload(const std::string& who, int i) {
    std::string p("\x00\xff\xfe", 3);
    p += who + " #" + std::to_string(i) + "\n";
    p.push_back(char(0x80 + i % 64));
    return p;
}

// Sends a SEND and returns its SEND_RESULT (nullopt: none within the deadline).
std::optional<proto::send_result_msg> send(test_client& c, proto::target_kind k,
                                           const std::string& target, uint64_t cid,
                                           const std::string& payload) {
    if (!c.send(proto::send_msg{k, target, cid, payload}, uint32_t(cid))) return std::nullopt;
    for (;;) {
        auto f = c.read_frame(5s);
        if (!f) return std::nullopt;
        if (f->op != uint8_t(proto::op::send_result)) continue;  // DELIVERs of the room etc.
        auto r = proto::decode<proto::send_result_msg>(*f);
        if (r && r->client_msg_id == cid) return r;
    }
}

}  // namespace

TEST(RedisEvents, StreamHoldsLoginsMessagesPushAndLogoutsInOrderPerSender) {
    IMGATE_REQUIRE_REDIS();
    redis_server rs;
    fault::fleet::options o;
    o.gateways = 2;
    o.cluster = true;
    o.gateway_yaml = events_yaml(rs.port(), "");
    fault::fleet f(o);
    ASSERT_TRUE(f.start());
    ASSERT_TRUE(f.mesh_up());
    auto z = f.client("gw1", zoe, "phone");
    auto b = f.client("gw2", bob, "pc");
    ASSERT_TRUE(z && b);
    for (auto* c : {z.get(), b.get()}) {
        ASSERT_TRUE(c->send(proto::join_msg{room}, 1));
        auto rr = c->read<proto::room_result_msg>(5s);
        ASSERT_TRUE(rr && rr->status == proto::code::ok);
    }

    // zoë alternates 1:1 and room messages; böb answers 1:1. Every SEND is answered (delivered
    // or offline: both are recorded, so the answers do not matter here).
    std::vector<std::pair<proto::target_kind, std::string>> zoe_sent, bob_sent;
    for (int i = 1; i <= 20; ++i) {
        auto k = i % 2 ? proto::target_kind::user : proto::target_kind::room;
        auto p = binary_payload("zoë", i);
        auto r = send(*z, k, k == proto::target_kind::user ? bob : room, 100 + i, p);
        ASSERT_TRUE(r) << i;
        ASSERT_NE(r->server_msg_id, 0u);
        zoe_sent.emplace_back(k, p);
        if (i % 4 == 0) {
            auto q = binary_payload("böb", i);
            ASSERT_TRUE(send(*b, proto::target_kind::user, zoe, 500 + i, q));
            bob_sent.emplace_back(proto::target_kind::user, q);
        }
    }
    // A backend push to zoë.
    auto pr = http_request(
        f.admin_addr("gw1"), boost::beast::http::verb::post, "/push",
        nlohmann::json{{"user", zoe}, {"payload_b64", "AP/+gA=="}}.dump(),
        {{"Authorization", "Bearer " + fault::admin_token}, {"Content-Type", "application/json"}});
    ASSERT_EQ(pr.status, 200) << pr.body;
    // The same device logs in again: the first session is replaced; böb closes.
    auto z2 = f.client("gw1", zoe, "phone");
    ASSERT_TRUE(z2);
    b.reset();

    std::vector<entry> all;
    ASSERT_TRUE(eventually(
        [&] {
            all = read_stream(rs.port());
            return of_type(all, "logout").size() == 2 && of_type(all, "message").size() == 25;
        },
        15s))
        << all.size() << " entries";

    auto logins = of_type(all, "login");
    ASSERT_EQ(logins.size(), 3u);
    std::map<std::string, entry> login_of;  // by session id + gateway
    for (auto& l : logins) {
        EXPECT_TRUE(l["user"] == zoe || l["user"] == bob) << l["user"];
        EXPECT_EQ(l["transport"], "tcp");
        EXPECT_EQ(l["addr"], "127.0.0.1");
        EXPECT_FALSE(l["session"].empty());
        EXPECT_EQ(l["gateway"], l["user"] == zoe ? "gw1" : "gw2");
        login_of[l["gateway"] + "/" + l["session"]] = l;
    }

    // Per sender, in send order, every field exact; each after its sender's login.
    auto check_sender = [&](const std::string& user, const std::string& device,
                            const std::string& gw, const auto& sent, uint64_t first_cid) {
        std::vector<entry> mine;
        for (auto& m : of_type(all, "message"))
            if (m["from_user"] == user) mine.push_back(m);
        ASSERT_EQ(mine.size(), sent.size()) << user;
        std::set<std::string> ids;
        for (size_t i = 0; i < sent.size(); ++i) {
            const auto& m = mine[i];
            EXPECT_EQ(m["payload"], sent[i].second) << user << " message " << i;
            bool user_kind = sent[i].first == proto::target_kind::user;
            EXPECT_EQ(m["kind"], user_kind ? "user" : "room");
            EXPECT_EQ(m["target"], user_kind ? (user == zoe ? bob : zoe) : room);
            EXPECT_EQ(m["from_device"], device);
            EXPECT_EQ(m["gateway"], gw);
            EXPECT_FALSE(m["ts_ms"].empty());
            ids.insert(m["id"]);
        }
        EXPECT_EQ(ids.size(), sent.size()) << "server_msg_ids are unique";
        (void)first_cid;
    };
    check_sender(zoe, "phone", "gw1", zoe_sent, 100);
    check_sender(bob, "pc", "gw2", bob_sent, 500);
    // client_msg_ids in order too (zoë's 101..120).
    std::vector<std::string> cids;
    for (auto& m : of_type(all, "message"))
        if (m["from_user"] == zoe) cids.push_back(m["client_msg_id"]);
    for (size_t i = 0; i < cids.size(); ++i) EXPECT_EQ(cids[i], std::to_string(101 + i));

    // The stream order: a sender's login before its messages, its logout after them.
    auto index_of = [&](auto pred) {
        for (size_t i = 0; i < all.size(); ++i)
            if (pred(all[i])) return long(i);
        return -1L;
    };
    long first_zoe_login =
        index_of([&](const entry& e) { return e["type"] == "login" && e["user"] == zoe; });
    long first_zoe_msg =
        index_of([&](const entry& e) { return e["type"] == "message" && e["from_user"] == zoe; });
    EXPECT_LT(first_zoe_login, first_zoe_msg);

    auto pushes = of_type(all, "push");
    ASSERT_EQ(pushes.size(), 1u);
    EXPECT_EQ(pushes[0]["target"], zoe);
    EXPECT_EQ(pushes[0]["kind"], "user");
    EXPECT_EQ(pushes[0]["payload"], std::string("\x00\xff\xfe\x80", 4));
    EXPECT_EQ(pushes[0]["id"], std::to_string(pr.json()["server_msg_id"].get<uint64_t>()));

    std::map<std::string, std::string> reason_of;  // user -> reason
    for (auto& l : of_type(all, "logout")) {
        reason_of[l["user"]] = l["reason"];
        // The logout names a session that logged in before, on the same gateway.
        EXPECT_TRUE(login_of.count(l["gateway"] + "/" + l["session"])) << l["session"];
    }
    EXPECT_EQ(reason_of[zoe], "kick:replaced");
    EXPECT_EQ(reason_of[bob], "client_closed");
    long last_bob_msg = -1, bob_logout = -1;
    for (size_t i = 0; i < all.size(); ++i) {
        if (all[i]["type"] == "message" && all[i]["from_user"] == bob) last_bob_msg = long(i);
        if (all[i]["type"] == "logout" && all[i]["user"] == bob) bob_logout = long(i);
    }
    EXPECT_LT(last_bob_msg, bob_logout);

    EXPECT_EQ(f.gw_metric("gw1", R"(imgate_events_total{type="message"})"), 20);
    EXPECT_EQ(f.gw_metric("gw2", R"(imgate_events_total{type="message"})"), 5);
    EXPECT_EQ(f.gw_metric("gw1", R"(imgate_events_total{type="push"})"), 1);
    EXPECT_EQ(f.gw_metric("gw1", "imgate_events_dropped_total"), 0);
    EXPECT_EQ(f.gw_metric("gw1", "imgate_events_buffered"), 0);
}

TEST(RedisEvents, RedisStoppedThenStartedLosesNothingThatFitsTheBuffer) {
    IMGATE_REQUIRE_REDIS();
    redis_server rs;
    gateway_under_test gw("", "", events_yaml(rs.port(), "  max_buffered: 1000\n"));
    ASSERT_TRUE(gw.ready());
    auto z = gw.client(zoe, "phone");
    ASSERT_TRUE(z);
    ASSERT_TRUE(eventually([&] { return of_type(read_stream(rs.port()), "login").size() == 1; }));

    rs.stop();
    std::vector<std::string> sent;
    for (int i = 1; i <= 30; ++i) {
        auto p = binary_payload("zoë", i);
        auto r = send(*z, proto::target_kind::user, bob, uint64_t(i), p);
        ASSERT_TRUE(r);
        // Routing does not wait for Redis: nobody is online, so offline at once.
        EXPECT_EQ(r->status, proto::code::offline);
        sent.push_back(p);
    }
    ASSERT_TRUE(eventually([&] { return gw.metric("imgate_events_buffered") == 30; }));
    EXPECT_EQ(gw.metric(R"(imgate_events_dropped_total{type="message"})"), 0);

    ASSERT_TRUE(rs.start());  // same port, empty (no persistence)
    std::vector<entry> msgs;
    ASSERT_TRUE(eventually(
        [&] {
            msgs = of_type(read_stream(rs.port()), "message");
            return msgs.size() >= 30;
        },
        15s))
        << msgs.size();
    // At least once, in order: an XADD that timed out may be there twice, next to itself.
    std::vector<std::string> got;
    for (auto& m : msgs)
        if (got.empty() || m["payload"] != got.back()) got.push_back(m["payload"]);
    EXPECT_EQ(got, sent);
    EXPECT_TRUE(eventually([&] { return gw.metric("imgate_events_buffered") == 0; }));
    EXPECT_EQ(gw.metric(R"(imgate_events_dropped_total{type="message"})"), 0);
}

// With max_buffered 3 and Redis down: the login is in, then 3 messages wait and the rest is
// dropped (overflow drop: sends go on) or refused (overflow refuse: SEND_RESULT unavailable).
class RedisEventsOverflow : public ::testing::TestWithParam<std::string> {};

TEST_P(RedisEventsOverflow, ATinyBufferDropsOrRefusesExactlyAsConfigured) {
    IMGATE_REQUIRE_REDIS();
    const std::string overflow = GetParam();
    redis_server rs;
    gateway_under_test gw(
        "", "", events_yaml(rs.port(), "  max_buffered: 3\n  overflow: " + overflow + "\n"));
    ASSERT_TRUE(gw.ready());
    auto z = gw.client(zoe, "phone");
    ASSERT_TRUE(z);
    ASSERT_TRUE(eventually([&] { return of_type(read_stream(rs.port()), "login").size() == 1; }));

    rs.stop();
    std::vector<proto::send_result_msg> results;
    for (int i = 1; i <= 5; ++i) {
        auto r = send(*z, proto::target_kind::user, bob, uint64_t(i), binary_payload("zoë", i));
        ASSERT_TRUE(r);
        results.push_back(*r);
    }
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(results[i].status, proto::code::offline) << i;
        EXPECT_NE(results[i].server_msg_id, 0u);
    }
    for (int i = 3; i < 5; ++i) {
        if (overflow == "refuse") {
            EXPECT_EQ(results[i].status, proto::code::unavailable) << i;
            EXPECT_EQ(results[i].server_msg_id, 0u);
        } else {
            EXPECT_EQ(results[i].status, proto::code::offline) << i;
        }
    }
    // A push past the bound: refused (502 unavailable) or sent and its event dropped.
    auto pr = gw.admin_post("/push", nlohmann::json{{"user", zoe}, {"payload", "hi"}}.dump());
    if (overflow == "refuse") {
        EXPECT_EQ(pr.status, 502) << pr.body;
        EXPECT_EQ(pr.json()["error"], "unavailable");
    } else {
        EXPECT_EQ(pr.status, 200) << pr.body;
    }
    // A session event past the bound is dropped under either policy.
    z.reset();
    ASSERT_TRUE(eventually(
        [&] { return gw.metric(R"(imgate_events_dropped_total{type="logout"})") == 1; }));
    bool refuse = overflow == "refuse";
    EXPECT_EQ(gw.metric(R"(imgate_events_dropped_total{type="message"})"), refuse ? 0 : 2);
    EXPECT_EQ(gw.metric(R"(imgate_events_dropped_total{type="push"})"), refuse ? 0 : 1);
    EXPECT_EQ(gw.metric("imgate_events_refused_total"), refuse ? 3 : 0);
    EXPECT_EQ(gw.metric("imgate_events_buffered"), 3);
    if (refuse) {
        EXPECT_EQ(gw.metric(R"(imgate_gateway_errors_total{code="unavailable"})"), 2);
    }

    ASSERT_TRUE(rs.start());
    std::vector<entry> msgs;
    ASSERT_TRUE(eventually(
        [&] {
            msgs = of_type(read_stream(rs.port()), "message");
            return msgs.size() >= 3 && gw.metric("imgate_events_buffered") == 0;
        },
        15s));
    std::vector<std::string> got;
    for (auto& m : msgs)
        if (got.empty() || m["client_msg_id"] != got.back()) got.push_back(m["client_msg_id"]);
    EXPECT_EQ(got, (std::vector<std::string>{"1", "2", "3"}));
    EXPECT_TRUE(of_type(read_stream(rs.port()), "logout").empty());
}

INSTANTIATE_TEST_SUITE_P(Policies, RedisEventsOverflow, ::testing::Values("drop", "refuse"));

// docs/examples/events-consumer.sh, as documented, against a real gateway's stream.
TEST(RedisEvents, TheExampleConsumerReadsAndAcknowledgesWhatAGatewayWrote) {
    IMGATE_REQUIRE_REDIS();
    if (std::system("command -v jq >/dev/null 2>&1") != 0) GTEST_SKIP() << "jq not installed";
    redis_server rs;
    gateway_under_test gw("", "", events_yaml(rs.port(), ""));
    ASSERT_TRUE(gw.ready());
    // Text with everything JSON must escape, and a binary payload.
    const std::string text("plain \"text\" \\ ok\n\0 zoë", 24);
    {
        auto z = gw.client(zoe, "phone");
        ASSERT_TRUE(z);
        ASSERT_TRUE(send(*z, proto::target_kind::room, room, 7, text));
        ASSERT_TRUE(send(*z, proto::target_kind::user, bob, 8, binary_payload("zoë", 8)));
    }
    ASSERT_TRUE(eventually([&] { return of_type(read_stream(rs.port()), "logout").size() == 1; }));

    auto run = [&](const std::string& out) {
        std::string cmd =
            "cd " + gw.dir.path().string() +
            " && timeout 30 env REDIS_HOST=127.0.0.1 REDIS_PORT=" + std::to_string(rs.port()) +
            " GROUP=history CONSUMER=c1 ONCE=1 BLOCK_MS=300 sh " +
            source_path("docs/examples/events-consumer.sh") + " > " + out + " 2> " + out + ".err";
        return std::system(cmd.c_str());
    };
    ASSERT_EQ(run(gw.dir.file("consumer1.out")), 0) << read_file(gw.dir.file("consumer1.out.err"));
    std::vector<nlohmann::json> lines;
    {
        std::istringstream in(read_file(gw.dir.file("consumer1.out")));
        std::string line;
        while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
    }
    ASSERT_EQ(lines.size(), 4u) << read_file(gw.dir.file("consumer1.out"));
    auto all = read_stream(rs.port());
    ASSERT_EQ(all.size(), 4u);
    for (size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(lines[i]["stream_id"], all[i].id);
        ASSERT_EQ(lines[i].size(), all[i].f.size() + 1);
        // Every field exact, except the binary payload (not UTF-8: the example cannot keep it).
        for (auto& [k, v] : all[i].f)
            if (!(i == 2 && k == "payload")) EXPECT_EQ(lines[i][k], v) << i << " " << k;
    }
    EXPECT_EQ(lines[0]["type"], "login");
    EXPECT_EQ(lines[0]["user"], zoe);
    EXPECT_EQ(lines[1]["type"], "message");
    EXPECT_EQ(lines[1]["payload"], text);
    EXPECT_EQ(lines[2]["client_msg_id"], "8");
    EXPECT_EQ(all[2]["payload"], binary_payload("zoë", 8));  // the stream itself has the bytes
    EXPECT_EQ(lines[3]["type"], "logout");
    EXPECT_EQ(lines[3]["reason"], "client_closed");

    // Acknowledged: a second run of the group reads nothing again.
    ASSERT_EQ(run(gw.dir.file("consumer2.out")), 0) << read_file(gw.dir.file("consumer2.out.err"));
    EXPECT_EQ(read_file(gw.dir.file("consumer2.out")), "");
}
