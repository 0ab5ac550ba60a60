#pragma once
// One client connection: its transport (session_io: tcp, tls, ws, wss), its deadline timer, the
// decoder and one bounded outbound queue flushed by a single gathered write. Every protocol
// decision is session_protocol's; this file carries out the actions it returns.
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/frame.hpp"
#include "common/protocol.hpp"
#include "gateway/hub.hpp"
#include "gateway/session_io.hpp"
#include "gateway/session_protocol.hpp"
#include "gateway/timer_wheel.hpp"

namespace imgate::gw {

namespace asio = boost::asio;
class gateway_server;
struct gateway_limits;

// Owns the transport, the deadline (an entry on the io_context's timer wheel), the decoder, the
// outbound queue and the protocol state of one connection. Input and the protocol run on the
// socket's executor (a strand when several threads run the io_context); push_frame, push_owned
// and finish may be called from any thread.
class session final : public session_sink,
                      public timer_wheel::entry,
                      public std::enable_shared_from_this<session> {
  public:
    session(gateway_server& srv, std::unique_ptr<session_io> io, uint64_t id);
    ~session() override;

    void start();

    uint64_t session_id() const override { return id_; }
    const std::string& user() const override { return user_; }
    const std::string& device() const override { return device_; }
    bool push_frame(const shared_frame& f) override;
    bool push_owned(std::string bytes) override;

    // Queues a final frame (kick/redirect/error), flushes the queue, then closes.
    void finish(std::string last_frame) override;
    void close_now();
    // Where gateway_server keeps this session among its connections (set once, at the start).
    uint32_t conn_slot() const { return conn_slot_; }
    void set_conn_slot(uint32_t slot) { conn_slot_ = slot; }
    asio::any_io_executor socket_executor() { return io_->executor(); }
    transport kind() const { return io_->kind(); }
    bool finishing() const { return closing_.load(std::memory_order_relaxed); }
    bool logged_in() const { return logged_in_.load(std::memory_order_acquire); }
    // Set by gateway_server::on_login in the same critical section as its state check, so a
    // drain sees every session that got in and no session that was refused.
    void set_logged_in() {
        logged_in_at_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                            std::memory_order_relaxed);
        logged_in_.store(true, std::memory_order_release);
    }
    // When set_logged_in ran (a rebalance leaves sessions that just arrived alone).
    std::chrono::steady_clock::time_point logged_in_at() const {
        return std::chrono::steady_clock::time_point(
            std::chrono::steady_clock::duration(logged_in_at_.load(std::memory_order_relaxed)));
    }

    // Why the session ended, for the logout event (docs/events.md): "kick:<reason>",
    // "redirect:<reason>", "error:<code>" from the last frame the gateway sent; "slow_consumer",
    // "connection_lost", or "client_closed" when the client ended it. Set once, by the first cause.
    std::string close_reason() const;
    // The client's IP address ("" when the socket no longer knows it).
    std::string remote_address() const;

    // Completions of the transport's wait and write (session_io calls them on the strand).
    void on_readable(const boost::system::error_code& ec);
    void on_write(const boost::system::error_code& ec);
    // The write coalescer's flush reached this session: its queued frames go out now.
    void flush_scheduled();

  private:
    struct out_item {
        shared_frame shared;
        std::string own;
        std::string_view view() const { return shared ? std::string_view(*shared) : own; }
    };

    struct gateway_port;  // session_gateway over gateway_server, for this session

    void wait_readable();
    void on_read_end();
    void carry_out(session_actions&& a);
    bool push_item(out_item item, size_t size);
    // Records why the session ends unless a cause was recorded before. Takes qmu().
    void note_close(std::string_view reason);
    // The same with qmu() already held.
    void note_close_locked(std::string_view reason);
    // The same from the frame the session ends with (KICK, REDIRECT or ERROR).
    void note_close_frame(std::string_view frame_bytes);
    void start_write();
    void arm_timer(steady_time at);
    void on_timer();
    // The deadline's wheel (its driver calls pin_due and on_due).
    friend class timer_wheel_service<session>;
    using wheel_service = timer_wheel_service<session>;
    wheel_service& wheel() { return wheel_service::of(io_->executor()); }
    std::shared_ptr<session> pin_due() { return weak_from_this().lock(); }
    void on_due();
    void refresh_limits(steady_time now);
    // An empty decoder at the current limit; the old one's buffer is freed.
    void reset_decoder();

    gateway_server& srv_;
    uint64_t id_;
    std::unique_ptr<session_io> io_;
    frame_decoder dec_;
    uint32_t conn_slot_ = 0;  // this session's slot in the server's connection table
    uint32_t dec_fed_ = 0;    // bytes fed to dec_ since it was last (re)created (saturating)
    uint32_t discarded_ = 0;  // input dropped since the session started finishing (saturating)
    // When the last write started and whether it carried several frames (last_write_stamp()): a
    // busy session joins the coalescer's next flush (write_waits()). Written on the session's
    // executor, read by push_item on any thread.
    std::atomic<uint32_t> last_write_us_;
    std::string user_;
    std::string device_;
    std::atomic<bool> logged_in_{false};
    std::atomic<std::chrono::steady_clock::rep> logged_in_at_{0};

    uint64_t limits_gen_ = 0;                // declared before proto_: its initializer writes it
    session_protocol proto_;                 // strand only
    std::atomic<uint64_t> max_outbound_{0};  // read by push_item on any thread

    // Guards the outbound state below: one of a pool of mutexes shared by sessions (picked by
    // id), not 40 bytes per idle session. Never held while another session's is taken.
    std::mutex& qmu() const;
    // What waits to be written and what is being written. Allocated when a frame is queued and
    // freed when a write leaves nothing behind: an idle session holds one null pointer.
    struct outbound {
        std::vector<out_item> queue;           // guarded by qmu()
        std::vector<out_item> writing;         // the write in progress (strand only)
        std::vector<asio::const_buffer> bufs;  // its buffers (strand only)
    };
    std::unique_ptr<outbound> out_;  // the pointer is guarded by qmu()
    static std::unique_ptr<outbound> new_outbound();
    uint64_t queued_bytes_ = 0;
    bool write_active_ = false;
    bool finish_after_flush_ = false;
    std::atomic<bool> closing_{false};           // no more input handled, no more frames accepted
    std::unique_ptr<std::string> close_reason_;  // guarded by qmu(); null until a cause is known
};

}  // namespace imgate::gw
