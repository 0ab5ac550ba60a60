#pragma once
// Every metric of the gateway core (client listener, sessions, router, admin API, reload), declared
// once here: names, help texts and labels live in gateway_metrics.cpp and nowhere else. The cluster
// layer declares its own.
#include <array>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "common/config.hpp"
#include "common/metrics.hpp"
#include "common/protocol.hpp"

namespace imgate::gw {

// Owns the counter handles of the gateway core, looked up once at start-up; every series exists
// at 0 from then on (alerts divide rates of series that must not be born with their first event).
class gateway_metrics {
  public:
    explicit gateway_metrics(metrics_registry& registry);

    // What the gauges read when /metrics is rendered (any thread).
    struct gauge_sources {
        std::function<double()> connections, sessions, users, rooms, pending_acks,
            event_loop_lag_seconds, max_connections;
    };
    void expose(gauge_sources g);

    void error(proto::code c) {
        if (auto* p = errors_[size_t(c) & 63]) p->inc();
    }
    void kick(proto::kick_reason r) {
        if (auto* p = kicks_[size_t(r) & 7]) p->inc();
    }
    void login(const char* result) {
        auto it = logins_.find(result);
        if (it != logins_.end()) it->second->inc();
    }
    // A request refused by its per-session rate limit: SEND, JOIN, LEAVE or PING.
    void rate_limited(proto::op o) {
        if (auto* p = rate_limited_[size_t(o) & 255]) p->inc();
    }
    // One routed message by kind (user, room, or a backend push) and outcome.
    void message(proto::target_kind kind, bool push, proto::code status);
    // One TLS or WebSocket handshake of a client listener, by outcome (ok, timeout, failed,
    // not_websocket, busy: refused past tls.max_handshakes).
    void handshake(transport t, std::string_view result);
    // Seconds until the serving certificate expires (read at scrape time); unset: no series.
    void expose_cert_expiry(std::function<double()> seconds_left);
    // A REDIRECT after a refused LOGIN (reason rate_limited) or a server_busy refusal (busy).
    void retry_hint(std::string_view reason) {
        (reason == "busy" ? retry_hints_busy_ : retry_hints_rate_)->inc();
    }
    void write(size_t frames) {
        writes->inc();
        frames_written->inc(frames);
    }

    counter* accepted;
    counter* busy;
    counter* slow;
    counter* idle;
    counter* dupes;
    counter* receipts;
    counter* deliveries;
    counter* writes;
    counter* writes_at_once;  // write starts that did not wait for the coalescer (quiet session)
    counter* writes_waited;   // write starts left to the coalescer's next flush (busy session)
    counter* frames_written;
    counter* ack_evictions;
    counter* admin_unauthorized;
    counter* redirects;
    counter* reload_ok;
    counter* reload_failed;
    counter* flood_closes;
    counter* rebalance_requests;
    counter* rebalance_redirects;

  private:
    metrics_registry& registry_;
    std::array<counter*, 64> errors_{};
    std::array<counter*, 8> kicks_{};
    std::array<counter*, 256> rate_limited_{};  // by client op; only the limited ops are set
    counter* retry_hints_rate_;
    counter* retry_hints_busy_;
    std::map<std::string, counter*> logins_;  // filled in the constructor, read-only after
    counter* msgs_[3][3] = {};                // [user|room|push][delivered|offline|error]
    std::map<std::pair<transport, std::string>, counter*, std::less<>> handshakes_;
};

}  // namespace imgate::gw
