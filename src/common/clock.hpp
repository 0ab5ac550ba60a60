#pragma once
// Time as the daemons' logic sees it: a monotonic clock for decisions and a wall clock for what
// is displayed or stamped on messages. The one injection style of the project: the dispatcher's
// health machine and balancer, the gateway's router and session protocol take the time from
// here (or as a plain `now` argument), so they are tested without sleeping.
#include <chrono>
#include <cstdint>

namespace imgate {

using steady_time = std::chrono::steady_clock::time_point;

class clock_source {
  public:
    virtual ~clock_source() = default;
    virtual steady_time now() const = 0;
    virtual int64_t wall_ms() const = 0;  // epoch milliseconds
};

class system_clock_source final : public clock_source {
  public:
    steady_time now() const override { return std::chrono::steady_clock::now(); }
    int64_t wall_ms() const override {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }
};

// The process-wide real clock, for code that takes a clock_source and runs in production.
inline const clock_source& real_clock() {
    static const system_clock_source c;
    return c;
}

// A clock that only moves when told to (tests, benchmarks of the pure logic).
class manual_clock final : public clock_source {
  public:
    explicit manual_clock(int64_t wall_start_ms = 1'800'000'000'000) : wall0_(wall_start_ms) {}
    steady_time now() const override { return t_; }
    int64_t wall_ms() const override {
        return wall0_ +
               std::chrono::duration_cast<std::chrono::milliseconds>(t_ - steady_time{}).count();
    }
    void advance(std::chrono::milliseconds d) { t_ += d; }

  private:
    steady_time t_{};
    int64_t wall0_;
};

}  // namespace imgate
