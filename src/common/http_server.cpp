#include "common/http_server.hpp"

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <limits>
#include <optional>

#include "common/awaitable.hpp"
#include "common/daemon.hpp"
#include "common/fingerprint.hpp"
#include "common/log_throttle.hpp"

namespace imgate {

namespace {
constexpr int64_t no_deadline = std::numeric_limits<int64_t>::max();

// A socket taken over from accept4(SOCK_NONBLOCK | SOCK_CLOEXEC). Asio's own accept() returns a
// blocking descriptor (one ioctl(FIONBIO) more per connection) and marks it as possibly shared
// with another descriptor (one epoll_ctl(DEL) more before its close()); neither is true of a
// descriptor accept4() has just created non-blocking, and Asio keeps both facts in the socket's
// state bits, which only a derived class can reach.
class accepted_socket
    : public asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type> {
  public:
    using basic_stream_socket::basic_stream_socket;
    void adopt(const asio::ip::tcp& protocol, int fd, boost::system::error_code& ec) {
        assign(protocol, fd, ec);
        if (ec) {
            ::close(fd);
            return;
        }
        namespace ops = asio::detail::socket_ops;
        auto& state = impl_.get_implementation().state_;
        state |= ops::user_set_non_blocking | ops::internal_non_blocking;
        state &= ~ops::possible_dup;
    }
};

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

bool is_token_char(unsigned char c) {
    // RFC 9110 tchar.
    if (std::isalnum(c)) return true;
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~':
            return true;
        default:
            return false;
    }
}

bool header_ok(const std::string& name, const std::string& value) {
    if (name.empty()) return false;
    for (unsigned char c : name)
        if (!is_token_char(c)) return false;
    for (unsigned char c : value)
        if (c == '\r' || c == '\n' || c == '\0') return false;
    return true;
}

void append_number(std::string& out, uint64_t v) {
    char buf[24];
    auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, p);
}
}  // namespace

void serialize_response(std::string& out, const http_response& r, unsigned version, bool keep_alive,
                        size_t* dropped) {
    auto code = static_cast<unsigned>(r.status);
    out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    append_number(out, code);
    out += ' ';
    auto reason = http::obsolete_reason(r.status);
    out.append(reason.data(), reason.size());
    out += "\r\nServer: imgate\r\nContent-Type: ";
    out += r.content_type;
    out += "\r\nCache-Control: no-store\r\n";
    for (auto& [k, v] : r.headers) {
        if (!header_ok(k, v)) {
            if (dropped) ++*dropped;
            continue;
        }
        out += k;
        out += ": ";
        out += v;
        out += "\r\n";
    }
    out += "Content-Length: ";
    append_number(out, r.body.size());
    out += "\r\n";
    // HTTP/1.1 keeps alive unless told; HTTP/1.0 closes unless told.
    if (version >= 11 && !keep_alive) out += "Connection: close\r\n";
    if (version < 11 && keep_alive) out += "Connection: keep-alive\r\n";
    out += "\r\n";
    out += r.body;
}

// One accepted connection. Owns its socket (or, on a TLS server, the TLS stream around it and the
// context it handshook with), read buffer, parser and the bytes of the response in flight.
// Exactly one operation (handshake, read, handler or write) is pending at a time, so its
// callbacks never run concurrently; the server's sweep and stop() only touch the socket through
// close_mu_ + shutdown(2), which is safe against the callback chain closing it.
struct http_server::conn : std::enable_shared_from_this<http_server::conn> {
    using tls_stream = ssl::stream<beast::tcp_stream>;
    enum phase_t : uint8_t { reading, writing, handshaking };

    conn(std::shared_ptr<http_server> s, asio::io_context& io, socket_type sock,
         asio::ip::address remote)
        : srv(std::move(s)), io(io), socket(std::move(sock)), remote(std::move(remote)) {}
    // TLS: the connection keeps the context it started with, whatever a reload installs later.
    conn(std::shared_ptr<http_server> s, asio::io_context& io, socket_type sock,
         asio::ip::address remote, std::shared_ptr<ssl::context> ctx)
        : srv(std::move(s)),
          io(io),
          socket(sock.get_executor()),
          remote(std::move(remote)),
          tls_ctx(std::move(ctx)),
          tls(std::make_unique<tls_stream>(std::move(sock), *tls_ctx)) {}

    std::shared_ptr<http_server> srv;
    asio::io_context& io;  // the one whose listener accepted it: every step runs there
    socket_type socket;    // plain HTTP only; unused (never opened) on a TLS connection
    asio::ip::address remote;
    std::shared_ptr<ssl::context> tls_ctx;  // declared before tls: outlives the stream
    std::unique_ptr<tls_stream> tls;
    beast::flat_buffer buf;
    std::optional<http::request_parser<http::string_body>> parser;
    std::string out;
    live_limits::snapshot lim{};
    const route_entry* route = nullptr;  // of the request being read (routes never change)
    bool keep = false;
    bool nodelay = false;
    int64_t started_ns = 0;

    // Deadline of the pending read or write (steady clock, ns), read by the sweep.
    std::atomic<int64_t> deadline{no_deadline};
    std::atomic<bool> timed_out{false};
    std::atomic<uint8_t> phase{reading};  // which deadline is running, for the timeout metrics
    std::mutex close_mu;
    bool closed = false;   // guarded by close_mu
    conn* prev = nullptr;  // server's intrusive list, guarded by the server's conns_mu_
    conn* next = nullptr;

    ~conn() { srv->unlink(this); }

    // Called by the sweep and by stop() from any thread: wakes the pending operation with an
    // error without racing the owner's close() (which would free the descriptor number).
    void interrupt(bool timeout) {
        std::lock_guard lk(close_mu);
        if (closed) return;
        if (timeout && !timed_out.exchange(true, std::memory_order_relaxed)) {
            // Counted before the shutdown: whoever sees the connection close sees the count.
            auto p = phase.load(std::memory_order_relaxed);
            (p == writing       ? srv->write_timeouts_
             : p == handshaking ? srv->tls_timeout_
                                : srv->read_timeouts_)
                ->inc();
        }
        ::shutdown(fd(), SHUT_RDWR);
    }

    int fd() { return tls ? tls->next_layer().socket().native_handle() : socket.native_handle(); }

    // Publishes the deadline of the operation about to start, for the sweep; which one it is
    // decides the timeout metric.
    void arm(phase_t p, int64_t at_ns) {
        phase.store(p, std::memory_order_relaxed);
        deadline.store(at_ns, std::memory_order_release);
    }

    // TLS only: the first operation of the connection. Its deadline is handshake_timeout, so a
    // client that connects and sends nothing (or a partial ClientHello) is closed by the sweep.
    void start_handshake(int64_t now) {
        arm(handshaking, now + std::chrono::nanoseconds(
                                   std::chrono::milliseconds(
                                       srv->handshake_timeout_ms_.load(std::memory_order_relaxed)))
                                   .count());
        tls->async_handshake(
            ssl::stream_base::server,
            [self = shared_from_this()](boost::system::error_code ec) { self->on_handshake(ec); });
    }

    void on_handshake(boost::system::error_code ec) {
        deadline.store(no_deadline, std::memory_order_relaxed);
        srv->handshaking_--;
        if (ec) {
            // Timeouts were counted by the sweep. Anyone can fail handshakes in a loop (a port
            // scanner, plain HTTP on the HTTPS port): the line is throttled.
            if (!timed_out.load(std::memory_order_relaxed) &&
                !srv->stopped_.load(std::memory_order_relaxed)) {
                srv->tls_failed_->inc();
                IMGATE_LOG_THROTTLED(info, "{} listener: TLS handshake with {} failed: {}",
                                     srv->opts_.name, remote.to_string(), ec.message());
            }
            return finish();
        }
        srv->tls_ok_->inc();
        read_next(now_ns());
    }

    template <class Handler>
    void async_read_header(Handler&& h) {
        if (tls)
            http::async_read_header(*tls, buf, *parser, std::forward<Handler>(h));
        else
            http::async_read_header(socket, buf, *parser, std::forward<Handler>(h));
    }

    template <class Handler>
    void async_read_body(Handler&& h) {
        if (tls)
            http::async_read(*tls, buf, *parser, std::forward<Handler>(h));
        else
            http::async_read(socket, buf, *parser, std::forward<Handler>(h));
    }

    // `now` comes from the caller where it has just been read: two clock reads per request.
    // Reads the header only: on_header() decides whether the body is read at all.
    void read_next(int64_t now) {
        if (srv->stopped_.load(std::memory_order_relaxed)) return finish();
        lim = srv->limits_.load();
        route = nullptr;
        parser.emplace();
        parser->header_limit(lim.header_limit);
        // No limit while the header is parsed: Beast would otherwise refuse a large
        // Content-Length before the route is known; on_header() checks it against the route's.
        parser->body_limit(boost::none);
        arm(reading, now + std::chrono::nanoseconds(lim.read_timeout).count());
        async_read_header([self = shared_from_this()](boost::system::error_code ec, size_t) {
            self->on_header(ec);
        });
    }

    http_request_ctx context() const {
        const auto& req = parser->get();
        std::string_view target(req.target().data(), req.target().size());
        auto q = target.find('?');
        return http_request_ctx{
            req, remote, target.substr(0, q),
            q == std::string_view::npos ? std::string_view{} : target.substr(q + 1)};
    }

    // Routes on the header, then authorizes, checks the declared body against the route and
    // reads the body, in that order, so that nothing of a body is buffered for a request that
    // will not be served (and a stranger learns nothing about a guarded route but 401). The read
    // deadline keeps running: it covers the whole request.
    void on_header(boost::system::error_code ec) {
        if (ec) {
            deadline.store(no_deadline, std::memory_order_relaxed);
            return on_read_error(ec);
        }
        const auto& req = parser->get();
        auto version = req.version();
        // A body still to come (Content-Length > 0 or chunked): a refused request leaves it
        // unread, so its connection cannot be kept alive.
        bool has_body = !parser->is_done();
        keep = req.keep_alive() && !srv->stopped_.load(std::memory_order_relaxed);
        auto ctx = context();
        http_response refusal;
        route = srv->find_route(ctx.path, req.method(), &refusal);
        if (!route) {
            keep = keep && !has_body;
            return respond(refusal, version, now_ns());
        }
        uint64_t limit = std::min(route->opts.body_limit, lim.body_limit);
        if (route->opts.authorize) {
            if (auto r = route->opts.authorize(ctx)) {
                srv->rejected_unauthorized_->inc();
                note_refusal(r->status, "not authorized");
                keep = false;
                return respond(*r, version, now_ns());
            }
        }
        if (has_body && limit == 0) {
            srv->rejected_unexpected_body_->inc();
            note_refusal(http::status::payload_too_large, "body on a route that takes none");
            keep = false;
            return respond(http_response::error(http::status::payload_too_large, "body_not_allowed",
                                                "this resource takes no request body"),
                           version, now_ns());
        }
        if (!has_body) return dispatch();
        auto declared = parser->content_length();
        if (declared && *declared > limit) {
            srv->rejected_limit_->inc();
            note_refusal(http::status::payload_too_large, "body over the route's limit");
            keep = false;
            return respond(
                http_response::error(http::status::payload_too_large, "request_too_large"), version,
                now_ns());
        }
        parser->body_limit(limit);  // a chunked body is counted against it as it arrives
        async_read_body([self = shared_from_this()](boost::system::error_code ec, size_t) {
            self->on_body(ec);
        });
    }

    void on_body(boost::system::error_code ec) {
        deadline.store(no_deadline, std::memory_order_relaxed);
        if (ec) return on_read_error(ec);
        dispatch();
    }

    // A complete, authorized request: the handler runs (its time is not bounded by the read
    // deadline; the write that follows has its own).
    void dispatch() {
        deadline.store(no_deadline, std::memory_order_relaxed);
        started_ns = now_ns();
        auto ctx = context();
        auto version = ctx.req.version();
        if (route->sync) return respond(route->sync(ctx), version, started_ns);
        auto done = [self = shared_from_this(), version](std::exception_ptr e, http_response r) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& x) {
                    spdlog::error("{} handler failed: {}", self->srv->opts_.name, x.what());
                } catch (...) {
                    spdlog::error("{} handler failed", self->srv->opts_.name);
                }
                r = http_response::error(http::status::internal_server_error, "internal_error");
            }
            self->respond(r, version, now_ns());
        };
        // On a strand of its own: a handler that hands work to another thread and waits for the
        // answer to be posted back to its executor (/push, /presence) must not see that post run
        // on a second thread while it is still deciding whether to wait.
        asio::co_spawn(asio::make_strand(io), route->async(ctx), std::move(done));
    }

    void audit(http::status st) const {
        auto ctx = context();
        spdlog::info("audit: {} {} {} from {} token {}: {}", srv->opts_.name,
                     std::string_view(ctx.req.method_string()), std::string_view(ctx.req.target()),
                     remote.to_string(), bearer_fingerprint(ctx), static_cast<unsigned>(st));
    }

    // Anyone can send bad or unauthorized requests in a loop: the line is throttled.
    void note_refusal(http::status st, const char* why) const {
        IMGATE_LOG_THROTTLED(warn, "{} listener: refused a request from {} with {}: {}",
                             srv->opts_.name, remote.to_string(), static_cast<unsigned>(st), why);
    }

    void on_read_error(boost::system::error_code ec) {
        if (timed_out.load(std::memory_order_relaxed)) return finish();  // counted by the sweep
        http::status st{};
        if (ec == http::error::header_limit) {
            st = http::status::request_header_fields_too_large;
        } else if (ec == http::error::body_limit) {
            st = http::status::payload_too_large;
        } else if (ec != http::error::end_of_stream &&
                   ec.category() == http::make_error_code(http::error::end_of_stream).category()) {
            st = http::status::bad_request;
        }
        if (st == http::status{}) return finish();  // peer went away: nothing to answer
        srv->rejected_limit_->inc();
        note_refusal(st, ec.message().c_str());
        keep = false;
        respond(http_response::error(
                    st, st == http::status::bad_request ? "bad_request" : "request_too_large"),
                11, now_ns());
    }

    void respond(const http_response& r, unsigned version, int64_t now) {
        out.clear();
        size_t dropped = 0;
        serialize_response(out, r, version, keep, &dropped);
        if (dropped) {
            srv->bad_headers_->inc(dropped);
            spdlog::error("{}: dropped {} response header(s) with an invalid name or value",
                          srv->opts_.name, dropped);
        }
        srv->requests_counter(static_cast<unsigned>(r.status)).inc();
        if (route && route->opts.audit && r.status != http::status::unauthorized &&
            r.status != http::status::forbidden)
            audit(r.status);
        arm(writing, now + std::chrono::nanoseconds(lim.write_timeout).count());
        if (tls) {
            // Through the TLS engine: records are built and written by the stream.
            asio::async_write(*tls, asio::buffer(out),
                              [self = shared_from_this()](boost::system::error_code ec, size_t) {
                                  self->on_write(ec);
                              });
            return;
        }
        // A response almost always fits the socket buffer: try it in place (the socket is
        // non-blocking) and fall back to an async write for what is left. Saves a reactor
        // operation and a trip through the scheduler per request.
        boost::system::error_code ec;
        // The last response of a connection that closes after it: MSG_MORE holds the segment
        // back for the close() that follows at once, so the FIN leaves in the same segment as
        // the response (one packet and one wake-up of the client fewer). Only when nothing of
        // the request is left unread: a close() with unread bytes resets the connection, and a
        // response still held back would be lost with it.
        int flags = !keep && buf.size() == 0 && parser && parser->is_done() ? MSG_MORE : 0;
        size_t n = socket.send(asio::buffer(out), flags, ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            ec = {};
            n = 0;
        }
        if (ec || n == out.size()) return on_write(ec);
        asio::async_write(socket, asio::buffer(out) + n,
                          [self = shared_from_this()](boost::system::error_code ec, size_t) {
                              self->on_write(ec);
                          });
    }

    void on_write(boost::system::error_code ec) {
        deadline.store(no_deadline, std::memory_order_relaxed);
        auto now = now_ns();
        if (started_ns) srv->latency_->observe(static_cast<double>(now - started_ns) / 1e9);
        started_ns = 0;
        if (ec) return finish();
        if (!keep) return tls ? close_tls(now) : finish();
        if (!nodelay) {
            // Only a connection that is kept alive can have a response queued behind an unacked
            // one (pipelining), where Nagle would hold it back; one-shot connections skip the
            // syscall, as nginx does.
            boost::system::error_code nec;
            if (tls)
                tls->next_layer().socket().set_option(asio::ip::tcp::no_delay(true), nec);
            else
                socket.set_option(asio::ip::tcp::no_delay(true), nec);
            nodelay = true;
        }
        // Keep the buffer of a connection that had a large response from pinning memory.
        if (out.capacity() > 64 * 1024) std::string().swap(out);
        if (buf.size() > 0) return read_next(now);  // a pipelined request is already here
        // The client sends its next request only once this response reached it. Starting the
        // read after the other ready handlers makes asio's immediate recv() usually find it;
        // started right here it fails with EAGAIN almost every time (a wasted syscall).
        asio::post(io.get_executor(), [self = shared_from_this(), now] { self->read_next(now); });
    }

    // The server closes a healthy TLS connection (Connection: close, a refused request): send
    // close_notify so the client can tell the end of the response from a truncation, but do not
    // wait for the client's own close_notify (marking it received makes SSL_shutdown complete
    // once ours is written). The write deadline bounds even that.
    void close_tls(int64_t now) {
        SSL_set_shutdown(tls->native_handle(), SSL_RECEIVED_SHUTDOWN);
        arm(writing, now + std::chrono::nanoseconds(lim.write_timeout).count());
        tls->async_shutdown([self = shared_from_this()](boost::system::error_code) {
            self->deadline.store(no_deadline, std::memory_order_relaxed);
            self->finish();
        });
    }

    void finish() {
        boost::system::error_code ec;
        std::lock_guard lk(close_mu);
        if (closed) return;
        closed = true;
        // Sends the FIN; a shutdown(SHUT_WR) first would only add a syscall.
        if (tls)
            tls->next_layer().socket().close(ec);
        else
            socket.close(ec);
    }
};

http_response http_response::json(http::status s, std::string body) {
    http_response r;
    r.status = s;
    r.body = std::move(body);
    return r;
}

http_response http_response::error(http::status s, const std::string& code,
                                   const std::string& message) {
    nlohmann::json j = {{"error", code}};
    if (!message.empty()) j["message"] = message;
    return json(s, j.dump());
}

http_response http_response::text(std::string body, const char* content_type) {
    http_response r;
    r.content_type = content_type;
    r.body = std::move(body);
    return r;
}

double not_after_unix(const tls_cert_info& info) {
    // tls_cert_info::not_after is "YYYY-MM-DDTHH:MM:SSZ" (UTC).
    struct tm tm {};
    if (std::sscanf(info.not_after.c_str(), "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon,
                    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<double>(::timegm(&tm));
}

bool is_fd_exhaustion(const boost::system::error_code& ec) {
    return ec == boost::system::errc::too_many_files_open ||
           ec == boost::system::errc::too_many_files_open_in_system ||
           ec == boost::system::errc::not_enough_memory ||
           ec == boost::system::errc::no_buffer_space;
}

http_server::http_server(asio::io_context& io, http_server_options opts, metrics_registry& metrics)
    : io_(io), opts_(std::move(opts)), metrics_(metrics), sweep_timer_(io.get_executor()) {
    limits_.store(opts_);
    label_set l{{"server", opts_.name}};
    rejected_busy_ =
        &metrics_.get_counter("imgate_http_rejected_total", "HTTP connections or requests refused",
                              {{"server", opts_.name}, {"reason", "max_connections"}});
    rejected_limit_ =
        &metrics_.get_counter("imgate_http_rejected_total", "HTTP connections or requests refused",
                              {{"server", opts_.name}, {"reason", "limits"}});
    // Both refused on the header, before any body byte is read.
    rejected_unauthorized_ =
        &metrics_.get_counter("imgate_http_rejected_total", "HTTP connections or requests refused",
                              {{"server", opts_.name}, {"reason", "unauthorized"}});
    rejected_unexpected_body_ =
        &metrics_.get_counter("imgate_http_rejected_total", "HTTP connections or requests refused",
                              {{"server", opts_.name}, {"reason", "unexpected_body"}});
    read_timeouts_ = &metrics_.get_counter("imgate_http_read_timeouts_total",
                                           "HTTP connections closed at their read deadline", l);
    write_timeouts_ =
        &metrics_.get_counter("imgate_http_write_timeouts_total",
                              "HTTP connections closed at their write deadline (slow readers)", l);
    bad_headers_ = &metrics_.get_counter(
        "imgate_http_bad_response_headers_total",
        "Response headers dropped because a handler gave an invalid name or value", l);
    accept_errors_ = &metrics_.get_counter(
        "imgate_http_accept_errors_total",
        "accept() failures on the listener (out of descriptors or memory: backs off 100 ms)", l);
    latency_ = &metrics_.get_histogram("imgate_http_request_duration_seconds",
                                       "Time from a complete request to its response",
                                       metrics_registry::latency_buckets_seconds(), l);
    metrics_.gauge_fn("imgate_http_connections", "Open HTTP connections", l,
                      [this] { return static_cast<double>(active_.load()); });
}

void http_server::enable_tls(std::shared_ptr<tls_context_holder> holder) {
    tls_ = std::move(holder);
    set_tls_limits(tls_->settings());
    // Registered only on TLS servers: a plain listener has no handshakes to count.
    auto handshakes = [this](const char* result) {
        return &metrics_.get_counter(
            "imgate_http_tls_handshakes_total",
            "TLS handshakes on an HTTPS listener, by result (ok, failed, timeout, refused: past "
            "max_handshakes in flight)",
            {{"server", opts_.name}, {"result", result}});
    };
    tls_ok_ = handshakes("ok");
    tls_failed_ = handshakes("failed");
    tls_timeout_ = handshakes("timeout");
    tls_refused_ = handshakes("refused");
    metrics_.gauge_fn("imgate_http_tls_handshakes_in_flight",
                      "TLS handshakes in progress on an HTTPS listener", {{"server", opts_.name}},
                      [this] { return static_cast<double>(handshaking_.load()); });
    // A timestamp, not "seconds left": a value computed at load time would go stale, and an
    // alert compares it with time() (like blackbox_exporter's probe_ssl_earliest_cert_expiry).
    metrics_.gauge_fn("imgate_http_tls_certificate_not_after_seconds",
                      "Unix time at which the certificate new TLS handshakes get expires",
                      {{"server", opts_.name}}, [h = tls_] { return not_after_unix(h->info()); });
}

void http_server::set_tls_limits(const tls_settings& s) {
    handshake_timeout_ms_ = s.handshake_timeout.count();
    max_handshakes_ = s.max_handshakes;
}

http_server::~http_server() = default;

void http_server::set_options(const http_server_options& o) {
    // Only numeric limits change; readers take a copy per request.
    limits_.store(o);
}

counter& http_server::requests_counter(unsigned status) {
    // The registry lookup (lock + label sort) runs once per status code, not once per request.
    if (status >= by_status_.size()) status = 0;
    counter* c = by_status_[status].load(std::memory_order_acquire);
    if (!c) {
        c = &metrics_.get_counter("imgate_http_requests_total", "HTTP requests answered, by status",
                                  {{"server", opts_.name}, {"code", std::to_string(status)}});
        by_status_[status].store(c, std::memory_order_release);
    }
    return *c;
}

void http_server::route(http::verb method, const std::string& path, http_handler h,
                        route_options o) {
    routes_[path][method] = route_entry{nullptr, std::move(h), std::move(o)};
}

void http_server::route(http::verb method, const std::string& path, http_sync_handler h,
                        route_options o) {
    routes_[path][method] = route_entry{std::move(h), nullptr, std::move(o)};
}

const http_server::route_entry* http_server::find_route(std::string_view path, http::verb method,
                                                        http_response* refusal) const {
    auto it = routes_.find(path);
    if (it == routes_.end()) {
        *refusal = http_response::error(http::status::not_found, "not_found");
        return nullptr;
    }
    auto m = it->second.find(method);
    if (m != it->second.end()) return &m->second;
    *refusal = http_response::error(http::status::method_not_allowed, "method_not_allowed");
    std::string allow;
    for (auto& [v, h] : it->second) {
        if (!allow.empty()) allow += ", ";
        allow += std::string(http::to_string(v));
    }
    refusal->headers.emplace_back("Allow", allow);
    return nullptr;
}

void http_server::link(conn* c) {
    std::lock_guard lk(conns_mu_);
    c->next = conns_head_;
    if (conns_head_) conns_head_->prev = c;
    conns_head_ = c;
    active_++;
}

void http_server::unlink(conn* c) {
    std::lock_guard lk(conns_mu_);
    if (c->prev)
        c->prev->next = c->next;
    else if (conns_head_ == c)
        conns_head_ = c->next;
    else
        return;  // never linked
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = nullptr;
    active_--;
}

// One listening socket and the io_context its connections run on. Owned by its accept loop.
struct http_server::listener {
    listener(asio::io_context& io) : io(io), acceptor(io.get_executor()) {}
    asio::io_context& io;
    asio::basic_socket_acceptor<asio::ip::tcp, asio::io_context::executor_type> acceptor;
};

void http_server::listen(const endpoint& ep) {
    listen(ep, {&io_});
}

void http_server::listen(const endpoint& ep, const std::vector<asio::io_context*>& shards) {
    auto addr = asio::ip::make_address(ep.host);
    asio::ip::tcp::endpoint tep(addr, ep.port);
    using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
    std::vector<std::shared_ptr<listener>> ls;
    for (auto* io : shards) {
        auto l = std::make_shared<listener>(*io);
        l->acceptor.open(tep.protocol());
        l->acceptor.set_option(asio::socket_base::reuse_address(true));
        // Only with several sockets: a single listener keeps the usual "address in use" guard
        // against a second process on the same port.
        if (shards.size() > 1) l->acceptor.set_option(reuse_port(true));
        l->acceptor.bind(tep);
        l->acceptor.listen(asio::socket_base::max_listen_connections);
        if (ls.empty()) tep = l->acceptor.local_endpoint();  // port 0: the others take the same
        ls.push_back(std::move(l));
    }
    local_endpoint_ = tep;
    for (auto& l : ls) {
        listeners_.push_back(l);
        spawn(l->io, accept_loop(l), "http accept " + opts_.name);
    }
    start_sweep();
}

asio::ip::tcp::endpoint http_server::local_endpoint() const {
    return local_endpoint_;
}

void http_server::stop() {
    stopped_ = true;
    asio::post(io_, [self = shared_from_this()] { self->sweep_timer_.cancel(); });
    for (auto& w : listeners_)
        if (auto l = w.lock())
            asio::post(l->io, [l] {
                boost::system::error_code ec;
                l->acceptor.close(ec);
            });
    std::lock_guard lk(conns_mu_);
    for (conn* c = conns_head_; c; c = c->next) c->interrupt(false);
}

void http_server::start_sweep() {
    // A deadline is enforced within an eighth of the shortest timeout (at most 250 ms late), so
    // a 1 s read_timeout closes a slowloris connection between 1.0 and 1.125 s.
    auto shortest = std::min(limits_.read_timeout_ms.load(), limits_.write_timeout_ms.load());
    if (tls_) shortest = std::min(shortest, handshake_timeout_ms_.load());
    auto period = std::clamp<int64_t>(shortest / 8, 5, 250);
    sweep_timer_.expires_after(std::chrono::milliseconds(period));
    sweep_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (ec || self->stopped_) return;
        self->sweep();
        self->start_sweep();
    });
}

void http_server::sweep() {
    auto now = now_ns();
    std::lock_guard lk(conns_mu_);
    for (conn* c = conns_head_; c; c = c->next)
        if (c->deadline.load(std::memory_order_acquire) <= now) c->interrupt(true);
}

asio::awaitable<void> http_server::accept_loop(std::shared_ptr<listener> l) {
    auto self = shared_from_this();
    auto& acceptor = l->acceptor;
    asio::steady_timer backoff(l->io);
    boost::system::error_code ec;
    // Accepts in batches on readiness: waiting for the listening socket and then accepting until
    // EAGAIN costs one failed accept() per wake-up, where async_accept costs one per connection
    // (its speculative attempt). The batch is bounded so a flood cannot starve other handlers;
    // a full batch goes round again without waiting (the socket is edge-triggered).
    acceptor.non_blocking(true, ec);
    bool wait = true;
    while (!stopped_) {
        if (wait) {
            auto [wec] = co_await acceptor.async_wait(asio::socket_base::wait_read, use_tuple);
            if (wec || stopped_) co_return;  // aborted by stop(), or the acceptor is gone
        } else {
            co_await asio::post(l->io, asio::use_awaitable);
        }
        wait = true;
        for (int n = 0; n < 128 && !stopped_; ++n) {
            accepted_socket sock(l->io.get_executor());
            asio::ip::tcp::endpoint peer;
            socklen_t len = static_cast<socklen_t>(peer.capacity());
            int fd = ::accept4(acceptor.native_handle(), peer.data(), &len,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                ec.assign(errno, boost::system::system_category());
            } else {
                ec = {};
                peer.resize(len);
                sock.adopt(peer.protocol(), fd, ec);
            }
            if (ec == asio::error::would_block || ec == asio::error::try_again) break;
            if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor)
                co_return;
            if (ec) {
                accept_errors_->inc();
                // That peer reset before we took it: nothing wrong here, take the next one.
                if (ec == asio::error::connection_aborted || ec == asio::error::connection_reset)
                    continue;
                // Out of descriptors (or anything persistent): pause instead of spinning, then
                // retry without waiting for readiness: the connections still queued have
                // already signalled, and we do not rely on the kernel signalling them again.
                // Throttled: out of descriptors, this fires every 100 ms for as long as it lasts.
                IMGATE_LOG_THROTTLED(warn, "{} listener: accept failed ({}); backing off 100ms",
                                     opts_.name, ec.message());
                wait = false;
                backoff.expires_after(std::chrono::milliseconds(100));
                co_await backoff.async_wait(use_tuple);
                break;
            }
            if (n == 127) wait = false;
            admit(l->io, socket_type(std::move(sock)), peer);
        }
    }
}

void http_server::admit(asio::io_context& io, socket_type sock,
                        const asio::ip::tcp::endpoint& peer) {
    boost::system::error_code ec;
    if (active_.load() >= limits_.max_connections.load(std::memory_order_relaxed)) {
        rejected_busy_->inc();
        // Best effort: a short 503 without reading, then close. Non-blocking write of a few
        // bytes into an empty socket buffer never stalls the accept loop. Not on a TLS
        // listener, where plaintext would only be a garbled handshake to the client.
        static const std::string busy =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            "Retry-After: 1\r\nConnection: close\r\nContent-Length: 26\r\n\r\n"
            "{\"error\":\"server_busy\"}\r\n\r\n";
        if (!tls_) sock.write_some(asio::buffer(busy.data(), busy.size() - 4), ec);
        sock.close(ec);
        return;
    }
    // Already non-blocking (accept4) for the in-place writes and Asio's reads.
    if (!tls_) {
        auto c = std::make_shared<conn>(shared_from_this(), io, std::move(sock), peer.address());
        link(c.get());
        c->read_next(now_ns());
        return;
    }
    // A handshake costs far more CPU than a request: past max_handshakes in flight, new
    // connections are closed at once (clients retry) instead of queueing behind the crypto.
    if (handshaking_.fetch_add(1) >= max_handshakes_.load(std::memory_order_relaxed)) {
        handshaking_--;
        tls_refused_->inc();
        IMGATE_LOG_THROTTLED(warn,
                             "{} listener: {} TLS handshakes in flight (max_handshakes); closing "
                             "a new connection from {}",
                             opts_.name, handshaking_.load(), peer.address().to_string());
        sock.close(ec);
        return;
    }
    auto c = std::make_shared<conn>(shared_from_this(), io, std::move(sock), peer.address(),
                                    tls_->get());
    link(c.get());
    c->start_handshake(now_ns());
}

std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%') {
            if (i + 2 >= s.size()) return std::nullopt;
            auto hex = [](char h) -> int {
                if (h >= '0' && h <= '9') return h - '0';
                if (h >= 'a' && h <= 'f') return h - 'a' + 10;
                if (h >= 'A' && h <= 'F') return h - 'A' + 10;
                return -1;
            };
            int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else {
            out += c;
        }
    }
    return out;
}

std::optional<std::map<std::string, std::string>> parse_query(std::string_view q, std::string* err,
                                                              size_t max_params) {
    std::map<std::string, std::string> out;
    auto fail = [&](std::string m) -> std::optional<std::map<std::string, std::string>> {
        if (err) *err = std::move(m);
        return std::nullopt;
    };
    size_t count = 0;
    while (!q.empty()) {
        auto amp = q.find('&');
        auto part = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
        if (part.empty()) continue;
        if (++count > max_params) return fail("too many query parameters");
        auto eq = part.find('=');
        auto k = percent_decode(part.substr(0, eq));
        auto v =
            percent_decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
        if (!k || !v) return fail("bad percent-encoding in query");
        if (k->empty()) return fail("empty query parameter name");
        if (!out.emplace(std::move(*k), std::move(*v)).second)
            return fail("repeated query parameter");
    }
    return out;
}

namespace {
std::optional<std::string_view> bearer_of(const http_request_ctx& ctx) {
    auto it = ctx.req.find(http::field::authorization);
    if (it == ctx.req.end()) return std::nullopt;
    std::string_view v(it->value().data(), it->value().size());
    constexpr std::string_view scheme = "Bearer ";
    if (v.substr(0, scheme.size()) != scheme) return std::nullopt;
    return v.substr(scheme.size());
}
}  // namespace

bool bearer_matches(const http_request_ctx& ctx, std::string_view token) {
    auto presented = bearer_of(ctx);
    if (token.empty() || !presented || presented->size() != token.size()) return false;
    return CRYPTO_memcmp(presented->data(), token.data(), token.size()) == 0;
}

std::string bearer_fingerprint(const http_request_ctx& ctx) {
    auto presented = bearer_of(ctx);
    if (!presented || presented->empty()) return "none";
    return secret_fingerprint("admin", *presented);
}

}  // namespace imgate
