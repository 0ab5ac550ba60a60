#pragma once
// A small HTTPS client for tests: one TLS connection (kept alive across requests), verified
// against a given CA, every operation bounded by a deadline (beast::tcp_stream timeouts, the
// io_context run to completion), never throwing. Also reports the certificate the server showed
// and whether it closed with close_notify.
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "common/tls.hpp"
#include "process.hpp"

namespace imgate::test {

class tls_client {
  public:
    // Trusts ca_file only (a server certificate of another CA fails the handshake).
    explicit tls_client(const std::string& ca_file)
        : ctx_(make_client_tls_context(ca_file, false)) {}

    // Connects and handshakes, verifying the certificate against the CA and the host.
    bool connect(const std::string& hostport, std::chrono::milliseconds timeout = 3000ms) {
        auto [host, port] = split_hostport(hostport);
        stream_ = std::make_unique<stream_type>(io_, *ctx_);
        set_client_tls_host(stream_->native_handle(), host, true);
        // Strict about the end: a TCP close without close_notify must read as a truncation
        // (ssl::error::stream_truncated), not as a clean end of stream.
        SSL_clear_options(stream_->native_handle(), SSL_OP_IGNORE_UNEXPECTED_EOF);
        auto& tcp = boost::beast::get_lowest_layer(*stream_);
        tcp.expires_after(timeout);
        error_ = {};
        boost::asio::ip::tcp::endpoint ep(boost::asio::ip::make_address(host), port);
        tcp.async_connect(ep, [this](boost::system::error_code ec) {
            if (ec) {
                error_ = ec;
                return;
            }
            stream_->async_handshake(boost::asio::ssl::stream_base::client,
                                     [this](boost::system::error_code ec) { error_ = ec; });
        });
        run();
        return !error_;
    }

    // One request on the open connection; status 0 when it failed (error() says why).
    http_result get(const std::string& target, bool close = false,
                    std::chrono::milliseconds timeout = 3000ms) {
        namespace http = boost::beast::http;
        http_result r;
        if (!stream_) return r;
        req_ = {http::verb::get, target, 11};
        req_.set(http::field::host, "localhost");
        if (close) req_.set(http::field::connection, "close");
        res_ = {};
        error_ = {};
        boost::beast::get_lowest_layer(*stream_).expires_after(timeout);
        http::async_write(*stream_, req_, [this](boost::system::error_code ec, size_t) {
            if (ec) {
                error_ = ec;
                return;
            }
            http::async_read(*stream_, buf_, res_,
                             [this](boost::system::error_code ec, size_t) { error_ = ec; });
        });
        run();
        if (error_) return r;
        r.status = res_.result_int();
        r.body = res_.body();
        for (auto& f : res_) r.headers[std::string(f.name_string())] = std::string(f.value());
        return r;
    }

    // Reads until the server ends the connection; true when it did so with close_notify (a clean
    // TLS close) rather than a bare TCP close.
    bool await_close_notify(std::chrono::milliseconds timeout = 3000ms) {
        if (!stream_) return false;
        boost::beast::get_lowest_layer(*stream_).expires_after(timeout);
        error_ = {};
        char byte;
        stream_->async_read_some(boost::asio::buffer(&byte, 1),
                                 [this](boost::system::error_code ec, size_t) { error_ = ec; });
        run();
        return error_ == boost::asio::error::eof &&
               (SSL_get_shutdown(stream_->native_handle()) & SSL_RECEIVED_SHUTDOWN) != 0;
    }

    // SHA-256 of the certificate the server presented on this connection (lower-case hex).
    std::string peer_fingerprint() const {
        return stream_ ? peer_certificate_fingerprint(stream_->native_handle()) : "";
    }

    boost::system::error_code error() const { return error_; }

  private:
    using stream_type = boost::asio::ssl::stream<boost::beast::tcp_stream>;
    void run() {
        io_.restart();
        io_.run();
    }

    boost::asio::io_context io_;
    std::shared_ptr<boost::asio::ssl::context> ctx_;
    std::unique_ptr<stream_type> stream_;
    boost::beast::flat_buffer buf_;
    boost::beast::http::request<boost::beast::http::empty_body> req_;
    boost::beast::http::response<boost::beast::http::string_body> res_;
    boost::system::error_code error_;
};

}  // namespace imgate::test
