#pragma once
// Exponential reconnect backoff with jitter, shared by the gateway's RPC links and the imgate
// tool. Owns only the attempt count; the random source is injected, so every delay is
// unit-tested.
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>

namespace imgate {

// The n-th delay (n counted from 0 since the last reset) is uniform over the upper half of
// base = min(max, min * 2^n), i.e. in [base/2, base]: peers or clients that lost a server together
// do not come back in lockstep, and no delay is ever shorter than half the planned one.
class backoff {
  public:
    // A draw uniform in [0, 1] (values outside are clamped).
    using random_source = std::function<double()>;

    // random01 may be empty for callers that pass their own generator to next(rng).
    backoff(std::chrono::milliseconds min, std::chrono::milliseconds max,
            random_source random01 = {})
        : min_(min), max_(max), random01_(std::move(random01)) {}

    // Draws from the injected source. floor: a server hint (Retry-After) that wins if longer.
    std::chrono::milliseconds next(std::chrono::milliseconds floor = {});
    // Draws from a caller-owned generator instead of the injected source.
    template <class Generator>
    std::chrono::milliseconds next(Generator& rng, std::chrono::milliseconds floor = {}) {
        return next_at(std::uniform_real_distribution<double>(0, 1)(rng), floor);
    }
    // The delay for the draw r01; advances the attempt count like next().
    std::chrono::milliseconds next_at(double r01, std::chrono::milliseconds floor = {});

    void reset() { attempt_ = 0; }
    uint32_t attempts() const { return attempt_; }

  private:
    std::chrono::milliseconds min_, max_;
    random_source random01_;
    uint32_t attempt_ = 0;
};

}  // namespace imgate
