#pragma once
// Socket-free pieces of message routing: the per-session send rate limiter, the bounded table of
// deliveries awaiting an ack (for receipts), the bounded set of recently delivered ids (dedupe of
// retried forwards) and the fleet-unique server message id source. Time is always passed in.
#include <algorithm>
#include <array>
#include <atomic>
#include <boost/container/small_vector.hpp>
#include <chrono>
#include <climits>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace imgate::gw {

using steady_time = std::chrono::steady_clock::time_point;

// Token bucket: `rate` tokens per second, at most `burst` stored. Not thread-safe (one session).
class token_bucket {
  public:
    token_bucket(double rate, double burst, steady_time now)
        : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}
    bool take(steady_time now, double n = 1) {
        refill(now);
        if (tokens_ < n) return false;
        tokens_ -= n;
        return true;
    }
    // New limits apply from now on (SIGHUP); stored tokens are capped to the new burst.
    void set_limits(double rate, double burst, steady_time now) {
        refill(now);
        rate_ = rate;
        burst_ = burst;
        if (tokens_ > burst_) tokens_ = burst_;
    }
    double tokens() const { return tokens_; }

  private:
    void refill(steady_time now) {
        if (now <= last_) return;
        double dt = std::chrono::duration<double>(now - last_).count();
        tokens_ = std::min(burst_, tokens_ + dt * rate_);
        last_ = now;
    }
    double rate_;
    double burst_;
    double tokens_;
    steady_time last_;
};

// Where a receipt for a delivered 1:1 message must go.
struct ack_origin {
    std::string origin_gateway;
    uint64_t origin_session = 0;
    uint64_t client_msg_id = 0;
    std::string recipient;  // only sessions of this user may ack it
};

// Owns the deliveries of this gateway that still wait for an ack. Bounded in entries (oldest
// evicted first) and in time (entries older than ttl are dropped). Thread-safe.
class pending_acks {
  public:
    using session_ids = boost::container::small_vector<uint64_t, 2>;

    pending_acks(size_t max_entries, std::chrono::milliseconds ttl) : max_(max_entries), ttl_(ttl) {
        map_.reserve(std::min<size_t>(max_entries, 65536));  // no rehash storms under load
    }

    // Records that server_msg_id was delivered here. Returns the number of entries evicted to
    // stay within bounds (a metric).
    size_t add(uint64_t server_msg_id, ack_origin origin, steady_time now);

    // The sessions the delivery reached: each may ack once; none left (or none reached) drops
    // the entry. Acks that came before this call (the frame was written first) count already.
    void set_recipients(uint64_t server_msg_id, const session_ids& reached);

    // An ack from session `sid` of `user`: the origin to send a receipt to, once per reached
    // session whatever their number. nullopt when unknown, expired, acked by a session the
    // delivery did not reach, or repeated.
    std::optional<ack_origin> on_ack(uint64_t server_msg_id, uint64_t sid, const std::string& user,
                                     steady_time now);

    size_t expire(steady_time now);  // drops expired entries; returns how many
    size_t size() const;
    void set_limits(size_t max_entries, std::chrono::milliseconds ttl);

  private:
    struct entry {
        ack_origin origin;
        steady_time expires;
        bool known = false;   // set_recipients was called
        session_ids waiting;  // reached sessions that have not acked (once known)
        session_ids early;    // sessions that acked before the recipients were known
    };
    size_t trim_locked(steady_time now);

    mutable std::mutex mu_;
    size_t max_;
    std::chrono::milliseconds ttl_;
    std::unordered_map<uint64_t, entry> map_;
    std::deque<std::pair<uint64_t, steady_time>> order_;  // insertion order, for expiry/eviction
};

// Remembers the last `capacity` ids; insert() says whether an id is new. Thread-safe.
class recent_ids {
  public:
    explicit recent_ids(size_t capacity) : cap_(capacity) { set_.reserve(capacity); }
    bool insert(uint64_t id);
    bool contains(uint64_t id) const;
    size_t size() const;

  private:
    mutable std::mutex mu_;
    size_t cap_;
    std::unordered_set<uint64_t> set_;
    std::deque<uint64_t> order_;
};

// Fleet-unique server message ids: the gateway's 16-bit node number (from the fleet file, which
// refuses two gateways sharing one) in the high bits and a 48-bit counter seeded from the start
// time (1024 ids per millisecond of uptime before a restart could reuse an id, and ids of one
// gateway never repeat within ~8 years of wall time).
class msg_id_source {
  public:
    msg_id_source(uint16_t node, uint64_t now_ms_since_epoch);
    uint64_t next() {
        uint64_t c = counter_.fetch_add(1, std::memory_order_relaxed);
        return prefix_ | (c & mask48);
    }
    static constexpr uint64_t mask48 = (uint64_t(1) << 48) - 1;

  private:
    uint64_t prefix_;
    std::atomic<uint64_t> counter_;
};

}  // namespace imgate::gw
