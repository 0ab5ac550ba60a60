#pragma once
// Small Beast HTTP/1.1 server used for every listener of the daemons (admin and the dispatcher's
// public API): routes by method+path, header/body limits, a deadline on every read, a connection
// cap, keep-alive, and request metrics.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/beast/http/status.hpp>
#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/metrics.hpp"

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
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;

    static http_response json(http::status s, std::string body);
    static http_response error(http::status s, const std::string& code,
                               const std::string& message = "");
    static http_response text(std::string body, std::string content_type = "text/plain");
};

using http_handler = std::function<asio::awaitable<http_response>(http_request_ctx)>;
using http_sync_handler = std::function<http_response(const http_request_ctx&)>;

struct http_server_options {
    std::string name = "admin";  // metrics label
    size_t max_connections = 1024;
    std::chrono::milliseconds read_timeout{5000};  // whole request, and keep-alive idle wait
    std::chrono::milliseconds write_timeout{5000};
    uint32_t header_limit = 8192;
    uint64_t body_limit = 0;  // 0: requests with a body are refused with 413
};

// Owns one listening socket and its connections. Create with make_shared; call listen() then run
// the io_context. Handlers run on the connection's strand.
class http_server : public std::enable_shared_from_this<http_server> {
public:
    http_server(asio::any_io_executor ex, http_server_options opts, metrics_registry& metrics);

    void route(http::verb method, const std::string& path, http_handler h);
    void route(http::verb method, const std::string& path, http_sync_handler h);

    // Binds and starts accepting (throws on bind failure; start-up only).
    void listen(const endpoint& ep);
    asio::ip::tcp::endpoint local_endpoint() const;
    void stop();
    size_t connections() const { return active_.load(); }
    void set_options(const http_server_options& o);  // limits apply to new requests

private:
    struct conn;
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> session(std::shared_ptr<conn> c);
    asio::awaitable<http_response> dispatch(http_request_ctx ctx);
    counter& requests_counter(unsigned status);

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

    asio::any_io_executor ex_;
    http_server_options opts_;  // name only after construction; limits live in limits_
    live_limits limits_;
    metrics_registry& metrics_;
    asio::ip::tcp::acceptor acceptor_;
    std::map<std::string, std::map<http::verb, http_handler>> routes_;
    std::atomic<size_t> active_{0};
    std::atomic<bool> stopped_{false};
    std::mutex conns_mu_;
    std::map<uint64_t, std::weak_ptr<conn>> conns_;
    uint64_t next_conn_id_ = 0;
    counter* rejected_busy_;
    counter* rejected_limit_;
    counter* read_timeouts_;
    histogram* latency_;
    std::array<std::atomic<counter*>, 600> by_status_{};
};

// Parses an application/x-www-form-urlencoded query. Returns nullopt (and sets err) on bad
// percent-encoding, an empty key, a repeated key, or more than max_params parameters.
std::optional<std::map<std::string, std::string>> parse_query(std::string_view q,
                                                              std::string* err = nullptr,
                                                              size_t max_params = 32);
std::optional<std::string> percent_decode(std::string_view s);

// True for accept() errors that mean "out of descriptors": back off instead of spinning.
bool is_fd_exhaustion(const boost::system::error_code& ec);

}  // namespace imgate
