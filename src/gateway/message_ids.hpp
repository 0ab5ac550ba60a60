#pragma once
// Server message ids: the fleet-unique source of new ones, and the bounded memory of recently
// delivered ones that drops a retried forward. Socket-free.
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <unordered_set>

namespace imgate::gw {

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
