#pragma once
// The session directory of redis mode (directory.mode: redis; docs/architecture.md, "Redis
// mode"). Each gateway writes where its own users and rooms are to Redis and looks up the others'
// there, instead of receiving every peer's PRESENCE and ROOM_INTEREST announcements.
//
// Keys (P = redis.prefix):
//   P"gw:"<gateway>  STRING "<epoch>", PX directory.lease, renewed every lease/3
//   P"u:"<user>      HASH   <gateway> -> "<epoch> <sessions>", PEXPIRE directory.entry_ttl
//   P"r:"<room>      HASH   <gateway> -> "<epoch>",            PEXPIRE directory.entry_ttl
// A field is a location only while its gateway's lease holds the same epoch. The epoch is new at
// each (re)connection to Redis, which rewrites every local entry and only then sets the lease, so
// entries left from before (or by a dead gateway) are stale at once and are removed lazily.
//
// Socket-free and timer-free: it talks only to redis::commands, reads time from an injected
// clock, and its owner calls tick() every tick_interval(), connected()/disconnected() from the
// connection's up/down callbacks. Not thread-safe: everything (including the redis reply
// handlers, which run on the connection's executor) must run on one strand; rpc_cluster creates
// the redis connection on the cluster's strand, so every callback this class makes (resolve,
// lookup, presence) runs on that strand.
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/redis.hpp"
#include "gateway/backend_config.hpp"
#include "gateway/cluster.hpp"
#include "gateway/cluster_metrics.hpp"
#include "gateway/directory.hpp"

namespace imgate::gw {

// Owns this gateway's local users and rooms as written to Redis, the known lease epochs of the
// fleet, the positive lookup cache, and the renewal schedule.
class redis_directory final : public session_directory {
  public:
    using clock = std::chrono::steady_clock;
    struct hooks {
        std::function<clock::time_point()> now;
        // Every peer with a usable link now: where a lookup goes when Redis cannot answer.
        std::function<peer_list()> usable_peers;
        // The other gateways of the fleet: whose leases are read (MGET) every lease/3.
        std::function<peer_list()> members;
        // A new random epoch (16 hex chars); null: std::random_device.
        std::function<std::string()> new_epoch;
    };
    // A location of a user: a gateway and its sessions of the user there.
    struct location {
        std::string gateway;
        uint32_t sessions = 0;
        // Its gateway has no lease (cut off from Redis, or dead) but its link here is up: it is
        // asked anyway, since only it knows whether the user is still there.
        bool unconfirmed = false;
    };
    using lookup_cb = std::function<void(const peer_list&, lookup_source)>;

    // r: shared, so that reply handlers never outlive the connection they came from.
    redis_directory(std::shared_ptr<redis::commands> r, std::string self_id, std::string prefix,
                    const directory_config& cfg, hooks h, directory_metrics m);
    ~redis_directory() override;

    // session_directory: resolve() is lookup() with the cache allowed.
    void resolve(proto::target_kind kind, const std::string& target,
                 std::function<void(const peer_list&)> cb) override;
    // Peers holding the target (never this gateway). use_cache=false: ask Redis even if a cached
    // answer exists (the retry after a cached answer reached nobody). cb is called exactly once,
    // on the strand, possibly before this returns (cache, fallback).
    void lookup(proto::target_kind kind, const std::string& target, bool use_cache, lookup_cb cb);
    // Where else each user is online, with session counts; known=false when Redis cannot answer.
    // Never cached: the counts move with every login.
    void presence(const std::vector<std::string>& users,
                  std::function<void(std::vector<presence_answer>)> done);
    void forget_cached(proto::target_kind kind, const std::string& target);

    // Local changes (from the core, via the cluster).
    void user_online(const std::string& user);
    void user_offline(const std::string& user);
    // The user's local session count (0: the last one left).
    void user_sessions(const std::string& user, uint32_t sessions);
    void room_interest(const std::string& room, bool interested);

    // The connection is (again) up: new epoch, every local entry rewritten, then the lease.
    void connected();
    // The connection was lost: lookups fall back until connected() again.
    void disconnected();
    // Does what is due: lease renewal and lease-epoch refresh every lease/3, the share of the
    // entry renewal due by now (spread over entry_ttl/3).
    void tick();
    std::chrono::milliseconds tick_interval() const;

    // Observations (strand only).
    const std::string& epoch() const { return epoch_; }
    size_t cached() const { return cache_.size(); }
    size_t local_users() const { return users_.size(); }
    size_t local_rooms() const { return rooms_.size(); }
    std::string user_key(const std::string& user) const { return prefix_ + "u:" + user; }
    std::string room_key(const std::string& room) const { return prefix_ + "r:" + room; }
    std::string lease_key(const std::string& gw) const { return prefix_ + "gw:" + gw; }

    // Announced-mode parts of the interface. Nothing is announced in redis mode: a peer that
    // still sends PRESENCE/ROOM_INTEREST is in announced mode (a mixed fleet, which cannot route
    // to each other's users): its frames are counted and ignored, with one warning.
    void set_limits(const directory_limits&) override {}
    apply_result apply_presence(const std::string& peer, bool reset,
                                const std::vector<rpc::delta>& changes) override;
    apply_result apply_rooms(const std::string& peer, bool reset,
                             const std::vector<rpc::delta>& changes) override;
    void drop_peer(const std::string&) override {}
    uint64_t hold_peer(const std::string&, hold_clock::time_point) override { return 0; }
    bool expire_hold(const std::string&, uint64_t, hold_clock::time_point) override {
        return false;
    }
    bool end_hold(const std::string&) override { return false; }
    bool held(const std::string&) const override { return false; }
    size_t peer_entries(const std::string&, proto::target_kind) const override { return 0; }
    bool overflowed(const std::string&, proto::target_kind) const override { return false; }
    size_t user_entries() const override { return 0; }
    size_t room_entries() const override { return 0; }
    size_t user_locations() const override { return 0; }
    size_t room_locations() const override { return 0; }

  private:
    using fetch_cb = std::function<void(bool ok, std::vector<location>)>;
    // HGETALL of the target's key, fields checked against the leases; ok=false when Redis could
    // not answer.
    void fetch(proto::target_kind kind, const std::string& target, fetch_cb cb);
    void check_fields(proto::target_kind kind, const std::string& key,
                      std::vector<std::pair<std::string, std::string>> fields, fetch_cb cb);
    void fallback(proto::target_kind kind, const lookup_cb& cb);
    void remove_stale(const std::string& key, const std::string& field, const std::string& value);
    // Writes (skipped while not connected: the rewrite on connect carries them).
    void write_user(const std::string& user, uint32_t sessions, bool first);
    void write(redis::argv args);
    void set_lease(bool only_if_exists);
    void refresh_leases();
    void renew_entries(clock::time_point now);
    void cache_put(const std::string& key, const peer_list& peers);
    const peer_list* cache_get(const std::string& key, clock::time_point now);
    std::string cache_key(proto::target_kind kind, const std::string& target) const;

    std::shared_ptr<redis::commands> redis_holder_;
    redis::commands& redis_;
    const std::string self_;
    const std::string prefix_;
    const directory_config cfg_;
    hooks hooks_;
    directory_metrics metrics_;  // handles into the registry, copied
    // Reply handlers may outlive this object (a stopped connection fails them later): they hold
    // a weak reference to this token and do nothing once it is gone.
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);

    std::string epoch_;  // empty: no connection has been set up yet
    bool up_ = false;    // connected() called and no disconnected() since
    std::unordered_map<std::string, uint32_t> users_;  // local user -> sessions
    std::unordered_set<std::string> rooms_;            // rooms with local members

    // Known lease epoch per gateway ("": no lease), from the MGET every lease/3 and the
    // re-checks of mismatching fields.
    std::unordered_map<std::string, std::string> leases_;
    clock::time_point next_lease_{};    // our lease's next renewal
    clock::time_point next_refresh_{};  // next MGET of the fleet's leases
    bool lease_in_flight_ = false;

    // Entry renewal: the keys of one round, renewed a share at a time over entry_ttl/3.
    std::deque<std::pair<bool, std::string>> renew_queue_;  // (is_user, id)
    size_t renew_total_ = 0;
    clock::time_point renew_start_{};
    clock::time_point next_round_{};

    // Positive answers only. Entries expire in insertion order (one TTL for all), so a FIFO of
    // (key, expiry) bounds and ages the map; a key put again leaves its older FIFO item behind,
    // recognised by its expiry.
    struct cached_answer {
        peer_list peers;
        clock::time_point expires;
    };
    std::unordered_map<std::string, cached_answer> cache_;
    std::deque<std::pair<std::string, clock::time_point>> cache_fifo_;

    bool mixed_fleet_logged_ = false;
};

}  // namespace imgate::gw
