#pragma once
// The one token bucket of the code base: per-session SEND limiting and per-address LOGIN limiting
// both count with it. Socket-free and clock-free: time is always passed in.
#include <algorithm>
#include <chrono>

namespace imgate {

// Owns one bucket: `rate` tokens per second, at most `burst` stored, starting full. Not
// thread-safe (its owner serialises access).
class token_bucket {
  public:
    using time_point = std::chrono::steady_clock::time_point;

    token_bucket(double rate, double burst, time_point now)
        : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}

    bool take(time_point now, double n = 1) {
        refill(now);
        if (tokens_ < n) return false;
        tokens_ -= n;
        return true;
    }
    // New limits apply from now on (SIGHUP); stored tokens are capped to the new burst.
    void set_limits(double rate, double burst, time_point now) {
        refill(now);
        set_limits(rate, burst);
    }
    // New limits apply from the last refill on: for an owner that changes many buckets at once
    // and has no time at hand; stored tokens are capped to the new burst.
    void set_limits(double rate, double burst) {
        rate_ = rate;
        burst_ = burst;
        if (tokens_ > burst_) tokens_ = burst_;
    }
    // Whether the bucket would be full at `now`: a full bucket holds no history and can be
    // forgotten (recreated full) without changing any answer.
    bool full_at(time_point now) const { return tokens_at(now) >= burst_; }
    double tokens() const { return tokens_; }

  private:
    double tokens_at(time_point now) const {
        if (now <= last_) return tokens_;
        double dt = std::chrono::duration<double>(now - last_).count();
        return tokens_ + dt * rate_;
    }
    void refill(time_point now) {
        if (now <= last_) return;
        tokens_ = std::min(burst_, tokens_at(now));
        last_ = now;
    }

    double rate_;
    double burst_;
    double tokens_;
    time_point last_;
};

}  // namespace imgate
