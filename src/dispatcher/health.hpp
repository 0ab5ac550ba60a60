#pragma once
// The health state machine of one gateway, fed with pull outcomes: rise/fall thresholds for
// liveness, the gateway's own drain flag, overload with hysteresis, and the slow-start ramp after
// a gateway comes back. No sockets; time is passed in.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/clock.hpp"
#include "dispatcher/gateway_status.hpp"

namespace imgate::disp {

// degraded: alive by health but useless to clients (fleet_state decides it, docs/admin-api.md).
enum class gw_state { up, down, draining, overloaded, disabled, degraded };
const char* to_string(gw_state s);

struct health_params {
    uint32_t rise = 2;
    uint32_t fall = 2;
    std::chrono::milliseconds slow_start{10000};
    double high_water = 0.9;
    double low_water = 0.8;
    // Consecutive good pulls reporting 0 mesh links before a gateway is degraded (no_mesh_links):
    // the links of a freshly started gateway take a moment to form.
    uint32_t degraded_after = 3;
};

class gateway_health {
  public:
    // ramp_on_first_up: whether the first time the gateway comes up it is slow-started (gateways
    // added by a reload are; the fleet present at dispatcher start-up is not, since all of them
    // come up together and a common factor changes nothing).
    explicit gateway_health(bool ramp_on_first_up) : ramp_next_up_(ramp_on_first_up) {}

    void pull_ok(const gateway_status& s, steady_time now, const health_params& p);
    void pull_failed(std::string error, steady_time now, const health_params& p);

    // Public state, given the static weight (0 = disabled).
    gw_state state(uint32_t weight) const;
    // 0..1 multiplier while ramping in after coming back; 1 otherwise. Never 0 while up, so a
    // returning gateway gets a trickle at once.
    double slow_start_factor(steady_time now, const health_params& p) const;
    // Utilisation estimate 0..1 from the last good pull plus picks handed out since then.
    double utilisation(uint64_t extra_connections) const;

    bool alive() const { return alive_; }
    bool ever_up() const { return ever_up_; }
    bool overloaded() const { return overloaded_; }
    bool draining() const { return status_ && status_->state != "serving"; }
    // Some pulls counted towards the next state change but not yet enough (rise or fall).
    bool in_transition() const { return alive_ ? bad_in_row_ > 0 : ok_in_row_ > 0; }
    uint32_t good_in_row() const { return ok_in_row_; }
    uint32_t bad_in_row() const { return bad_in_row_; }
    const std::optional<gateway_status>& status() const { return status_; }
    const std::string& last_error() const { return last_error_; }
    std::optional<steady_time> down_since() const { return down_since_; }

  private:
    bool alive_ = false;
    bool ever_up_ = false;
    bool overloaded_ = false;
    bool ramp_next_up_;
    uint32_t ok_in_row_ = 0;
    uint32_t bad_in_row_ = 0;
    std::optional<steady_time> ramp_start_;
    std::optional<steady_time> down_since_;
    std::optional<gateway_status> status_;
    std::string last_error_;
};

}  // namespace imgate::disp
