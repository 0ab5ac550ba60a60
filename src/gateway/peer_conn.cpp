#include "gateway/peer_conn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "common/awaitable.hpp"
#include "common/bytes.hpp"
#include "common/daemon.hpp"

namespace imgate::gw {

namespace {

using error_code = boost::system::error_code;

// Before the handshake a read never needs more than a few handshake frames; after it, reads are
// large enough to take a big frame in few system calls.
constexpr size_t handshake_read_size = 4 * (frame_header_size + rpc::max_handshake_body);
constexpr size_t link_read_size = 64 * 1024;
// A decoder (or writer) buffer that grew past this for one large frame is released once the
// frame is gone, so an idle link does not pin the memory of its largest frame.
constexpr size_t keep_capacity = 64 * 1024;

}  // namespace

peer_conn::peer_conn(const cluster_strand& s, uint64_t max_queue)
    : strand_(s),
      sock_(s),
      wake_(s),
      dog_(s),
      read_buf_(handshake_read_size, '\0'),
      max_queue_(max_queue) {}

peer_conn::peer_conn(const cluster_strand& s, tcp::socket sock, uint64_t max_queue)
    : strand_(s),
      sock_(std::move(sock)),
      wake_(s),
      dog_(s),
      read_buf_(handshake_read_size, '\0'),
      max_queue_(max_queue) {}

void peer_conn::set_authenticated() {
    dec_.set_max_body(rpc::max_body);
    read_buf_.assign(link_read_size, '\0');
}

asio::awaitable<error_code> peer_conn::connect(const tcp::endpoint& ep) {
    auto [ec] = co_await sock_.async_connect(ep, use_tuple);
    co_return ec;
}

void peer_conn::set_no_delay() {
    error_code ec;
    sock_.set_option(tcp::no_delay(true), ec);
}

std::string peer_conn::remote_address() const {
    error_code ec;
    auto remote = sock_.remote_endpoint(ec);
    return ec ? std::string("?") : remote.address().to_string();
}

bool peer_conn::send(std::string_view bytes, bool bounded) {
    if (closed_) return false;
    bool was_empty = pending_.empty();
    pending_.append(bytes);
    return after_append(was_empty, bounded);
}

bool peer_conn::send_with_corr(std::string_view bytes, uint32_t corr) {
    if (closed_) return false;
    bool was_empty = pending_.empty();
    size_t at = pending_.size();
    pending_.append(bytes);
    std::string c;
    byte_writer cw(c);
    cw.u32(corr);
    pending_.replace(at + 8, 4, c);  // the header's correlation id (docs/protocol.md)
    return after_append(was_empty, true);
}

bool peer_conn::after_append(bool was_empty, bool bounded) {
    write_seen_ = true;
    if (bounded && pending_.size() > max_queue_) {
        // Its calls then fail with unavailable; a reconnect resynchronises with a snapshot.
        overflowed_ = true;
        close("slow consumer (cluster_rpc.max_queue_bytes)");
        return false;
    }
    if (was_empty && !in_write_) wake_.cancel();
    return true;
}

void peer_conn::close(std::string_view why) {
    if (!closed_ && end_reason_.empty()) end_reason_ = why;
    close();
}

void peer_conn::close() {
    if (closed_) return;
    closed_ = true;
    error_code ec;
    sock_.close(ec);
    wake_.cancel();
    dog_.cancel();
}

void peer_conn::close_when_flushed() {
    if (pending_.empty() && !in_write_)
        close();
    else
        close_after_flush_ = true;
}

void peer_conn::start_writer() {
    imgate::spawn(strand_, run_writer(shared_from_this()), "rpc writer");
}

void peer_conn::start_watchdog(const rpc_config& cfg, bool pinger, counter& read_timeouts,
                               counter& write_stalls) {
    rpc::link_liveness live(cfg.ping_interval, cfg.peer_timeout, pinger,
                            std::chrono::steady_clock::now());
    auto tick = rpc::link_liveness::tick(cfg.ping_interval, cfg.peer_timeout);
    imgate::spawn(strand_,
                  run_watchdog(shared_from_this(), live, tick, read_timeouts, write_stalls),
                  "rpc watchdog");
}

asio::awaitable<read_end> peer_conn::read_frames(const std::function<verdict(frame&)>& h) {
    auto keep = shared_from_this();
    while (!closed_) {
        while (auto f = dec_.next()) {
            if (f->body.size() > keep_capacity) large_frame_held_ = true;
            auto v = h(*f);
            if (v == verdict::reject) co_return read_end::rejected;
            if (v == verdict::stop) co_return read_end::stopped;
            if (closed_) co_return read_end::closed;
        }
        if (dec_.error() != frame_error::none) co_return read_end::bad_frame;
        if (large_frame_held_ && dec_.buffered() == 0) {
            // Nothing is pending, so a fresh decoder loses nothing and frees the capacity the
            // large frame left behind (erasing consumed bytes keeps it).
            dec_ = frame_decoder(dec_.max_body(), rpc_protocol_version);
            large_frame_held_ = false;
        }
        auto [ec, n] = co_await sock_.async_read_some(asio::buffer(read_buf_), use_tuple);
        if (ec) {
            if (ec == asio::error::eof && !closed_) {
                closed_by_peer_ = true;
                close("closed by the peer");
            } else {
                close("read failed: " + ec.message());  // noted only if nothing closed it first
            }
            co_return read_end::closed;
        }
        read_seen_ = true;
        dec_.feed(std::string_view(read_buf_.data(), n));
    }
    co_return read_end::closed;
}

asio::awaitable<void> peer_conn::run_writer(std::shared_ptr<peer_conn> c) {
    while (!c->closed_) {
        if (c->pending_.empty()) {
            if (c->close_after_flush_) {
                c->close();
                break;
            }
            c->wake_.expires_at(std::chrono::steady_clock::time_point::max());
            co_await c->wake_.async_wait(use_tuple);
            continue;
        }
        c->writing_.clear();
        c->writing_.swap(c->pending_);
        c->in_write_ = true;
        c->write_started_ = std::chrono::steady_clock::now();
        auto [ec, n] = co_await asio::async_write(c->sock_, asio::buffer(c->writing_), use_tuple);
        c->in_write_ = false;
        if (ec) {
            c->close("write failed: " + ec.message());
            break;
        }
        // A snapshot or a large forward must not stay pinned by an idle link.
        if (c->writing_.capacity() > keep_capacity) std::string().swap(c->writing_);
    }
}

asio::awaitable<void> peer_conn::run_watchdog(std::shared_ptr<peer_conn> c, rpc::link_liveness live,
                                              std::chrono::milliseconds tick,
                                              counter& read_timeouts, counter& write_stalls) {
    using action = rpc::link_liveness::action;
    while (!c->closed_) {
        c->dog_.expires_after(tick);
        co_await c->dog_.async_wait(use_tuple);
        if (c->closed_) break;
        std::optional<std::chrono::steady_clock::time_point> started;
        if (c->in_write_) started = c->write_started_;
        auto a = live.on_tick(std::chrono::steady_clock::now(), std::exchange(c->read_seen_, false),
                              std::exchange(c->write_seen_, false), started);
        if (a == action::close_read_timeout || a == action::close_write_stall) {
            bool read = a == action::close_read_timeout;
            (read ? read_timeouts : write_stalls).inc();
            c->close(read ? "nothing read for peer_timeout" : "a write stuck for peer_timeout");
            break;
        }
        if (a == action::ping) {
            c->send_msg(rpc::ping_msg{});
            c->write_seen_ = false;  // the ping is already this tick's write
        }
    }
}

const char* handshake_outcome::failure_reason(bool timed_out) const {
    return last.st == rpc::hs_step::state::failed ? rpc::to_string(last.error)
           : end == read_end::bad_frame           ? "bad_frame"
           : timed_out                            ? "timeout"
                                                  : "closed";
}

}  // namespace imgate::gw
