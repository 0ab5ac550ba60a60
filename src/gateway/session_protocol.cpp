#include "gateway/session_protocol.hpp"

#include "common/ids.hpp"

namespace imgate::gw {

session_protocol::session_protocol(std::shared_ptr<const gateway_limits> limits, steady_time now)
    : limits_(std::move(limits)),
      bucket_(limits_->send_burst, now),
      room_bucket_(limits_->room_ops_burst, now),
      ping_bucket_(limits_->ping_burst, now),
      started_(now),
      last_rx_(now) {}

session_actions session_protocol::start() const {
    session_actions a;
    a.deadline = login_deadline();
    return a;
}

void session_protocol::set_limits(std::shared_ptr<const gateway_limits> limits, steady_time now) {
    // Tokens earned until now count at the old rates; the new bursts cap what is stored.
    bucket_.refill(now, limits_->send_rate, limits_->send_burst);
    room_bucket_.refill(now, limits_->room_ops_rate, limits_->room_ops_burst);
    ping_bucket_.refill(now, limits_->ping_rate, limits_->ping_burst);
    limits_ = std::move(limits);
    bucket_.cap(limits_->send_burst);
    room_bucket_.cap(limits_->room_ops_burst);
    ping_bucket_.cap(limits_->ping_burst);
}

std::string session_protocol::frame_limit_text() const {
    if (logged_in_)
        return "frame too large: the limit is " + std::to_string(limits_->max_frame_bytes) +
               " bytes (max_frame of LOGIN_RESULT)";
    uint32_t cap = prelogin_max_frame_body(*limits_);
    return "frame too large before login: the limit is " + std::to_string(cap) +
           " bytes until LOGIN succeeds (a LOGIN token of at most " +
           std::to_string(cap - login_body_overhead) + " bytes)";
}

session_actions session_protocol::on_flushed(steady_time now) {
    session_actions a;
    if (shut_down_) return a;
    // Half-close and linger for the client's close so the last frame is not lost to a reset.
    shut_down_ = true;
    linger_until_ = now + session_linger;
    a.shutdown_send = true;
    a.deadline = linger_until_;
    return a;
}

bool session_protocol::valid_id(std::string_view s) const {
    return ids::valid(s, limits_->max_id_length);
}

proto::login_result_msg session_protocol::login_result(std::string user, std::string device,
                                                       std::string_view gateway_id) const {
    proto::login_result_msg res;
    res.user = std::move(user);
    res.device = std::move(device);
    res.gateway_id = std::string(gateway_id);
    res.heartbeat_ms = uint32_t(limits_->heartbeat_interval.count());
    res.idle_timeout_ms = uint32_t(limits_->idle_timeout.count());
    res.max_frame = limits_->max_frame_bytes;
    return res;
}

}  // namespace imgate::gw
