#pragma once
// Rate limit for a repeated log line: a stranger who can trigger a warning (refused handshakes,
// failed logins, bad frames, accept back-off) must not be able to fill the journal. One throttle
// per call site; it lets a burst of lines through, then a few per second, and tells the next line
// it lets through how many were suppressed since the previous one.
#include <spdlog/spdlog.h>
#include <cstdint>
#include <mutex>
#include <string>

#include "common/clock.hpp"
#include "common/token_bucket.hpp"

namespace imgate {

// Owns one call site's budget and its count of suppressed lines. Thread-safe: warning paths run
// on every worker thread, and they are rare enough for a mutex.
class log_throttle {
  public:
    // `per_second` lines on average after a burst of `burst` lines.
    explicit log_throttle(double per_second = 2, double burst = 5,
                          const clock_source& clock = real_clock())
        : clock_(clock), bucket_(per_second, burst, clock.now()) {}

    // Whether this line may be written. On true, *suppressed is set to the number of lines
    // refused since the last admitted one (to be shown in this line, see suppressed_note()).
    bool admit(uint64_t* suppressed) {
        std::lock_guard lk(mu_);
        if (!bucket_.take(clock_.now())) {
            ++suppressed_;
            ++suppressed_total_;
            return false;
        }
        *suppressed = suppressed_;
        suppressed_ = 0;
        return true;
    }

    // Lines refused over the throttle's life (tests, metrics).
    uint64_t suppressed_total() const {
        std::lock_guard lk(mu_);
        return suppressed_total_;
    }

  private:
    const clock_source& clock_;
    mutable std::mutex mu_;
    token_bucket bucket_;
    uint64_t suppressed_ = 0;
    uint64_t suppressed_total_ = 0;
};

// " (N similar lines suppressed)" for a line admitted after N suppressed ones, "" when N is 0.
inline std::string suppressed_note(uint64_t n) {
    if (n == 0) return {};
    return " (" + std::to_string(n) + " similar line" + (n == 1 ? "" : "s") + " suppressed)";
}

}  // namespace imgate

// Writes one spdlog line at `level` through a throttle that lives at the call site:
//   IMGATE_LOG_THROTTLED(warn, "rpc: refused handshake from {}", addr);
// The suppressed count is appended to the message. The throttle is per call site and per
// process (a function-local static), which is what a flood from one place needs.
#define IMGATE_LOG_THROTTLED(level, fmt_str, ...)                           \
    do {                                                                    \
        static ::imgate::log_throttle imgate_throttle_;                     \
        uint64_t imgate_suppressed_ = 0;                                    \
        if (imgate_throttle_.admit(&imgate_suppressed_))                    \
            ::spdlog::level(fmt_str "{}" __VA_OPT__(, ) __VA_ARGS__,        \
                            ::imgate::suppressed_note(imgate_suppressed_)); \
    } while (0)
