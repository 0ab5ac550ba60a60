#include "dispatcher/health.hpp"

#include <algorithm>

namespace imgate::disp {

const char* to_string(gw_state s) {
    switch (s) {
        case gw_state::up:
            return "up";
        case gw_state::down:
            return "down";
        case gw_state::draining:
            return "draining";
        case gw_state::overloaded:
            return "overloaded";
        case gw_state::disabled:
            return "disabled";
        case gw_state::degraded:
            return "degraded";
    }
    return "unknown";
}

double gateway_health::utilisation(uint64_t extra_connections) const {
    if (!status_) return 0;
    double u = status_->load;
    if (status_->max_connections > 0)
        u = std::max(u, static_cast<double>(status_->connections + extra_connections) /
                            static_cast<double>(status_->max_connections));
    return std::min(u, 1.0);
}

void gateway_health::pull_ok(const gateway_status& s, steady_time now, const health_params& p) {
    // A restarted process (uptime went backwards) is as cold as one that was down: ramp it in.
    if (alive_ && status_ && s.uptime_s + 1 < status_->uptime_s) ramp_start_ = now;
    status_ = s;
    last_error_.clear();
    bad_in_row_ = 0;
    if (ok_in_row_ < UINT32_MAX) ++ok_in_row_;
    if (!alive_ && ok_in_row_ >= p.rise) {
        alive_ = true;
        down_since_.reset();
        if (ramp_next_up_) ramp_start_ = now;
        ever_up_ = true;
        ramp_next_up_ = true;  // every later return from down is ramped
    }
    double u = utilisation(0);
    if (s.full)
        overloaded_ = true;
    else if (overloaded_)
        overloaded_ = u > p.low_water;
    else
        overloaded_ = u >= p.high_water;
}

void gateway_health::pull_failed(std::string error, steady_time now, const health_params& p) {
    last_error_ = std::move(error);
    ok_in_row_ = 0;
    if (bad_in_row_ < UINT32_MAX) ++bad_in_row_;
    if (alive_ && bad_in_row_ >= p.fall) {
        alive_ = false;
        ramp_start_.reset();
    }
    if (!alive_ && !down_since_) down_since_ = now;
}

gw_state gateway_health::state(uint32_t weight) const {
    if (weight == 0) return gw_state::disabled;
    if (!alive_) return gw_state::down;
    if (draining()) return gw_state::draining;
    if (overloaded_) return gw_state::overloaded;
    return gw_state::up;
}

double gateway_health::slow_start_factor(steady_time now, const health_params& p) const {
    if (!ramp_start_ || p.slow_start.count() <= 0) return 1.0;
    double f = std::chrono::duration<double>(now - *ramp_start_).count() /
               std::chrono::duration<double>(p.slow_start).count();
    return std::clamp(f, 0.05, 1.0);
}

}  // namespace imgate::disp
