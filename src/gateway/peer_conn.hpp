#pragma once
// One TCP connection of the RPC mesh, either direction: the socket, the frame decoder, the
// bounded outbound queue drained by a single writer, the reader, and the watchdog that carries
// out link_liveness's decisions. It makes no protocol decisions: callers hand it frames to queue
// and a handler for the frames it reads.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/frame.hpp"
#include "common/metrics.hpp"
#include "gateway/cluster_context.hpp"
#include "gateway/frame_verdict.hpp"
#include "gateway/link_liveness.hpp"
#include "gateway/rpc_handshake.hpp"
#include "gateway/rpc_wire.hpp"

namespace imgate::gw {

// Why read_frames() returned.
enum class read_end { closed, bad_frame, stopped, rejected };

// Owns the socket and both byte buffers; send() and its variants are the only way to queue bytes.
// Lives on the cluster's strand.
class peer_conn : public std::enable_shared_from_this<peer_conn> {
  public:
    using tcp = boost::asio::ip::tcp;

    // Not connected yet (the dialling side connects it with connect()).
    peer_conn(const cluster_strand& s, uint64_t max_queue);
    // An accepted socket, created on the strand.
    peer_conn(const cluster_strand& s, tcp::socket sock, uint64_t max_queue);

    boost::asio::awaitable<boost::system::error_code> connect(const tcp::endpoint& ep);
    void set_no_delay();
    std::string remote_address() const;  // "?" when unknown

    // Queues whole frames. Past max_queue the peer is a slow consumer and the connection is
    // closed (overflowed() then says so); false when the bytes were not queued. bounded=false:
    // the link-up snapshot, which may exceed the bound once without making the peer slow.
    bool send(std::string_view bytes, bool bounded = true);
    // Same, patching the correlation id of a frame encoded once for several peers.
    bool send_with_corr(std::string_view bytes, uint32_t corr);
    // Same, the frame encoded straight into the queue by encode(std::string& out).
    template <class Encode>
    bool send_encoded(Encode&& encode) {
        if (closed_) return false;
        bool was_empty = pending_.empty();
        encode(pending_);
        return after_append(was_empty, true);
    }
    template <class M>
    bool send_msg(const M& m, uint32_t corr = 0) {
        auto enc = [&](std::string& out) { rpc::encode(out, m, corr); };
        return send_encoded(enc);
    }

    // Starts the single writer; it runs until the connection closes.
    void start_writer();
    // Starts the watchdog (pinger: the dialling side); the counters see a close before it happens.
    void start_watchdog(const rpc_config& cfg, bool pinger, counter& read_timeouts,
                        counter& write_stalls);
    // Reads and hands each frame to h until h stops or rejects, the stream breaks or the
    // connection closes. The caller closes the connection when it has counted what it must.
    boost::asio::awaitable<read_end> read_frames(const std::function<verdict(frame&)>& h);

    // The handshake has completed: frames may now be as large as rpc::max_body (until then the
    // decoder refuses any frame larger than rpc::max_handshake_body, and reads are small).
    void set_authenticated();

    void close();
    // Closes, noting why (the first reason noted is kept: see end_reason()).
    void close(std::string_view why);
    // Closes once the queue is written (AUTH_FAIL reaches a refused peer).
    void close_when_flushed();
    bool closed() const { return closed_; }
    // The peer closed the connection itself (the reader saw EOF): it ended or closed on purpose,
    // which a silent host or a broken path never does.
    bool closed_by_peer() const { return closed_by_peer_; }
    // Why the connection ended, for logs: "closed by the peer", "nothing read for peer_timeout",
    // an I/O error's message, ...; empty while open, or when closed with no reason noted.
    const std::string& end_reason() const { return end_reason_; }
    bool overflowed() const { return overflowed_; }
    size_t queued_bytes() const { return pending_.size(); }

  private:
    bool after_append(bool was_empty, bool bounded);
    static boost::asio::awaitable<void> run_writer(std::shared_ptr<peer_conn> c);
    static boost::asio::awaitable<void> run_watchdog(std::shared_ptr<peer_conn> c,
                                                     rpc::link_liveness live,
                                                     std::chrono::milliseconds tick,
                                                     counter& read_timeouts, counter& write_stalls);

    cluster_strand strand_;
    tcp::socket sock_;
    boost::asio::steady_timer wake_;  // the writer sleeps on it while the queue is empty
    boost::asio::steady_timer dog_;   // the watchdog's tick
    frame_decoder dec_{rpc::max_handshake_body, rpc_protocol_version};
    std::string read_buf_;           // one read's bytes; small until set_authenticated()
    bool large_frame_held_ = false;  // the decoder's buffer grew for a large frame
    std::string pending_;            // queued frames
    std::string writing_;            // the frames of the write in progress, swapped out of pending_
    uint64_t max_queue_;
    bool closed_ = false;
    bool in_write_ = false;
    bool close_after_flush_ = false;
    bool overflowed_ = false;
    bool closed_by_peer_ = false;
    std::string end_reason_;
    bool read_seen_ = false;  // since the watchdog's last tick
    bool write_seen_ = false;
    std::chrono::steady_clock::time_point write_started_;
};

// Where a handshake ended: its last step and why the frame reader stopped.
struct handshake_outcome {
    rpc::hs_step last;
    read_end end{};
    const char* failure_reason(bool timed_out) const;
};

// Feeds the frames c reads to either side's socket-free handshake and queues what it answers,
// until it succeeds, fails or the connection ends (the caller's guard timer bounds it in time).
template <class Handshake>
boost::asio::awaitable<handshake_outcome> run_handshake(std::shared_ptr<peer_conn> c,
                                                        Handshake& hs) {
    handshake_outcome out;
    std::function<verdict(frame&)> h = [&hs, &out, c](frame& f) {
        out.last = hs.on_frame(f);
        c->send(out.last.out);
        return out.last.st == rpc::hs_step::state::pending ? verdict::more : verdict::stop;
    };
    out.end = co_await c->read_frames(h);
    co_return out;
}

}  // namespace imgate::gw
