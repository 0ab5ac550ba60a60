// Redis mode (directory.mode: redis) with a real redis-server and three real gateways: 1:1 and
// room routing through Redis lookups, logouts removing their fields, a gateway killed (its users
// answer offline once its lease is gone, its fields leave Redis by themselves), and Redis
// restarted mid-traffic (lookups fall back to every peer and stay truthful; when Redis is back
// every gateway rewrites its entries with a new epoch and lookups come from Redis again).
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <sstream>

#include "../support/redis_server.hpp"
#include "fault_fixture.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace std::chrono_literals;
using fault::metric_sum;

namespace {

const std::string zoe = "zoë@example.com";
const std::string bob = "bob@example.com";
const std::string li = "李@example.cn";
const std::string room = "#général";

// Short timers, so a lease (1 s) and an entry TTL (3 s) run out within a test.
std::string redis_yaml(const redis_server& r) {
    return "directory:\n  mode: redis\n  lease: 1s\n  entry_ttl: 3s\n  cache_ttl: 100ms\n"
           "redis:\n  address: " +
           r.address() +
           "\n  connect_timeout: 500ms\n  command_timeout: 500ms\n  backoff_min: 50ms\n"
           "  backoff_max: 200ms\n"
           "cluster_rpc:\n  call_timeout: 1s\n  connect_timeout: 500ms\n  ping_interval: 500ms\n"
           "  peer_timeout: 2s\n  backoff_min: 50ms\n  backoff_max: 300ms\n"
           "limits:\n  send_rate: 100000\n  send_burst: 100000\n";
}

std::optional<proto::send_result_msg> send_to(test_client& c, proto::target_kind kind,
                                              const std::string& to, uint64_t cid,
                                              const std::string& text) {
    if (!c.send(proto::send_msg{kind, to, cid, text})) return std::nullopt;
    return c.read<proto::send_result_msg>();
}

proto::code send_status(test_client& c, const std::string& to, uint64_t cid) {
    auto r = send_to(c, proto::target_kind::user, to, cid, "m" + std::to_string(cid));
    return r ? r->status : proto::code::internal;
}

// HGETALL as a map (redis-cli prints field and value on alternate lines).
std::map<std::string, std::string> hgetall(redis_server& r, const std::string& key) {
    std::istringstream in(r.cli("HGETALL", key));
    std::map<std::string, std::string> out;
    std::string f, v;
    while (std::getline(in, f) && std::getline(in, v)) out[f] = v;
    return out;
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    return s;
}

struct redis_fleet {
    explicit redis_fleet(redis_server& r)
        : f(fault::fleet::options{3, false, true, redis_yaml(r), "", "", "", {}}) {}
    bool start() { return f.start() && f.mesh_up(); }
    double m(const std::string& gw, const std::string& series) { return f.gw_metric(gw, series); }
    fault::fleet f;
};

// Waits until the user's field of gateway gw is in Redis with gw's current lease epoch.
bool located(redis_server& r, const std::string& user, const std::string& gw) {
    return eventually(
        [&] {
            auto h = hgetall(r, "imgate:u:" + user);
            auto it = h.find(gw);
            if (it == h.end()) return false;
            std::string lease = trimmed(r.cli("GET", "imgate:gw:" + gw));
            return !lease.empty() && it->second.rfind(lease + " ", 0) == 0;
        },
        5s);
}

}  // namespace

TEST(RedisDirectoryFleet, RoutesOneToOneAndRoomsThroughRedisWithoutAnnouncements) {
    IMGATE_REQUIRE_REDIS();
    redis_server redis;
    redis_fleet rf(redis);
    ASSERT_TRUE(rf.start());
    auto z = rf.f.client("gw1", zoe);
    auto z2 = rf.f.client("gw1", zoe, "tablet");
    auto b = rf.f.client("gw3", bob);
    auto l = rf.f.client("gw2", li);
    ASSERT_TRUE(z && z2 && b && l);
    ASSERT_TRUE(located(redis, zoe, "gw1"));
    ASSERT_TRUE(located(redis, bob, "gw3"));
    // Two sessions of zoë on gw1: the count is in her field.
    EXPECT_TRUE(eventually(
        [&] {
            auto v = hgetall(redis, "imgate:u:" + zoe)["gw1"];
            return v.size() > 2 && v.substr(v.size() - 2) == " 2";
        },
        5s));

    auto r = send_to(*b, proto::target_kind::user, zoe, 1, "hallo Zoë");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(r->reached, 2u);
    auto d = z->read<proto::deliver_msg>();
    ASSERT_TRUE(d);
    EXPECT_EQ(d->payload, "hallo Zoë");
    EXPECT_EQ(d->from_user, bob);
    ASSERT_TRUE(z2->read<proto::deliver_msg>());
    EXPECT_EQ(send_status(*z, li, 2), proto::code::ok);
    ASSERT_TRUE(l->read<proto::deliver_msg>());
    EXPECT_EQ(send_status(*z, "nobody@example.com", 3), proto::code::offline);

    // A room with members on gw1 and gw2, a message from gw3.
    for (auto* c : {z.get(), l.get(), b.get()}) {
        ASSERT_TRUE(c->send(proto::join_msg{room}));
        auto rr = c->read<proto::room_result_msg>();
        ASSERT_TRUE(rr);
        EXPECT_EQ(rr->status, proto::code::ok);
    }
    EXPECT_TRUE(eventually([&] { return hgetall(redis, "imgate:r:" + room).size() == 3; }, 5s));
    r = send_to(*b, proto::target_kind::room, room, 4, "à tous");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    auto dz = z->read<proto::deliver_msg>();
    auto dl = l->read<proto::deliver_msg>();
    ASSERT_TRUE(dz && dl);
    EXPECT_EQ(dz->payload, "à tous");
    EXPECT_EQ(dl->payload, "à tous");

    // Nothing was announced: no peer entries anywhere, and the lookups came from Redis.
    for (auto& gw : rf.f.ids()) {
        EXPECT_EQ(rf.m(gw, "imgate_rpc_directory_users"), 0) << gw;
        EXPECT_EQ(rf.m(gw, "imgate_directory_announcements_ignored_total"), 0) << gw;
        EXPECT_EQ(rf.m(gw, "imgate_directory_mode{mode=\"redis\"}"), 1) << gw;
        EXPECT_EQ(rf.m(gw, "imgate_directory_fallback_total"), 0) << gw;
        EXPECT_GT(rf.m(gw, "imgate_directory_redis_writes_total"), 0) << gw;
    }
    EXPECT_GE(rf.m("gw3", "imgate_directory_lookups_total{kind=\"user\",source=\"redis\"}"), 1);
    EXPECT_GE(rf.m("gw3", "imgate_directory_lookups_total{kind=\"room\",source=\"redis\"}"), 1);

    // Logouts take the fields away: one device leaves (count 1), then the last.
    z2->close();
    EXPECT_TRUE(eventually(
        [&] {
            auto v = hgetall(redis, "imgate:u:" + zoe)["gw1"];
            return v.size() > 2 && v.substr(v.size() - 2) == " 1";
        },
        5s));
    z->close();
    EXPECT_TRUE(eventually([&] { return hgetall(redis, "imgate:u:" + zoe).empty(); }, 5s));
    EXPECT_TRUE(
        eventually([&] { return hgetall(redis, "imgate:r:" + room).count("gw1") == 0; }, 5s));
    EXPECT_TRUE(eventually([&] { return send_status(*b, zoe, 5) == proto::code::offline; }, 5s));

    // The directory sections are start-up only: a reload that changes them says so and keeps
    // the running mode.
    std::string y = redis_yaml(redis);
    y.replace(y.find("mode: redis"), 11, "mode: announced");
    rf.f.write_gateway_yaml(y);
    rf.f.gw("gw3").signal(SIGHUP);
    EXPECT_TRUE(eventually(
        [&] {
            return rf.f.gw("gw3").log().find(
                       "directory/redis/events sections changed; restart "
                       "to apply") != std::string::npos;
        },
        5s));
    EXPECT_EQ(rf.m("gw3", "imgate_directory_mode{mode=\"redis\"}"), 1);
    auto b2 = rf.f.client("gw1", bob, "tablet");
    ASSERT_TRUE(b2);
    ASSERT_TRUE(located(redis, bob, "gw1"));
    EXPECT_EQ(send_status(*l, bob, 6), proto::code::ok);
}

TEST(RedisDirectoryFleet, KilledGatewayUsersAnswerOfflineAndItsKeysExpire) {
    IMGATE_REQUIRE_REDIS();
    redis_server redis;
    redis_fleet rf(redis);
    ASSERT_TRUE(rf.start());
    auto z = rf.f.client("gw2", zoe);
    auto b = rf.f.client("gw1", bob);
    ASSERT_TRUE(z && b);
    ASSERT_TRUE(z->send(proto::join_msg{room}));
    ASSERT_TRUE(z->read<proto::room_result_msg>());
    ASSERT_TRUE(located(redis, zoe, "gw2"));
    EXPECT_EQ(send_status(*b, zoe, 1), proto::code::ok);

    rf.f.gw("gw2").signal(SIGKILL);
    // Until its lease (1 s) runs out gw2 still looks alive in Redis: its users answer
    // unavailable (no link), never a false delivered. Then offline.
    uint64_t cid = 2;
    EXPECT_TRUE(eventually(
        [&] {
            auto st = send_status(*b, zoe, cid++);
            EXPECT_TRUE(st == proto::code::unavailable || st == proto::code::offline ||
                        st == proto::code::timeout)
                << int(st);
            return st == proto::code::offline;
        },
        10s));
    EXPECT_EQ(trimmed(redis.cli("EXISTS", "imgate:gw:gw2")), "0");
    // Its keys leave Redis by themselves (entry_ttl 3 s), or are removed as stale by lookups.
    EXPECT_TRUE(eventually(
        [&] {
            return trimmed(redis.cli("EXISTS", "imgate:u:" + zoe)) == "0" &&
                   hgetall(redis, "imgate:r:" + room).count("gw2") == 0;
        },
        10s));
    // Zoë reconnects through gw3: found there.
    auto z3 = rf.f.client("gw3", zoe);
    ASSERT_TRUE(z3);
    ASSERT_TRUE(located(redis, zoe, "gw3"));
    EXPECT_TRUE(eventually([&] { return send_status(*b, zoe, cid++) == proto::code::ok; }, 5s));
}

TEST(RedisDirectoryFleet, RedisRestartedMidTrafficFallsBackThenRewritesEverything) {
    IMGATE_REQUIRE_REDIS();
    redis_server redis;
    redis_fleet rf(redis);
    ASSERT_TRUE(rf.start());
    auto z = rf.f.client("gw1", zoe);
    auto b = rf.f.client("gw3", bob);
    auto l = rf.f.client("gw2", li);
    ASSERT_TRUE(z && b && l);
    ASSERT_TRUE(located(redis, zoe, "gw1"));
    ASSERT_TRUE(located(redis, li, "gw2"));
    std::string epoch1 = trimmed(redis.cli("GET", "imgate:gw:gw1"));
    EXPECT_EQ(send_status(*b, zoe, 1), proto::code::ok);
    ASSERT_TRUE(z->read<proto::deliver_msg>());

    redis.stop();  // without persistence: every key is lost
    EXPECT_TRUE(eventually([&] { return rf.m("gw3", "imgate_redis_up") == 0; }, 5s));
    // During the outage every send still gets the truth: delivered to an online user (asked of
    // every peer), offline for nobody. Traffic goes on for longer than the command timeout,
    // the reconnect backoff and the lease (500 ms, 200 ms, 1 s), so every one of them runs out.
    uint64_t cid = 10;
    int rounds = 0;
    auto outage_end = std::chrono::steady_clock::now() + 1500ms;
    while (std::chrono::steady_clock::now() < outage_end) {
        EXPECT_EQ(send_status(*b, zoe, cid++), proto::code::ok);
        EXPECT_EQ(send_status(*b, "nobody@example.com", cid++), proto::code::offline);
        EXPECT_EQ(send_status(*b, li, cid++), proto::code::ok);
        ++rounds;
        ASSERT_TRUE(z->read<proto::deliver_msg>()) << rounds;
        ASSERT_TRUE(l->read<proto::deliver_msg>()) << rounds;
    }
    EXPECT_EQ(rf.m("gw3", "imgate_redis_up"), 0);
    // Every lookup of nobody and of li fell back (zoë's answer, cached just before the outage,
    // may serve her first sends for cache_ttl).
    EXPECT_GE(rf.m("gw3", "imgate_directory_fallback_total{kind=\"user\"}"), 2 * rounds);

    redis.start();  // same port, empty
    // Every gateway reconnects and writes its users again, with a new epoch, then its lease.
    ASSERT_TRUE(located(redis, zoe, "gw1"));
    ASSERT_TRUE(located(redis, bob, "gw3"));
    ASSERT_TRUE(located(redis, li, "gw2"));
    EXPECT_NE(trimmed(redis.cli("GET", "imgate:gw:gw1")), epoch1);
    // Lookups come from Redis again: the fallback count stops, the redis count moves.
    double fb = rf.m("gw3", "imgate_directory_fallback_total{kind=\"user\"}");
    double from_redis =
        rf.m("gw3", "imgate_directory_lookups_total{kind=\"user\",source=\"redis\"}");
    EXPECT_TRUE(eventually(
        [&] { return send_status(*b, "nobody@example.com", cid++) == proto::code::offline; }));
    EXPECT_EQ(send_status(*b, zoe, cid++), proto::code::ok);
    EXPECT_EQ(rf.m("gw3", "imgate_directory_fallback_total{kind=\"user\"}"), fb);
    EXPECT_GE(rf.m("gw3", "imgate_directory_lookups_total{kind=\"user\",source=\"redis\"}"),
              from_redis + 2);
}
