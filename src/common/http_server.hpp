#pragma once
// Small Beast HTTP/1.1 server used for every listener of the daemons (admin and the dispatcher's
// public API): routes by method+path, header/body limits, a deadline on every read, a connection
// cap, keep-alive, and request metrics. A request's header is read and routed first; its body is
// read only when the route takes one and the route's authorizer has accepted the header, so a
// stranger costs the server at most header_limit bytes per connection. TLS is opt-in per server
// (enable_tls before listen): a bounded number of handshakes in flight, each with a deadline, then
// the same request handling over the encrypted stream.
#include <array>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/metrics.hpp"
#include "common/tls.hpp"

namespace imgate {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

struct http_request_ctx {
    const http::request<http::string_body>& req;
    asio::ip::address remote;
    std::string_view path;
    std::string_view query;  // without '?'
};

struct http_response {
    http::status status = http::status::ok;
    const char* content_type = "application/json";  // static storage: literals only
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;

    static http_response json(http::status s, std::string body);
    static http_response error(http::status s, const std::string& code,
                               const std::string& message = "");
    static http_response text(std::string body, const char* content_type = "text/plain");
};

using http_handler = std::function<asio::awaitable<http_response>(http_request_ctx)>;
using http_sync_handler = std::function<http_response(const http_request_ctx&)>;
// Runs on the request header (ctx.req has no body yet): nullopt lets the request through, a
// response refuses it. A refused request's connection is closed after the answer, since its
// body (if any) is never read and would otherwise be parsed as the next request.
using http_authorizer = std::function<std::optional<http_response>(const http_request_ctx&)>;

// What a route asks of a request before its handler runs.
struct route_options {
    http_authorizer authorize;  // empty: every request is let through
    // Largest body the route takes (further capped by http_server_options::body_limit). 0: the
    // route takes none, and a request declaring a body (Content-Length > 0 or chunked) is
    // refused with 413 without reading it.
    uint64_t body_limit = 0;
    // One `audit:` line (info) per served request: who (address, fingerprint of the bearer
    // token presented), what (method and target), result (status). Refusals by the authorizer
    // are not audited line by line — a stranger could flood the log — but go to the throttled
    // refusal warning and the rejected-requests metric.
    bool audit = false;
};

// Whether the request carries `Authorization: Bearer <token>` (constant-time compare). Always
// false for an empty token: no token configured means nobody is authorized.
bool bearer_matches(const http_request_ctx& ctx, std::string_view token);
// secret_fingerprint("admin", ...) of the bearer token the request presents, or "none": what an
// audit line records about the caller without writing the credential itself.
std::string bearer_fingerprint(const http_request_ctx& ctx);

struct http_server_options {
    std::string name = "admin";  // metrics label
    size_t max_connections = 1024;
    std::chrono::milliseconds read_timeout{5000};  // whole request, and keep-alive idle wait
    std::chrono::milliseconds write_timeout{5000};
    uint32_t header_limit = 8192;
    // Ceiling on every route's route_options::body_limit (SIGHUP may lower it); 0: no route
    // takes a body.
    uint64_t body_limit = 1 << 20;
};

// Appends the bytes of one HTTP/1.x response to out: status line, Server, Content-Type,
// Cache-Control, the handler's extra headers (names must be tokens and values free of CR/LF;
// others are dropped and counted in *dropped), Content-Length, Connection when it differs from
// the version's default, then the body. Written by hand because Beast's generic serializer was
// the largest user-space cost of a /get-tcp-ip answer (see docs/benchmarks.md).
void serialize_response(std::string& out, const http_response& r, unsigned version, bool keep_alive,
                        size_t* dropped = nullptr);

// Owns the listening socket(s) and their connections. Create with make_shared; call listen() then
// run the io_context (any number of threads). A connection runs one request at a time as a chain
// of callbacks (read, handler, write), so it needs no strand; deadlines are enforced by one sweep
// timer per server (on the constructor's io_context) that shuts a late connection's socket down,
// instead of a timer per operation. listen() with several io_contexts opens one SO_REUSEPORT
// socket on each: the kernel spreads new connections over them and a connection stays on the
// io_context that accepted it, so one thread per io_context serves its connections without any
// hand-off; the connection cap, limits, routes and metrics stay the server's, shared by all.
class http_server : public std::enable_shared_from_this<http_server> {
  public:
    http_server(asio::io_context& io, http_server_options opts, metrics_registry& metrics);
    ~http_server();

    // Routes are added before listen(). Without options a route takes no body and no
    // authorization.
    void route(http::verb method, const std::string& path, http_handler h, route_options o = {});
    void route(http::verb method, const std::string& path, http_sync_handler h,
               route_options o = {});

    // Serves HTTPS instead of plain HTTP (before listen()). Every new connection handshakes with
    // the context the holder has at that moment, so a holder reload() swaps the certificate for
    // new connections only. handshake_timeout and max_handshakes come from holder->settings();
    // set_tls_limits changes them for new connections (SIGHUP).
    void enable_tls(std::shared_ptr<tls_context_holder> holder);
    void set_tls_limits(const tls_settings& s);
    bool tls_enabled() const { return tls_ != nullptr; }

    // Binds and starts accepting (throws on bind failure; start-up only).
    void listen(const endpoint& ep);
    // One listening socket per io_context in `shards` (which the caller keeps alive and runs),
    // all on ep's address and port with SO_REUSEPORT; a single shard is the plain listen().
    void listen(const endpoint& ep, const std::vector<asio::io_context*>& shards);
    size_t listeners() const { return listeners_.size(); }
    asio::ip::tcp::endpoint local_endpoint() const;
    void stop();
    size_t connections() const { return active_.load(); }
    size_t handshakes_in_flight() const { return handshaking_.load(); }
    void set_options(const http_server_options& o);  // limits apply to new requests

  private:
    struct conn;
    struct listener;
    friend struct conn;
    using socket_type = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;
    struct route_entry {
        http_sync_handler sync;
        http_handler async;
        route_options opts;
    };

    asio::awaitable<void> accept_loop(std::shared_ptr<listener> l);
    void admit(asio::io_context& io, socket_type sock, const asio::ip::tcp::endpoint& peer);
    void start_sweep();
    void sweep();
    const route_entry* find_route(std::string_view path, http::verb method,
                                  http_response* refusal) const;
    counter& requests_counter(unsigned status);
    void link(conn* c);
    void unlink(conn* c);

    // Limits that SIGHUP may change while connections read them: one atomic per field.
    struct live_limits {
        std::atomic<size_t> max_connections{0};
        std::atomic<int64_t> read_timeout_ms{0};
        std::atomic<int64_t> write_timeout_ms{0};
        std::atomic<uint32_t> header_limit{0};
        std::atomic<uint64_t> body_limit{0};
        struct snapshot {
            std::chrono::milliseconds read_timeout;
            std::chrono::milliseconds write_timeout;
            uint32_t header_limit;
            uint64_t body_limit;
        };
        void store(const http_server_options& o) {
            max_connections = o.max_connections;
            read_timeout_ms = o.read_timeout.count();
            write_timeout_ms = o.write_timeout.count();
            header_limit = o.header_limit;
            body_limit = o.body_limit;
        }
        snapshot load() const {
            return {std::chrono::milliseconds(read_timeout_ms.load(std::memory_order_relaxed)),
                    std::chrono::milliseconds(write_timeout_ms.load(std::memory_order_relaxed)),
                    header_limit.load(std::memory_order_relaxed),
                    body_limit.load(std::memory_order_relaxed)};
        }
    };

    asio::io_context& io_;
    http_server_options opts_;  // name only after construction; limits live in limits_
    live_limits limits_;
    metrics_registry& metrics_;
    // Owned by their accept loops (each on its own io_context, which may be destroyed before the
    // server): the server only reaches them while they live.
    std::vector<std::weak_ptr<listener>> listeners_;
    asio::ip::tcp::endpoint local_endpoint_;
    asio::basic_waitable_timer<std::chrono::steady_clock,
                               asio::wait_traits<std::chrono::steady_clock>,
                               asio::io_context::executor_type>
        sweep_timer_;
    std::map<std::string, std::map<http::verb, route_entry>, std::less<>> routes_;
    std::atomic<size_t> active_{0};
    std::atomic<bool> stopped_{false};
    // TLS (null: plain HTTP). The limits are atomics for the same reason as limits_.
    std::shared_ptr<tls_context_holder> tls_;
    std::atomic<int64_t> handshake_timeout_ms_{10000};
    std::atomic<uint32_t> max_handshakes_{1000};
    std::atomic<size_t> handshaking_{0};
    counter* tls_ok_ = nullptr;
    counter* tls_failed_ = nullptr;
    counter* tls_timeout_ = nullptr;
    counter* tls_refused_ = nullptr;
    std::mutex conns_mu_;  // guards the intrusive list of open connections
    conn* conns_head_ = nullptr;
    counter* rejected_busy_;
    counter* rejected_limit_;
    counter* rejected_unauthorized_;
    counter* rejected_unexpected_body_;
    counter* read_timeouts_;
    counter* write_timeouts_;
    counter* bad_headers_;
    counter* accept_errors_;
    histogram* latency_;
    std::array<std::atomic<counter*>, 600> by_status_{};
};

// Parses an application/x-www-form-urlencoded query. Returns nullopt (and sets err) on bad
// percent-encoding, an empty key, a repeated key, or more than max_params parameters.
std::optional<std::map<std::string, std::string>> parse_query(std::string_view q,
                                                              std::string* err = nullptr,
                                                              size_t max_params = 32);
std::optional<std::string> percent_decode(std::string_view s);

// The certificate's not_after as Unix time (0 if unparsable): the TLS expiry metric's value.
double not_after_unix(const tls_cert_info& info);

// True for accept() errors that mean "out of descriptors": back off instead of spinning.
bool is_fd_exhaustion(const boost::system::error_code& ec);

}  // namespace imgate
