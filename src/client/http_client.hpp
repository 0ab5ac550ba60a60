#pragma once
// A minimal HTTP/1.1 client (Beast) for the dispatcher's GET /get-tcp-ip and a gateway's admin
// POST /push: one request per connection, a deadline on the whole exchange, a bounded body;
// over TLS (https) when given a TLS client configuration.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "client/dispatcher_list.hpp"
#include "client/logic.hpp"
#include "client/tls_client.hpp"

namespace imgate::client {

struct http_result {
    bool ok = false;  // a response was received (any status)
    int status = 0;
    std::string body;
    std::string retry_after;  // Retry-After header, when present
    std::string error;        // transport failure, naming the address
    std::string cause;        // the transport failure in a few words ("connection refused")
};

boost::asio::awaitable<http_result> http_request(
    boost::asio::any_io_executor ex, const std::string& method, const std::string& host,
    uint16_t port, const std::string& target, std::string body = "",
    std::vector<std::pair<std::string, std::string>> headers = {},
    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
    std::shared_ptr<const tls_client> tls = nullptr,  // non-null: https
    // Bounds the TCP connect alone (0 or >= timeout: only `timeout`), so a silent host costs
    // this, not the whole deadline.
    std::chrono::milliseconds connect_timeout = std::chrono::milliseconds(0));

// The outcome of one GET /get-tcp-ip.
struct dispatch_result {
    std::optional<gateway_answer> answer;
    int status = 0;
    std::string error;  // why there is no answer (transport, 503 no_gateway_available, bad JSON)
    // On 503: the body's retry_after_ms, else the Retry-After header (seconds).
    std::chrono::milliseconds retry_after{0};
    std::string raw;  // the body as received
    // Why this dispatcher failed, in a few words: "connection refused", "timed out", "503
    // no_gateway_available", "bad answer: ...".
    std::string cause;
    // get_gateway_round: the dispatcher that answered (origin and prefix; "" when all failed) and
    // how many times the round moved on to the next URL.
    std::string dispatcher;
    unsigned failovers = 0;
};

// For a transport other than tcp, asks with transport= and refuses an answer for another one. An
// https dispatcher uses `tls` (the system store when null).
boost::asio::awaitable<dispatch_result> get_gateway(
    boost::asio::any_io_executor ex, const http_url& dispatcher, const std::string& user,
    const std::string& region, const std::vector<std::string>& exclude,
    transport via = transport::tcp, std::shared_ptr<const tls_client> tls = nullptr,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
    std::chrono::milliseconds connect_timeout = std::chrono::milliseconds(0));

// Each attempt's bound in a round over several dispatchers: a silent host (no RST) costs the
// connect bound; one that accepts but does not answer costs the request deadline.
inline constexpr std::chrono::milliseconds dispatcher_connect_timeout{2000};
inline constexpr std::chrono::milliseconds dispatcher_request_timeout{5000};

// Called when a round moves on: the URL that failed, why, and the URL asked next.
using dispatcher_failover_fn =
    std::function<void(const http_url& from, const std::string& cause, const http_url& to)>;
// "dispatcher http://a:8080 failed (connection refused); trying http://b:8080"
std::string failover_line(const http_url& from, const std::string& cause, const http_url& to);

// One round over the dispatcher list (dispatcher_list.hpp): asks from its current URL on and
// fails over per its rule. With one URL this is get_gateway (the same result and error, the
// whole deadline for the connect). With several, each connect is bounded by
// dispatcher_connect_timeout; when every URL failed the result's error names each URL and its
// cause, status is 503 when any of them said 503, and retry_after is the largest 503 wait.
boost::asio::awaitable<dispatch_result> get_gateway_round(
    boost::asio::any_io_executor ex, dispatcher_list& dispatchers, const std::string& user,
    const std::string& region, const std::vector<std::string>& exclude,
    transport via = transport::tcp, std::shared_ptr<const tls_client> tls = nullptr,
    dispatcher_failover_fn on_failover = {});

}  // namespace imgate::client
