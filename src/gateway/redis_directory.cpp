#include "gateway/redis_directory.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "common/log_throttle.hpp"

namespace imgate::gw {

namespace {

// Deletes a field only while it still holds the stale value that was seen: a gateway that has
// rewritten the field since (a new epoch) keeps it.
const char* const remove_if_same =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then\n"
    "  return redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "end\nreturn 0";

std::string random_epoch() {
    std::random_device rd;
    uint64_t v = (uint64_t(rd()) << 32) ^ rd();
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

std::string ms(std::chrono::milliseconds d) {
    return std::to_string(d.count());
}

lookup_kind kind_of(proto::target_kind k) {
    return k == proto::target_kind::user ? lookup_kind::user : lookup_kind::room;
}

// "<epoch>" or "<epoch> <sessions>".
void parse_value(const std::string& v, std::string& epoch, uint32_t& sessions) {
    auto sp = v.find(' ');
    epoch = v.substr(0, sp);
    sessions = 1;
    if (sp == std::string::npos) return;
    unsigned long n = std::strtoul(v.c_str() + sp + 1, nullptr, 10);
    sessions = uint32_t(std::min<unsigned long>(n, UINT32_MAX));
}

}  // namespace

redis_directory::redis_directory(std::shared_ptr<redis::commands> r, std::string self_id,
                                 std::string prefix, const directory_config& cfg, hooks h,
                                 directory_metrics m)
    : redis_holder_(std::move(r)),
      redis_(*redis_holder_),
      self_(std::move(self_id)),
      prefix_(std::move(prefix)),
      cfg_(cfg),
      hooks_(std::move(h)),
      metrics_(m) {
    if (!hooks_.now) hooks_.now = [] { return clock::now(); };
    if (!hooks_.new_epoch) hooks_.new_epoch = random_epoch;
    if (!hooks_.usable_peers) hooks_.usable_peers = [] { return peer_list{}; };
    if (!hooks_.members) hooks_.members = [] { return peer_list{}; };
}

redis_directory::~redis_directory() = default;

std::chrono::milliseconds redis_directory::tick_interval() const {
    using std::chrono::milliseconds;
    return std::max(milliseconds(5),
                    std::min({cfg_.lease / 6, cfg_.entry_ttl / 30, milliseconds(250)}));
}

std::string redis_directory::cache_key(proto::target_kind kind, const std::string& target) const {
    return (kind == proto::target_kind::user ? "u" : "r") + target;
}

// --- local changes -------------------------------------------------------------------------

void redis_directory::write(redis::argv args) {
    if (!up_) return;  // the rewrite on (re)connect carries the change
    metrics_.redis_writes.inc();
    std::weak_ptr<int> weak = alive_;
    auto on_reply = [weak](boost::system::error_code ec, const redis::reply& r) {
        // A lost connection is repaired by the rewrite on reconnect; an error reply is not.
        if (!ec && r.is_error() && !weak.expired())
            IMGATE_LOG_THROTTLED(warn, "directory: redis refused a write: {}", r.str);
    };
    redis_.command(std::move(args), std::move(on_reply));
}

void redis_directory::write_user(const std::string& user, uint32_t sessions, bool first) {
    auto key = user_key(user);
    write({"HSET", key, self_, epoch_ + " " + std::to_string(sessions)});
    if (first) write({"PEXPIRE", key, ms(cfg_.entry_ttl)});
}

void redis_directory::user_online(const std::string& user) {
    if (users_.count(user)) return;
    users_[user] = 1;
    write_user(user, 1, true);
}

void redis_directory::user_offline(const std::string& user) {
    if (users_.erase(user) == 0) return;
    write({"HDEL", user_key(user), self_});
}

void redis_directory::user_sessions(const std::string& user, uint32_t sessions) {
    if (sessions == 0) {
        user_offline(user);
        return;
    }
    auto it = users_.find(user);
    if (it == users_.end()) {
        users_[user] = sessions;
        write_user(user, sessions, true);
        return;
    }
    if (it->second == sessions) return;
    it->second = sessions;
    write_user(user, sessions, false);
}

void redis_directory::room_interest(const std::string& room, bool interested) {
    auto key = room_key(room);
    if (interested) {
        if (!rooms_.insert(room).second) return;
        write({"HSET", key, self_, epoch_});
        write({"PEXPIRE", key, ms(cfg_.entry_ttl)});
        return;
    }
    if (rooms_.erase(room) == 0) return;
    write({"HDEL", key, self_});
}

// --- connection, lease, renewal ------------------------------------------------------------

void redis_directory::connected() {
    up_ = true;
    epoch_ = hooks_.new_epoch();
    // Whatever was cached predates the outage; lookups start afresh.
    cache_.clear();
    cache_fifo_.clear();
    // Every entry first, the lease last: pipelined in order on one connection, so no peer can
    // see the new lease before the entries it validates.
    for (auto& [user, n] : users_) write_user(user, n, true);
    for (auto& room : rooms_) {
        write({"HSET", room_key(room), self_, epoch_});
        write({"PEXPIRE", room_key(room), ms(cfg_.entry_ttl)});
    }
    set_lease(false);
    auto now = hooks_.now();
    next_lease_ = now + cfg_.lease / 3;
    refresh_leases();
    next_refresh_ = now + cfg_.lease / 3;
    // The rewrite has just set every TTL: the next renewal round is a third of entry_ttl away.
    renew_queue_.clear();
    renew_total_ = 0;
    next_round_ = now + cfg_.entry_ttl / 3;
    spdlog::info("directory: redis up; epoch {}, wrote {} users and {} rooms, then the lease",
                 epoch_, users_.size(), rooms_.size());
}

void redis_directory::disconnected() {
    if (!up_) return;
    up_ = false;
    spdlog::warn(
        "directory: redis connection lost; lookups go to every peer with a usable link until it "
        "is back");
}

void redis_directory::set_lease(bool only_if_exists) {
    if (!up_) return;
    redis::argv args{"SET", lease_key(self_), epoch_, "PX", ms(cfg_.lease)};
    if (only_if_exists) args.push_back("XX");
    metrics_.redis_writes.inc();
    std::weak_ptr<int> weak = alive_;
    auto sent_epoch = epoch_;
    auto on_reply = [this, weak, sent_epoch](boost::system::error_code ec, const redis::reply& r) {
        if (ec || weak.expired()) return;  // a lost connection: reconnect rewrites everything
        if (r.is_error()) {
            IMGATE_LOG_THROTTLED(warn, "directory: redis refused the lease: {}", r.str);
            return;
        }
        if (!r.is_nil() || !up_ || sent_epoch != epoch_) return;
        // XX found no lease: it expired while we were connected (renewals too late, or the keys
        // were flushed). Peers may already have removed our fields as stale: start over.
        spdlog::warn("directory: our lease had expired in redis; rewriting with a new epoch");
        connected();
    };
    redis_.command(std::move(args), std::move(on_reply));
}

void redis_directory::refresh_leases() {
    auto members = hooks_.members();
    if (!up_ || members.empty()) return;
    redis::argv args{"MGET"};
    for (auto& m : members) args.push_back(lease_key(m));
    std::weak_ptr<int> weak = alive_;
    auto on_reply = [this, weak, members](boost::system::error_code ec, const redis::reply& r) {
        if (ec || weak.expired() || r.type != redis::reply::kind::array ||
            r.elements.size() != members.size())
            return;
        leases_.clear();
        for (size_t i = 0; i < members.size(); ++i)
            leases_[members[i]] =
                r.elements[i].type == redis::reply::kind::string ? r.elements[i].str : "";
    };
    redis_.command(std::move(args), std::move(on_reply));
}

void redis_directory::renew_entries(clock::time_point now) {
    auto period = cfg_.entry_ttl / 3;
    if (renew_queue_.empty()) {
        if (now < next_round_) return;
        for (auto& [user, n] : users_) renew_queue_.emplace_back(true, user);
        for (auto& room : rooms_) renew_queue_.emplace_back(false, room);
        renew_total_ = renew_queue_.size();
        renew_start_ = now;
        next_round_ = now + period;
        return;
    }
    // Spread over three quarters of the period, so a late tick never pushes a key past it.
    auto span = period * 3 / 4;
    auto elapsed = now - renew_start_;
    size_t due = renew_total_;
    if (elapsed < span) {
        double share = std::chrono::duration<double>(elapsed) / std::chrono::duration<double>(span);
        due = size_t(double(renew_total_) * share) + 1;
    }
    size_t done = renew_total_ - renew_queue_.size();
    while (done < due && !renew_queue_.empty()) {
        auto [is_user, id] = std::move(renew_queue_.front());
        renew_queue_.pop_front();
        ++done;
        // Gone since the round started: its field was deleted, nothing of ours to keep alive.
        if (is_user ? users_.count(id) == 0 : rooms_.count(id) == 0) continue;
        write({"PEXPIRE", is_user ? user_key(id) : room_key(id), ms(cfg_.entry_ttl)});
    }
}

void redis_directory::tick() {
    if (!up_) return;
    auto now = hooks_.now();
    if (now >= next_lease_) {
        set_lease(true);
        next_lease_ = now + cfg_.lease / 3;
    }
    if (now >= next_refresh_) {
        refresh_leases();
        next_refresh_ = now + cfg_.lease / 3;
    }
    renew_entries(now);
}

// --- lookups --------------------------------------------------------------------------------

void redis_directory::resolve(proto::target_kind kind, const std::string& target,
                              std::function<void(const peer_list&)> cb) {
    auto on_answer = [cb = std::move(cb)](const peer_list& peers, lookup_source) { cb(peers); };
    lookup(kind, target, true, std::move(on_answer));
}

void redis_directory::fallback(proto::target_kind kind, const lookup_cb& cb) {
    metrics_.lookup(kind_of(kind), lookup_source::fallback).inc();
    metrics_.fallback(kind_of(kind)).inc();
    cb(hooks_.usable_peers(), lookup_source::fallback);
}

void redis_directory::lookup(proto::target_kind kind, const std::string& target, bool use_cache,
                             lookup_cb cb) {
    auto key = cache_key(kind, target);
    auto now = hooks_.now();
    if (use_cache) {
        if (const peer_list* p = cache_get(key, now)) {
            metrics_.lookup(kind_of(kind), lookup_source::cache).inc();
            cb(*p, lookup_source::cache);
            return;
        }
    }
    if (!up_ || !redis_.connected()) {
        fallback(kind, cb);
        return;
    }
    std::weak_ptr<int> weak = alive_;
    auto on_fetched = [this, weak, kind, key, cb = std::move(cb), now](bool ok,
                                                                       std::vector<location> locs) {
        if (weak.expired()) {
            cb(peer_list{}, lookup_source::fallback);
            return;
        }
        metrics_.lookup_seconds.observe(std::chrono::duration<double>(hooks_.now() - now).count());
        if (!ok) {
            fallback(kind, cb);
            return;
        }
        metrics_.lookup(kind_of(kind), lookup_source::redis).inc();
        peer_list peers;
        peers.reserve(locs.size());
        for (auto& l : locs) peers.push_back(std::move(l.gateway));
        // Only positive answers: a cached "nowhere" could hide a login for cache_ttl.
        if (!peers.empty()) cache_put(key, peers);
        cb(peers, lookup_source::redis);
    };
    fetch(kind, target, std::move(on_fetched));
}

void redis_directory::presence(const std::vector<std::string>& users,
                               std::function<void(std::vector<presence_answer>)> done) {
    std::vector<presence_answer> out(users.size());
    if (users.empty()) {
        done(std::move(out));
        return;
    }
    if (!up_ || !redis_.connected()) {
        for (auto& a : out) {
            a.known = false;
            metrics_.lookup(lookup_kind::presence, lookup_source::fallback).inc();
            metrics_.fallback(lookup_kind::presence).inc();
        }
        done(std::move(out));
        return;
    }
    struct batch {
        std::vector<presence_answer> out;
        size_t remaining;
        std::function<void(std::vector<presence_answer>)> done;
    };
    auto b = std::make_shared<batch>(batch{std::move(out), users.size(), std::move(done)});
    auto started = hooks_.now();
    std::weak_ptr<int> weak = alive_;
    // One HGETALL per user, pipelined on the connection.
    for (size_t i = 0; i < users.size(); ++i) {
        auto on_fetched = [this, weak, b, i, started](bool ok, std::vector<location> locs) {
            auto& a = b->out[i];
            a.known = ok;
            if (!weak.expired()) {
                metrics_.lookup_seconds.observe(
                    std::chrono::duration<double>(hooks_.now() - started).count());
                metrics_
                    .lookup(lookup_kind::presence,
                            ok ? lookup_source::redis : lookup_source::fallback)
                    .inc();
                if (!ok) metrics_.fallback(lookup_kind::presence).inc();
            }
            if (ok)
                for (auto& l : locs)
                    a.peers.push_back(
                        presence_location{std::move(l.gateway), l.sessions, l.unconfirmed});
            if (--b->remaining == 0) {
                auto d = std::move(b->done);
                d(std::move(b->out));
            }
        };
        fetch(proto::target_kind::user, users[i], std::move(on_fetched));
    }
}

void redis_directory::fetch(proto::target_kind kind, const std::string& target, fetch_cb cb) {
    auto key = kind == proto::target_kind::user ? user_key(target) : room_key(target);
    std::weak_ptr<int> weak = alive_;
    auto on_reply = [this, weak, kind, key, cb = std::move(cb)](boost::system::error_code ec,
                                                                const redis::reply& r) mutable {
        if (weak.expired() || ec || r.type != redis::reply::kind::array) {
            if (!ec && r.is_error() && !weak.expired())
                IMGATE_LOG_THROTTLED(warn, "directory: redis refused a lookup: {}", r.str);
            cb(false, {});
            return;
        }
        std::vector<std::pair<std::string, std::string>> fields;
        fields.reserve(r.elements.size() / 2);
        for (size_t i = 0; i + 1 < r.elements.size(); i += 2)
            fields.emplace_back(r.elements[i].str, r.elements[i + 1].str);
        check_fields(kind, key, std::move(fields), std::move(cb));
    };
    redis_.command({"HGETALL", key}, std::move(on_reply));
}

void redis_directory::check_fields(proto::target_kind kind, const std::string& key,
                                   std::vector<std::pair<std::string, std::string>> fields,
                                   fetch_cb cb) {
    (void)kind;
    struct candidate {
        std::string gw, epoch, value;
        uint32_t sessions;
        bool unconfirmed = false;
    };
    std::vector<candidate> valid, unsure;
    for (auto& [gw, value] : fields) {
        candidate c{gw, {}, value, 0};
        parse_value(value, c.epoch, c.sessions);
        if (gw == self_) {
            // Our own field of an earlier epoch: a user that left while Redis was away.
            if (c.epoch != epoch_) {
                metrics_.stale_entries.inc();
                remove_stale(key, gw, value);
            }
            continue;
        }
        auto it = leases_.find(gw);
        if (it != leases_.end() && !c.epoch.empty() && it->second == c.epoch)
            valid.push_back(std::move(c));
        else
            unsure.push_back(std::move(c));
    }
    auto finish = [](std::vector<candidate>& v) {
        std::vector<location> out;
        out.reserve(v.size());
        for (auto& c : v) out.push_back(location{std::move(c.gw), c.sessions, c.unconfirmed});
        return out;
    };
    if (unsure.empty()) {
        cb(true, finish(valid));
        return;
    }
    // The field's gateway may have reconnected (new epoch) or died since the last MGET: its
    // lease decides, read now.
    redis::argv args{"MGET"};
    for (auto& c : unsure) args.push_back(lease_key(c.gw));
    std::weak_ptr<int> weak = alive_;
    auto on_leases = [this, weak, key, valid = std::move(valid), unsure = std::move(unsure),
                      cb = std::move(cb),
                      finish](boost::system::error_code ec, const redis::reply& r) mutable {
        if (weak.expired() || ec || r.type != redis::reply::kind::array ||
            r.elements.size() != unsure.size()) {
            cb(false, {});
            return;
        }
        for (size_t i = 0; i < unsure.size(); ++i) {
            auto& c = unsure[i];
            std::string lease =
                r.elements[i].type == redis::reply::kind::string ? r.elements[i].str : "";
            leases_[c.gw] = lease;
            if (!lease.empty() && lease == c.epoch) {
                valid.push_back(std::move(c));
                continue;
            }
            // No lease at all, yet its link here is up: the gateway is alive but cannot reach
            // Redis (or renew in time). Its field may be true, so it is asked rather than
            // answered for with a made-up offline; the field stays for its next rewrite to
            // replace. A lease of another epoch means it restarted or rewrote: then the field
            // is stale for sure.
            if (lease.empty()) {
                auto linked = hooks_.usable_peers();
                if (std::find(linked.begin(), linked.end(), c.gw) != linked.end()) {
                    c.unconfirmed = true;
                    valid.push_back(std::move(c));
                    continue;
                }
            }
            metrics_.stale_entries.inc();
            remove_stale(key, c.gw, c.value);
        }
        cb(true, finish(valid));
    };
    redis_.command(std::move(args), std::move(on_leases));
}

void redis_directory::remove_stale(const std::string& key, const std::string& field,
                                   const std::string& value) {
    if (!up_) return;
    auto on_reply = [](boost::system::error_code, const redis::reply&) {};
    redis_.command({"EVAL", remove_if_same, "1", key, field, value}, std::move(on_reply));
}

// --- cache ----------------------------------------------------------------------------------

const peer_list* redis_directory::cache_get(const std::string& key, clock::time_point now) {
    auto it = cache_.find(key);
    if (it == cache_.end()) return nullptr;
    if (now >= it->second.expires) {
        cache_.erase(it);
        return nullptr;
    }
    return &it->second.peers;
}

void redis_directory::cache_put(const std::string& key, const peer_list& peers) {
    if (cfg_.cache_ttl.count() <= 0 || cfg_.cache_entries == 0) return;
    auto now = hooks_.now();
    while (!cache_fifo_.empty() &&
           (cache_fifo_.front().second <= now || cache_.size() >= cfg_.cache_entries)) {
        auto& [k, expires] = cache_fifo_.front();
        auto it = cache_.find(k);
        if (it != cache_.end() && it->second.expires == expires) cache_.erase(it);
        cache_fifo_.pop_front();
    }
    auto expires = now + cfg_.cache_ttl;
    cache_[key] = cached_answer{peers, expires};
    cache_fifo_.emplace_back(key, expires);
}

void redis_directory::forget_cached(proto::target_kind kind, const std::string& target) {
    cache_.erase(cache_key(kind, target));
}

// --- announcements (a mixed fleet) ----------------------------------------------------------

apply_result redis_directory::apply_presence(const std::string& peer, bool,
                                             const std::vector<rpc::delta>&) {
    metrics_.announcements_ignored.inc();
    if (!mixed_fleet_logged_) {
        mixed_fleet_logged_ = true;
        spdlog::warn(
            "directory: {} sends presence announcements (directory.mode announced) while this "
            "gateway runs directory.mode redis: ignored. A fleet must be all redis or all "
            "announced; across the two modes neither side can find the other's users",
            peer);
    }
    return {};
}

apply_result redis_directory::apply_rooms(const std::string& peer, bool reset,
                                          const std::vector<rpc::delta>& changes) {
    return apply_presence(peer, reset, changes);
}

}  // namespace imgate::gw
