#include "gateway/link_liveness.hpp"

#include <algorithm>

namespace imgate::gw::rpc {

std::chrono::milliseconds link_liveness::tick(std::chrono::milliseconds ping_interval,
                                              std::chrono::milliseconds peer_timeout) {
    return std::max(std::min(ping_interval / 2, peer_timeout / 4), std::chrono::milliseconds(10));
}

link_liveness::action link_liveness::on_tick(clock::time_point now, bool read_seen, bool write_seen,
                                             std::optional<clock::time_point> write_started) {
    if (read_seen) last_read_ = now;
    if (write_seen) last_write_ = now;
    if (now - last_read_ > peer_timeout_) return action::close_read_timeout;
    if (write_started && now - *write_started > peer_timeout_) return action::close_write_stall;
    // The dialler proves the link alive whenever either direction has been quiet for
    // ping_interval. Idle *writes* alone are not enough: a dialler that only announces (PRESENCE,
    // ROOM_INTEREST, RECEIPT, DEVICE_CLAIM: frames nobody answers) writes all the time but reads
    // nothing, and its read deadline would close a healthy link.
    bool quiet = now - last_read_ >= ping_interval_ || now - last_write_ >= ping_interval_;
    if (pinger_ && quiet && now - last_ping_ >= ping_interval_) {
        last_ping_ = last_write_ = now;
        return action::ping;
    }
    return action::none;
}

}  // namespace imgate::gw::rpc
