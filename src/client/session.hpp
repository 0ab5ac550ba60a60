#pragma once
// An asynchronous client session to one gateway over the client protocol (docs/protocol.md):
// connect with a timeout, log in, then a read loop with a deadline, one writer with a bounded
// queue, heartbeats at the interval the gateway announced, and callbacks for every event.
// Transports: tcp (the frames on the socket), tls (the same bytes inside TLS), ws and wss (one
// binary WebSocket message per frame, each way; wss inside TLS).
// Used by `imgate listen/send/load` and by tests. Not thread-safe: use it from one executor
// (or a strand); run the whole tool on one io_context thread. Create it with make_shared.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "client/tls_client.hpp"
#include "common/config.hpp"
#include "common/frame.hpp"
#include "common/protocol.hpp"

namespace imgate::client {

namespace asio = boost::asio;
using std::chrono::milliseconds;

struct session_options {
    milliseconds connect_timeout{5000};
    milliseconds login_timeout{10000};
    // Read deadline when the gateway announced no heartbeat; otherwise it is derived from the
    // announced interval (a quiet gateway still answers our pings).
    milliseconds default_read_timeout{60000};
    milliseconds read_grace{5000};  // added to two heartbeat intervals for the read deadline
    milliseconds write_timeout{10000};
    size_t max_queue_bytes = 1 << 20;         // outbound bytes not yet handed to the socket
    uint32_t max_frame = 1 << 20;             // largest frame body accepted from the gateway
    bool auto_ack = true;                     // ack every DELIVER (so senders get receipts)
    bool heartbeat = true;                    // send PING at the announced interval
    std::optional<asio::ip::address> source;  // local address to bind before connecting
    transport via = transport::tcp;
    std::shared_ptr<const tls_client> tls;  // required for tls and wss
    milliseconds handshake_timeout{10000};  // TLS and WebSocket handshakes, after the connect
};

enum class end_reason {
    local,           // close() was called
    eof,             // the gateway closed the connection
    io_error,        // read or write failed
    read_timeout,    // no frame within the read deadline
    write_timeout,   // a write stalled (the gateway stopped reading)
    queue_overflow,  // our own outbound queue passed its bound (ack/ping could not be queued)
    protocol_error,  // bad frame, unknown op or malformed body from the gateway
    kicked,          // KICK received
    redirected,      // REDIRECT received
};
const char* to_string(end_reason r);

// Why a session ended, with the last KICK/REDIRECT/ERROR frame seen.
struct session_end {
    end_reason reason = end_reason::local;
    boost::system::error_code ec;
    std::string detail;
    std::optional<proto::kick_msg> kick;
    std::optional<proto::redirect_msg> redirect;
    std::optional<proto::error_msg> last_error;
    std::string describe() const;  // one human line
};
// The loss reason of the load's events: eof, reset, timeout, kick:<reason>, redirect:<reason>,
// error:<code> (the gateway's last ERROR before it closed, or what went wrong on our side:
// error:bad_frame, error:queue_overflow), local.
std::string loss_reason(const session_end& e);

struct login_outcome {
    bool ok = false;
    proto::login_result_msg result;
    std::optional<proto::error_msg> error;  // the gateway's ERROR frame (auth_failed, ...)
    boost::system::error_code ec;           // transport failure or timeout
    std::string detail;                     // one human line when !ok
    // After an ERROR rate_limited or server_busy the gateway may send one more frame, a REDIRECT
    // whose reconnect_after_ms is the wait it asks for (docs/protocol.md section 5).
    std::optional<proto::redirect_msg> retry_redirect;
};

struct session_events {
    std::function<void(const proto::deliver_msg&)> on_deliver;
    std::function<void(const proto::push_msg&)> on_push;
    std::function<void(const proto::send_result_msg&)> on_send_result;
    std::function<void(const proto::receipt_msg&)> on_receipt;
    std::function<void(const proto::room_result_msg&)> on_room_result;
    std::function<void(const proto::error_msg&)> on_error;  // non-fatal ERROR frames
};

class client_session : public std::enable_shared_from_this<client_session> {
  public:
    explicit client_session(asio::any_io_executor ex, session_options opts = {});
    ~client_session();
    client_session(const client_session&) = delete;
    client_session& operator=(const client_session&) = delete;

    // Resolves host and connects within connect_timeout, then does the TLS and/or WebSocket
    // handshake (ws_path: the upgrade's target, "" for "/") within handshake_timeout. The error
    // names the address; a refused certificate also sets certificate_refused().
    asio::awaitable<boost::system::error_code> connect(std::string host, uint16_t port,
                                                       std::string* detail = nullptr,
                                                       std::string ws_path = {});
    // Sends LOGIN and waits (login_timeout) for LOGIN_RESULT or ERROR.
    asio::awaitable<login_outcome> login(std::string token);
    // Reads, writes and heartbeats until the session ends; returns why. Frames queued before
    // run() (join, send) are written as soon as it starts.
    asio::awaitable<session_end> run(session_events ev);

    // Queue a frame; false when the session is closed or the bounded queue is full.
    bool send(proto::target_kind kind, const std::string& target, std::string payload,
              uint64_t client_msg_id);
    bool join(const std::string& room);
    bool leave(const std::string& room);
    bool ack(uint64_t server_msg_id);
    void close();
    // Closes once everything queued (acks, the last send) has been written.
    void close_after_flush();

    bool is_open() const { return open_; }
    const proto::login_result_msg& info() const { return info_; }
    size_t queued_bytes() const { return pending_.size(); }
    std::string remote() const { return remote_; }
    uint64_t frames_in() const { return frames_in_; }
    uint64_t unknown_ops() const { return unknown_ops_; }
    transport via() const { return opts_.via; }
    // The last connect() failed because the gateway's certificate was refused (not trusted, or
    // not for that host): fatal for this gateway, retrying it cannot help.
    bool certificate_refused() const { return cert_refused_; }

  private:
    struct layers;  // the TLS and WebSocket streams over socket_ (session.cpp)
    struct deadline_state {
        bool done = false;
        bool fired = false;
    };
    std::function<void(boost::system::error_code)> deadline_handler(
        std::shared_ptr<deadline_state> st);
    template <class M>
    bool enqueue(const M& m);
    void shutdown(end_reason r, boost::system::error_code ec = {}, std::string detail = "");
    asio::awaitable<boost::system::error_code> read_more();
    // Reads until one whole frame is decoded (into f), a framing error (f empty, decoder_
    // says which), or a read error (returned).
    asio::awaitable<boost::system::error_code> read_frame(std::optional<frame>& f);
    asio::awaitable<boost::system::error_code> read_message();  // ws/wss: one frame
    // One more frame within `within` after a rate refusal: the REDIRECT carrying the retry hint.
    asio::awaitable<std::optional<proto::redirect_msg>> read_retry_hint(milliseconds within);
    asio::awaitable<boost::system::error_code> write_all(std::string_view bytes);
    asio::awaitable<boost::system::error_code> handshake(const std::string& host, uint16_t port,
                                                         const std::string& ws_path,
                                                         std::string* detail);
    bool handle(const frame& f);  // false: the session ended
    asio::awaitable<void> writer(std::shared_ptr<client_session> self);
    asio::awaitable<void> ticker(std::shared_ptr<client_session> self);
    milliseconds read_timeout() const;

    asio::any_io_executor ex_;
    session_options opts_;
    asio::ip::tcp::socket socket_;
    std::unique_ptr<layers> layers_;  // after socket_: its streams refer to it
    asio::steady_timer wake_;         // wakes the writer
    asio::steady_timer tick_;         // heartbeats and deadlines
    frame_decoder decoder_;
    std::string pending_;   // frames queued, not yet written
    std::string inflight_;  // frames being written
    bool writing_ = false;
    bool open_ = false;
    bool running_ = false;
    bool closing_ = false;
    std::chrono::steady_clock::time_point last_rx_;
    std::chrono::steady_clock::time_point write_started_;
    std::chrono::steady_clock::time_point last_ping_;
    proto::login_result_msg info_;
    session_events ev_;
    session_end end_;
    bool ended_ = false;
    std::string remote_;
    uint64_t frames_in_ = 0;
    uint64_t unknown_ops_ = 0;
    uint32_t next_corr_ = 1;
    bool cert_refused_ = false;
    std::string transport_error_;  // why a WebSocket message was refused
    char rbuf_[4096];
};

}  // namespace imgate::client
