#pragma once
// The client-session protocol without a socket (docs/protocol.md §3 "Session life cycle"): login,
// heartbeat, the checks and rate limits on SEND/JOIN/LEAVE/PING, the frame size limit before and
// after login, and every deadline of one connection (login, idle,
// write, linger). Events come in with the time; each answers a session_actions that the
// connection (session.cpp) carries out. What needs the gateway (tokens, registration, routing,
// metrics) is asked of a `session_gateway` passed to the event: session.cpp passes a thin
// inlined adapter over gateway_server, tests a fake, and no frame pays a virtual call.
#include <algorithm>
#include <chrono>
#include <concepts>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/clock.hpp"
#include "common/frame.hpp"
#include "common/jwt.hpp"
#include "common/protocol.hpp"
#include "gateway/admission.hpp"
#include "gateway/gateway_config.hpp"

namespace imgate::gw {

// After the last frame is flushed and the send side shut down, how long we wait for the client to
// close before closing hard (closing at once could reset the connection and lose that frame).
inline constexpr std::chrono::milliseconds session_linger{2000};

// What the protocol asks of the gateway, for the one session it runs.
template <class G>
concept session_gateway = requires(G& g, std::string_view sv, std::string s, proto::send_msg& m,
                                   const std::string& room, proto::code c, proto::target_kind k,
                                   proto::kick_reason r) {
    { g.serving() } -> std::convertible_to<bool>;  // not draining or stopping
    // The LOGIN rate buckets, per source address then gateway-wide (admission.hpp).
    { g.admit_login() } -> std::same_as<admission>;
    // base + uniform[0, jitter] ms (the random source is the gateway's).
    {
        g.draw_hint(std::chrono::milliseconds{}, std::chrono::milliseconds{})
        } -> std::convertible_to<uint32_t>;
    g.count_retry_hint(sv);  // a REDIRECT after a refused LOGIN, by its reason
    { g.verify_token(sv) } -> std::same_as<jwt::verify_result>;
    // Registers the session as user/device (replacing the same device); false: no longer serving.
    { g.register_session(std::move(s), std::move(s)) } -> std::convertible_to<bool>;
    { g.gateway_id() } -> std::convertible_to<std::string_view>;
    g.send(m, uint32_t{});  // routes m (its strings moved out); the SEND_RESULT echoes corr
    g.ack(uint64_t{});
    { g.join(room) } -> std::same_as<proto::code>;
    { g.leave(room) } -> std::same_as<proto::code>;
    g.count_error(c);
    g.count_login("");
    g.count_message(k, c);  // a SEND refused before routing
    g.count_kick(r);
    g.count_idle_close();
    g.count_slow_consumer();
    g.count_rate_limited(proto::op::join);  // one request refused by its per-session rate limit
    g.count_flood_close();
    // The session's user may not log in on this gateway before `until` (after a flood close).
    g.penalise_user(steady_time{});
    // When a penalty of this user ends, if it has not ended at `now`.
    { g.penalty_until(s, steady_time{}) } -> std::same_as<std::optional<steady_time>>;
};

// Why the connection must close now; the session logs the slow-consumer ones.
enum class close_cause : uint8_t { none, read_ended, linger_over, write_stalled, queue_over_bound };

// What the connection does after an event, in this order. Default: nothing.
struct session_actions {
    std::string reply;                      // queue this frame (empty: none)
    bool finish = false;                    // stop reading, flush the queue, then report on_flushed
    std::string last_frame;                 // with finish: queued last, past the outbound bound
    bool shutdown_send = false;             // everything is flushed: half-close
    close_cause close = close_cause::none;  // close the socket now; anything queued is dropped
    // Logged in: the frame limit rose to max_frame_bytes (max_frame_body()); drop the buffer
    // capacity the token needed.
    bool shrink_decoder = false;
    steady_time deadline{};  // (re-)arm the session's one timer here; epoch: leave it
};

// Owns the protocol state of one client session: its limits snapshot, its rate buckets (SEND,
// JOIN+LEAVE, PING) and recent refusals, login state and the instants its deadlines derive from.
// Not thread-safe: the session's strand only (on_queue_overflow excepted: it touches no state).
class session_protocol {
  public:
    session_protocol(std::shared_ptr<const gateway_limits> limits, steady_time now);

    // The connection is accepted: the login deadline.
    session_actions start() const;
    // New limits (SIGHUP) apply from now on.
    void set_limits(std::shared_ptr<const gateway_limits> limits, steady_time now);
    // Bytes arrived, whole frames or not: the session is not idle.
    void on_input(steady_time now) { last_rx_ = now; }
    template <session_gateway G>
    session_actions on_frame(const frame& f, steady_time now, G& gw);
    // The largest frame body the decoder may accept now: before login only what a LOGIN with the
    // longest allowed token needs (prelogin_max_frame_body), after it max_frame_bytes.
    uint32_t max_frame_body() const {
        return logged_in_ ? limits_->max_frame_bytes : prelogin_max_frame_body(*limits_);
    }
    // The decoder failed (over max_frame_body(), wrong version).
    template <session_gateway G>
    session_actions on_framing_error(frame_error e, G& gw);
    // The transport broke its framing contract (a WebSocket message that is not exactly one
    // frame, or a text message): ERROR bad_frame (corr 0) and close after the flush.
    template <session_gateway G>
    session_actions on_transport_error(std::string_view why, G& gw) {
        session_actions a;
        if (!logged_in_) gw.count_login("bad_frame");
        error(a, gw, proto::code::bad_frame, std::string(why), 0);
        a.finish = true;
        return a;
    }
    // The timer fired. finishing: the session is flushing its last frames (no input handled).
    template <session_gateway G>
    session_actions on_deadline(steady_time now, bool finishing, G& gw);
    void on_write_started(steady_time now) { write_started_ = now; }
    void on_write_done() { write_started_ = {}; }
    // A finishing session wrote its last byte.
    session_actions on_flushed(steady_time now);
    // The read side ended: the client closed (during linger, or at any time), or a read failed.
    static session_actions on_read_end() { return closing(close_cause::read_ended); }
    // A frame would take the outbound queue over max_outbound_bytes: the client does not read fast
    // enough, and queuing more would grow without bound. Any thread.
    template <session_gateway G>
    static session_actions on_queue_overflow(G& gw) {
        gw.count_slow_consumer();
        return closing(close_cause::queue_over_bound);
    }

    bool logged_in() const { return logged_in_; }
    // Everything was flushed and the send side shut down: waiting for the client's close.
    bool lingering() const { return shut_down_; }
    const gateway_limits& limits() const { return *limits_; }

  private:
    static session_actions closing(close_cause why) {
        session_actions a;
        a.close = why;
        return a;
    }
    template <session_gateway G>
    session_actions on_login(const frame& f, steady_time now, G& gw);
    template <session_gateway G>
    session_actions on_send(const frame& f, steady_time now, G& gw);
    template <session_gateway G>
    session_actions on_room(const frame& f, bool join, steady_time now, G& gw);
    template <session_gateway G>
    session_actions on_ping(const frame& f, steady_time now, G& gw);
    // A request refused by its rate limit: counted, and past flood_refusals within flood_window
    // the session is closed with ERROR rate_limited after `a`'s answer. Returns a.
    template <session_gateway G>
    session_actions refused_for_rate(session_actions a, proto::op o, steady_time now, G& gw);
    std::string frame_limit_text() const;
    // corr: the request's for an answer, 0 for an error the server starts (timeout, framing).
    template <session_gateway G>
    static void error(session_actions& a, G& gw, proto::code c, std::string message,
                      uint32_t corr) {
        gw.count_error(c);
        a.reply = proto::encode(proto::error_msg{c, std::move(message)}, corr);
    }
    // A LOGIN refused for a rate reason: the ERROR with the LOGIN's corr, then a REDIRECT (corr
    // 0, no address: ask the dispatcher) whose reconnect_after_ms is base + uniform[0,
    // login_retry_jitter], then close: the refused clients come back spread out, not at once.
    template <session_gateway G>
    session_actions refuse_login_retry(G& gw, const char* result, std::string message,
                                       uint32_t corr, std::chrono::milliseconds base) const {
        auto a = refuse_login(gw, result, proto::code::rate_limited, std::move(message), corr);
        uint32_t hint = gw.draw_hint(base, limits_->login_retry_jitter);
        gw.count_retry_hint("rate_limited");
        a.last_frame = proto::encode(proto::redirect_msg{hint, "", 0, "rate_limited"});
        return a;
    }
    // A login refusal: ERROR with the LOGIN's corr, then close after the flush.
    template <session_gateway G>
    static session_actions refuse_login(G& gw, const char* result, proto::code c,
                                        std::string message, uint32_t corr) {
        session_actions a;
        gw.count_login(result);
        error(a, gw, c, std::move(message), corr);
        a.finish = true;
        return a;
    }
    bool valid_id(std::string_view s) const;
    proto::login_result_msg login_result(std::string user, std::string device,
                                         std::string_view gateway_id) const;
    steady_time login_deadline() const { return started_ + limits_->login_timeout; }

    // token_bucket's arithmetic without its copies of rate and burst (they are limits_'s): an
    // idle session holds three, so 16 bytes instead of 32 each.
    struct lean_bucket {
        double tokens;
        steady_time last;

        lean_bucket(double burst, steady_time now) : tokens(burst), last(now) {}
        void refill(steady_time now, double rate, double burst) {
            if (now <= last) return;
            double dt = std::chrono::duration<double>(now - last).count();
            tokens = std::min(burst, tokens + dt * rate);
            last = now;
        }
        bool take(steady_time now, double rate, double burst) {
            refill(now, rate, burst);
            if (tokens < 1) return false;
            tokens -= 1;
            return true;
        }
        void cap(double burst) {
            if (tokens > burst) tokens = burst;
        }
    };
    bool take_send(steady_time now) {
        return bucket_.take(now, limits_->send_rate, limits_->send_burst);
    }
    bool take_room(steady_time now) {
        return room_bucket_.take(now, limits_->room_ops_rate, limits_->room_ops_burst);
    }
    bool take_ping(steady_time now) {
        return ping_bucket_.take(now, limits_->ping_rate, limits_->ping_burst);
    }

    // Laid out without padding holes: every session holds one.
    std::shared_ptr<const gateway_limits> limits_;
    lean_bucket bucket_;       // SEND
    lean_bucket room_bucket_;  // JOIN and LEAVE together
    lean_bucket ping_bucket_;
    steady_time refusals_since_{};  // start of the current flood window
    steady_time started_;
    steady_time last_rx_;
    steady_time write_started_{};  // epoch: no write in progress
    steady_time linger_until_{};
    uint32_t refusals_ = 0;  // rate-limit refusals within the flood window
    bool logged_in_ = false;
    bool shut_down_ = false;  // send side shut down, lingering
};

template <session_gateway G>
session_actions session_protocol::on_frame(const frame& f, steady_time now, G& gw) {
    using proto::op;
    last_rx_ = now;
    if (!logged_in_) {
        if (f.op == static_cast<uint8_t>(op::login)) return on_login(f, now, gw);
        return refuse_login(gw, "login_required", proto::code::login_required,
                            "the first frame must be LOGIN", f.corr);
    }
    session_actions a;
    switch (static_cast<op>(f.op)) {
        case op::ping:
            return on_ping(f, now, gw);
        case op::send:
            return on_send(f, now, gw);
        case op::ack:
            // No rate limit: an ACK is a lookup in this gateway's pending acks, and each reached
            // session's first ACK of a delivery is the only one that makes a RECEIPT, so the work
            // it causes elsewhere is bounded by the deliveries this session received.
            if (auto m = proto::decode<proto::ack_msg>(f))
                gw.ack(m->server_msg_id);
            else
                error(a, gw, proto::code::bad_frame, "malformed ACK", f.corr);
            return a;
        case op::join:
            return on_room(f, true, now, gw);
        case op::leave:
            return on_room(f, false, now, gw);
        case op::login:
            error(a, gw, proto::code::already_logged_in, "already logged in", f.corr);
            return a;
        case op::pong:
            return a;  // a client answering a ping is activity, nothing more
        default:
            if (proto::is_known_op(f.op))
                error(
                    a, gw, proto::code::bad_request,
                    std::string("a client may not send ") + proto::to_string(static_cast<op>(f.op)),
                    f.corr);
            else
                error(a, gw, proto::code::unknown_op, "unknown op " + std::to_string(f.op), f.corr);
            return a;
    }
}

template <session_gateway G>
session_actions session_protocol::on_login(const frame& f, steady_time now, G& gw) {
    using proto::code;
    auto m = proto::decode<proto::login_msg>(f);
    if (!m) return refuse_login(gw, "bad_frame", code::bad_frame, "malformed LOGIN", f.corr);
    // The decoder refuses such a frame at its header already; this holds whatever fed the frame.
    if (m->token.size() > limits_->max_token_bytes)
        return refuse_login(gw, "frame_too_large", code::frame_too_large, frame_limit_text(),
                            f.corr);
    static constexpr const char* draining_text =
        "gateway is draining; reconnect through the dispatcher";
    if (!gw.serving()) return refuse_login(gw, "draining", code::draining, draining_text, f.corr);
    // Before any HMAC work: one address flooding LOGINs is refused, others are unaffected.
    // The per-address bucket first: an address over its rate takes no gateway-wide token.
    switch (gw.admit_login()) {
        case admission::ok:
            break;
        case admission::rate_limited_address:
            return refuse_login_retry(gw, "rate_limited",
                                      "too many logins from this address; retry later", f.corr,
                                      limits_->login_retry_after);
        case admission::rate_limited_gateway:
            return refuse_login_retry(gw, "rate_limited_gateway",
                                      "too many logins on this gateway; retry later", f.corr,
                                      limits_->login_retry_after);
    }
    auto r = gw.verify_token(m->token);
    if (!r) {
        bool expired = r.error == jwt::verify_error::expired;
        // The login metric keeps one label per cause an operator acts on differently.
        const char* label = expired                                      ? "token_expired"
                            : r.error == jwt::verify_error::bad_identity ? "bad_identity"
                                                                         : "auth_failed";
        return refuse_login(gw, label, expired ? code::token_expired : code::auth_failed,
                            jwt::to_string(r.error), f.corr);
    }
    if (!valid_id(r.c.sub) || (!r.c.dev.empty() && !valid_id(r.c.dev)))
        return refuse_login(gw, "bad_identity", code::auth_failed,
                            "user or device id is empty, too long, not UTF-8 or has a control, "
                            "whitespace or invisible formatting character",
                            f.corr);
    // Checked only with a valid token: the penalty is the user's, and a stranger must not be
    // able to learn (or extend) it.
    if (limits_->flood_penalty.count() > 0)
        if (auto until = gw.penalty_until(r.c.sub, now)) {
            auto left = std::chrono::ceil<std::chrono::seconds>(*until - now).count();
            // The hint is the penalty left (never less: an earlier retry is refused again).
            return refuse_login_retry(gw, "flood_penalty",
                                      "a session of this user was closed for flooding; retry in " +
                                          std::to_string(left) + " s",
                                      f.corr,
                                      std::chrono::ceil<std::chrono::milliseconds>(*until - now));
        }
    std::string device = r.c.dev.empty() ? std::string(proto::default_device) : std::move(r.c.dev);
    auto res = login_result(r.c.sub, device, gw.gateway_id());
    // The gateway may have started draining (or stopping) while the token was checked.
    if (!gw.register_session(std::move(r.c.sub), std::move(device)))
        return refuse_login(gw, "draining", code::draining, draining_text, f.corr);
    logged_in_ = true;
    gw.count_login("ok");
    session_actions a;
    a.reply = proto::encode(res, f.corr);
    a.deadline = last_rx_ + limits_->idle_timeout;  // the login deadline becomes the idle deadline
    a.shrink_decoder = true;
    return a;
}

template <session_gateway G>
session_actions session_protocol::on_send(const frame& f, steady_time now, G& gw) {
    session_actions a;
    auto d = proto::decode_send(f);
    if (!d) {
        error(a, gw, proto::code::bad_frame, "malformed SEND", f.corr);
        return a;
    }
    auto& m = d->msg;
    // Refused before routing: exactly one SEND_RESULT, server_msg_id 0.
    auto refuse = [&](proto::code c) {
        gw.count_error(c);
        // A message of no known kind is not counted under either kind.
        if (d->kind_valid) gw.count_message(m.kind, c);
        a.reply = proto::encode(proto::send_result_msg{m.client_msg_id, 0, c, 0}, f.corr);
        return std::move(a);
    };
    if (!take_send(now))
        return refused_for_rate(refuse(proto::code::rate_limited), proto::op::send, now, gw);
    if (m.payload.size() > limits_->max_payload_bytes)
        return refuse(proto::code::payload_too_large);
    if (!d->kind_valid || !valid_id(m.target)) return refuse(proto::code::bad_request);
    gw.send(m, f.corr);
    return a;
}

template <session_gateway G>
session_actions session_protocol::on_room(const frame& f, bool join, steady_time now, G& gw) {
    session_actions a;
    std::string room;
    if (join) {
        auto m = proto::decode<proto::join_msg>(f);
        if (!m) {
            error(a, gw, proto::code::bad_frame, "malformed JOIN", f.corr);
            return a;
        }
        room = std::move(m->room);
    } else {
        auto m = proto::decode<proto::leave_msg>(f);
        if (!m) {
            error(a, gw, proto::code::bad_frame, "malformed LEAVE", f.corr);
            return a;
        }
        room = std::move(m->room);
    }
    // Before the gateway sees it: a refused JOIN/LEAVE changes no membership and so sends no
    // ROOM_INTEREST to any peer.
    if (!take_room(now)) {
        gw.count_error(proto::code::rate_limited);
        a.reply = proto::encode(proto::room_result_msg{std::move(room), proto::code::rate_limited},
                                f.corr);
        return refused_for_rate(std::move(a), join ? proto::op::join : proto::op::leave, now, gw);
    }
    proto::code c = proto::code::bad_request;
    if (valid_id(room)) c = join ? gw.join(room) : gw.leave(room);
    if (c != proto::code::ok) gw.count_error(c);
    a.reply = proto::encode(proto::room_result_msg{std::move(room), c}, f.corr);
    return a;
}

template <session_gateway G>
session_actions session_protocol::on_ping(const frame& f, steady_time now, G& gw) {
    session_actions a;
    // PING's body is empty; anything else is malformed like any other bad body.
    if (!f.body.empty()) {
        error(a, gw, proto::code::bad_frame, "PING must have an empty body", f.corr);
        return a;
    }
    if (!take_ping(now)) {
        error(a, gw, proto::code::rate_limited,
              "too many PINGs: ping every heartbeat_ms of LOGIN_RESULT", f.corr);
        return refused_for_rate(std::move(a), proto::op::ping, now, gw);
    }
    a.reply = proto::encode(proto::pong_msg{}, f.corr);
    return a;
}

template <session_gateway G>
session_actions session_protocol::refused_for_rate(session_actions a, proto::op o, steady_time now,
                                                   G& gw) {
    gw.count_rate_limited(o);
    if (refusals_ == 0 || now - refusals_since_ >= limits_->flood_window) {
        refusals_since_ = now;
        refusals_ = 0;
    }
    if (++refusals_ < limits_->flood_refusals) return a;
    // Flooding: every refusal so far was answered, but answering forever would make the gateway
    // write as fast as the client floods. The refused request's own answer goes first.
    gw.count_flood_close();
    if (limits_->flood_penalty.count() > 0) gw.penalise_user(now + limits_->flood_penalty);
    gw.count_error(proto::code::rate_limited);
    a.finish = true;
    a.last_frame = proto::encode(
        proto::error_msg{proto::code::rate_limited,
                         std::to_string(refusals_) + " requests over their rate limits within " +
                             std::to_string(limits_->flood_window.count()) + " ms: closing"});
    return a;
}

template <session_gateway G>
session_actions session_protocol::on_framing_error(frame_error e, G& gw) {
    session_actions a;
    // corr 0: the header that failed is not trusted enough to echo any of its fields.
    if (e == frame_error::too_large) {
        // Before login: a LOGIN with a token over max_token_bytes, or anything else too big for
        // a LOGIN. Counted as a failed login too.
        if (!logged_in_) gw.count_login("frame_too_large");
        error(a, gw, proto::code::frame_too_large, frame_limit_text(), 0);
    } else {
        error(a, gw, proto::code::unsupported_version, to_string(e), 0);
    }
    a.finish = true;
    return a;
}

template <session_gateway G>
session_actions session_protocol::on_deadline(steady_time now, bool finishing, G& gw) {
    session_actions a;
    if (shut_down_) {
        if (now >= linger_until_)
            a.close = close_cause::linger_over;
        else
            a.deadline = linger_until_;
        return a;
    }
    // A stalled write is seen at the next deadline (login, idle or a finishing session's write
    // deadline): writes arm no timer of their own, so a fast write costs no timer operation.
    bool writing = write_started_ != steady_time{};
    if (writing && now - write_started_ >= limits_->write_timeout) {
        gw.count_slow_consumer();
        a.close = close_cause::write_stalled;
        return a;
    }
    if (finishing) {
        // on_flushed arms the linger deadline; meanwhile only the write is watched.
        if (writing) a.deadline = write_started_ + limits_->write_timeout;
        return a;
    }
    if (!logged_in_) {
        if (now < login_deadline()) {
            a.deadline = login_deadline();
            return a;
        }
        gw.count_login("login_timeout");
        error(a, gw, proto::code::login_timeout, "no LOGIN within the login timeout", 0);
        a.finish = true;
        return a;
    }
    auto idle_at = last_rx_ + limits_->idle_timeout;
    if (now >= idle_at) {
        gw.count_idle_close();
        gw.count_kick(proto::kick_reason::idle);
        a.finish = true;
        a.last_frame = proto::encode(
            proto::kick_msg{proto::kick_reason::idle, 0, "no frame within the idle timeout"});
        return a;
    }
    a.deadline = writing ? std::min(idle_at, write_started_ + limits_->write_timeout) : idle_at;
    return a;
}

}  // namespace imgate::gw
