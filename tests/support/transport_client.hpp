#pragma once
// A blocking test client of the gateway protocol over any transport (tcp, tls, ws, wss), written
// from docs/protocol.md ("Transports"): TLS verified against a given CA and the host's name or
// address, WebSocket with one binary message per frame. Every operation has a deadline, so a
// test never hangs on a silent server. Header-only; test code only.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/config.hpp"
#include "common/frame.hpp"
#include "common/protocol.hpp"
#include "common/tls.hpp"

namespace imgate::test {

namespace asio = boost::asio;
namespace websocket = boost::beast::websocket;
using namespace std::chrono_literals;

// Owns one connection over one transport and its own io_context; one test thread uses it.
class transport_client {
  public:
    transport_client() : dec_(absolute_max_frame_body) {}
    transport_client(const transport_client&) = delete;
    transport_client& operator=(const transport_client&) = delete;

    // Connects, then runs the TLS and/or WebSocket handshake. ca_file: the CA to trust (empty
    // with tls/wss: no verification). False with error() set on any failure.
    bool connect(transport t, const std::string& host_port, const std::string& ca_file = "",
                 std::chrono::milliseconds timeout = 5000ms) {
        kind_ = t;
        auto pos = host_port.rfind(':');
        host_ = host_port.substr(0, pos);
        auto port = static_cast<uint16_t>(std::stoi(host_port.substr(pos + 1)));
        boost::system::error_code ec;
        asio::ip::tcp::endpoint ep(asio::ip::make_address(host_, ec), port);
        if (ec) return fail("bad address " + host_port);
        if (t == transport::tls || t == transport::wss) {
            try {
                ctx_ = make_client_tls_context(ca_file, ca_file.empty());
            } catch (const std::exception& e) {
                return fail(e.what());
            }
        }
        asio::ip::tcp::socket sock(io_);
        if (!wait([&](auto done) { sock.async_connect(ep, [done](auto e) { done(e); }); }, timeout))
            return false;
        sock.set_option(asio::ip::tcp::no_delay(true), ec);
        if (t == transport::tcp) {
            tcp_ = std::make_unique<asio::ip::tcp::socket>(std::move(sock));
        } else if (t == transport::tls) {
            tls_ =
                std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(std::move(sock), *ctx_);
            if (!tls_handshake(*tls_, timeout)) return false;
        } else if (t == transport::ws) {
            ws_ = std::make_unique<websocket::stream<asio::ip::tcp::socket>>(std::move(sock));
            if (!ws_handshake(*ws_, host_port, timeout)) return false;
        } else {
            wss_ = std::make_unique<websocket::stream<asio::ssl::stream<asio::ip::tcp::socket>>>(
                std::move(sock), *ctx_);
            if (!tls_handshake(wss_->next_layer(), timeout)) return false;
            if (!ws_handshake(*wss_, host_port, timeout)) return false;
        }
        closed_ = false;
        return true;
    }

    // Writes bytes as they are: a stream write for tcp/tls, one binary message for ws/wss.
    bool send_raw(std::string_view bytes, std::chrono::milliseconds timeout = 3000ms) {
        auto b = asio::buffer(bytes.data(), bytes.size());
        return wait(
            [&](auto done) {
                auto h = [done](auto e, size_t) { done(e); };
                if (tcp_) asio::async_write(*tcp_, b, h);
                if (tls_) asio::async_write(*tls_, b, h);
                if (ws_) ws_->async_write(b, h);
                if (wss_) wss_->async_write(b, h);
            },
            timeout);
    }
    // A WebSocket text message (the gateway must refuse it).
    bool send_text(std::string_view text, std::chrono::milliseconds timeout = 3000ms) {
        if (ws_) ws_->text(true);
        if (wss_) wss_->text(true);
        bool ok = send_raw(text, timeout);
        if (ws_) ws_->binary(true);
        if (wss_) wss_->binary(true);
        return ok;
    }
    template <class M>
    bool send(const M& m, uint32_t corr = 0) {
        return send_raw(proto::encode(m, corr));
    }

    // The next whole frame; nullopt on timeout, close or a framing error.
    std::optional<frame> read_frame(std::chrono::milliseconds timeout = 3000ms) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (auto f = dec_.next()) return f;
            if (dec_.error() != frame_error::none || closed_) return std::nullopt;
            auto now = std::chrono::steady_clock::now();
            if (now >= deadline) return std::nullopt;
            size_t n = 0;
            boost::system::error_code rec;
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
            bool ok = wait(
                [&](auto done) {
                    auto h = [&, done](auto e, size_t k) {
                        n = k;
                        rec = e;
                        done(e);
                    };
                    if (tcp_) tcp_->async_read_some(asio::buffer(buf_, sizeof buf_), h);
                    if (tls_) tls_->async_read_some(asio::buffer(buf_, sizeof buf_), h);
                    if (ws_) ws_->async_read(msg_, h);
                    if (wss_) wss_->async_read(msg_, h);
                },
                left);
            if (ws_ || wss_) {
                if (n) {
                    ++messages_;
                    dec_.feed(std::string_view(static_cast<const char*>(msg_.data().data()),
                                               msg_.size()));
                    msg_.consume(msg_.size());
                }
            } else if (n) {
                dec_.feed(std::string_view(buf_, n));
            }
            // A timed-out wait closed the connection (see wait()), and Beast answers every read
            // after a failed operation with operation_aborted: either way this connection is
            // over; frames already fed are still returned.
            if (!ok) {
                closed_ = true;
                return dec_.next();
            }
        }
    }

    template <class M>
    std::optional<M> read(std::chrono::milliseconds timeout = 3000ms) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto now = std::chrono::steady_clock::now();
            if (now >= deadline) return std::nullopt;
            auto f =
                read_frame(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
            if (!f) return std::nullopt;
            if (f->op == static_cast<uint8_t>(M::opcode)) return proto::decode<M>(*f);
            last_skipped_ = *f;
        }
    }

    std::optional<proto::login_result_msg> login(const std::string& token,
                                                 std::chrono::milliseconds timeout = 3000ms) {
        if (!send(proto::login_msg{token})) return std::nullopt;
        auto f = read_frame(timeout);
        if (!f) return std::nullopt;
        if (auto r = proto::decode<proto::login_result_msg>(*f)) return r;
        last_error_ = proto::decode<proto::error_msg>(*f);
        return std::nullopt;
    }

    // Reads until the server closes; false on timeout.
    bool wait_closed(std::chrono::milliseconds timeout = 3000ms) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!closed_) {
            auto now = std::chrono::steady_clock::now();
            if (now >= deadline) return false;
            auto f =
                read_frame(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
            if (f) last_skipped_ = *f;
            if (!f && !closed_ && dec_.error() != frame_error::none) return false;
        }
        return true;
    }

    bool closed() const { return closed_; }
    const std::string& error() const { return error_; }
    const std::optional<proto::error_msg>& last_error() const { return last_error_; }
    const std::optional<frame>& last_skipped() const { return last_skipped_; }
    size_t messages() const { return messages_; }
    // The server certificate's SHA-256 fingerprint (tls/wss), lower-case hex.
    std::string peer_fingerprint() {
        SSL* ssl = tls_   ? tls_->native_handle()
                   : wss_ ? wss_->next_layer().native_handle()
                          : nullptr;
        return peer_certificate_fingerprint(ssl);
    }
    asio::ip::tcp::socket& lowest() {
        if (tcp_) return *tcp_;
        if (tls_) return tls_->next_layer();
        if (ws_) return ws_->next_layer();
        return wss_->next_layer().next_layer();
    }

  private:
    bool fail(std::string e) {
        error_ = std::move(e);
        return false;
    }

    template <class Stream>
    bool tls_handshake(Stream& s, std::chrono::milliseconds timeout) {
        if (!set_client_tls_host(s.native_handle(), host_, true))
            return fail("cannot set the TLS host name " + host_);
        return wait(
            [&](auto done) {
                s.async_handshake(asio::ssl::stream_base::client, [done](auto e) { done(e); });
            },
            timeout);
    }
    template <class Ws>
    bool ws_handshake(Ws& w, const std::string& host_port, std::chrono::milliseconds timeout) {
        w.binary(true);
        return wait(
            [&](auto done) { w.async_handshake(host_port, "/", [done](auto e) { done(e); }); },
            timeout);
    }

    // Starts an operation and runs the context until it completes or the deadline; on timeout
    // the connection is closed (so the handler runs before this frame returns): unlike
    // test_client, a read that times out ends the connection.
    template <class Start>
    bool wait(Start start, std::chrono::milliseconds timeout) {
        boost::system::error_code ec = asio::error::would_block;
        bool done = false;
        auto on_done = [&ec, &done](boost::system::error_code e) {
            ec = e;
            done = true;
        };
        io_.restart();
        start(std::function<void(boost::system::error_code)>(on_done));
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done) {
            auto now = std::chrono::steady_clock::now();
            if (now >= deadline) break;
            io_.run_one_for(deadline - now);
        }
        if (!done) {
            boost::system::error_code ignored;
            if (tcp_ || tls_ || ws_ || wss_) lowest().close(ignored);
            io_.restart();
            while (!done) io_.run_one();
            error_ = "timed out";
            if (!ec || ec == asio::error::operation_aborted) ec = asio::error::timed_out;
            return false;
        }
        if (ec) error_ = ec.message();
        return !ec;
    }

    asio::io_context io_;
    transport kind_ = transport::tcp;
    std::string host_;
    std::shared_ptr<asio::ssl::context> ctx_;
    std::unique_ptr<asio::ip::tcp::socket> tcp_;
    std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket>> tls_;
    std::unique_ptr<websocket::stream<asio::ip::tcp::socket>> ws_;
    std::unique_ptr<websocket::stream<asio::ssl::stream<asio::ip::tcp::socket>>> wss_;
    frame_decoder dec_;
    boost::beast::flat_buffer msg_;
    char buf_[16384];
    bool closed_ = true;
    size_t messages_ = 0;
    std::string error_;
    std::optional<proto::error_msg> last_error_;
    std::optional<frame> last_skipped_;
};

}  // namespace imgate::test
