#pragma once
// Reconnect storms (issue 14), the gateway's two socket-free pieces: the spread reconnect hints of
// REDIRECT and KICK frames (drain.reconnect_jitter, limits.login_retry_jitter) and the LOGIN
// admission order (per-address bucket, then the gateway-wide bucket). Clock and random source are
// injected so both are unit-tested without sockets or real time.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>

#include "common/token_bucket.hpp"
#include "gateway/login_limiter.hpp"

namespace imgate::gw {

// base + uniform[0, jitter] in ms, clamped to what a u32 reconnect_after_ms carries. Every
// client draws its own value, so clients told to go at once do not all come back at once.
template <class URBG>
uint32_t jittered_hint_ms(std::chrono::milliseconds base, std::chrono::milliseconds jitter,
                          URBG& rng) {
    int64_t b = std::max<int64_t>(0, base.count());
    int64_t j = std::max<int64_t>(0, jitter.count());
    if (j > 0) b += std::uniform_int_distribution<int64_t>(0, j)(rng);
    return uint32_t(std::min<int64_t>(b, int64_t(UINT32_MAX)));
}

// Owns one random engine shared by the gateway's threads (a draw per redirected or refused
// client: far from hot enough for the mutex to matter). Seeded from std::random_device unless a
// seed is given.
class hint_source {
  public:
    hint_source() : rng_(std::random_device{}()) {}
    explicit hint_source(uint64_t seed) : rng_(seed) {}
    uint32_t draw(std::chrono::milliseconds base, std::chrono::milliseconds jitter) {
        std::lock_guard lk(mu_);
        return jittered_hint_ms(base, jitter, rng_);
    }

  private:
    std::mutex mu_;
    std::mt19937_64 rng_;
};

// Why a LOGIN may go on to its JWT check, or which bucket refused it.
enum class admission { ok, rate_limited_address, rate_limited_gateway };

// Owns the LOGIN rate buckets of one gateway: per source address (limits.login_rate/burst) and
// one for the whole gateway (limits.gateway_login_rate/burst). The per-address bucket is asked
// first: an address over its own rate must not drain the shared bucket and lock out everyone
// else. Thread-safe.
class login_admission {
  public:
    using clock = std::chrono::steady_clock;

    login_admission() = default;
    // Rates of 0 switch a bucket off. New limits apply from `now`; the gateway bucket keeps its
    // tokens (capped to the new burst), as the per-address buckets do.
    void set_limits(double address_rate, double address_burst, double gateway_rate,
                    double gateway_burst, clock::time_point now);
    admission admit(const std::string& address, clock::time_point now);
    // Tokens left in the gateway-wide bucket (tests, /status).
    double gateway_tokens() const;

  private:
    login_limiter per_address_{0, 1};
    mutable std::mutex mu_;  // guards the gateway bucket
    bool gateway_on_ = false;
    token_bucket gateway_{0, 1, clock::time_point{}};
};

}  // namespace imgate::gw
