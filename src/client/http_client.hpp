#pragma once
// A minimal HTTP/1.1 client (Beast) for the dispatcher's GET /get-tcp-ip and a gateway's admin
// POST /push: one request per connection, a deadline on the whole exchange, a bounded body;
// over TLS (https) when given a TLS client configuration.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "client/logic.hpp"
#include "client/tls_client.hpp"

namespace imgate::client {

struct http_result {
    bool ok = false;  // a response was received (any status)
    int status = 0;
    std::string body;
    std::string retry_after;  // Retry-After header, when present
    std::string error;        // transport failure, naming the address
};

boost::asio::awaitable<http_result> http_request(
    boost::asio::any_io_executor ex, const std::string& method, const std::string& host,
    uint16_t port, const std::string& target, std::string body = "",
    std::vector<std::pair<std::string, std::string>> headers = {},
    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
    std::shared_ptr<const tls_client> tls = nullptr);  // non-null: https

// The outcome of one GET /get-tcp-ip.
struct dispatch_result {
    std::optional<gateway_answer> answer;
    int status = 0;
    std::string error;  // why there is no answer (transport, 503 no_gateway_available, bad JSON)
    // On 503: the body's retry_after_ms, else the Retry-After header (seconds).
    std::chrono::milliseconds retry_after{0};
    std::string raw;  // the body as received
};

// For a transport other than tcp, asks with transport= and refuses an answer for another one. An
// https dispatcher uses `tls` (the system store when null).
boost::asio::awaitable<dispatch_result> get_gateway(
    boost::asio::any_io_executor ex, const http_url& dispatcher, const std::string& user,
    const std::string& region, const std::vector<std::string>& exclude,
    transport via = transport::tcp, std::shared_ptr<const tls_client> tls = nullptr,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

}  // namespace imgate::client
