#pragma once
// Per-source-address token buckets for LOGIN attempts. A flood of logins from one address (token
// guessing, a misbehaving client in a reconnect loop) is refused with rate_limited before any
// HMAC is computed, while other addresses are unaffected. Socket-free; the clock is injected.
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/token_bucket.hpp"

namespace imgate::gw {

// Owns the bucket table. Memory is bounded by max_entries: buckets that have refilled are pruned
// (at most once per second) and, when the table is still full, unknown addresses are let through
// uncounted rather than refused (failing open keeps a many-address flood from locking out
// everyone; the per-address limit still holds for the addresses already tracked). Thread-safe.
class login_limiter {
  public:
    using clock = std::chrono::steady_clock;

    // rate: attempts per second per address (0 disables the limiter); burst: bucket size.
    login_limiter(double rate, double burst, size_t max_entries = 65536);

    // Takes one token for addr; false when addr is over its rate.
    bool allow(const std::string& addr, clock::time_point now);
    void set_limits(double rate, double burst);
    size_t tracked() const;
    uint64_t untracked() const;  // attempts let through because the table was full

  private:
    void prune(clock::time_point now);

    mutable std::mutex mu_;
    double rate_, burst_;
    size_t max_entries_;
    std::unordered_map<std::string, token_bucket> buckets_;
    clock::time_point last_prune_{};
    uint64_t untracked_ = 0;
};

}  // namespace imgate::gw
