#pragma once
// The byte stream under a client session, one per transport (docs/protocol.md, "Transports"):
// plain TCP, TLS (OpenSSL driven straight on the non-blocking socket), and WebSocket over TCP
// or TLS (Boost.Beast; one binary message carries exactly one frame). The session reads by
// readiness (wait, then read until would_block), so an idle session holds no read buffer on
// any transport that allows it; a write takes the session's gathered frames as they are.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/config.hpp"

namespace imgate::gw {

namespace asio = boost::asio;
class session;

// Errors a session_io reports from read_some besides the socket's own.
enum class io_error {
    none,
    message_not_one_frame,  // a WebSocket message that is not exactly one protocol frame
    text_message,           // a WebSocket text message (the protocol is binary)
};
const char* to_string(io_error e);

// Owns one connection's socket and its transport state (SSL object, WebSocket stream). All calls
// run on the socket's strand; completions call back into the session given.
class session_io {
  public:
    virtual ~session_io() = default;

    virtual transport kind() const = 0;
    virtual asio::ip::tcp::socket& socket() = 0;
    asio::any_io_executor executor() { return socket().get_executor(); }

    // Calls s->on_readable(ec) once read_some may return data (or an error).
    virtual void wait_readable(std::shared_ptr<session> s) = 0;
    // Non-blocking: bytes read, or 0 with ec (would_block when nothing is ready; eof at the end).
    // A transport-level protocol violation sets `violation` and returns 0 with ec set.
    virtual size_t read_some(char* buf, size_t len, boost::system::error_code& ec,
                             io_error& violation) = 0;
    // Whether a read_some that returned less than asked left nothing behind (plain TCP: the
    // socket had no more), so the session can wait for readiness without reading would_block.
    virtual bool short_read_drains() const { return false; }
    // Writes every buffer (in order), then calls s->on_write(ec). One write at a time; the
    // buffers stay valid until the callback.
    virtual void write(const std::vector<asio::const_buffer>& bufs, std::shared_ptr<session> s) = 0;
    // No more output: TLS close_notify, WebSocket close frame, then the TCP send side.
    virtual void shutdown_send(std::shared_ptr<session> s) = 0;
    void close() {
        boost::system::error_code ec;
        socket().close(ec);
    }
    // The largest frame body the session accepts now: WebSocket refuses bigger messages before
    // buffering them (close 1009).
    virtual void set_max_body(size_t) {}
};

std::unique_ptr<session_io> make_tcp_io(asio::ip::tcp::socket sock);

// The settings of one listener's handshakes, and a deadline shared by every transport.
struct handshake_options {
    std::chrono::milliseconds timeout{10000};
    size_t max_prelogin_body = 8194;  // a WebSocket message before LOGIN: at most this + 12
    uint32_t header_limit = 8192;     // the WebSocket upgrade request
};

// Outcome of a transport handshake, for metrics and logs.
struct handshake_result {
    std::unique_ptr<session_io> io;  // null on failure
    const char* result = "ok";       // ok | timeout | failed | not_websocket
    std::string error;               // one line, for the log (debug level: strangers cause these)
};

// Runs the TLS and/or WebSocket handshake of a freshly accepted connection on its strand under
// opts.timeout. ctx is required for tls and wss. Never throws.
asio::awaitable<handshake_result> server_handshake(transport t, asio::ip::tcp::socket sock,
                                                   std::shared_ptr<asio::ssl::context> ctx,
                                                   handshake_options opts);

}  // namespace imgate::gw
