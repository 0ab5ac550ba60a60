#include "client/session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <tuple>

#include "client/logic.hpp"
#include "common/awaitable.hpp"
#include "common/daemon.hpp"

namespace imgate::client {

using boost::system::error_code;
using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tls_stream = asio::ssl::stream<tcp::socket&>;

// The streams layered over the session's socket for tls, ws and wss (only the one of the
// session's transport exists). They refer to socket_, so closing it aborts whatever they do.
struct client_session::layers {
    std::optional<tls_stream> tls;
    std::optional<websocket::stream<tcp::socket&>> ws;
    std::optional<websocket::stream<tls_stream>> wss;
    beast::flat_buffer in;  // one WebSocket message
};

namespace {

// The peer went away, whatever the layer says it with.
bool is_closed(const error_code& ec) {
    return ec == asio::error::eof || ec == asio::error::connection_reset ||
           ec == asio::ssl::error::stream_truncated || ec == websocket::error::closed;
}

}  // namespace

const char* to_string(end_reason r) {
    switch (r) {
        case end_reason::local:
            return "closed locally";
        case end_reason::eof:
            return "connection closed by the gateway";
        case end_reason::io_error:
            return "connection error";
        case end_reason::read_timeout:
            return "read timeout";
        case end_reason::write_timeout:
            return "write timeout";
        case end_reason::queue_overflow:
            return "outbound queue full";
        case end_reason::protocol_error:
            return "protocol error";
        case end_reason::kicked:
            return "kicked";
        case end_reason::redirected:
            return "redirected";
    }
    return "unknown";
}

std::string session_end::describe() const {
    std::string s = to_string(reason);
    if (kick) {
        s += ": " + std::string(proto::to_string(kick->reason));
        if (!kick->message.empty()) s += " (" + kick->message + ")";
        if (kick->reconnect_after_ms)
            s += ", reconnect after " + std::to_string(kick->reconnect_after_ms) + " ms";
    } else if (redirect) {
        s += redirect->host.empty()
                 ? ": ask the dispatcher again"
                 : ": to " + redirect->host + ":" + std::to_string(redirect->port);
        if (!redirect->reason.empty()) s += " (" + redirect->reason + ")";
        if (redirect->reconnect_after_ms)
            s += ", reconnect after " + std::to_string(redirect->reconnect_after_ms) + " ms";
    } else if (!detail.empty()) {
        s += ": " + detail;
    }
    if (last_error && !kick && !redirect)
        s += " [last error: " + std::string(proto::to_string(last_error->status)) +
             (last_error->message.empty() ? "" : " " + last_error->message) + "]";
    return s;
}

// Closes the socket when a connect/login deadline passes, unless the operation finished first.
std::function<void(error_code)> client_session::deadline_handler(
    std::shared_ptr<deadline_state> st) {
    return [self = shared_from_this(), st](error_code ec) {
        if (ec || st->done) return;
        st->fired = true;
        error_code ignored;
        self->socket_.close(ignored);
    };
}

client_session::client_session(asio::any_io_executor ex, session_options opts)
    : ex_(ex),
      opts_(std::move(opts)),
      socket_(ex),
      wake_(ex),
      tick_(ex),
      decoder_(opts_.max_frame) {}

client_session::~client_session() = default;

asio::awaitable<error_code> client_session::connect(std::string host, uint16_t port,
                                                    std::string* detail, std::string ws_path) {
    std::string where = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                        std::to_string(port);
    remote_ = where;
    tcp::resolver resolver(ex_);
    auto [rec, results] = co_await resolver.async_resolve(host, std::to_string(port), use_tuple);
    if (rec) {
        if (detail) *detail = "cannot resolve " + host + ": " + rec.message();
        co_return rec;
    }
    // The timer closes the socket, which aborts the pending connect. Its state is shared, not
    // on this frame: an expiry already queued when the connect completes must find `done`.
    auto guard = std::make_shared<deadline_state>();
    asio::steady_timer timer(ex_);
    timer.expires_after(opts_.connect_timeout);
    timer.async_wait(deadline_handler(guard));
    error_code ec;
    for (auto& entry : results) {
        error_code ignored;
        socket_.close(ignored);
        socket_.open(entry.endpoint().protocol(), ec);
        if (ec) continue;
        // A source of the other family (v4 source, v6 target) is ignored rather than failing.
        if (opts_.source && opts_.source->is_v4() == entry.endpoint().address().is_v4()) {
            socket_.bind(tcp::endpoint(*opts_.source, 0), ec);
            if (ec) break;
        }
        auto [cec] = co_await socket_.async_connect(entry.endpoint(), use_tuple);
        ec = cec;
        if (!ec || guard->fired) break;
    }
    guard->done = true;
    timer.cancel();
    bool timed_out = guard->fired;
    if (timed_out) ec = asio::error::timed_out;
    if (ec) {
        if (detail) *detail = "cannot connect to " + where + ": " + ec.message();
        error_code ignored;
        socket_.close(ignored);
        co_return ec;
    }
    socket_.set_option(tcp::no_delay(true), ec);
    if (opts_.via != transport::tcp) {
        ec = co_await handshake(host, port, ws_path, detail);
        if (ec) {
            error_code ignored;
            socket_.close(ignored);
            co_return ec;
        }
    }
    open_ = true;
    last_rx_ = clock::now();
    co_return error_code{};
}

asio::awaitable<error_code> client_session::handshake(const std::string& host, uint16_t port,
                                                      const std::string& ws_path,
                                                      std::string* detail) {
    layers_ = std::make_unique<layers>();
    bool tls = is_tls(opts_.via);
    auto guard = std::make_shared<deadline_state>();
    asio::steady_timer timer(ex_);
    timer.expires_after(opts_.handshake_timeout);
    timer.async_wait(deadline_handler(guard));
    error_code ec;
    std::string why;
    if (tls && !opts_.tls) {
        ec = asio::error::invalid_argument;
        why = "no TLS configuration for a " + std::string(to_string(opts_.via)) + " connection";
    } else if (tls) {
        tls_stream* ts = nullptr;
        if (opts_.via == transport::tls) {
            layers_->tls.emplace(socket_, *opts_.tls->ctx);
            ts = &*layers_->tls;
        } else {
            layers_->wss.emplace(socket_, *opts_.tls->ctx);
            ts = &layers_->wss->next_layer();
        }
        if (!prepare_tls_host(ts->native_handle(), host, *opts_.tls, &why)) {
            ec = asio::error::invalid_argument;
        } else {
            auto [hec] = co_await ts->async_handshake(asio::ssl::stream_base::client, use_tuple);
            ec = hec;
            if (ec && !guard->fired)
                why = describe_tls_failure(ts->native_handle(), host, remote_, *opts_.tls, ec,
                                           &cert_refused_);
        }
    }
    if (!ec && is_ws(opts_.via)) {
        std::string host_header = (host.find(':') != std::string::npos ? "[" + host + "]" : host) +
                                  ":" + std::to_string(port);
        std::string target = ws_path.empty() ? "/" : ws_path;
        auto decorate = [](websocket::request_type& req) {
            req.set(beast::http::field::user_agent, std::string("imgate/") + IMGATE_VERSION);
        };
        uint64_t max_message = uint64_t(decoder_.max_body()) + frame_header_size;
        websocket::response_type res;
        if (opts_.via == transport::ws) {
            layers_->ws.emplace(socket_);
            auto& ws = *layers_->ws;
            ws.set_option(websocket::stream_base::decorator(decorate));
            ws.binary(true);
            ws.auto_fragment(false);
            ws.read_message_max(max_message);
            auto [hec] = co_await ws.async_handshake(res, host_header, target, use_tuple);
            ec = hec;
        } else {
            auto& ws = *layers_->wss;
            ws.set_option(websocket::stream_base::decorator(decorate));
            ws.binary(true);
            ws.auto_fragment(false);
            ws.read_message_max(max_message);
            auto [hec] = co_await ws.async_handshake(res, host_header, target, use_tuple);
            ec = hec;
        }
        if (ec && !guard->fired) {
            std::string url = std::string(tls ? "wss://" : "ws://") + host_header + target;
            why = ec == websocket::error::upgrade_declined
                      ? "WebSocket upgrade at " + url + " was refused: HTTP " +
                            std::to_string(res.result_int())
                      : "WebSocket handshake with " + url + " failed: " +
                            (is_closed(ec) ? "the server closed the connection" : ec.message());
        }
    }
    guard->done = true;
    timer.cancel();
    if (guard->fired) {
        ec = asio::error::timed_out;
        why = std::string(tls ? "TLS" : "WebSocket") + " handshake with " + remote_ +
              " timed out after " + std::to_string(opts_.handshake_timeout.count()) + " ms";
    }
    if (ec && detail) *detail = why;
    co_return ec;
}

asio::awaitable<error_code> client_session::write_all(std::string_view bytes) {
    if (opts_.via == transport::tcp) {
        auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(bytes), use_tuple);
        co_return ec;
    }
    if (opts_.via == transport::tls) {
        auto [ec, n] = co_await asio::async_write(*layers_->tls, asio::buffer(bytes), use_tuple);
        co_return ec;
    }
    // One binary message per frame: the queue holds whole frames back to back.
    while (!bytes.empty()) {
        size_t n = frame_size_at(bytes);
        if (n == 0 || n > bytes.size()) n = bytes.size();  // never: we only queue whole frames
        auto msg = asio::buffer(bytes.data(), n);
        error_code ec;
        if (opts_.via == transport::ws) {
            auto [wec, wn] = co_await layers_->ws->async_write(msg, use_tuple);
            ec = wec;
        } else {
            auto [wec, wn] = co_await layers_->wss->async_write(msg, use_tuple);
            ec = wec;
        }
        if (ec) co_return ec;
        bytes.remove_prefix(n);
    }
    co_return error_code{};
}

asio::awaitable<error_code> client_session::read_message() {
    auto& in = layers_->in;
    in.clear();
    error_code ec;
    bool text = false;
    if (opts_.via == transport::ws) {
        auto [rec, n] = co_await layers_->ws->async_read(in, use_tuple);
        ec = rec;
        text = layers_->ws->got_text();
    } else {
        auto [rec, n] = co_await layers_->wss->async_read(in, use_tuple);
        ec = rec;
        text = layers_->wss->got_text();
    }
    if (ec == websocket::error::message_too_big) {
        transport_error_ = "a WebSocket message from " + remote_ + " is larger than one frame of " +
                           std::to_string(decoder_.max_body()) + " body bytes";
        co_return asio::error::invalid_argument;
    }
    if (ec) co_return ec;
    std::string_view msg(static_cast<const char*>(in.data().data()), in.size());
    if (text) {
        transport_error_ =
            "a text WebSocket message from " + remote_ + " (frames travel in binary messages only)";
        co_return asio::error::invalid_argument;
    }
    if (auto why = check_ws_message(msg, decoder_.max_body()); !why.empty()) {
        transport_error_ = why + " (from " + remote_ + ")";
        co_return asio::error::invalid_argument;
    }
    decoder_.feed(msg);
    last_rx_ = clock::now();
    co_return error_code{};
}

asio::awaitable<error_code> client_session::read_frame(std::optional<frame>& f) {
    error_code ec;
    while (!ec) {
        f = decoder_.next();
        if (f || decoder_.error() != frame_error::none) break;
        ec = co_await read_more();
    }
    co_return ec;
}

asio::awaitable<error_code> client_session::read_more() {
    if (is_ws(opts_.via)) co_return co_await read_message();
    error_code ec;
    size_t n = 0;
    if (opts_.via == transport::tcp) {
        std::tie(ec, n) = co_await socket_.async_read_some(asio::buffer(rbuf_), use_tuple);
    } else {
        std::tie(ec, n) = co_await layers_->tls->async_read_some(asio::buffer(rbuf_), use_tuple);
    }
    if (!ec) {
        decoder_.feed(std::string_view(rbuf_, n));
        last_rx_ = clock::now();
    }
    co_return ec;
}

asio::awaitable<login_outcome> client_session::login(std::string token) {
    login_outcome out;
    if (!open_) {
        out.ec = asio::error::not_connected;
        out.detail = "not connected";
        co_return out;
    }
    auto login_started = clock::now();
    auto guard = std::make_shared<deadline_state>();
    asio::steady_timer timer(ex_);
    timer.expires_after(opts_.login_timeout);
    timer.async_wait(deadline_handler(guard));
    std::string wire = proto::encode(proto::login_msg{std::move(token)}, next_corr_++);
    error_code ec = co_await write_all(wire);
    std::optional<frame> f;
    if (!ec) ec = co_await read_frame(f);
    guard->done = true;
    timer.cancel();
    bool timed_out = guard->fired;
    auto fail = [&](std::string d) {
        out.detail = std::move(d);
        open_ = false;
        error_code ignored;
        socket_.close(ignored);
    };
    if (timed_out) {
        out.ec = asio::error::timed_out;
        fail("no login answer from " + remote_ + " within " +
             std::to_string(opts_.login_timeout.count()) + " ms");
    } else if (!transport_error_.empty()) {
        out.ec = asio::error::invalid_argument;
        fail("protocol error during login: " + transport_error_);
    } else if (ec) {
        out.ec = ec;
        fail(is_closed(ec) ? "gateway " + remote_ + " closed the connection during login"
                           : "login to " + remote_ + " failed: " + ec.message());
    } else if (!f) {
        out.ec = asio::error::invalid_argument;
        fail(std::string("bad frame from ") + remote_ + ": " + to_string(decoder_.error()));
    } else if (auto r = proto::decode<proto::login_result_msg>(*f)) {
        out.ok = true;
        out.result = *r;
        info_ = *r;
        if (r->max_frame) {
            decoder_.set_max_body(std::max(r->max_frame, opts_.max_frame));
            uint64_t max_message = uint64_t(decoder_.max_body()) + frame_header_size;
            if (layers_ && layers_->ws) layers_->ws->read_message_max(max_message);
            if (layers_ && layers_->wss) layers_->wss->read_message_max(max_message);
        }
    } else if (auto e = proto::decode<proto::error_msg>(*f)) {
        out.error = *e;
        if (e->status == proto::code::rate_limited || e->status == proto::code::server_busy) {
            auto left = opts_.login_timeout -
                        std::chrono::duration_cast<milliseconds>(clock::now() - login_started);
            out.retry_redirect = co_await read_retry_hint(std::min(left, milliseconds(2000)));
        }
        fail(std::string(proto::to_string(e->status)) +
             (e->message.empty() ? "" : ": " + e->message));
    } else if (auto k = proto::decode<proto::kick_msg>(*f)) {
        out.error = proto::error_msg{proto::code::unavailable, k->message};
        fail(std::string("kicked during login: ") + proto::to_string(k->reason));
    } else if (auto rd = proto::decode<proto::redirect_msg>(*f)) {
        out.error = proto::error_msg{proto::code::draining, rd->reason};
        fail("redirected during login" + (rd->reason.empty() ? "" : ": " + rd->reason));
    } else {
        out.ec = asio::error::invalid_argument;
        fail(std::string("unexpected ") + proto::to_string(static_cast<proto::op>(f->op)) +
             " frame during login");
    }
    co_return out;
}

asio::awaitable<std::optional<proto::redirect_msg>> client_session::read_retry_hint(
    milliseconds within) {
    // A gateway from before the hint closes right after the ERROR: EOF here is no failure.
    if (within.count() <= 0) co_return std::nullopt;
    auto guard = std::make_shared<deadline_state>();
    asio::steady_timer timer(ex_);
    timer.expires_after(within);
    timer.async_wait(deadline_handler(guard));
    std::optional<frame> f;
    // A read error or the deadline leaves f empty: either way no hint.
    error_code read_error = co_await read_frame(f);
    guard->done = true;
    timer.cancel();
    if (read_error || !f) co_return std::nullopt;
    co_return proto::decode<proto::redirect_msg>(*f);
}

std::string loss_reason(const session_end& e) {
    if (e.kick) return std::string("kick:") + proto::to_string(e.kick->reason);
    if (e.redirect) return "redirect:" + e.redirect->reason;
    switch (e.reason) {
        case end_reason::eof:
        case end_reason::io_error:
            if (e.last_error) return std::string("error:") + proto::to_string(e.last_error->status);
            return e.reason == end_reason::eof ? "eof" : "reset";
        case end_reason::read_timeout:
        case end_reason::write_timeout:
            return "timeout";
        case end_reason::protocol_error:
            return "error:bad_frame";
        case end_reason::queue_overflow:
            return "error:queue_overflow";
        default:
            return "local";
    }
}

template <class M>
bool client_session::enqueue(const M& m) {
    if (!open_) return false;
    size_t before = pending_.size();
    proto::encode(pending_, m, next_corr_++);
    if (pending_.size() > opts_.max_queue_bytes && before > 0) {
        pending_.resize(before);
        return false;
    }
    if (running_ && !writing_) wake_.cancel();
    return true;
}

bool client_session::send(proto::target_kind kind, const std::string& target, std::string payload,
                          uint64_t client_msg_id) {
    return enqueue(proto::send_msg{kind, target, client_msg_id, std::move(payload)});
}
bool client_session::join(const std::string& room) {
    return enqueue(proto::join_msg{room});
}
bool client_session::leave(const std::string& room) {
    return enqueue(proto::leave_msg{room});
}
bool client_session::ack(uint64_t id) {
    return enqueue(proto::ack_msg{id});
}

void client_session::close() {
    shutdown(end_reason::local);
}

void client_session::close_after_flush() {
    if (!running_ || (pending_.empty() && !writing_)) {
        shutdown(end_reason::local);
        return;
    }
    closing_ = true;
}

void client_session::shutdown(end_reason r, error_code ec, std::string detail) {
    if (!ended_) {
        ended_ = true;
        end_.reason = r;
        end_.ec = ec;
        end_.detail = std::move(detail);
    }
    open_ = false;
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    wake_.cancel();
    tick_.cancel();
}

milliseconds client_session::read_timeout() const {
    if (info_.heartbeat_ms == 0) return opts_.default_read_timeout;
    // The gateway answers every PING, so a healthy link is never quiet for two intervals.
    auto t = milliseconds(2 * int64_t(info_.heartbeat_ms)) + opts_.read_grace;
    if (info_.idle_timeout_ms) t = std::max(t, milliseconds(info_.idle_timeout_ms));
    return t;
}

bool client_session::handle(const frame& f) {
    ++frames_in_;
    using proto::op;
    switch (static_cast<op>(f.op)) {
        case op::deliver:
            if (auto m = proto::decode<proto::deliver_msg>(f)) {
                if (opts_.auto_ack && !ack(m->server_msg_id)) {
                    shutdown(end_reason::queue_overflow, {}, "could not queue an ack");
                    return false;
                }
                if (ev_.on_deliver) ev_.on_deliver(*m);
                return open_;
            }
            break;
        case op::push:
            if (auto m = proto::decode<proto::push_msg>(f)) {
                if (ev_.on_push) ev_.on_push(*m);
                return open_;
            }
            break;
        case op::send_result:
            if (auto m = proto::decode<proto::send_result_msg>(f)) {
                if (ev_.on_send_result) ev_.on_send_result(*m);
                return open_;
            }
            break;
        case op::receipt:
            if (auto m = proto::decode<proto::receipt_msg>(f)) {
                if (ev_.on_receipt) ev_.on_receipt(*m);
                return open_;
            }
            break;
        case op::room_result:
            if (auto m = proto::decode<proto::room_result_msg>(f)) {
                if (ev_.on_room_result) ev_.on_room_result(*m);
                return open_;
            }
            break;
        case op::pong:
            return true;
        case op::ping:
            if (!enqueue(proto::pong_msg{})) {
                shutdown(end_reason::queue_overflow, {}, "could not queue a pong");
                return false;
            }
            return true;
        case op::error:
            if (auto m = proto::decode<proto::error_msg>(f)) {
                end_.last_error = *m;
                if (ev_.on_error) ev_.on_error(*m);
                return open_;
            }
            break;
        case op::kick:
            if (auto m = proto::decode<proto::kick_msg>(f)) {
                end_.kick = *m;
                shutdown(end_reason::kicked);
                return false;
            }
            break;
        case op::redirect:
            if (auto m = proto::decode<proto::redirect_msg>(f)) {
                end_.redirect = *m;
                shutdown(end_reason::redirected);
                return false;
            }
            break;
        default:
            // An op this client doesn't know (a newer gateway) is skipped, like the gateway
            // skips ours; ops only a client sends are a protocol error.
            if (!proto::is_known_op(f.op)) {
                ++unknown_ops_;
                return true;
            }
            shutdown(end_reason::protocol_error, {},
                     std::string("unexpected ") + proto::to_string(static_cast<op>(f.op)) +
                         " frame from the gateway");
            return false;
    }
    shutdown(end_reason::protocol_error, {},
             std::string("malformed ") + proto::to_string(static_cast<proto::op>(f.op)) +
                 " frame from the gateway");
    return false;
}

asio::awaitable<session_end> client_session::run(session_events ev) {
    auto self = shared_from_this();
    ev_ = std::move(ev);
    if (!open_) {
        if (!ended_) shutdown(end_reason::local, asio::error::not_connected, "not connected");
        co_return end_;
    }
    running_ = true;
    last_rx_ = clock::now();
    last_ping_ = clock::now();
    spawn(ex_, writer(self), "imgate client writer");
    spawn(ex_, ticker(self), "imgate client ticker");
    while (open_) {
        // Frames that arrived with the login answer are already in the decoder.
        while (open_) {
            auto f = decoder_.next();
            if (!f) break;
            if (!handle(*f)) break;
        }
        if (!open_) break;
        if (decoder_.error() != frame_error::none) {
            shutdown(end_reason::protocol_error, {},
                     std::string("bad frame from the gateway: ") + to_string(decoder_.error()));
            break;
        }
        error_code ec = co_await read_more();
        if (ec) {
            if (!open_) break;  // closed by us (deadline, kick, close())
            if (!transport_error_.empty())
                shutdown(end_reason::protocol_error, {}, transport_error_);
            else if (is_closed(ec))
                shutdown(end_reason::eof, ec, ec == asio::error::eof ? "" : ec.message());
            else
                shutdown(end_reason::io_error, ec, ec.message());
        }
    }
    running_ = false;
    ev_ = {};  // drops whatever the callbacks captured (they may hold this session)
    co_return end_;
}

asio::awaitable<void> client_session::writer(std::shared_ptr<client_session> self) {
    while (open_) {
        if (pending_.empty()) {
            if (closing_) {
                shutdown(end_reason::local);
                co_return;
            }
            wake_.expires_at(clock::time_point::max());
            co_await wake_.async_wait(use_tuple);
            continue;
        }
        inflight_.swap(pending_);
        pending_.clear();
        writing_ = true;
        write_started_ = clock::now();
        error_code ec;
        if (opts_.via == transport::tcp) {
            // The load generator's hot path: the socket directly, no extra coroutine frame.
            auto [wec, n] = co_await asio::async_write(socket_, asio::buffer(inflight_), use_tuple);
            ec = wec;
        } else {
            ec = co_await write_all(inflight_);
        }
        writing_ = false;
        inflight_.clear();
        if (ec) {
            if (open_) shutdown(end_reason::io_error, ec, "write failed: " + ec.message());
            co_return;
        }
    }
}

asio::awaitable<void> client_session::ticker(std::shared_ptr<client_session> self) {
    auto hb = milliseconds(info_.heartbeat_ms);
    auto rt = read_timeout();
    auto period = std::min<milliseconds>(rt / 4, milliseconds(1000));
    if (opts_.heartbeat && hb.count() > 0) period = std::min(period, hb);
    period = std::max(period, milliseconds(20));
    while (open_) {
        tick_.expires_after(period);
        co_await tick_.async_wait(use_tuple);
        if (!open_) co_return;
        auto now = clock::now();
        if (now - last_rx_ > rt) {
            shutdown(end_reason::read_timeout, asio::error::timed_out,
                     "no frame from " + remote_ + " for " + std::to_string(rt.count()) + " ms");
            co_return;
        }
        if (writing_ && now - write_started_ > opts_.write_timeout) {
            shutdown(end_reason::write_timeout, asio::error::timed_out,
                     "a write to " + remote_ + " stalled for " +
                         std::to_string(opts_.write_timeout.count()) + " ms");
            co_return;
        }
        if (opts_.heartbeat && hb.count() > 0 && now - last_ping_ + period / 2 >= hb) {
            last_ping_ = now;
            if (!enqueue(proto::ping_msg{})) {
                shutdown(end_reason::queue_overflow, {}, "could not queue a ping");
                co_return;
            }
        }
    }
}

}  // namespace imgate::client
