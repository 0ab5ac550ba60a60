#pragma once
// Failed logins summarised per interval (issue 19): one warning line such as
//   login failures in the last 10 s: 523 (auth_failed 500, token_expired 23); top sources:
//   203.0.113.9 (400), 198.51.100.4 (100); +23 more
// instead of a line per failure, which a token-guessing flood would turn into a log flood.
// Socket-free and clock-free: the server's timer calls take() once per interval.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace imgate::gw {

// Owns the failure counts of the current interval: by result (the labels of
// imgate_gateway_logins_total other than ok) and by source address. Memory is bounded: at most
// max_sources distinct addresses are tracked per interval; failures from further addresses are
// counted in the total and reported in "+N more". Thread-safe.
class login_summary {
  public:
    explicit login_summary(size_t max_sources = 1024, size_t top_sources = 5);

    void failed(std::string_view result, std::string_view source);
    // The summary line of the failures since the last take() (empty when there were none), and
    // a fresh interval. interval: what the line says the interval was.
    std::string take(std::chrono::milliseconds interval);
    // Failures in the current interval (tests).
    uint64_t pending() const;

  private:
    mutable std::mutex mu_;
    size_t max_sources_, top_sources_;
    uint64_t total_ = 0;
    std::map<std::string, uint64_t, std::less<>> by_result_;
    std::unordered_map<std::string, uint64_t> by_source_;
};

}  // namespace imgate::gw
