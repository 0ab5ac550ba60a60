#include "gateway/session.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "common/daemon.hpp"
#include "common/ids.hpp"
#include "gateway/server.hpp"

namespace imgate::gw {

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// After the last frame is flushed and the send side shut down, how long we wait for the client to
// close before closing hard (closing at once could reset the connection and lose that frame).
constexpr std::chrono::milliseconds linger{2000};
// One read buffer per worker thread instead of per connection: idle sessions then cost no buffer.
thread_local char read_buf[64 * 1024];
}  // namespace

session::session(gateway_server& srv, asio::ip::tcp::socket sock, uint64_t id)
    : srv_(srv),
      id_(id),
      sock_(std::move(sock)),
      timer_(sock_.get_executor()),
      limits_(srv.limits(limits_gen_)),
      bucket_(limits_->send_rate, limits_->send_burst, std::chrono::steady_clock::now()) {
    dec_.set_max_body(limits_->max_frame_bytes);
    max_outbound_ = limits_->max_outbound_bytes;
    started_ = last_rx_ = std::chrono::steady_clock::now();
}

session::~session() = default;

void session::start() {
    boost::system::error_code ec;
    sock_.set_option(asio::ip::tcp::no_delay(true), ec);
    sock_.non_blocking(true, ec);
    auto self = shared_from_this();
    asio::dispatch(sock_.get_executor(), [self] {
        self->arm_timer(self->started_ + self->limits_->login_timeout);
        self->wait_readable();
    });
}

void session::refresh_limits() {
    if (limits_gen_ == srv_.limits_generation()) return;
    limits_ = srv_.limits(limits_gen_);
    dec_.set_max_body(limits_->max_frame_bytes);
    max_outbound_.store(limits_->max_outbound_bytes, std::memory_order_relaxed);
    bucket_.set_limits(limits_->send_rate, limits_->send_burst, std::chrono::steady_clock::now());
}

void session::wait_readable() {
    // A plain callback instead of a coroutine: an idle session then costs one small pending
    // wait operation rather than a coroutine frame and its awaitable thread.
    auto self = shared_from_this();
    sock_.async_wait(asio::ip::tcp::socket::wait_read,
                     [self](const boost::system::error_code& ec) { self->on_readable(ec); });
}

void session::on_readable(const boost::system::error_code& wec) {
    if (wec) return on_read_end();
    for (int reads = 0;; ++reads) {
        if (reads == 16) {
            // Fairness: let other sessions run, then carry on without waiting for a new edge
            // (data may still be buffered in the socket).
            auto self = shared_from_this();
            asio::post(sock_.get_executor(), [self] { self->on_readable({}); });
            return;
        }
        boost::system::error_code ec;
        size_t n = sock_.read_some(asio::buffer(read_buf, sizeof read_buf), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) break;
        if (ec) {
            if (ec != asio::error::eof && ec != asio::error::connection_reset &&
                ec != asio::error::operation_aborted && ec != asio::error::bad_descriptor)
                spdlog::debug("session {}: read: {}", id_, ec.message());
            return on_read_end();
        }
        if (closing_.load(std::memory_order_relaxed)) continue;  // draining input until close
        last_rx_ = std::chrono::steady_clock::now();
        refresh_limits();
        dec_.feed(std::string_view(read_buf, n));
        while (auto f = dec_.next()) {
            handle_frame(*f);
            if (closing_.load(std::memory_order_relaxed)) break;
        }
        if (dec_.error() != frame_error::none && !closing_.load()) {
            auto e = dec_.error();
            // corr 0: the header that failed is not trusted enough to echo any of its fields.
            send_error(e == frame_error::too_large ? proto::code::frame_too_large
                                                   : proto::code::unsupported_version,
                       std::string(to_string(e)), 0);
            finish("");
        }
        // Keep reading until the socket is empty: frames that arrived while this batch was
        // handled join it, so their copies share the same gathered writes.
    }
    wait_readable();
}

void session::on_read_end() {
    closing_ = true;
    boost::system::error_code ec;
    timer_.cancel();
    sock_.close(ec);
    srv_.on_closed(*this);
}

void session::handle_frame(const frame& f) {
    using proto::op;
    if (!logged_in_.load(std::memory_order_relaxed)) {
        if (f.op != static_cast<uint8_t>(op::login)) {
            srv_.count_login("login_required");
            send_error(proto::code::login_required, "the first frame must be LOGIN", f.corr);
            finish("");
            return;
        }
        handle_login(f);
        return;
    }
    switch (static_cast<op>(f.op)) {
        case op::ping: {
            // PING's body is empty; anything else is malformed like any other bad body.
            if (!f.body.empty())
                return send_error(proto::code::bad_frame, "PING must have an empty body", f.corr);
            push_owned(proto::encode(proto::pong_msg{}, f.corr));
            return;
        }
        case op::send: {
            auto m = proto::decode_send(f);
            if (!m) return send_error(proto::code::bad_frame, "malformed SEND", f.corr);
            return handle_send(m->msg, m->kind_valid, f.corr);
        }
        case op::ack: {
            auto m = proto::decode<proto::ack_msg>(f);
            if (!m) return send_error(proto::code::bad_frame, "malformed ACK", f.corr);
            srv_.on_ack(*this, m->server_msg_id);
            return;
        }
        case op::join:
            return handle_room(f, true);
        case op::leave:
            return handle_room(f, false);
        case op::login:
            return send_error(proto::code::already_logged_in, "already logged in", f.corr);
        case op::pong:
            return;  // a client answering a ping is activity, nothing more
        default:
            if (proto::is_known_op(f.op))
                return send_error(
                    proto::code::bad_request,
                    std::string("a client may not send ") + proto::to_string(static_cast<op>(f.op)),
                    f.corr);
            return send_error(proto::code::unknown_op, "unknown op " + std::to_string(f.op),
                              f.corr);
    }
}

bool session::valid_ident(std::string_view s) const {
    return ids::valid(s, limits_->max_id_length);
}

void session::handle_login(const frame& f) {
    auto m = proto::decode<proto::login_msg>(f);
    if (!m) {
        srv_.count_login("bad_frame");
        send_error(proto::code::bad_frame, "malformed LOGIN", f.corr);
        return finish("");
    }
    if (srv_.state() != gateway_state::serving) {
        srv_.count_login("draining");
        send_error(proto::code::draining, "gateway is draining; reconnect through the dispatcher",
                   f.corr);
        return finish("");
    }
    // Before any HMAC work: one address flooding LOGINs is refused, others are unaffected.
    boost::system::error_code rec;
    auto remote = sock_.remote_endpoint(rec);
    if (!rec && !srv_.allow_login(remote.address())) {
        srv_.count_login("rate_limited");
        send_error(proto::code::rate_limited, "too many logins from this address; retry later",
                   f.corr);
        return finish("");
    }
    auto r = srv_.verify_token(m->token);
    if (!r) {
        bool expired = r.error == jwt::verify_error::expired;
        srv_.count_login(expired ? "token_expired" : "auth_failed");
        send_error(expired ? proto::code::token_expired : proto::code::auth_failed,
                   jwt::to_string(r.error), f.corr);
        return finish("");
    }
    if (!valid_ident(r.c.sub) || (!r.c.dev.empty() && !valid_ident(r.c.dev))) {
        srv_.count_login("bad_identity");
        send_error(proto::code::auth_failed,
                   "user or device id is empty, too long, not UTF-8 or has a control, "
                   "whitespace or invisible formatting character",
                   f.corr);
        return finish("");
    }
    user_ = std::move(r.c.sub);
    device_ = r.c.dev.empty() ? std::string(proto::default_device) : std::move(r.c.dev);
    if (!srv_.on_login(shared_from_this())) {
        // The gateway started draining (or stopping) while this token was checked.
        srv_.count_login("draining");
        send_error(proto::code::draining, "gateway is draining; reconnect through the dispatcher",
                   f.corr);
        return finish("");
    }
    srv_.count_login("ok");
    proto::login_result_msg res;
    res.user = user_;
    res.device = device_;
    res.gateway_id = srv_.self_id();
    res.heartbeat_ms = uint32_t(limits_->heartbeat_interval.count());
    res.idle_timeout_ms = uint32_t(limits_->idle_timeout.count());
    res.max_frame = limits_->max_frame_bytes;
    push_owned(proto::encode(res, f.corr));
    arm_timer(last_rx_ + limits_->idle_timeout);  // the login deadline becomes the idle deadline
    // The token made the decoder's buffer grow; an idle session should not keep that capacity.
    if (dec_.buffered() == 0) dec_ = frame_decoder(limits_->max_frame_bytes);
}

void session::handle_send(proto::send_msg& m, bool kind_valid, uint32_t corr) {
    auto reply = [&](proto::code c) {
        srv_.count_error(c);
        // A message of no known kind is not counted under either kind.
        if (kind_valid) srv_.count_message(m.kind, false, c);
        push_owned(proto::encode(proto::send_result_msg{m.client_msg_id, 0, c, 0}, corr));
    };
    if (!bucket_.take(std::chrono::steady_clock::now())) return reply(proto::code::rate_limited);
    if (m.payload.size() > limits_->max_payload_bytes) return reply(proto::code::payload_too_large);
    if (!kind_valid || !valid_ident(m.target)) return reply(proto::code::bad_request);
    srv_.on_send(*this, m, corr);
}

void session::handle_room(const frame& f, bool join) {
    std::string room;
    if (join) {
        auto m = proto::decode<proto::join_msg>(f);
        if (!m) return send_error(proto::code::bad_frame, "malformed JOIN", f.corr);
        room = std::move(m->room);
    } else {
        auto m = proto::decode<proto::leave_msg>(f);
        if (!m) return send_error(proto::code::bad_frame, "malformed LEAVE", f.corr);
        room = std::move(m->room);
    }
    proto::code c = proto::code::bad_request;
    if (valid_ident(room)) c = join ? srv_.on_join(*this, room) : srv_.on_leave(*this, room);
    if (c != proto::code::ok) srv_.count_error(c);
    push_owned(proto::encode(proto::room_result_msg{room, c}, f.corr));
}

void session::send_error(proto::code c, std::string message, uint32_t corr) {
    srv_.count_error(c);
    push_owned(proto::encode(proto::error_msg{c, std::move(message)}, corr));
}

bool session::push_frame(const shared_frame& f) {
    size_t n = f->size();
    return push_item(out_item{f, {}}, n);
}

bool session::push_owned(std::string bytes) {
    size_t n = bytes.size();
    return push_item(out_item{nullptr, std::move(bytes)}, n);
}

bool session::push_item(out_item item, size_t size) {
    bool start = false;
    {
        std::lock_guard lk(qmu_);
        if (closing_.load(std::memory_order_relaxed) || finish_after_flush_) return false;
        uint64_t bound = max_outbound_.load(std::memory_order_relaxed);
        if (queued_bytes_ + size > bound) {
            // The client does not read fast enough; queuing more would grow without bound.
            closing_ = true;
            srv_.count_slow_consumer();
            spdlog::info("session {} ({}): outbound queue over {} bytes: closing as slow consumer",
                         id_, user_, bound);
            auto self = shared_from_this();
            asio::post(sock_.get_executor(), [self] { self->close_now(); });
            return false;
        }
        queued_bytes_ += size;
        queue_.push_back(std::move(item));
        if (!write_active_) write_active_ = start = true;
    }
    if (start) {
        auto self = shared_from_this();
        // Always deferred, even on our own strand: frames queued by the rest of this handler
        // (results of a batch of sends, more room copies) join the same gathered write.
        asio::post(sock_.get_executor(), [self] { self->start_write(); });
    }
    return true;
}

void session::finish(std::string last_frame) {
    bool start = false;
    {
        std::lock_guard lk(qmu_);
        if (finish_after_flush_ || closing_.load()) return;
        if (!last_frame.empty()) {
            queued_bytes_ += last_frame.size();
            queue_.push_back(out_item{nullptr, std::move(last_frame)});
        }
        finish_after_flush_ = true;
        if (!write_active_) write_active_ = start = true;
    }
    closing_ = true;  // stop handling input; the queue still flushes
    auto self = shared_from_this();
    asio::dispatch(sock_.get_executor(), [self, start] {
        if (start) self->start_write();
    });
}

void session::start_write() {
    {
        std::lock_guard lk(qmu_);
        writing_.swap(queue_);
        if (writing_.empty()) {
            write_active_ = false;
            if (!finish_after_flush_ || shut_down_) return;
        }
    }
    if (writing_.empty()) {
        // Everything is flushed and the session is finishing: half-close and linger for the
        // client's close so the last frame is not lost to a reset.
        shut_down_ = true;
        boost::system::error_code ec;
        sock_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        linger_until_ = std::chrono::steady_clock::now() + linger;
        arm_timer(linger_until_);
        return;
    }
    bufs_.clear();
    for (auto& it : writing_) {
        auto v = it.view();
        bufs_.emplace_back(v.data(), v.size());
    }
    write_started_ = std::chrono::steady_clock::now();
    srv_.count_write(writing_.size());
    auto self = shared_from_this();
    asio::async_write(sock_, bufs_,
                      [self](const boost::system::error_code& ec, size_t) { self->on_write(ec); });
}

void session::on_write(const boost::system::error_code& ec) {
    write_started_ = {};
    if (ec) {
        std::lock_guard lk(qmu_);
        closing_ = true;
        writing_.clear();
        queue_.clear();
        queued_bytes_ = 0;
        write_active_ = false;
    }
    if (ec) {
        close_now();
        return;
    }
    {
        std::lock_guard lk(qmu_);
        size_t n = 0;
        for (auto& it : writing_) n += it.view().size();
        queued_bytes_ -= n;
    }
    writing_.clear();
    start_write();
}

void session::close_now() {
    closing_ = true;
    boost::system::error_code ec;
    timer_.cancel();
    sock_.close(ec);  // the read loop sees the error and unregisters the session
}

void session::arm_timer(std::chrono::steady_clock::time_point at) {
    timer_.expires_at(at);
    auto self = shared_from_this();
    timer_.async_wait([self](const boost::system::error_code& ec) {
        if (!ec) self->on_timer();
    });
}

void session::on_timer() {
    auto now = std::chrono::steady_clock::now();
    if (shut_down_) {
        if (now >= linger_until_) return close_now();
        return arm_timer(linger_until_);
    }
    bool writing = write_started_ != std::chrono::steady_clock::time_point{};
    if (writing && now - write_started_ >= limits_->write_timeout) {
        srv_.count_slow_consumer();
        spdlog::info("session {} ({}): a write stalled for {} ms: closing as slow consumer", id_,
                     user_, limits_->write_timeout.count());
        return close_now();
    }
    if (closing_.load()) {
        // Finishing: start_write arms the linger timer once flushed; meanwhile watch the write.
        if (writing) arm_timer(write_started_ + limits_->write_timeout);
        return;
    }
    if (!logged_in_.load()) {
        if (now >= started_ + limits_->login_timeout) {
            srv_.count_login("login_timeout");
            send_error(proto::code::login_timeout, "no LOGIN within the login timeout", 0);
            return finish("");
        }
        return arm_timer(started_ + limits_->login_timeout);
    }
    auto idle_at = last_rx_ + limits_->idle_timeout;
    if (now >= idle_at) {
        srv_.count_idle_close();
        srv_.count_kick(proto::kick_reason::idle);
        return finish(proto::encode(
            proto::kick_msg{proto::kick_reason::idle, 0, "no frame within the idle timeout"}));
    }
    auto next = idle_at;
    if (write_started_ != std::chrono::steady_clock::time_point{})
        next = std::min(next, write_started_ + limits_->write_timeout);
    arm_timer(next);
}

}  // namespace imgate::gw
