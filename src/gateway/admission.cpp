#include "gateway/admission.hpp"

namespace imgate::gw {

void login_admission::set_limits(double address_rate, double address_burst, double gateway_rate,
                                 double gateway_burst, clock::time_point now) {
    per_address_.set_limits(address_rate, address_burst);
    std::lock_guard lk(mu_);
    bool was_on = gateway_on_;
    gateway_on_ = gateway_rate > 0;
    double burst = std::max(1.0, gateway_burst);
    if (!was_on)
        gateway_ = token_bucket(gateway_rate, burst, now);  // switched on: starts full
    else
        gateway_.set_limits(gateway_rate, burst, now);
}

admission login_admission::admit(const std::string& address, clock::time_point now) {
    if (!per_address_.allow(address, now)) return admission::rate_limited_address;
    std::lock_guard lk(mu_);
    if (gateway_on_ && !gateway_.take(now)) return admission::rate_limited_gateway;
    return admission::ok;
}

double login_admission::gateway_tokens() const {
    std::lock_guard lk(mu_);
    return gateway_.tokens();
}

}  // namespace imgate::gw
