#pragma once
// The dispatcher's HTTP client for gateway admin listeners: the poller's GET /status and the
// rebalancer's POST /rebalance go through the same exchange (one deadline on the whole
// resolve-connect-write-read, one retry on a kept-alive connection the gateway closed while idle).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <string>

#include "common/config.hpp"

namespace imgate::disp {

// One connection to one gateway admin address; owns the socket, resolver and read buffer.
struct admin_connection {
    explicit admin_connection(boost::asio::any_io_executor ex) : stream(ex), resolver(ex) {}
    boost::beast::tcp_stream stream;
    boost::asio::ip::tcp::resolver resolver;
    boost::beast::flat_buffer buf;
    bool connected = false;
    void close();  // cancels the resolver and closes the socket (call on its executor)
};

using admin_request = boost::beast::http::request<boost::beast::http::string_body>;
using admin_response = boost::beast::http::response<boost::beast::http::string_body>;

// Sends req over c (connecting to `to` first when not connected) and reads the answer into res,
// everything within `timeout`. Returns "" when an answer (any status) arrived, else why not
// ("timeout after 300ms", "connect: Connection refused", "body larger than 256 KiB", ...). The
// connection stays open when the answer allows keep-alive.
boost::asio::awaitable<std::string> admin_exchange(admin_connection& c, const endpoint& to,
                                                   admin_request& req, admin_response& res,
                                                   std::chrono::milliseconds timeout,
                                                   size_t body_limit);

}  // namespace imgate::disp
