#pragma once
// A client connection for the bench programs over any gateway transport (tcp, tls, ws, wss):
// connect + handshake, write, read. Loopback only; TLS is verified against --ca when given.
// One binary WebSocket message per write, so over ws/wss a write must hold exactly one frame.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "common/awaitable.hpp"
#include "common/config.hpp"
#include "common/tls.hpp"

namespace imgate::bench {

namespace asio = boost::asio;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;

// Owns one connection over one transport (the pointer that is set says which).
class bench_stream {
  public:
    using error_code = boost::system::error_code;

    // Binds to src (may be unspecified), connects and runs the TLS/WebSocket handshakes.
    asio::awaitable<error_code> connect(transport t, tcp::endpoint target, asio::ip::address src,
                                        asio::ssl::context* ctx) {
        auto ex = co_await asio::this_coro::executor;
        tcp::socket s(ex);
        error_code ec;
        s.open(target.protocol(), ec);
        if (!ec && !src.is_unspecified()) s.bind(tcp::endpoint(src, 0), ec);
        if (ec) co_return ec;
        std::tie(ec) = co_await s.async_connect(target, use_tuple);
        if (ec) co_return ec;
        s.set_option(tcp::no_delay(true), ec);
        std::string host = target.address().to_string();
        std::string hostport = host + ":" + std::to_string(target.port());
        if (t == transport::tcp) {
            tcp_ = std::make_unique<tcp::socket>(std::move(s));
        } else if (t == transport::tls) {
            tls_ = std::make_unique<asio::ssl::stream<tcp::socket>>(std::move(s), *ctx);
            set_client_tls_host(tls_->native_handle(), host, true);
            std::tie(ec) =
                co_await tls_->async_handshake(asio::ssl::stream_base::client, use_tuple);
        } else if (t == transport::ws) {
            ws_ = std::make_unique<websocket::stream<tcp::socket>>(std::move(s));
            ws_->binary(true);
            std::tie(ec) = co_await ws_->async_handshake(hostport, "/", use_tuple);
        } else {
            wss_ = std::make_unique<websocket::stream<asio::ssl::stream<tcp::socket>>>(std::move(s),
                                                                                       *ctx);
            set_client_tls_host(wss_->next_layer().native_handle(), host, true);
            std::tie(ec) = co_await wss_->next_layer().async_handshake(
                asio::ssl::stream_base::client, use_tuple);
            wss_->binary(true);
            if (!ec) std::tie(ec) = co_await wss_->async_handshake(hostport, "/", use_tuple);
        }
        co_return ec;
    }

    asio::awaitable<error_code> write(std::string_view bytes) {
        auto b = asio::buffer(bytes.data(), bytes.size());
        error_code ec;
        size_t n = 0;
        if (tcp_) std::tie(ec, n) = co_await asio::async_write(*tcp_, b, use_tuple);
        if (tls_) std::tie(ec, n) = co_await asio::async_write(*tls_, b, use_tuple);
        if (ws_) std::tie(ec, n) = co_await ws_->async_write(b, use_tuple);
        if (wss_) std::tie(ec, n) = co_await wss_->async_write(b, use_tuple);
        co_return ec;
    }

    // Some bytes (a whole message over ws/wss, copied out in pieces that fit buf).
    asio::awaitable<std::pair<error_code, size_t>> read_some(char* buf, size_t len) {
        error_code ec;
        size_t n = 0;
        if (tcp_)
            std::tie(ec, n) = co_await tcp_->async_read_some(asio::buffer(buf, len), use_tuple);
        if (tls_)
            std::tie(ec, n) = co_await tls_->async_read_some(asio::buffer(buf, len), use_tuple);
        if (ws_ || wss_) {
            if (msg_.size() == 0) {
                if (ws_) std::tie(ec, n) = co_await ws_->async_read(msg_, use_tuple);
                if (wss_) std::tie(ec, n) = co_await wss_->async_read(msg_, use_tuple);
                if (ec) co_return std::pair(ec, size_t(0));
            }
            n = std::min(len, msg_.size());
            std::memcpy(buf, msg_.data().data(), n);
            msg_.consume(n);
        }
        co_return std::pair(ec, n);
    }

  private:
    std::unique_ptr<tcp::socket> tcp_;
    std::unique_ptr<asio::ssl::stream<tcp::socket>> tls_;
    std::unique_ptr<websocket::stream<tcp::socket>> ws_;
    std::unique_ptr<websocket::stream<asio::ssl::stream<tcp::socket>>> wss_;
    boost::beast::flat_buffer msg_;
};

}  // namespace imgate::bench
