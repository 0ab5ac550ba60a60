#pragma once
// The watchdog's decisions for one peer connection, without a socket or a timer: fed the time of
// each tick and what happened since the previous one, it says whether to ping or to close. Time is
// injected (tests/gateway/peer_conn_test.cpp).
#include <chrono>
#include <optional>

namespace imgate::gw::rpc {

// Owns the last-read / last-write / last-ping times of one connection.
class link_liveness {
  public:
    using clock = std::chrono::steady_clock;
    enum class action { none, ping, close_read_timeout, close_write_stall };

    // pinger: the dialling side, which proves the link alive; the acceptor only answers.
    link_liveness(std::chrono::milliseconds ping_interval, std::chrono::milliseconds peer_timeout,
                  bool pinger, clock::time_point now)
        : ping_interval_(ping_interval),
          peer_timeout_(peer_timeout),
          pinger_(pinger),
          last_read_(now),
          last_write_(now) {}

    // How often the watchdog looks: often enough to catch both deadlines in time.
    static std::chrono::milliseconds tick(std::chrono::milliseconds ping_interval,
                                          std::chrono::milliseconds peer_timeout);

    // read_seen / write_seen: bytes read / frames queued since the previous tick (flags, so the
    // hot path never reads the clock); write_started: when the write in progress began, if any.
    // A returned ping counts as this tick's write.
    action on_tick(clock::time_point now, bool read_seen, bool write_seen,
                   std::optional<clock::time_point> write_started);

  private:
    std::chrono::milliseconds ping_interval_, peer_timeout_;
    bool pinger_;
    clock::time_point last_read_, last_write_, last_ping_{};
};

}  // namespace imgate::gw::rpc
