// rpc_cluster in redis mode, in-process, over loopback links and a real redis-server: presence
// answers with session counts after logins and logouts (and unknown while Redis is away), a
// forward based on a cached answer that reached nobody retried with a fresh lookup (a cache never
// makes a false offline), and presence in announced mode (no counts).
#include <gtest/gtest.h>

#include "../support/redis_server.hpp"
#include "cluster_node.hpp"
#include "fake_local.hpp"

using namespace imgate;
using namespace imgate::gw;
using namespace std::chrono_literals;
using imgate::gw::test_support::fake_local;
using imgate::test::eventually;

namespace {

const std::string secret = "redis-cluster-test-secret-0123456789";
const std::string zoe = "zoë@example.com";
const std::string bob = "bob@example.com";

rpc_config fast_config() {
    return test::fast_rpc_config();
}

using node = test::cluster_node<fake_local>;

// Three nodes on ports of their own choosing, then told each other's ports (as a reload would).
struct fleet3 {
    fleet3(const directory_config& d, const redis_config& r) {
        auto unbound = test::cluster_fleet({{"gw1", 0}, {"gw2", 0}, {"gw3", 0}});
        for (auto id : {"gw1", "gw2", "gw3"})
            nodes[id] = std::make_unique<node>(unbound, id, secret, fast_config(), d, r);
        std::map<std::string, uint16_t> ports;
        for (auto& [id, nd] : nodes) ports[id] = nd->cluster->rpc_port();
        auto fleet = test::cluster_fleet(ports);
        for (auto& [id, nd] : nodes) nd->cluster->reload(fleet);
    }
    bool up(bool redis) {
        return eventually(
            [&] {
                for (auto& [id, nd] : nodes)
                    if (nd->cluster->links_up() != 2 || (redis && !nd->cluster->redis_connected()))
                        return false;
                return true;
            },
            10s);
    }
    node& n(const std::string& id) { return *nodes.at(id); }
    // A login as the core reports it: online, then the session count.
    void login(const std::string& gw, const std::string& user, uint32_t sessions) {
        {
            std::lock_guard lk(n(gw).local.mu);
            n(gw).local.users.insert(user);
        }
        n(gw).cluster->user_online(user);
        n(gw).cluster->user_sessions(user, sessions);
    }
    void logout(const std::string& gw, const std::string& user) {
        {
            std::lock_guard lk(n(gw).local.mu);
            n(gw).local.users.erase(user);
        }
        n(gw).cluster->user_offline(user);
        n(gw).cluster->user_sessions(user, 0);
    }
    std::map<std::string, std::unique_ptr<node>> nodes;
};

directory_config redis_dir(std::chrono::milliseconds cache_ttl = 200ms) {
    directory_config d;
    d.mode = directory_mode::redis;
    d.lease = 3s;
    d.entry_ttl = 30s;
    d.cache_ttl = cache_ttl;
    return d;
}

redis_config redis_at(const test::redis_server& r) {
    redis_config c;
    c.configured = true;
    c.conn.host = "127.0.0.1";
    c.conn.port = r.port();
    c.conn.connect_timeout = 500ms;
    c.conn.command_timeout = 500ms;
    c.conn.backoff_min = 20ms;
    c.conn.backoff_max = 200ms;
    return c;
}

// "gw:devices" per location, sorted, for compact comparisons.
std::vector<std::string> where(const presence_answer& a) {
    std::vector<std::string> out;
    for (auto& p : a.peers)
        out.push_back(p.gateway + ":" + (p.devices ? std::to_string(*p.devices) : "?") +
                      (p.held ? "(held)" : ""));
    std::sort(out.begin(), out.end());
    return out;
}

using list = std::vector<std::string>;

}  // namespace

TEST(RedisCluster, PresenceAnswersWithSessionCountsAfterLoginsAndLogouts) {
    IMGATE_REQUIRE_REDIS();
    test::redis_server redis;
    fleet3 f(redis_dir(), redis_at(redis));
    ASSERT_TRUE(f.up(true));
    f.login("gw2", zoe, 2);
    f.login("gw3", zoe, 1);
    auto& gw1 = *f.n("gw1").cluster;
    ASSERT_TRUE(eventually([&] {
        auto p = gw1.presence_of({zoe, bob});
        return p.size() == 2 && p[0].known && where(p[0]) == list{"gw2:2", "gw3:1"} && p[1].known &&
               p[1].peers.empty();
    }));
    // Never this gateway: gw2 sees only gw3.
    auto p2 = f.n("gw2").cluster->presence_of({zoe});
    EXPECT_EQ(where(p2[0]), list{"gw3:1"});

    f.n("gw2").cluster->user_sessions(zoe, 1);  // one of her two devices left
    EXPECT_TRUE(eventually([&] {
        return where(gw1.presence_of({zoe})[0]) == list{"gw2:1", "gw3:1"};
    }));
    f.logout("gw3", zoe);
    EXPECT_TRUE(eventually([&] { return where(gw1.presence_of({zoe})[0]) == list{"gw2:1"}; }));
    EXPECT_EQ(f.n("gw1").metric("imgate_directory_fallback_total"), 0);

    // Redis gone: presence is unknown, never a made-up "offline".
    redis.stop();
    EXPECT_TRUE(eventually([&] {
        auto p = gw1.presence_of({zoe, bob});
        return !p[0].known && !p[1].known && p[0].peers.empty();
    }));
    EXPECT_GE(f.n("gw1").metric("imgate_directory_fallback_total{kind=\"presence\"}"), 2);
    // And sends still find her, asking every peer.
    EXPECT_EQ(f.n("gw1").forward_sync(zoe).status, proto::code::ok);

    // Back (empty): the gateways rewrite their entries and presence is known again.
    ASSERT_TRUE(redis.start());
    EXPECT_TRUE(eventually(
        [&] {
            auto p = gw1.presence_of({zoe});
            return p[0].known && where(p[0]) == list{"gw2:1"};
        },
        10s));
}

TEST(RedisCluster, CachedAnswerThatReachedNobodyIsRetriedWithAFreshLookup) {
    IMGATE_REQUIRE_REDIS();
    test::redis_server redis;
    fleet3 f(redis_dir(2s), redis_at(redis));  // a long cache, to move zoë within it
    ASSERT_TRUE(f.up(true));
    f.login("gw2", zoe, 1);
    auto& n1 = f.n("gw1");
    ASSERT_TRUE(eventually(
        [&] { return n1.cluster->lookup(proto::target_kind::user, zoe) == list{"gw2"}; }));
    // The lookup above cached [gw2]; zoë moves to gw3 inside cache_ttl.
    f.logout("gw2", zoe);
    f.login("gw3", zoe, 1);
    ASSERT_TRUE(eventually([&] {
        return where(n1.cluster->presence_of({zoe})[0]) == list{"gw3:1"};  // uncached
    }));
    double cache_hits = n1.metric("imgate_directory_lookups_total{kind=\"user\",source=\"cache\"}");
    auto r = n1.forward_sync(zoe);
    EXPECT_EQ(r.status, proto::code::ok);
    EXPECT_EQ(r.reached, 1u);
    EXPECT_EQ(n1.metric("imgate_directory_lookups_total{kind=\"user\",source=\"cache\"}"),
              cache_hits + 1);
    {
        std::lock_guard lk(f.n("gw3").local.mu);
        EXPECT_EQ(f.n("gw3").local.delivered, list{zoe});
    }
    // Counted once, as delivered (the first offline answer was not a result).
    EXPECT_EQ(n1.metric("imgate_rpc_forwards_total{result=\"offline\"}"), 0);
    EXPECT_EQ(n1.metric("imgate_rpc_forwards_total{result=\"delivered\"}"), 1);
    // No announcements in redis mode: nothing was learnt from the peers.
    EXPECT_EQ(n1.cluster->directory_users(), 0u);
    EXPECT_EQ(n1.metric("imgate_directory_announcements_ignored_total"), 0);
}

TEST(RedisCluster, AnnouncedModePresenceListsPeersWithoutCounts) {
    fleet3 f(directory_config{}, redis_config{});
    ASSERT_TRUE(f.up(false));
    f.login("gw2", zoe, 2);
    auto& gw1 = *f.n("gw1").cluster;
    EXPECT_TRUE(eventually([&] {
        auto p = gw1.presence_of({zoe, bob});
        return p[0].known && where(p[0]) == list{"gw2:?"} && p[1].known && p[1].peers.empty();
    }));
    EXPECT_EQ(f.n("gw1").metric("imgate_directory_mode{mode=\"announced\"}"), 1);
}
