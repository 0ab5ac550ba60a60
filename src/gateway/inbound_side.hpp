#pragma once
// The listening side of the mesh: the RPC acceptor, the unauthenticated connections still in
// their handshake (bounded by max_handshakes as well as by connect_timeout), the authenticated
// inbound connection of each peer, and the directory those peers' announcements build. The
// acceptor's decisions are rpc::acceptor_handshake's; the frames of an authenticated peer are
// peer_service's.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "gateway/cluster_context.hpp"
#include "gateway/directory.hpp"
#include "gateway/peer_conn.hpp"

namespace imgate::gw {

// Owns the acceptor, every inbound connection and the session directory. Lives on the strand.
class inbound_side : public std::enable_shared_from_this<inbound_side> {
  public:
    // dir: null for the default announced_directory.
    inbound_side(std::shared_ptr<cluster_context> ctx, std::unique_ptr<session_directory> dir);

    // Binds and listens on the fleet's rpc address of this gateway (throws std::runtime_error);
    // publishes the bound port to ctx.port.
    void bind(const fleet_config& fleet);
    // Starts the accept loop (on the strand). on_peer_up(peer): a peer has authenticated its
    // inbound link (called on the strand).
    void start(std::function<void(const std::string&)> on_peer_up);
    // Closes the acceptor and every connection.
    void stop();
    // After a reload: closes the links of peers no longer in the fleet (their cleanup drops what
    // they announced) and drops what removed peers whose entries were held had announced.
    void close_non_members();

    session_directory& directory() { return *dir_; }
    // The directory, when it is the default in-memory one (answers inline).
    announced_directory* announced() { return announced_; }

  private:
    static boost::asio::awaitable<void> accept_loop(std::shared_ptr<inbound_side> self);
    static boost::asio::awaitable<void> serve(std::shared_ptr<inbound_side> self,
                                              std::shared_ptr<peer_conn> c);
    boost::asio::awaitable<void> guard_close(std::shared_ptr<peer_conn> c);
    // The peer's inbound link ended: a clean close (or a peer that left the fleet, or a zero
    // unreachable_hold) drops its entries; any other end holds them for unreachable_hold.
    void link_ended(const std::string& peer, const peer_conn& c);
    void hold(const std::string& peer, const std::string& why);
    void on_hold_timer(const std::string& peer, uint64_t generation);
    // A new link from the peer authenticated: a hold of its entries ends (its snapshot follows).
    void end_hold(const std::string& peer);
    void drop(const std::string& peer);
    // Republishes the peer's gauges (entries, overflowed, held) and the directory's totals.
    void publish_peer(const std::string& peer);

    std::shared_ptr<cluster_context> ctx_;
    std::unique_ptr<session_directory> dir_;
    announced_directory* announced_;
    std::function<void(const std::string&)> on_peer_up_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::map<std::string, std::shared_ptr<peer_conn>> inbound_;  // authenticated, by peer id
    std::set<std::shared_ptr<peer_conn>> handshaking_;
    // One timer per peer whose entries are held (cluster_rpc.unreachable_hold).
    std::map<std::string, std::unique_ptr<boost::asio::steady_timer>> hold_timers_;
    bool handshake_cap_logged_ = false;
};

}  // namespace imgate::gw
