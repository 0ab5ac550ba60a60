#include "gateway/session.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <climits>
#include <iterator>

#include "common/log_throttle.hpp"
#include "gateway/server.hpp"

namespace imgate::gw {

namespace {
// One read buffer per worker thread instead of per connection: idle sessions then cost no buffer.
thread_local char read_buf[64 * 1024];
// Input a decoder may have taken in before its emptied buffer is released: small frames keep
// reusing one small buffer, a large one does not stay allocated.
constexpr size_t decoder_keep_bytes = 4096;
// Input read and dropped by a finishing session before it is closed without waiting for the
// flush and the linger.
constexpr size_t max_discard_bytes = 256 * 1024;
// The outbound-queue locks, shared by sessions: held for a push or a swap, never nested.
struct alignas(64) padded_mutex {
    std::mutex m;
};
padded_mutex queue_locks[256];
steady_time clock_now() {
    return std::chrono::steady_clock::now();
}
// Adds n to a 32-bit byte count that stops at its maximum instead of wrapping.
void add_saturating(uint32_t& count, size_t n) {
    count = uint32_t(std::min<size_t>(size_t(count) + n, UINT32_MAX));
}
uint32_t micros32(steady_time t) {
    return uint32_t(
        std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count());
}
}  // namespace

// The gateway as this session's protocol sees it. Built on the stack for each event: two words,
// every call inlined into the protocol's.
struct session::gateway_port {
    session& s;

    bool serving() const { return s.srv_.state() == gateway_state::serving; }
    admission admit_login() {
        boost::system::error_code ec;
        auto remote = s.io_->socket().remote_endpoint(ec);
        // No address (the peer is already gone): only the gateway-wide bucket counts it.
        return s.srv_.admit_login(ec ? std::nullopt : std::optional(remote.address()));
    }
    uint32_t draw_hint(std::chrono::milliseconds base, std::chrono::milliseconds jitter) {
        return s.srv_.draw_hint(base, jitter);
    }
    void count_retry_hint(std::string_view reason) { s.srv_.count_retry_hint(reason); }
    jwt::verify_result verify_token(std::string_view token) { return s.srv_.verify_token(token); }
    bool register_session(std::string user, std::string device) {
        s.user_ = std::move(user);
        s.device_ = std::move(device);
        return s.srv_.on_login(s.shared_from_this());
    }
    const std::string& gateway_id() const { return s.srv_.self_id(); }
    void send(proto::send_msg& m, uint32_t corr) { s.srv_.on_send(s, m, corr); }
    void ack(uint64_t server_msg_id) { s.srv_.on_ack(s, server_msg_id); }
    proto::code join(const std::string& room) { return s.srv_.on_join(s, room); }
    proto::code leave(const std::string& room) { return s.srv_.on_leave(s, room); }
    void count_error(proto::code c) { s.srv_.count_error(c); }
    void count_login(const char* result) {
        s.srv_.count_login(result);
        if (std::string_view(result) != "ok") {
            boost::system::error_code ec;
            auto remote = s.io_->socket().remote_endpoint(ec);
            s.srv_.login_failed(result, ec ? std::string("unknown") : remote.address().to_string());
        }
    }
    void penalise_user(steady_time until) { s.srv_.penalise_user(s.user_, until); }
    std::optional<steady_time> penalty_until(std::string_view user, steady_time now) {
        return s.srv_.penalty_until(std::string(user), now);
    }
    void count_message(proto::target_kind k, proto::code c) { s.srv_.count_message(k, false, c); }
    void count_kick(proto::kick_reason r) { s.srv_.count_kick(r); }
    void count_idle_close() { s.srv_.count_idle_close(); }
    void count_slow_consumer() { s.srv_.count_slow_consumer(); }
    void count_rate_limited(proto::op o) { s.srv_.count_rate_limited(o); }
    void count_flood_close() {
        s.srv_.count_flood_close();
        IMGATE_LOG_THROTTLED(info, "session {} ({}): too many rate-limited requests: closing",
                             s.id_, s.user_);
    }
};

session::session(gateway_server& srv, std::unique_ptr<session_io> io, uint64_t id)
    : srv_(srv),
      id_(id),
      io_(std::move(io)),
      // "Long ago": the first write (LOGIN_RESULT) does not wait.
      last_write_us_(last_write_stamp(micros32(clock_now()) - 0x80000000u, 0)),
      proto_(srv.limits(limits_gen_), clock_now()) {
    // Before login only a LOGIN fits: an unauthenticated connection buffers at most that much.
    dec_.set_max_body(proto_.max_frame_body());
    io_->set_max_body(proto_.max_frame_body());
    max_outbound_ = proto_.limits().max_outbound_bytes;
}

session::~session() {
    // The wheel's driver, finding the last reference gone (pin_due null), unlinked it already or
    // waits for this.
    wheel().cancel(*this);
}

std::unique_ptr<session::outbound> session::new_outbound() {
    // Room for a typical burst up front: one allocation instead of five growth steps.
    auto o = std::make_unique<outbound>();
    o->queue.reserve(16);
    return o;
}

std::mutex& session::qmu() const {
    return queue_locks[id_ % std::size(queue_locks)].m;
}

void session::start() {
    boost::system::error_code ec;
    io_->socket().set_option(asio::ip::tcp::no_delay(true), ec);
    io_->socket().non_blocking(true, ec);
    auto self = shared_from_this();
    // Posted, never run inline in the accept loop: there, asio's per-thread recycling cache
    // holds the accept operation's block (336 bytes), and the session's first readiness wait
    // (160) would take it and keep it for as long as the session stays idle.
    asio::post(io_->executor(), [self] {
        self->carry_out(self->proto_.start());
        self->wait_readable();
    });
}

void session::refresh_limits(steady_time now) {
    if (limits_gen_ == srv_.limits_generation()) return;
    proto_.set_limits(srv_.limits(limits_gen_), now);
    dec_.set_max_body(proto_.max_frame_body());  // still the pre-login limit until LOGIN succeeds
    io_->set_max_body(proto_.max_frame_body());
    max_outbound_.store(proto_.limits().max_outbound_bytes, std::memory_order_relaxed);
}

void session::reset_decoder() {
    // Not `dec_ = frame_decoder(...)`: a std::string move-assigned a short (inline) string keeps
    // its old heap buffer. The swapped-out decoder frees it on leaving this scope.
    frame_decoder fresh(proto_.max_frame_body());
    std::swap(dec_, fresh);
    dec_fed_ = 0;
    io_->set_max_body(proto_.max_frame_body());
}

void session::wait_readable() {
    // A plain callback instead of a coroutine: an idle session then costs one small pending
    // wait operation rather than a coroutine frame and its awaitable thread.
    io_->wait_readable(shared_from_this());
}

void session::on_readable(const boost::system::error_code& wec) {
    if (wec) return on_read_end();
    gateway_port gw{*this};
    for (int reads = 0;; ++reads) {
        if (reads == 16) {
            // Fairness: let other sessions run, then carry on without waiting for a new edge
            // (data may still be buffered in the socket).
            auto self = shared_from_this();
            asio::post(io_->executor(), [self] { self->on_readable({}); });
            return;
        }
        boost::system::error_code ec;
        io_error violation = io_error::none;
        size_t n = io_->read_some(read_buf, sizeof read_buf, ec, violation);
        if (ec == asio::error::would_block || ec == asio::error::try_again) break;
        if (violation != io_error::none) {
            if (closing_.load()) return on_read_end();
            IMGATE_LOG_THROTTLED(info, "session {} ({}): {}: closing", id_, user_,
                                 to_string(violation));
            carry_out(proto_.on_transport_error(to_string(violation), gw));
            // Nothing more is read from a stream that broke the contract; the error frame is
            // flushed and the session closes.
            return;
        }
        if (ec) {
            if (ec != asio::error::eof && ec != asio::error::connection_reset &&
                ec != asio::error::operation_aborted && ec != asio::error::bad_descriptor)
                spdlog::debug("session {}: read: {}", id_, ec.message());
            return on_read_end();
        }
        if (closing_.load(std::memory_order_relaxed)) {
            // Draining input until close, so the last frame is not lost to a reset. A client
            // that keeps writing after being told to go (a flooder after its flood close) would
            // keep this loop busy for the whole linger: past a bound, once the last frame is
            // flushed and the send side shut down, it is closed at once.
            add_saturating(discarded_, n);
            if (discarded_ > max_discard_bytes && proto_.lingering())
                close_now();  // the next read fails: read end
            continue;
        }
        auto now = clock_now();
        proto_.on_input(now);
        refresh_limits(now);
        // Whole frames are decoded straight from read_buf; only a partial one is copied.
        std::string_view input(read_buf, n);
        add_saturating(dec_fed_, n);
        while (auto f = dec_.next(input)) {
            carry_out(proto_.on_frame(*f, now, gw));
            if (closing_.load(std::memory_order_relaxed)) break;
        }
        // read_buf is reused by the next read. A finishing session decodes nothing more: what
        // it read behind its last frame is not kept (its decoder was emptied by finish).
        if (!closing_.load(std::memory_order_relaxed)) dec_.keep(input);
        if (dec_.error() != frame_error::none && !closing_.load()) {
            IMGATE_LOG_THROTTLED(info, "session {} ({}): {}: closing", id_, user_,
                                 dec_.error() == frame_error::too_large
                                     ? "frame over " + std::to_string(dec_.max_body()) + " bytes"
                                     : std::string(to_string(dec_.error())));
            carry_out(proto_.on_framing_error(dec_.error(), gw));
        }
        // Nothing buffered: do not keep the capacity a large frame (or many small ones) left
        // behind; an idle session then holds no buffer. The limit stays what it was.
        if (dec_fed_ > decoder_keep_bytes && dec_.buffered() == 0 &&
            dec_.error() == frame_error::none) {
            reset_decoder();
        }
        // A short read emptied the socket: wait for the next edge instead of a read that
        // would only say would_block. Otherwise keep reading until the socket is empty.
        if (n < sizeof read_buf && io_->short_read_drains()) break;
    }
    wait_readable();
}

void session::note_close(std::string_view reason) {
    std::lock_guard lk(qmu());
    note_close_locked(reason);
}

void session::note_close_locked(std::string_view reason) {
    if (!close_reason_) close_reason_ = std::make_unique<std::string>(reason);
}

void session::note_close_frame(std::string_view bytes) {
    {
        std::lock_guard lk(qmu());
        if (close_reason_) return;
    }
    frame_decoder d(uint32_t(std::max<size_t>(bytes.size(), 1)));
    d.feed(bytes);
    auto f = d.next();
    std::string why = "closed";
    if (f && f->op == uint8_t(proto::op::kick)) {
        if (auto m = proto::decode<proto::kick_msg>(*f))
            why = std::string("kick:") + proto::to_string(m->reason);
    } else if (f && f->op == uint8_t(proto::op::redirect)) {
        if (auto m = proto::decode<proto::redirect_msg>(*f)) why = "redirect:" + m->reason;
    } else if (f && f->op == uint8_t(proto::op::error)) {
        if (auto m = proto::decode<proto::error_msg>(*f))
            why = std::string("error:") + proto::to_string(m->status);
    }
    note_close(why);
}

std::string session::close_reason() const {
    std::lock_guard lk(qmu());
    return close_reason_ ? *close_reason_ : std::string("client_closed");
}

std::string session::remote_address() const {
    boost::system::error_code ec;
    auto ep = io_->socket().remote_endpoint(ec);
    return ec ? std::string() : ep.address().to_string();
}

void session::on_read_end() {
    carry_out(session_protocol::on_read_end());
    srv_.on_closed(*this);
}

void session::carry_out(session_actions&& a) {
    // Why the session ends: its last frame, or the reply it finishes after (an ERROR).
    if (a.finish) note_close_frame(a.last_frame.empty() ? a.reply : a.last_frame);
    if (a.close == close_cause::write_stalled || a.close == close_cause::queue_over_bound)
        note_close("slow_consumer");
    if (!a.reply.empty()) push_owned(std::move(a.reply));
    if (a.finish) {
        finish(std::move(a.last_frame));
        // No frame is decoded any more: release the input held (a partial frame kept until the
        // login deadline, the rest of a read behind a refused header) now, not after the linger.
        reset_decoder();
    }
    if (a.shutdown_send) io_->shutdown_send(shared_from_this());
    if (a.close != close_cause::none) {
        if (a.close == close_cause::write_stalled)
            spdlog::info("session {} ({}): a write stalled for {} ms: closing as slow consumer",
                         id_, user_, proto_.limits().write_timeout.count());
        return close_now();
    }
    if (a.shrink_decoder) {
        // Logged in: the limit rises now, also for frames pipelined behind the LOGIN. The token
        // made the buffer grow; an idle session should not keep that capacity.
        if (dec_.buffered() == 0) {
            reset_decoder();
        } else {
            dec_.set_max_body(proto_.max_frame_body());
            io_->set_max_body(proto_.max_frame_body());
        }
    }
    if (a.deadline != steady_time{}) arm_timer(a.deadline);
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
        std::lock_guard lk(qmu());
        if (closing_.load(std::memory_order_relaxed) || finish_after_flush_) return false;
        uint64_t bound = max_outbound_.load(std::memory_order_relaxed);
        if (queued_bytes_ + size > bound) {
            closing_ = true;
            note_close_locked("slow_consumer");
            gateway_port gw{*this};
            session_protocol::on_queue_overflow(gw);  // its only action: close, posted below
            spdlog::info("session {} ({}): outbound queue over {} bytes: closing as slow consumer",
                         id_, user_, bound);
            auto self = shared_from_this();
            asio::post(io_->executor(), [self] { self->close_now(); });
            return false;
        }
        queued_bytes_ += size;
        if (!out_) out_ = new_outbound();
        out_->queue.push_back(std::move(item));
        if (!write_active_) write_active_ = start = true;
    }
    if (start) {
        auto self = shared_from_this();
        auto& coalescer = srv_.coalescer();
        auto delay_us = uint32_t(coalescer.delay().count());
        // The clock is read only when there is a delay to keep (one vDSO call per burst).
        if (delay_us > 0 && write_waits(micros32(clock_now()),
                                        last_write_us_.load(std::memory_order_relaxed), delay_us)) {
            // A busy session: frames queued until the next flush (more deliveries, the results
            // of a burst of sends, more room copies) join the same socket write, however the
            // reads fell.
            srv_.count_write_start(true);
            coalescer.schedule(std::move(self));
        } else {
            // Quiet (or write_coalesce 0): deferred even on our own strand, so frames queued by
            // the rest of this handler join.
            srv_.count_write_start(false);
            asio::post(io_->executor(), [self] { self->start_write(); });
        }
    }
    return true;
}

void session::flush_scheduled() {
    auto self = shared_from_this();
    asio::dispatch(io_->executor(), [self] { self->start_write(); });
}

void session::finish(std::string last_frame) {
    note_close_frame(last_frame);
    bool start = false;
    {
        std::lock_guard lk(qmu());
        if (finish_after_flush_ || closing_.load()) return;
        if (!last_frame.empty()) {
            queued_bytes_ += last_frame.size();
            if (!out_) out_ = new_outbound();
            out_->queue.push_back(out_item{nullptr, std::move(last_frame)});
        }
        finish_after_flush_ = true;
        if (!write_active_) write_active_ = start = true;
    }
    closing_ = true;  // stop handling input; the queue still flushes
    auto self = shared_from_this();
    asio::dispatch(io_->executor(), [self, start] {
        if (start) self->start_write();
    });
}

void session::start_write() {
    bool flushed_to_finish = false;
    outbound* out = nullptr;
    {
        std::lock_guard lk(qmu());
        if (out_) out_->writing.swap(out_->queue);
        if (out_ && !out_->writing.empty()) {
            out = out_.get();  // stays until on_write: only this strand frees it
        } else {
            write_active_ = false;
            // Nothing left to write: an idle session keeps no queue (the next burst allocates
            // again: a few mallocs per write, not per frame).
            out_.reset();
            flushed_to_finish = finish_after_flush_;
        }
    }
    if (!out) {
        if (!flushed_to_finish) return;
        return carry_out(proto_.on_flushed(clock_now()));
    }
    out->bufs.clear();
    out->bufs.reserve(out->writing.size());
    for (auto& it : out->writing) {
        auto v = it.view();
        out->bufs.emplace_back(v.data(), v.size());
    }
    auto now = clock_now();
    proto_.on_write_started(now);
    last_write_us_.store(last_write_stamp(micros32(now), out->writing.size()),
                         std::memory_order_relaxed);
    srv_.count_write(out->writing.size());
    io_->write(out->bufs, shared_from_this());
}

void session::on_write(const boost::system::error_code& ec) {
    proto_.on_write_done();
    if (ec) {
        {
            std::lock_guard lk(qmu());
            note_close_locked("connection_lost");
            closing_ = true;
            out_.reset();
            queued_bytes_ = 0;
            write_active_ = false;
        }
        close_now();
        return;
    }
    {
        std::lock_guard lk(qmu());
        size_t n = 0;
        for (auto& it : out_->writing) n += it.view().size();
        queued_bytes_ -= n;
        out_->writing.clear();
    }
    start_write();
}

void session::close_now() {
    closing_ = true;
    wheel().cancel(*this);
    io_->close();  // the read loop sees the error and unregisters the session
}

void session::arm_timer(steady_time at) {
    wheel().schedule(*this, at);
}

void session::on_due() {
    auto self = shared_from_this();
    asio::post(io_->executor(), [self] { self->on_timer(); });
}

void session::on_timer() {
    gateway_port gw{*this};
    carry_out(proto_.on_deadline(clock_now(), closing_.load(), gw));
}

}  // namespace imgate::gw
