#pragma once
// The fleet as one server: the authenticated gateway-to-gateway RPC mesh behind gw::cluster.
// One persistent outbound link per peer carries what this gateway starts (FORWARD, RECEIPT, its
// PRESENCE and ROOM_INTEREST announcements); the RPC listener accepts the peers' links and serves
// what they start. docs/protocol.md ("Internal RPC") is the wire spec, docs/architecture.md
// ("Cross-node delivery") the design.
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "common/config.hpp"
#include "common/metrics.hpp"
#include "gateway/backend_config.hpp"
#include "gateway/cluster.hpp"
#include "gateway/directory.hpp"
#include "gateway/rpc_config.hpp"

namespace imgate::gw {

class rpc_cluster final : public cluster {
  public:
    // Binds the RPC listener on self's fleet `rpc` address (throws std::runtime_error when it
    // cannot) and starts one link per peer. `dir` (tests) replaces the directory; otherwise
    // dcfg.mode decides: announced (the in-memory map fed by the peers' announcements) or redis
    // (a Redis connection named "directory", made with rcfg, on the cluster's strand, and a
    // redis_directory; no announcements are sent).
    rpc_cluster(boost::asio::io_context& io, const fleet_config& fleet, const std::string& self_id,
                const std::string& secret, const rpc_config& cfg, local_delivery& local,
                metrics_registry& metrics, std::unique_ptr<session_directory> dir = nullptr,
                const directory_config& dcfg = {}, const redis_config& rcfg = {});
    ~rpc_cluster() override;

    void forward(const outbound_message& msg, std::function<void(forward_result)> done) override;
    void send_receipt(const std::string& origin_gateway, uint64_t origin_session,
                      const proto::receipt_msg& r) override;
    void user_online(const std::string& user) override;
    void user_offline(const std::string& user) override;
    void device_login(const std::string& user, const std::string& device) override;
    void room_interest(const std::string& room, bool interested) override;
    void user_sessions(const std::string& user, uint32_t sessions) override;
    void presence(const std::vector<std::string>& users,
                  std::function<void(std::vector<presence_answer>)> done) override;
    void reload(const fleet_config& fleet) override;
    void stop() override;
    mesh_status mesh() const override;

    // Observations for tests and the status page; safe from any thread.
    uint16_t rpc_port() const;
    size_t links_up() const;         // authenticated outbound links
    size_t inbound_up() const;       // authenticated inbound links
    size_t directory_users() const;  // user entries learnt from peers
    size_t directory_rooms() const;
    uint64_t connects(const std::string& peer) const;  // successful handshakes to peer, ever
    // What the directory says now (asks the cluster's strand; never call it from that thread).
    peer_list lookup(proto::target_kind kind, const std::string& target) const;
    // The same for the presence API (blocking; never from the strand).
    std::vector<presence_answer> presence_of(const std::vector<std::string>& users) const;
    // redis mode: whether the directory's Redis connection is up; false in announced mode.
    bool redis_connected() const;

    struct impl;

  private:
    std::shared_ptr<impl> impl_;
};

}  // namespace imgate::gw
