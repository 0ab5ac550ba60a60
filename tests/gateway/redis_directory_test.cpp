// Redis mode's directory without a Redis server: a fake redis::commands keeps the few commands
// the directory uses (HSET, HDEL, PEXPIRE, SET PX [XX], MGET, HGETALL, the conditional-delete
// EVAL) in memory, with key expiry on the test's clock, and answers only when the test runs its
// queue, as a real connection answers later on its executor.
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <optional>
#include <set>

#include "common/metrics.hpp"
#include "gateway/redis_directory.hpp"

using namespace imgate;
using namespace imgate::gw;
using namespace std::chrono_literals;
using redis_clock = redis_directory::clock;

namespace {

class fake_redis final : public redis::commands {
  public:
    explicit fake_redis(const redis_clock::time_point& now) : now_(now) {}

    void command(redis::argv args, redis::reply_handler h) override {
        log.push_back(args);
        queue_.push_back({std::move(args), std::move(h)});
    }
    bool connected() const override { return up; }

    // Answers every queued command (and those queued meanwhile); returns how many.
    size_t run() {
        size_t n = 0;
        while (run_one()) ++n;
        return n;
    }
    bool run_one() {
        if (queue_.empty()) return false;
        auto [args, h] = std::move(queue_.front());
        queue_.pop_front();
        if (fail_with) {
            h(*fail_with, redis::reply{});
            return true;
        }
        h({}, execute(args));
        return true;
    }
    size_t queued() const { return queue_.size(); }

    // The store, as a test sees it.
    std::optional<std::string> get(const std::string& k) {
        expire();
        auto it = strings.find(k);
        if (it == strings.end()) return std::nullopt;
        return it->second;
    }
    std::map<std::string, std::string> hash(const std::string& k) {
        expire();
        return hashes.count(k) ? hashes[k] : std::map<std::string, std::string>{};
    }
    // Commands of one name in the log.
    std::vector<redis::argv> sent(const std::string& name) const {
        std::vector<redis::argv> out;
        for (auto& a : log)
            if (!a.empty() && a[0] == name) out.push_back(a);
        return out;
    }

    bool up = true;
    std::optional<boost::system::error_code> fail_with;  // every answer fails so
    std::optional<std::string> error_reply;              // every answer is -ERR this
    std::vector<redis::argv> log;
    std::map<std::string, std::string> strings;
    std::map<std::string, std::map<std::string, std::string>> hashes;
    std::map<std::string, redis_clock::time_point> deadlines;

  private:
    static redis::reply str(std::string s) {
        redis::reply r;
        r.type = redis::reply::kind::string;
        r.str = std::move(s);
        return r;
    }
    static redis::reply integer(long long v) {
        redis::reply r;
        r.type = redis::reply::kind::integer;
        r.integer = v;
        return r;
    }
    void expire() {
        for (auto it = deadlines.begin(); it != deadlines.end();) {
            if (it->second > now_) {
                ++it;
                continue;
            }
            strings.erase(it->first);
            hashes.erase(it->first);
            it = deadlines.erase(it);
        }
    }
    redis::reply execute(const redis::argv& a) {
        expire();
        if (error_reply) {
            redis::reply r;
            r.type = redis::reply::kind::error;
            r.str = *error_reply;
            return r;
        }
        const std::string& c = a[0];
        if (c == "HSET") {
            hashes[a[1]][a[2]] = a[3];
            return integer(1);
        }
        if (c == "HDEL") {
            auto n = hashes[a[1]].erase(a[2]);
            if (hashes[a[1]].empty()) {
                hashes.erase(a[1]);
                deadlines.erase(a[1]);
            }
            return integer(static_cast<long long>(n));
        }
        if (c == "PEXPIRE") {
            if (!hashes.count(a[1]) && !strings.count(a[1])) return integer(0);
            deadlines[a[1]] = now_ + std::chrono::milliseconds(std::stoll(a[2]));
            return integer(1);
        }
        if (c == "SET") {
            bool xx = a.size() > 5 && a[5] == "XX";
            if (xx && !strings.count(a[1])) return redis::reply{};
            strings[a[1]] = a[2];
            deadlines[a[1]] = now_ + std::chrono::milliseconds(std::stoll(a[4]));
            redis::reply r;
            r.type = redis::reply::kind::status;
            r.str = "OK";
            return r;
        }
        if (c == "MGET") {
            redis::reply r;
            r.type = redis::reply::kind::array;
            for (size_t i = 1; i < a.size(); ++i)
                r.elements.push_back(strings.count(a[i]) ? str(strings[a[i]]) : redis::reply{});
            return r;
        }
        if (c == "HGETALL") {
            redis::reply r;
            r.type = redis::reply::kind::array;
            if (hashes.count(a[1]))
                for (auto& [f, v] : hashes[a[1]]) {
                    r.elements.push_back(str(f));
                    r.elements.push_back(str(v));
                }
            return r;
        }
        if (c == "EVAL") {
            // The directory's only script: HDEL KEYS[1] ARGV[1] if its value is still ARGV[2].
            EXPECT_EQ(a[2], "1");
            auto& h = hashes[a[3]];
            if (h.count(a[4]) && h[a[4]] == a[5]) {
                h.erase(a[4]);
                if (h.empty()) hashes.erase(a[3]);
                return integer(1);
            }
            if (h.empty()) hashes.erase(a[3]);
            return integer(0);
        }
        ADD_FAILURE() << "unexpected command " << c;
        return redis::reply{};
    }

    const redis_clock::time_point& now_;
    std::deque<std::pair<redis::argv, redis::reply_handler>> queue_;
};

const std::string zoe = "zoë@example.com";
const std::string bob = "bob@example.com";
const std::string room = "#général";

double sample(metrics_registry& m, const std::string& series) {
    // "name{labels}" as rendered (labels sorted by name).
    auto body = m.render();
    auto pos = body.find("\n" + series + " ");
    if (pos == std::string::npos) return -1;
    return std::stod(body.substr(pos + series.size() + 2));
}

// One directory (gateway gw1 of a fleet gw1..gw4) over the fake, with a clock the test moves.
struct rig {
    explicit rig(directory_config c = config()) : cfg(c) {
        fake = std::make_shared<fake_redis>(now);
        redis_directory::hooks h;
        h.now = [this] { return now; };
        h.usable_peers = [this] { return usable; };
        h.members = [] { return peer_list{"gw2", "gw3", "gw4"}; };
        h.new_epoch = [this] {
            char buf[17];
            std::snprintf(buf, sizeof buf, "%016x", ++epochs);
            return std::string(buf);
        };
        dir = std::make_unique<redis_directory>(fake, "gw1", "imgate:", cfg, h,
                                                directory_metrics(metrics, "redis"));
    }
    static directory_config config() {
        directory_config c;
        c.mode = directory_mode::redis;
        c.lease = 3000ms;
        c.entry_ttl = 30000ms;
        c.cache_ttl = 200ms;
        c.cache_entries = 100;
        return c;
    }
    // Another gateway with its lease and a location of `user`.
    void peer_holds(const std::string& gw, const std::string& epoch, const std::string& user,
                    int sessions = 1) {
        fake->strings["imgate:gw:" + gw] = epoch;
        fake->deadlines["imgate:gw:" + gw] = now + 1h;
        fake->hashes["imgate:u:" + user][gw] = epoch + " " + std::to_string(sessions);
    }
    struct answer {
        bool called = false;
        peer_list peers;
        lookup_source source = lookup_source::redis;
    };
    answer lookup(const std::string& user, bool use_cache = true) {
        answer a;
        dir->lookup(proto::target_kind::user, user, use_cache,
                    [&a](const peer_list& p, lookup_source s) {
                        EXPECT_FALSE(a.called) << "answered twice";
                        a.called = true;
                        a.peers = p;
                        a.source = s;
                    });
        fake->run();
        return a;
    }
    void connect() {
        dir->connected();
        fake->run();
    }
    double metric(const std::string& series) { return sample(metrics, series); }

    directory_config cfg;
    redis_clock::time_point now = redis_clock::time_point() + 1000h;
    unsigned epochs = 0;
    peer_list usable{"gw2", "gw3", "gw4"};
    metrics_registry metrics;
    std::shared_ptr<fake_redis> fake;
    std::unique_ptr<redis_directory> dir;
};

TEST(RedisDirectory, LocalChangesAreWrittenWithTheEpochAndSessionCount) {
    rig r;
    r.connect();
    std::string e = r.dir->epoch();
    ASSERT_EQ(e.size(), 16u);
    EXPECT_EQ(r.fake->get("imgate:gw:gw1"), e);

    r.dir->user_online(zoe);
    r.dir->user_sessions(zoe, 1);  // the count that follows user_online: nothing new to write
    r.fake->run();
    EXPECT_EQ(r.fake->hash("imgate:u:" + zoe),
              (std::map<std::string, std::string>{{"gw1", e + " 1"}}));
    EXPECT_EQ(r.fake->sent("HSET").size(), 1u);
    EXPECT_TRUE(r.fake->deadlines.count("imgate:u:" + zoe));

    r.dir->user_sessions(zoe, 2);  // a second device
    r.fake->run();
    EXPECT_EQ(r.fake->hash("imgate:u:" + zoe).at("gw1"), e + " 2");

    r.dir->room_interest(room, true);
    r.fake->run();
    EXPECT_EQ(r.fake->hash("imgate:r:" + room).at("gw1"), e);
    EXPECT_TRUE(r.fake->deadlines.count("imgate:r:" + room));

    r.dir->user_sessions(zoe, 1);
    r.dir->user_sessions(zoe, 0);  // the last one left
    r.dir->user_offline(zoe);      // and the offline that goes with it: already done
    r.dir->room_interest(room, false);
    r.fake->run();
    EXPECT_TRUE(r.fake->hash("imgate:u:" + zoe).empty());
    EXPECT_TRUE(r.fake->hash("imgate:r:" + room).empty());
    EXPECT_EQ(r.fake->sent("HDEL").size(), 2u);
    EXPECT_EQ(r.dir->local_users(), 0u);
    // SET, HSET+PEXPIRE, HSET, HSET+PEXPIRE, HSET, HDEL, HDEL.
    EXPECT_EQ(r.metric("imgate_directory_redis_writes_total"), 9);
}

TEST(RedisDirectory, ReconnectRewritesEverythingWithANewEpochThenSetsTheLease) {
    rig r;
    // Changes before the first connection are kept and written once it is up.
    r.dir->user_online(zoe);
    r.dir->user_sessions(zoe, 2);
    r.dir->room_interest(room, true);
    EXPECT_EQ(r.fake->log.size(), 0u);
    r.connect();
    std::string e1 = r.dir->epoch();
    EXPECT_EQ(r.fake->hash("imgate:u:" + zoe).at("gw1"), e1 + " 2");

    r.dir->disconnected();
    r.dir->user_online(bob);   // while Redis is away
    r.dir->user_offline(zoe);  // zoë's old field stays behind, with the old epoch
    r.fake->log.clear();
    r.connect();
    std::string e2 = r.dir->epoch();
    EXPECT_NE(e1, e2);
    EXPECT_EQ(r.fake->hash("imgate:u:" + bob).at("gw1"), e2 + " 1");
    EXPECT_EQ(r.fake->hash("imgate:r:" + room).at("gw1"), e2);
    EXPECT_EQ(r.fake->hash("imgate:u:" + zoe).at("gw1"), e1 + " 2");  // stale from now on
    EXPECT_EQ(r.fake->get("imgate:gw:gw1"), e2);
    // The lease comes after every entry: a peer that sees the new epoch finds the entries.
    size_t last_write = 0, lease_at = 0;
    for (size_t i = 0; i < r.fake->log.size(); ++i) {
        auto& c = r.fake->log[i][0];
        if (c == "HSET" || c == "PEXPIRE") last_write = i;
        if (c == "SET") lease_at = i;
    }
    EXPECT_GT(lease_at, last_write);
    EXPECT_EQ(r.fake->sent("HSET").size(), 2u);  // bob and the room; zoë is gone
}

TEST(RedisDirectory, LookupKeepsOnlyFieldsWhoseLeaseHoldsTheirEpoch) {
    rig r;
    r.connect();
    r.peer_holds("gw2", "2222222222222222", zoe, 3);
    r.peer_holds("gw3", "3333333333333333", zoe);
    r.fake->strings["imgate:gw:gw3"] = "3333333333333334";            // gw3 reconnected since
    r.fake->hashes["imgate:u:" + zoe]["gw4"] = "4444444444444444 1";  // gw4: no lease (dead)
    r.usable = {"gw2", "gw3"};                                        // ... and its link is down
    auto a = r.lookup(zoe);
    ASSERT_TRUE(a.called);
    EXPECT_EQ(a.source, lookup_source::redis);
    EXPECT_EQ(a.peers, peer_list{"gw2"});
    EXPECT_EQ(r.metric("imgate_directory_stale_entries_total"), 2);
    // Removed lazily: the stale fields are gone, the valid one stays.
    EXPECT_EQ(r.fake->hash("imgate:u:" + zoe),
              (std::map<std::string, std::string>{{"gw2", "2222222222222222 3"}}));
    EXPECT_EQ(r.metric("imgate_directory_lookups_total{kind=\"user\",source=\"redis\"}"), 1);

    // Presence carries the counts.
    std::vector<presence_answer> got;
    r.dir->presence({zoe, bob}, [&](std::vector<presence_answer> p) { got = std::move(p); });
    r.fake->run();
    ASSERT_EQ(got.size(), 2u);
    EXPECT_TRUE(got[0].known);
    ASSERT_EQ(got[0].peers.size(), 1u);
    EXPECT_EQ(got[0].peers[0].gateway, "gw2");
    EXPECT_EQ(got[0].peers[0].devices, 3u);
    EXPECT_TRUE(got[1].known);
    EXPECT_TRUE(got[1].peers.empty());
}

// A gateway alive on the mesh but cut off from Redis lets its lease lapse: its fields cannot be
// confirmed, so it is asked (it knows its own sessions) instead of its users being answered
// offline; its field is kept for its own rewrite, and presence marks the location unconfirmed
// (held). Once its link is down too, the field is stale like a dead gateway's.
TEST(RedisDirectory, ALinkedGatewayWithoutLeaseIsAskedNotAnsweredForOffline) {
    rig r;
    r.connect();
    r.fake->hashes["imgate:u:" + zoe]["gw3"] = "3333333333333333 2";  // gw3: lease lapsed
    auto a = r.lookup(zoe);
    ASSERT_TRUE(a.called);
    EXPECT_EQ(a.source, lookup_source::redis);
    EXPECT_EQ(a.peers, peer_list{"gw3"});
    EXPECT_EQ(r.metric("imgate_directory_stale_entries_total"), 0);
    EXPECT_EQ(r.fake->hash("imgate:u:" + zoe).count("gw3"), 1u);
    std::vector<presence_answer> got;
    r.dir->presence({zoe}, [&](std::vector<presence_answer> p) { got = std::move(p); });
    r.fake->run();
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0].peers.size(), 1u);
    EXPECT_EQ(got[0].peers[0].gateway, "gw3");
    EXPECT_TRUE(got[0].peers[0].held);

    r.usable = {"gw2", "gw4"};  // gw3's link went down: nothing vouches for the field any more
    auto b = r.lookup(zoe, false);
    EXPECT_TRUE(b.peers.empty());
    EXPECT_EQ(r.metric("imgate_directory_stale_entries_total"), 1);
    EXPECT_EQ(r.fake->hash("imgate:u:" + zoe).count("gw3"), 0u);
}

TEST(RedisDirectory, StaleFieldRewrittenMeanwhileIsNotRemoved) {
    rig r;
    r.connect();
    r.peer_holds("gw2", "aaaaaaaaaaaaaaaa", zoe);
    r.fake->strings["imgate:gw:gw2"] = "bbbbbbbbbbbbbbbb";  // gw2's new epoch, entry not yet
    bool called = false;
    peer_list peers;
    r.dir->lookup(proto::target_kind::user, zoe, true, [&](const peer_list& p, lookup_source) {
        called = true;
        peers = p;
    });
    ASSERT_TRUE(r.fake->run_one());  // HGETALL
    ASSERT_TRUE(r.fake->run_one());  // MGET of gw2's lease: stale
    EXPECT_TRUE(called);
    EXPECT_TRUE(peers.empty());
    // gw2's rewrite lands before the conditional delete runs: it must survive.
    r.fake->hashes["imgate:u:" + zoe]["gw2"] = "bbbbbbbbbbbbbbbb 1";
    r.fake->run();
    ASSERT_FALSE(r.fake->sent("EVAL").empty());
    EXPECT_EQ(r.fake->hash("imgate:u:" + zoe).at("gw2"), "bbbbbbbbbbbbbbbb 1");
    EXPECT_EQ(r.lookup(zoe).peers, peer_list{"gw2"});
}

TEST(RedisDirectory, OwnFieldOfAnOlderEpochIsStaleAndNeverAPeer) {
    rig r;
    r.connect();
    r.fake->hashes["imgate:u:" + zoe]["gw1"] = "0123456789abcdef 1";
    auto a = r.lookup(zoe);
    EXPECT_TRUE(a.peers.empty());
    EXPECT_TRUE(r.fake->hash("imgate:u:" + zoe).empty());
    // Our own current field is simply not a peer.
    r.dir->user_online(bob);
    r.fake->run();
    EXPECT_TRUE(r.lookup(bob).peers.empty());
    EXPECT_EQ(r.fake->hash("imgate:u:" + bob).size(), 1u);
}

TEST(RedisDirectory, PositiveAnswersAreCachedForCacheTtlNegativeOnesNever) {
    rig r;
    r.connect();
    r.peer_holds("gw2", "2222222222222222", zoe);
    EXPECT_EQ(r.lookup(zoe).source, lookup_source::redis);
    size_t hgetall = r.fake->sent("HGETALL").size();
    auto cached = r.lookup(zoe);
    EXPECT_EQ(cached.source, lookup_source::cache);
    EXPECT_EQ(cached.peers, peer_list{"gw2"});
    EXPECT_EQ(r.fake->sent("HGETALL").size(), hgetall);
    // use_cache=false (the retry after a cached answer reached nobody) asks Redis.
    EXPECT_EQ(r.lookup(zoe, false).source, lookup_source::redis);
    r.now += 199ms;
    EXPECT_EQ(r.lookup(zoe).source, lookup_source::cache);
    r.now += 2ms;                                           // past cache_ttl
    EXPECT_EQ(r.lookup(zoe).source, lookup_source::redis);  // and cached again
    r.now += 150ms;
    EXPECT_EQ(r.lookup(zoe).source, lookup_source::cache);
    r.now += 200ms;
    EXPECT_EQ(r.lookup(zoe).source, lookup_source::redis);
    r.dir->forget_cached(proto::target_kind::user, zoe);
    EXPECT_EQ(r.lookup(zoe).source, lookup_source::redis);

    // Nowhere: asked every time, so a login elsewhere is seen at once.
    EXPECT_TRUE(r.lookup(bob).peers.empty());
    EXPECT_EQ(r.lookup(bob).source, lookup_source::redis);
    r.peer_holds("gw3", "3333333333333333", bob);
    EXPECT_EQ(r.lookup(bob).peers, peer_list{"gw3"});
    EXPECT_EQ(r.metric("imgate_directory_lookups_total{kind=\"user\",source=\"cache\"}"), 3);
}

TEST(RedisDirectory, CacheHoldsAtMostCacheEntries) {
    auto c = rig::config();
    c.cache_entries = 3;
    rig r(c);
    r.connect();
    for (int i = 0; i < 10; ++i) {
        std::string u = "user" + std::to_string(i) + "@example.com";
        r.peer_holds("gw2", "2222222222222222", u);
        EXPECT_EQ(r.lookup(u).source, lookup_source::redis);
        EXPECT_LE(r.dir->cached(), 3u);
        EXPECT_EQ(r.lookup(u).source, lookup_source::cache);  // the newest is kept
    }
    EXPECT_EQ(r.dir->cached(), 3u);
    auto z = rig::config();
    z.cache_ttl = 0ms;  // 0: ask every time
    rig r0(z);
    r0.connect();
    r0.peer_holds("gw2", "2222222222222222", zoe);
    EXPECT_EQ(r0.lookup(zoe).source, lookup_source::redis);
    EXPECT_EQ(r0.lookup(zoe).source, lookup_source::redis);
}

TEST(RedisDirectory, WithoutRedisLookupsGoToEveryUsablePeer) {
    rig r;
    r.dir->user_online(zoe);
    // Never connected.
    auto a = r.lookup(bob);
    EXPECT_EQ(a.source, lookup_source::fallback);
    EXPECT_EQ(a.peers, (peer_list{"gw2", "gw3", "gw4"}));
    EXPECT_EQ(r.fake->log.size(), 0u);

    r.connect();
    r.peer_holds("gw2", "2222222222222222", bob);
    // The connection dropped (not yet reported as down).
    r.fake->up = false;
    r.usable = {"gw3"};
    EXPECT_EQ(r.lookup(bob).peers, peer_list{"gw3"});
    r.fake->up = true;
    // A command that got no answer in time.
    r.fake->fail_with = make_error_code(redis::errc::timed_out);
    a = r.lookup(bob);
    EXPECT_EQ(a.source, lookup_source::fallback);
    EXPECT_EQ(a.peers, peer_list{"gw3"});
    std::vector<presence_answer> got;
    r.dir->presence({bob}, [&](std::vector<presence_answer> p) { got = std::move(p); });
    r.fake->run();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_FALSE(got[0].known);
    r.fake->fail_with.reset();
    // An error reply.
    r.fake->error_reply = "LOADING Redis is loading the dataset in memory";
    EXPECT_EQ(r.lookup(bob).source, lookup_source::fallback);
    r.fake->error_reply.reset();
    EXPECT_EQ(r.lookup(bob).peers, peer_list{"gw2"});
    // Fallbacks are never cached.
    EXPECT_EQ(r.lookup(bob).source, lookup_source::cache);
    EXPECT_EQ(r.metric("imgate_directory_fallback_total{kind=\"user\"}"), 4);
    EXPECT_EQ(r.metric("imgate_directory_lookups_total{kind=\"user\",source=\"fallback\"}"), 4);
    EXPECT_EQ(r.metric("imgate_directory_fallback_total{kind=\"presence\"}"), 1);

    // disconnected(): no command is even tried, presence is unknown at once.
    r.dir->disconnected();
    r.fake->log.clear();
    EXPECT_EQ(r.lookup(zoe).source, lookup_source::fallback);
    r.dir->presence({zoe}, [&](std::vector<presence_answer> p) { got = std::move(p); });
    EXPECT_FALSE(got[0].known);
    r.dir->user_offline(zoe);  // kept locally, written on reconnect
    EXPECT_EQ(r.fake->log.size(), 0u);
}

TEST(RedisDirectory, LeaseIsRenewedEveryThirdAndEntriesSpreadOverAThirdOfTheirTtl) {
    rig r;  // lease 3 s, entry_ttl 30 s
    const int users = 40;
    for (int i = 0; i < users; ++i) r.dir->user_online("u" + std::to_string(i) + "@example.com");
    r.dir->room_interest(room, true);
    r.connect();
    auto step = r.dir->tick_interval();
    EXPECT_LE(step, 500ms);
    r.fake->log.clear();
    std::map<std::string, int> renewed;
    size_t most_in_one_tick = 0;
    auto start = r.now;
    // The first round starts entry_ttl/3 after the rewrite and is spread over 3/4 of a third.
    auto until = start + 19s;
    while (r.now < until) {
        r.now += step;
        size_t before = r.fake->sent("PEXPIRE").size();
        r.dir->tick();
        r.fake->run();
        auto p = r.fake->sent("PEXPIRE");
        most_in_one_tick = std::max(most_in_one_tick, p.size() - before);
        // The lease never lapses.
        EXPECT_EQ(r.fake->get("imgate:gw:gw1"), r.dir->epoch());
    }
    for (auto& a : r.fake->sent("PEXPIRE")) ++renewed[a[1]];
    // Every key renewed once in the round, a share per tick, never all at once.
    EXPECT_EQ(renewed.size(), size_t(users + 1));
    for (auto& [k, n] : renewed) EXPECT_EQ(n, 1) << k;
    EXPECT_LT(most_in_one_tick, size_t(users / 4));
    // Lease: every lease/3 = 1 s, XX (renew, never resurrect).
    auto sets = r.fake->sent("SET");
    EXPECT_GE(sets.size(), 18u);
    EXPECT_LE(sets.size(), 19u);
    for (auto& s : sets) EXPECT_EQ(s.back(), "XX");
    // The fleet's leases are read each lease/3 as well.
    EXPECT_GE(r.fake->sent("MGET").size(), 18u);
    // Every key still has its TTL running, well ahead.
    for (auto& [k, n] : renewed) EXPECT_GT(r.fake->deadlines.at(k), r.now + 10s) << k;
}

TEST(RedisDirectory, ALeaseLostWhileConnectedStartsANewEpoch) {
    rig r;
    r.dir->user_online(zoe);
    r.connect();
    auto e1 = r.dir->epoch();
    r.fake->strings.erase("imgate:gw:gw1");  // expired or flushed behind our back
    r.fake->hashes.clear();
    r.now += 1001ms;
    r.dir->tick();
    r.fake->run();
    EXPECT_NE(r.dir->epoch(), e1);
    EXPECT_EQ(r.fake->get("imgate:gw:gw1"), r.dir->epoch());
    EXPECT_EQ(r.fake->hash("imgate:u:" + zoe).at("gw1"), r.dir->epoch() + " 1");
}

TEST(RedisDirectory, KnownLeasesComeFromThePeriodicMget) {
    rig r;
    r.peer_holds("gw2", "2222222222222222", zoe);
    r.connect();  // reads the fleet's leases
    size_t mget = r.fake->sent("MGET").size();
    EXPECT_EQ(r.lookup(zoe).peers, peer_list{"gw2"});
    EXPECT_EQ(r.fake->sent("MGET").size(), mget);  // the epoch was known: no extra read
    // gw2 dies: its lease expires and its link is down; until the next refresh the known
    // epoch still matches.
    r.fake->strings.erase("imgate:gw:gw2");
    r.usable = {"gw3", "gw4"};
    r.now += 1001ms;
    r.dir->tick();
    r.fake->run();
    EXPECT_TRUE(r.lookup(zoe, false).peers.empty());
    EXPECT_EQ(r.metric("imgate_directory_stale_entries_total"), 1);
}

TEST(RedisDirectory, AnnouncementsFromAPeerAreIgnoredAndCounted) {
    rig r;
    auto res = r.dir->apply_presence("gw2", true, {{true, zoe}});
    EXPECT_EQ(res.refused, 0u);
    r.dir->apply_rooms("gw2", false, {{true, room}});
    EXPECT_EQ(r.metric("imgate_directory_announcements_ignored_total"), 2);
    EXPECT_EQ(r.dir->user_entries(), 0u);
    EXPECT_EQ(r.metric("imgate_directory_mode{mode=\"redis\"}"), 1);
    EXPECT_EQ(r.metric("imgate_directory_mode{mode=\"announced\"}"), 0);
}

}  // namespace
