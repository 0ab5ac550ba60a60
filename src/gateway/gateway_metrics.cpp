#include "gateway/gateway_metrics.hpp"

namespace imgate::gw {

namespace {
constexpr proto::code all_codes[] = {
    proto::code::bad_frame,     proto::code::unsupported_version,
    proto::code::unknown_op,    proto::code::frame_too_large,
    proto::code::bad_request,   proto::code::login_required,
    proto::code::auth_failed,   proto::code::token_expired,
    proto::code::login_timeout, proto::code::already_logged_in,
    proto::code::rate_limited,  proto::code::payload_too_large,
    proto::code::server_busy,   proto::code::slow_consumer,
    proto::code::not_in_room,   proto::code::too_many_rooms,
    proto::code::unavailable,   proto::code::timeout,
    proto::code::internal,      proto::code::draining,
};
constexpr proto::kick_reason all_kicks[] = {
    proto::kick_reason::replaced, proto::kick_reason::shutdown,      proto::kick_reason::drain,
    proto::kick_reason::idle,     proto::kick_reason::slow_consumer, proto::kick_reason::admin,
};
}  // namespace

gateway_metrics::gateway_metrics(metrics_registry& m) : registry_(m) {
    for (auto c : all_codes)
        errors_[size_t(c) & 63] = &m.get_counter("imgate_gateway_errors_total",
                                                 "Error codes sent to clients (error frames and "
                                                 "failed results)",
                                                 {{"code", proto::to_string(c)}});
    for (auto k : all_kicks)
        kicks_[size_t(k) & 7] =
            &m.get_counter("imgate_gateway_kicks_total", "Sessions kicked, by reason",
                           {{"reason", proto::to_string(k)}});
    for (const char* r : {"ok", "auth_failed", "token_expired", "login_required", "login_timeout",
                          "bad_frame", "bad_identity", "draining", "rate_limited",
                          "rate_limited_gateway", "frame_too_large", "flood_penalty"})
        logins_[r] = &m.get_counter("imgate_gateway_logins_total", "Login attempts by result",
                                    {{"result", r}});
    for (auto [o, label] :
         {std::pair{proto::op::send, "send"}, std::pair{proto::op::join, "join"},
          std::pair{proto::op::leave, "leave"}, std::pair{proto::op::ping, "ping"}})
        rate_limited_[size_t(o) & 255] = &m.get_counter(
            "imgate_gateway_rate_limited_total",
            "Client requests refused by their per-session rate limit, by op", {{"op", label}});
    flood_closes = &m.get_counter("imgate_gateway_flood_closes_total",
                                  "Sessions closed for too many rate-limited requests within "
                                  "limits.flood_window");
    const char* kinds[] = {"user", "room", "push"};
    const char* results[] = {"delivered", "offline", "error"};
    for (int k = 0; k < 3; ++k)
        for (int r = 0; r < 3; ++r)
            msgs_[k][r] = &m.get_counter("imgate_gateway_messages_total",
                                         "Messages routed by this gateway, by kind and outcome",
                                         {{"kind", kinds[k]}, {"result", results[r]}});
    accepted = &m.get_counter("imgate_gateway_accepted_total", "Client connections accepted");
    busy = &m.get_counter("imgate_gateway_rejected_total", "Client connections refused at accept",
                          {{"reason", "server_busy"}});
    slow = &m.get_counter("imgate_gateway_slow_consumer_total",
                          "Sessions closed because their outbound queue or a write stalled");
    idle = &m.get_counter("imgate_gateway_idle_timeout_total",
                          "Sessions closed for no frame within idle_timeout");
    dupes = &m.get_counter("imgate_gateway_duplicate_forwards_total",
                           "Forwarded messages dropped as already delivered (retries)");
    receipts = &m.get_counter("imgate_gateway_receipts_total", "Delivery receipts routed");
    deliveries = &m.get_counter("imgate_gateway_deliveries_total",
                                "Frames queued to local sessions (DELIVER and PUSH copies)");
    writes = &m.get_counter("imgate_gateway_socket_writes_total",
                            "Gathered socket writes to clients (frames_written/writes = batching)");
    frames_written =
        &m.get_counter("imgate_gateway_frames_written_total", "Frames written to clients");
    const std::string starts_help =
        "Client writes started (timeouts.write_coalesce): wait=none right after the events being "
        "handled (the session wrote nothing for the delay), wait=delay at the next flush";
    writes_at_once =
        &m.get_counter("imgate_gateway_write_starts_total", starts_help, {{"wait", "none"}});
    writes_waited =
        &m.get_counter("imgate_gateway_write_starts_total", starts_help, {{"wait", "delay"}});
    ack_evictions = &m.get_counter("imgate_gateway_pending_ack_evictions_total",
                                   "Pending-ack entries evicted before their ack (table full)");
    admin_unauthorized = &m.get_counter("imgate_gateway_admin_unauthorized_total",
                                        "Admin requests refused for a missing or wrong token");
    redirects = &m.get_counter("imgate_gateway_redirects_total", "Sessions redirected by drain");
    rebalance_requests =
        &m.get_counter("imgate_gateway_rebalance_requests_total", "POST /rebalance calls accepted");
    rebalance_redirects = &m.get_counter("imgate_gateway_rebalance_redirects_total",
                                         "Sessions redirected by a rebalance");
    retry_hints_rate_ = &m.get_counter(
        "imgate_gateway_retry_hints_total",
        "REDIRECT hints sent after a LOGIN refused for its rate or a server_busy refusal",
        {{"reason", "rate_limited"}});
    retry_hints_busy_ = &m.get_counter(
        "imgate_gateway_retry_hints_total",
        "REDIRECT hints sent after a LOGIN refused for its rate or a server_busy refusal",
        {{"reason", "busy"}});
    reload_ok =
        &m.get_counter("imgate_gateway_reloads_total", "Configuration reloads", {{"result", "ok"}});
    for (auto t : {transport::tls, transport::ws, transport::wss})
        for (const char* r : {"ok", "timeout", "failed", "not_websocket", "busy"}) {
            if (t == transport::tls && std::string_view(r) == "not_websocket") continue;
            handshakes_[{t, r}] = &m.get_counter(
                "imgate_gateway_handshakes_total",
                "TLS and WebSocket handshakes of client connections, by transport and outcome",
                {{"transport", to_string(t)}, {"result", r}});
        }
    reload_failed = &m.get_counter("imgate_gateway_reloads_total", "Configuration reloads",
                                   {{"result", "failed"}});
}

void gateway_metrics::handshake(transport t, std::string_view result) {
    auto it = handshakes_.find(std::pair<transport, std::string>(t, std::string(result)));
    if (it != handshakes_.end()) it->second->inc();
}

void gateway_metrics::expose_cert_expiry(std::function<double()> seconds_left) {
    registry_.gauge_fn("imgate_gateway_tls_cert_expiry_seconds",
                       "Seconds until the client listeners' TLS certificate expires", {},
                       std::move(seconds_left));
}

void gateway_metrics::expose(gauge_sources g) {
    auto& m = registry_;
    m.gauge_fn("imgate_gateway_connections", "Open client connections", {},
               std::move(g.connections));
    m.gauge_fn("imgate_gateway_sessions", "Logged-in sessions", {}, std::move(g.sessions));
    m.gauge_fn("imgate_gateway_users", "Distinct users with a local session", {},
               std::move(g.users));
    m.gauge_fn("imgate_gateway_rooms", "Rooms with a local member", {}, std::move(g.rooms));
    m.gauge_fn("imgate_gateway_pending_acks", "Deliveries waiting for an ack", {},
               std::move(g.pending_acks));
    m.gauge_fn("imgate_gateway_event_loop_lag_seconds", "Timer lateness of the event loop", {},
               std::move(g.event_loop_lag_seconds));
    m.gauge_fn("imgate_gateway_max_connections",
               "Client connections this gateway accepts: limits.max_connections, capped by its "
               "descriptor limit",
               {}, std::move(g.max_connections));
}

void gateway_metrics::message(proto::target_kind kind, bool push, proto::code status) {
    int k = push ? 2 : (kind == proto::target_kind::room ? 1 : 0);
    int r = status == proto::code::ok ? 0 : status == proto::code::offline ? 1 : 2;
    msgs_[k][r]->inc();
}

}  // namespace imgate::gw
