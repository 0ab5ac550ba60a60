#pragma once
// The seam between one gateway's local sessions and the rest of the fleet. The gateway core
// implements local_delivery; the cluster layer (single node, or the authenticated RPC mesh)
// implements cluster. Neither side knows how the other is built.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/protocol.hpp"

namespace imgate::gw {

// A message that may have recipients on other gateways.
struct outbound_message {
    uint64_t server_msg_id = 0;
    proto::target_kind kind = proto::target_kind::user;
    std::string target;  // user id or room id
    std::string from_user;
    std::string from_device;
    uint64_t ts_ms = 0;
    std::string payload;
    bool is_push = false;        // backend push (POST /push): delivered as a PUSH frame, no receipt
    std::string origin_gateway;  // where the sender session lives (for receipts)
    uint64_t origin_session = 0;  // sender session id on the origin gateway; 0: no receipts
    uint64_t client_msg_id = 0;
};

struct forward_result {
    proto::code status =
        proto::code::offline;  // ok when reached > 0; unavailable/timeout on failure
    uint32_t reached = 0;      // sessions reached on other gateways
};

// One peer's outbound link as the status page shows it: "up" (authenticated), "connecting" (never
// tried yet since start-up or since it joined the fleet) or "down" (the last attempt failed or
// the link was lost; retried with backoff).
struct mesh_peer {
    std::string id;
    std::string state;
    std::optional<int64_t> since_ms;  // wall clock (Unix ms) of the last state change
};

// The mesh as seen from this gateway, for GET /status (docs/admin-api.md).
struct mesh_status {
    size_t peers_expected = 0;  // the other gateways of the fleet file
    size_t links_up = 0;        // authenticated outbound links
    std::vector<mesh_peer> peers;
    std::string secret_fingerprint;  // of the cluster secret in use; empty: none (single node)
};

// Where one user is online besides this gateway, for the presence API (GET /presence).
struct presence_location {
    std::string gateway;
    // Sessions (devices) of the user there. Known in redis mode (each gateway records its
    // count); nullopt in announced mode, whose announcements say only "online here".
    std::optional<uint32_t> devices;
    // Not confirmed. announced mode: the gateway's link ended without a clean close and its
    // entries are held (cluster_rpc.unreachable_hold): it may still serve the user, but cannot be
    // reached now. redis mode: the gateway's lease lapsed (cut off from Redis) while its link is
    // up: it is still asked.
    bool held = false;
};

struct presence_answer {
    // false: the directory could not answer (redis mode with Redis unreachable), so where else
    // the user is online is unknown; `peers` is then empty.
    bool known = true;
    std::vector<presence_location> peers;  // never this gateway
};

// Implemented by the gateway core. Called by the cluster for traffic arriving from peers; may be
// called from any thread.
class local_delivery {
  public:
    virtual ~local_delivery() = default;
    // Delivers to this gateway's sessions of msg.target (user or room members); returns how many
    // sessions it reached. Duplicate server_msg_id from a retried forward must not be delivered
    // twice.
    virtual uint32_t deliver_local(const outbound_message& msg) = 0;
    // A recipient elsewhere acked a message whose sender is the local session origin_session.
    virtual void receipt_local(uint64_t origin_session, const proto::receipt_msg& r) = 0;
    // Snapshots used to (re)announce this gateway's presence and room interest to a peer.
    virtual std::vector<std::string> local_users() const = 0;
    virtual std::vector<std::string> local_rooms() const = 0;
    // The same user+device logged in on a peer: this gateway's sessions of it are older and are
    // replaced (KICK replaced), as a second login on this gateway would replace them.
    virtual void device_claimed(const std::string& user, const std::string& device) = 0;
};

// Implemented by the cluster layer. All methods are thread-safe.
class cluster {
  public:
    virtual ~cluster() = default;
    // Sends msg to every other gateway that may hold recipients (precise directory for users,
    // room interest for rooms). `done` is called exactly once, possibly on another thread, at
    // the latest when the RPC deadline passes.
    virtual void forward(const outbound_message& msg, std::function<void(forward_result)> done) = 0;
    // Routes a delivery receipt back to the sender's gateway.
    virtual void send_receipt(const std::string& origin_gateway, uint64_t origin_session,
                              const proto::receipt_msg& r) = 0;
    // Local presence and room interest changed: first local session of a user came online / the
    // last one left; first local member joined a room / the last one left.
    virtual void user_online(const std::string& user) = 0;
    virtual void user_offline(const std::string& user) = 0;
    virtual void room_interest(const std::string& room, bool interested) = 0;
    // A session of user+device logged in here: tells the peers holding the user, so an older
    // session of the same device on another gateway is replaced fleet-wide.
    virtual void device_login(const std::string& user, const std::string& device) = 0;
    // The number of local sessions of user changed (0 after the last one left). Called after
    // user_online/user_offline for the same change. redis mode records it for the presence API.
    virtual void user_sessions(const std::string& user, uint32_t sessions) {
        (void)user;
        (void)sessions;
    }
    // Where else each user is online (same order as users), from whichever directory is in use.
    // `done` is called exactly once, possibly on another thread. Default (single node): nowhere.
    virtual void presence(const std::vector<std::string>& users,
                          std::function<void(std::vector<presence_answer>)> done) {
        done(std::vector<presence_answer>(users.size()));
    }
    // SIGHUP: new fleet membership and secret.
    virtual void reload(const fleet_config& fleet) = 0;
    virtual void stop() = 0;
    // A snapshot for the status page; cheap, safe from any thread. Default: no mesh.
    virtual mesh_status mesh() const { return {}; }
};

// A gateway alone: forward() answers offline with 0 reached at once.
std::unique_ptr<cluster> make_single_node_cluster();

}  // namespace imgate::gw

#include <boost/asio/io_context.hpp>

#include "common/metrics.hpp"
#include "gateway/backend_config.hpp"
#include "gateway/rpc_config.hpp"

namespace imgate::gw {

// Builds the cluster layer for gateway `self_id` of `fleet` (defined in cluster_factory.cpp,
// owned by the cross-node work). With one gateway, or no cluster secret, it is single-node.
// `secret` is the cluster secret (empty: single node). `dir` and `redis` (gateway.yaml's
// directory: and redis:) choose the directory: in redis mode the RPC cluster opens a Redis
// connection named "directory" on its strand and looks locations up there. Called once at
// start-up; the directory sections are start-up only.
std::unique_ptr<cluster> make_cluster(const fleet_config& fleet, const std::string& self_id,
                                      const std::string& secret, const rpc_config& cfg,
                                      local_delivery& local, boost::asio::io_context& io,
                                      metrics_registry& metrics, const directory_config& dir = {},
                                      const redis_config& redis = {});

}  // namespace imgate::gw
