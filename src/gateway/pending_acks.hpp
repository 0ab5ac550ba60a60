#pragma once
// The deliveries of this gateway that still wait for an ack, so that each reached session's ACK
// becomes exactly one RECEIPT to the sender. Socket-free; time is always passed in.
#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/clock.hpp"

namespace imgate::gw {

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

}  // namespace imgate::gw
