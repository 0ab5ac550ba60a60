#pragma once
// A blocking client of the gateway's wire protocol for tests: connect, send frames, read frames
// with a deadline, wait for the peer to close. Header-only; uses the common codec. Every read
// has a deadline, so a test never hangs on a silent server.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/frame.hpp"
#include "common/jwt.hpp"
#include "common/protocol.hpp"

namespace imgate::test {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Owns one TCP connection and its own io_context; not thread-safe (one test thread uses it).
class test_client {
  public:
    explicit test_client(uint32_t max_body = absolute_max_frame_body)
        : sock_(io_), dec_(max_body) {}

    test_client(const test_client&) = delete;
    test_client& operator=(const test_client&) = delete;

    // Connects with a deadline; false on refusal or timeout.
    bool connect(const std::string& host, uint16_t port,
                 std::chrono::milliseconds timeout = 3000ms) {
        boost::system::error_code ec = asio::error::would_block;
        asio::ip::tcp::endpoint ep(asio::ip::make_address(host, ec), port);
        if (ec) return false;
        ec = asio::error::would_block;
        sock_.async_connect(ep, [&](const boost::system::error_code& e) { ec = e; });
        if (!run_until([&] { return ec != asio::error::would_block; }, timeout)) return false;
        if (ec) return false;
        sock_.set_option(asio::ip::tcp::no_delay(true), ec);
        closed_ = false;
        return true;
    }

    // "host:port" form, as written in ready files.
    bool connect(const std::string& host_port, std::chrono::milliseconds timeout = 3000ms) {
        auto pos = host_port.rfind(':');
        if (pos == std::string::npos) return false;
        return connect(host_port.substr(0, pos),
                       static_cast<uint16_t>(std::stoi(host_port.substr(pos + 1))), timeout);
    }

    // Writes raw bytes (may be a partial or malformed frame). False when the socket is broken.
    bool send_raw(std::string_view bytes, std::chrono::milliseconds timeout = 3000ms) {
        boost::system::error_code ec = asio::error::would_block;
        asio::async_write(sock_, asio::buffer(bytes.data(), bytes.size()),
                          [&](const boost::system::error_code& e, size_t) { ec = e; });
        if (!run_until([&] { return ec != asio::error::would_block; }, timeout)) return false;
        return !ec;
    }

    template <class M>
    bool send(const M& m, uint32_t corr = 0) {
        return send_raw(proto::encode(m, corr));
    }

    // The next whole frame, or nullopt on timeout, close (closed() == true) or a framing error.
    std::optional<frame> read_frame(std::chrono::milliseconds timeout = 3000ms) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (auto f = dec_.next()) return f;
            if (dec_.error() != frame_error::none || closed_) return std::nullopt;
            auto now = std::chrono::steady_clock::now();
            if (now >= deadline) return std::nullopt;
            boost::system::error_code ec = asio::error::would_block;
            size_t n = 0;
            sock_.async_read_some(asio::buffer(buf_, sizeof buf_),
                                  [&](const boost::system::error_code& e, size_t k) {
                                      ec = e;
                                      n = k;
                                  });
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
            bool in_time = run_until([&] { return ec != asio::error::would_block; }, left);
            if (n) dec_.feed(std::string_view(buf_, n));
            // eof or reset: frames already fed are still returned by the next loop turn.
            if (ec && ec != asio::error::operation_aborted) closed_ = true;
            if (!in_time) return dec_.next();
        }
    }

    // The next frame decoded as M, skipping frames of other ops (pongs, deliveries...) that are
    // remembered in skipped(). nullopt on timeout/close or when an M frame fails to decode.
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
            ++skipped_;
        }
    }

    // Reads (and discards) until the server closes the connection; false on timeout.
    bool wait_closed(std::chrono::milliseconds timeout = 3000ms) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!closed_) {
            auto now = std::chrono::steady_clock::now();
            if (now >= deadline) return false;
            auto f =
                read_frame(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
            if (!f && !closed_ && dec_.error() != frame_error::none) return false;
        }
        close();  // like a real client: close our side once the server closed its side
        return true;
    }

    // Sends a LOGIN with token and waits for LOGIN_RESULT; an ERROR frame instead is kept in
    // last_error(). nullopt on refusal or timeout.
    std::optional<proto::login_result_msg> login(const std::string& token,
                                                 std::chrono::milliseconds timeout = 3000ms) {
        if (!send(proto::login_msg{token})) return std::nullopt;
        auto f = read_frame(timeout);
        if (!f) return std::nullopt;
        if (auto r = proto::decode<proto::login_result_msg>(*f)) return r;
        last_error_ = proto::decode<proto::error_msg>(*f);
        return std::nullopt;
    }

    // An ERROR frame, if the next frame is one.
    std::optional<proto::error_msg> read_error(std::chrono::milliseconds timeout = 3000ms) {
        auto f = read_frame(timeout);
        if (!f) return std::nullopt;
        return proto::decode<proto::error_msg>(*f);
    }

    void close() {
        boost::system::error_code ec;
        sock_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
        sock_.close(ec);
        closed_ = true;
    }

    bool closed() const { return closed_; }
    frame_error decode_error() const { return dec_.error(); }
    const std::optional<proto::error_msg>& last_error() const { return last_error_; }
    size_t skipped() const { return skipped_; }
    const std::optional<frame>& last_skipped() const { return last_skipped_; }
    asio::ip::tcp::socket& socket() { return sock_; }

  private:
    template <class Pred>
    bool run_until(Pred done, std::chrono::milliseconds timeout) {
        io_.restart();
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done()) {
            auto now = std::chrono::steady_clock::now();
            if (now >= deadline) break;
            io_.run_one_for(deadline - now);
        }
        if (done()) return true;
        // Timed out: cancel the pending operation and let its handler run so the captured
        // references never outlive this frame.
        boost::system::error_code ec;
        sock_.cancel(ec);
        io_.restart();
        while (!done()) io_.run_one();
        return false;
    }

    asio::io_context io_;
    asio::ip::tcp::socket sock_;
    frame_decoder dec_;
    char buf_[16384];
    bool closed_ = true;
    std::optional<proto::error_msg> last_error_;
    std::optional<frame> last_skipped_;
    size_t skipped_ = 0;
};

// A token for tests; exp is relative to now.
inline std::string make_token(const std::string& secret, const std::string& user,
                              const std::string& device = "",
                              std::chrono::seconds ttl = std::chrono::seconds(3600)) {
    int64_t now = jwt::now_seconds();
    return jwt::sign(jwt::claims{user, device, now + ttl.count()}, secret, now);
}

}  // namespace imgate::test
