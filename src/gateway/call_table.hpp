#pragma once
// The calls of one outbound RPC link, without a socket: the table of calls in flight with their
// deadlines, and how the answers of one forward sent to several peers combine. Time is injected
// (tests/gateway/call_table_test.cpp).
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <queue>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gateway/cluster.hpp"

namespace imgate::gw::rpc {

using clock = std::chrono::steady_clock;

// Calls in flight on one link, keyed by correlation id. Every call completes exactly once: with
// the answer, with `timeout` when its deadline passes, or with `unavailable` when the link dies.
// Callbacks run after the table is updated, so they may start new calls.
class call_table {
  public:
    using callback = std::function<void(forward_result)>;

    explicit call_table(size_t max_in_flight) : max_(max_in_flight) {}

    // The correlation id (never 0), or 0 when max_in_flight calls are already pending.
    uint32_t add(clock::time_point deadline, callback cb);
    // false: unknown id (answered after its deadline, or a duplicate), ignored.
    bool complete(uint32_t corr, forward_result r);
    size_t expire(clock::time_point now);
    size_t fail_all(proto::code c);
    // Earliest pending deadline; prunes bookkeeping of calls already answered.
    std::optional<clock::time_point> next_deadline();
    size_t size() const { return calls_.size(); }

  private:
    struct call {
        clock::time_point deadline;
        callback cb;
    };
    using slot = std::pair<clock::time_point, uint32_t>;
    size_t max_;
    uint32_t next_ = 0;
    std::unordered_map<uint32_t, call> calls_;
    // Min-heap of deadlines; entries of answered calls are skipped lazily.
    std::priority_queue<slot, std::vector<slot>, std::greater<slot>> deadlines_;
};

// Combines the answers of one forward sent to several peers: delivered when any peer reached a
// session; offline when every peer answered 0; otherwise the failure (timeout wins over
// unavailable, since it says more about what happened).
class result_combiner {
  public:
    void add(const forward_result& r);
    forward_result result() const;

  private:
    uint32_t reached_ = 0;
    bool timeout_ = false;
    bool failed_ = false;
};

}  // namespace imgate::gw::rpc
