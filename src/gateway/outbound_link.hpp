#pragma once
// One persistent outbound link to a peer: dial, handshake, link-up snapshot, the calls in flight
// and their deadlines, the answers, and reconnecting with backoff. The link carries what this
// gateway starts (FORWARD, RECEIPT, PRESENCE, ROOM_INTEREST, DEVICE_CLAIM). Protocol decisions
// stay in the socket-free rpc::connector_handshake and rpc::call_table; bytes go through
// peer_conn.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>

#include "common/backoff.hpp"
#include "gateway/call_table.hpp"
#include "gateway/cluster_context.hpp"
#include "gateway/peer_conn.hpp"

namespace imgate::gw {

// Owns the reconnect loop, the current connection, the call table and the backoff of one peer.
// Lives on the cluster's strand.
class outbound_link : public std::enable_shared_from_this<outbound_link> {
  public:
    outbound_link(std::shared_ptr<cluster_context> ctx, gateway_spec spec);

    // Starts the reconnect loop and the call timer.
    void start();
    // For good (peer left the fleet, or stop): closes the connection, fails every call.
    void remove();

    const gateway_spec& spec() const { return spec_; }
    void set_spec(gateway_spec s) { spec_ = std::move(s); }
    // Authenticated, with a live connection: calls and announcements can go out.
    bool usable() const { return up_ && conn_; }
    // The peer has just dialled us (it restarted): retry now instead of after the backoff.
    void retry_now();

    // Registers a call (the link must be usable); its correlation id, or 0 when max_in_flight
    // calls are already pending (counted; cb is then not called).
    uint32_t start_call(rpc::clock::time_point deadline, rpc::call_table::callback cb);
    // The FORWARD of call corr, encoded here, or once for several peers (its corr patched).
    void send_forward(const outbound_message& msg, uint32_t corr);
    void send_forward(std::string_view encoded, uint32_t corr);
    // Whole frames nobody answers (RECEIPT, PRESENCE, ROOM_INTEREST, DEVICE_CLAIM).
    void send(std::string_view bytes);

  private:
    static boost::asio::awaitable<void> run(std::shared_ptr<outbound_link> l);
    static boost::asio::awaitable<void> run_call_timer(std::shared_ptr<outbound_link> l);
    boost::asio::awaitable<bool> dial(std::shared_ptr<peer_conn> c);
    boost::asio::awaitable<void> serve(std::shared_ptr<peer_conn> c);
    verdict on_frame(frame& f);

    std::shared_ptr<cluster_context> ctx_;
    gateway_spec spec_;
    rpc::call_table calls_;
    backoff backoff_;
    boost::asio::steady_timer call_timer_;
    boost::asio::steady_timer retry_timer_;
    std::shared_ptr<peer_conn> conn_;
    bool up_ = false;
    bool removed_ = false;
};

}  // namespace imgate::gw
