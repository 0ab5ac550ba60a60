#include "gateway/session_io.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <sys/socket.h>
#include <sys/uio.h>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <array>
#include <climits>
#include <cstring>

#include "common/awaitable.hpp"
#include "common/tls.hpp"
#include "gateway/session.hpp"

namespace imgate::gw {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using boost::system::error_code;

namespace {

constexpr size_t frame_header_bytes = 12;

// Plain new/delete of exactly the size asked for. The readiness wait of an idle session is
// pending for as long as it stays idle; with asio's default (recycling) allocator it would take
// whatever larger block the thread's cache held (an accept, a write), so an idle session's
// memory would depend on what ran before its wait.
template <class T>
struct exact_allocator {
    using value_type = T;
    exact_allocator() = default;
    template <class U>
    exact_allocator(const exact_allocator<U>&) noexcept {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
    void deallocate(T* p, size_t) noexcept { ::operator delete(p); }
    template <class U>
    bool operator==(const exact_allocator<U>&) const noexcept {
        return true;
    }
};

// The completion of a session's readiness wait. Its own allocator_type rather than
// asio::bind_allocator, whose wrapper makes the pending operation 208 bytes instead of 144.
struct readable_handler {
    std::shared_ptr<session> s;
    using allocator_type = exact_allocator<void>;
    allocator_type get_allocator() const noexcept { return {}; }
    void operator()(const error_code& ec) const { s->on_readable(ec); }
};

// --- tcp ---------------------------------------------------------------------------------------

// Owns a plain TCP socket: readiness reads straight from the socket, gathered writes.
class tcp_io final : public session_io {
  public:
    explicit tcp_io(asio::ip::tcp::socket sock) : sock_(std::move(sock)) {}
    transport kind() const override { return transport::tcp; }
    asio::ip::tcp::socket& socket() override { return sock_; }
    void wait_readable(std::shared_ptr<session> s) override {
        sock_.async_wait(asio::ip::tcp::socket::wait_read, readable_handler{std::move(s)});
    }
    size_t read_some(char* buf, size_t len, error_code& ec, io_error&) override {
        return sock_.read_some(asio::buffer(buf, len), ec);
    }
    bool short_read_drains() const override { return true; }
    void write(const std::vector<asio::const_buffer>& bufs, std::shared_ptr<session> s) override {
        // Straight sendmsg calls of up to max_iov frames each: Asio's gathered write passes at
        // most 16 buffers a call, so a batch of 20 small frames would take two system calls.
        size_t first = 0, skip = 0;  // the first buffer not fully sent, and its bytes sent
        while (first < bufs.size()) {
            std::array<iovec, max_iov> iov;
            size_t n = 0;
            for (size_t i = first; i < bufs.size() && n < max_iov; ++i, ++n) {
                size_t off = i == first ? skip : 0;
                iov[n].iov_base = const_cast<char*>(static_cast<const char*>(bufs[i].data()) + off);
                iov[n].iov_len = bufs[i].size() - off;
            }
            msghdr msg{};
            msg.msg_iov = iov.data();
            msg.msg_iovlen = n;
            ssize_t sent = ::sendmsg(sock_.native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (sent < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                error_code ec(errno, boost::system::system_category());
                asio::post(sock_.get_executor(), [s = std::move(s), ec] { s->on_write(ec); });
                return;
            }
            for (size_t left = size_t(sent); first < bufs.size();) {
                size_t avail = bufs[first].size() - skip;
                if (left < avail) {
                    skip += left;
                    break;
                }
                left -= avail;
                ++first;
                skip = 0;
            }
        }
        if (first == bufs.size()) {
            // Completed, but never inline: the session is still inside start_write.
            asio::post(sock_.get_executor(), [s = std::move(s)] { s->on_write({}); });
            return;
        }
        // The socket's buffer is full (a slow reader): the rest waits for room the usual way.
        rest_.assign(bufs.begin() + std::ptrdiff_t(first), bufs.end());
        rest_.front() += skip;
        auto done = [this, s = std::move(s)](const error_code& ec, size_t) {
            std::vector<asio::const_buffer>().swap(rest_);  // an idle session holds no list
            s->on_write(ec);
        };
        asio::async_write(sock_, rest_, std::move(done));
    }
    void shutdown_send(std::shared_ptr<session>) override {
        error_code ec;
        sock_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    }

  private:
    static constexpr size_t max_iov = 256;
    asio::ip::tcp::socket sock_;
    std::vector<asio::const_buffer> rest_;  // what sendmsg could not take, while it is written
};

// --- tls ---------------------------------------------------------------------------------------

error_code ssl_error_code(int ssl_err) {
    if (ssl_err == SSL_ERROR_ZERO_RETURN) return asio::error::eof;
    if (ssl_err == SSL_ERROR_SYSCALL) {
        if (errno != 0) return error_code(errno, boost::system::system_category());
        return asio::error::eof;  // the peer closed without close_notify
    }
    unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    return e ? error_code(int(e), asio::error::get_ssl_category())
             : error_code(asio::ssl::error::stream_truncated);
}

// Owns the TCP socket and one OpenSSL SSL object driven directly on the non-blocking socket
// (no asio::ssl::stream: its two 17 KiB record buffers per connection would dominate an idle
// session). With SSL_MODE_RELEASE_BUFFERS an idle session holds no record buffer at all.
class tls_io final : public session_io {
  public:
    tls_io(asio::ip::tcp::socket sock, std::shared_ptr<asio::ssl::context> ctx)
        : sock_(std::move(sock)), ctx_(std::move(ctx)), ssl_(SSL_new(ctx_->native_handle())) {
        if (ssl_) {
            SSL_set_fd(ssl_, int(sock_.native_handle()));
            SSL_set_accept_state(ssl_);
        }
    }
    ~tls_io() override {
        if (ssl_) SSL_free(ssl_);
    }
    transport kind() const override { return transport::tls; }
    asio::ip::tcp::socket& socket() override { return sock_; }

    // The server side of the TLS handshake; false with a one-line error.
    asio::awaitable<bool> handshake(std::string& error) {
        if (!ssl_) {
            error = openssl_errors("SSL_new failed");
            co_return false;
        }
        error_code ec;
        sock_.non_blocking(true, ec);
        for (;;) {
            ERR_clear_error();
            int r = SSL_do_handshake(ssl_);
            if (r == 1) co_return true;
            int e = SSL_get_error(ssl_, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                auto [wec] = co_await sock_.async_wait(e == SSL_ERROR_WANT_READ
                                                           ? asio::ip::tcp::socket::wait_read
                                                           : asio::ip::tcp::socket::wait_write,
                                                       use_tuple);
                if (wec) {
                    error = wec.message();
                    co_return false;
                }
                continue;
            }
            error = e == SSL_ERROR_SYSCALL && errno == 0
                        ? std::string("the client closed during the handshake")
                        : openssl_errors("TLS handshake failed");
            co_return false;
        }
    }

    void wait_readable(std::shared_ptr<session> s) override {
        // Plaintext of a record already decrypted (more than the last read took) stays inside
        // the SSL object; the socket would not wake us for it.
        if (SSL_pending(ssl_) > 0) {
            asio::post(sock_.get_executor(), [s = std::move(s)] { s->on_readable({}); });
            return;
        }
        sock_.async_wait(read_wants_write_ ? asio::ip::tcp::socket::wait_write
                                           : asio::ip::tcp::socket::wait_read,
                         readable_handler{std::move(s)});
    }

    size_t read_some(char* buf, size_t len, error_code& ec, io_error&) override {
        ERR_clear_error();
        int r = SSL_read(ssl_, buf, int(std::min<size_t>(len, INT_MAX)));
        if (r > 0) {
            read_wants_write_ = false;
            ec = {};
            return size_t(r);
        }
        int e = SSL_get_error(ssl_, r);
        read_wants_write_ = e == SSL_ERROR_WANT_WRITE;
        ec = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE
                 ? error_code(asio::error::would_block)
                 : ssl_error_code(e);
        return 0;
    }

    void write(const std::vector<asio::const_buffer>& bufs, std::shared_ptr<session> s) override {
        // TLS has no gathered write: one frame is written in place, several are joined so they
        // share records (a record per frame would cost a MAC and a header each).
        if (bufs.size() == 1) {
            wdata_ = static_cast<const char*>(bufs[0].data());
            wsize_ = bufs[0].size();
        } else {
            size_t total = 0;
            for (const auto& b : bufs) total += b.size();
            wbuf_.clear();
            wbuf_.reserve(total);
            for (const auto& b : bufs) wbuf_.append(static_cast<const char*>(b.data()), b.size());
            wdata_ = wbuf_.data();
            wsize_ = wbuf_.size();
        }
        woff_ = 0;
        continue_write(std::move(s));
    }

    void shutdown_send(std::shared_ptr<session>) override {
        // Best effort close_notify; a full socket buffer just means the peer sees the TCP FIN.
        ERR_clear_error();
        SSL_shutdown(ssl_);
        ERR_clear_error();
        error_code ec;
        sock_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    }

  private:
    void continue_write(std::shared_ptr<session> s) {
        while (woff_ < wsize_) {
            ERR_clear_error();
            int r = SSL_write(ssl_, wdata_ + woff_, int(std::min<size_t>(wsize_ - woff_, INT_MAX)));
            if (r > 0) {
                woff_ += size_t(r);
                continue;
            }
            int e = SSL_get_error(ssl_, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                auto w = e == SSL_ERROR_WANT_WRITE ? asio::ip::tcp::socket::wait_write
                                                   : asio::ip::tcp::socket::wait_read;
                sock_.async_wait(w, [this, s](const error_code& ec) {
                    if (ec) return end_write(s, ec);
                    continue_write(s);
                });
                return;
            }
            return end_write(std::move(s), ssl_error_code(e));
        }
        end_write(std::move(s), {});
    }
    void end_write(std::shared_ptr<session> s, error_code ec) {
        // An idle session keeps no copy of what it wrote.
        std::string().swap(wbuf_);
        wdata_ = nullptr;
        wsize_ = woff_ = 0;
        s->on_write(ec);
    }

    asio::ip::tcp::socket sock_;
    std::shared_ptr<asio::ssl::context> ctx_;  // the context this connection started with
    SSL* ssl_;
    bool read_wants_write_ = false;
    std::string wbuf_;
    const char* wdata_ = nullptr;
    size_t wsize_ = 0;
    size_t woff_ = 0;
};

// --- ws / wss ----------------------------------------------------------------------------------

uint32_t be32(const unsigned char* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

// Owns a Beast WebSocket stream over Next (a TCP socket, or TLS over one) and the message being
// read. Each binary message must be exactly one protocol frame; it is handed to the session's
// decoder as it is, so everything after the transport is shared with tcp.
template <class Next>
class ws_io final : public session_io {
  public:
    template <class... Args>
    explicit ws_io(transport kind, Args&&... args)
        : kind_(kind), ws_(std::forward<Args>(args)...) {}
    transport kind() const override { return kind_; }
    asio::ip::tcp::socket& socket() override { return beast::get_lowest_layer(ws_); }
    websocket::stream<Next>& stream() { return ws_; }

    // The HTTP upgrade (after the TLS handshake for wss). result: ok | failed | not_websocket.
    asio::awaitable<bool> accept(const handshake_options& opts, std::string& error,
                                 const char*& result) {
        beast::flat_buffer buf;
        http::request_parser<http::empty_body> parser;
        parser.header_limit(opts.header_limit);
        parser.body_limit(0);
        auto [ec, n] = co_await http::async_read(ws_.next_layer(), buf, parser, use_tuple);
        if (ec) {
            error = "upgrade request: " + ec.message();
            result = "failed";
            co_return false;
        }
        if (!websocket::is_upgrade(parser.get())) {
            // A browser or curl pointed at the wrong port gets an answer, not a silent close.
            http::response<http::string_body> res{http::status::upgrade_required, 11};
            res.set(http::field::server, "imgate");
            res.set(http::field::upgrade, "websocket");
            res.set(http::field::connection, "close");
            res.set(http::field::content_type, "text/plain");
            res.body() = "this port speaks WebSocket only (docs/protocol.md, Transports)\n";
            res.prepare_payload();
            co_await http::async_write(ws_.next_layer(), res, use_tuple);
            error = "not a WebSocket upgrade request";
            result = "not_websocket";
            co_return false;
        }
        if (buf.size() != 0) {
            error = "data sent before the WebSocket handshake completed";
            result = "failed";
            co_return false;
        }
        ws_.set_option(websocket::stream_base::decorator(
            [](websocket::response_type& r) { r.set(http::field::server, "imgate"); }));
        // The session's login, heartbeat and write deadlines govern the connection from here.
        ws_.set_option(websocket::stream_base::timeout{websocket::stream_base::none(),
                                                       websocket::stream_base::none(), false});
        ws_.binary(true);
        ws_.auto_fragment(false);
        ws_.read_message_max(opts.max_prelogin_body + frame_header_bytes);
        auto [aec] = co_await ws_.async_accept(parser.get(), use_tuple);
        if (aec) {
            error = "WebSocket handshake: " + aec.message();
            result = "failed";
            co_return false;
        }
        co_return true;
    }

    void wait_readable(std::shared_ptr<session> s) override {
        ws_.async_read(msg_, [this, s = std::move(s)](const error_code& ec, size_t) {
            if (ec) return s->on_readable(ec);
            if (!ws_.got_binary()) {
                violation_ = io_error::text_message;
            } else if (msg_.size() < frame_header_bytes ||
                       frame_header_bytes +
                               be32(static_cast<const unsigned char*>(msg_.data().data())) !=
                           msg_.size()) {
                violation_ = io_error::message_not_one_frame;
            }
            s->on_readable({});
        });
    }

    size_t read_some(char* buf, size_t len, error_code& ec, io_error& violation) override {
        if (violation_ != io_error::none) {
            violation = violation_;
            ec = asio::error::invalid_argument;
            return 0;
        }
        size_t left = msg_.size() - off_;
        if (left == 0) {
            msg_.consume(msg_.size());
            off_ = 0;
            // A large message does not leave its capacity behind on an idle session.
            if (msg_.capacity() > 4096) msg_ = beast::flat_buffer();
            ec = asio::error::would_block;
            return 0;
        }
        size_t n = std::min(left, len);
        std::memcpy(buf, static_cast<const char*>(msg_.data().data()) + off_, n);
        off_ += n;
        ec = {};
        return n;
    }

    void write(const std::vector<asio::const_buffer>& bufs, std::shared_ptr<session> s) override {
        wbufs_ = &bufs;
        windex_ = 0;
        write_next(std::move(s));
    }

    void shutdown_send(std::shared_ptr<session> s) override {
        ws_.async_close(websocket::close_code::normal, [s = std::move(s)](const error_code&) {});
    }

    void set_max_body(size_t n) override { ws_.read_message_max(n + frame_header_bytes); }

  private:
    void write_next(std::shared_ptr<session> s) {
        if (windex_ == wbufs_->size()) return s->on_write({});
        auto b = (*wbufs_)[windex_++];
        ws_.async_write(b, [this, s = std::move(s)](const error_code& ec, size_t) mutable {
            if (ec) return s->on_write(ec);
            write_next(std::move(s));
        });
    }

    transport kind_;
    websocket::stream<Next> ws_;
    beast::flat_buffer msg_;
    size_t off_ = 0;
    io_error violation_ = io_error::none;
    const std::vector<asio::const_buffer>* wbufs_ = nullptr;
    size_t windex_ = 0;
};

using ws_tcp_io = ws_io<asio::ip::tcp::socket>;
using ws_tls_io = ws_io<asio::ssl::stream<asio::ip::tcp::socket>>;

// Closes the socket when the handshake deadline passes. Shared with the timer's handler, which
// may run after the handshake coroutine is gone; everything runs on the socket's strand.
struct deadline_guard {
    asio::ip::tcp::socket* sock = nullptr;
    bool fired = false;
};

}  // namespace

const char* to_string(io_error e) {
    switch (e) {
        case io_error::none:
            return "none";
        case io_error::message_not_one_frame:
            return "a WebSocket message must carry exactly one frame";
        case io_error::text_message:
            return "WebSocket text messages are not accepted: send binary messages";
    }
    return "?";
}

std::unique_ptr<session_io> make_tcp_io(asio::ip::tcp::socket sock) {
    return std::make_unique<tcp_io>(std::move(sock));
}

asio::awaitable<handshake_result> server_handshake(transport t, asio::ip::tcp::socket sock,
                                                   std::shared_ptr<asio::ssl::context> ctx,
                                                   handshake_options opts) {
    handshake_result out;
    if (t == transport::tcp) {
        out.io = make_tcp_io(std::move(sock));
        co_return out;
    }
    auto ex = sock.get_executor();
    std::unique_ptr<session_io> io;
    if (t == transport::tls) {
        io = std::make_unique<tls_io>(std::move(sock), ctx);
    } else if (t == transport::ws) {
        io = std::make_unique<ws_tcp_io>(t, std::move(sock));
    } else {
        io = std::make_unique<ws_tls_io>(t, std::move(sock), *ctx);
    }
    auto guard = std::make_shared<deadline_guard>();
    guard->sock = &io->socket();
    asio::steady_timer timer(ex, opts.timeout);
    timer.async_wait([guard](const error_code& ec) {
        if (ec || !guard->sock) return;
        guard->fired = true;
        error_code ignored;
        guard->sock->close(ignored);
    });
    bool ok = false;
    if (t == transport::tls) {
        ok = co_await static_cast<tls_io&>(*io).handshake(out.error);
        if (!ok) out.result = "failed";
    } else if (t == transport::ws) {
        ok = co_await static_cast<ws_tcp_io&>(*io).accept(opts, out.error, out.result);
    } else {
        auto& w = static_cast<ws_tls_io&>(*io);
        auto [ec] = co_await w.stream().next_layer().async_handshake(asio::ssl::stream_base::server,
                                                                     use_tuple);
        if (ec) {
            out.error = "TLS handshake: " + ec.message();
            out.result = "failed";
        } else {
            ok = co_await w.accept(opts, out.error, out.result);
        }
    }
    guard->sock = nullptr;
    timer.cancel();
    if (guard->fired) {
        out.result = "timeout";
        out.error = "no handshake within " + std::to_string(opts.timeout.count()) + " ms";
        co_return out;
    }
    if (ok) out.io = std::move(io);
    co_return out;
}

}  // namespace imgate::gw
