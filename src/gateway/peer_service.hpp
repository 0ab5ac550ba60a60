#pragma once
// What this gateway does with the frames an authenticated peer sends on its inbound link, without
// a socket: FORWARD delivered locally and answered, RECEIPT and DEVICE_CLAIM handed to the core,
// PRESENCE and ROOM_INTEREST applied to the directory, PING answered. Entries whose ids break the
// id rule are skipped and counted, never a reason to drop the link; entries past the peer's
// directory cap (cluster_rpc.max_peer_users / max_peer_rooms) are refused and counted, the link
// kept as well.
#include <string>

#include "common/frame.hpp"
#include "gateway/cluster_context.hpp"
#include "gateway/directory.hpp"
#include "gateway/frame_verdict.hpp"

namespace imgate::gw {

// Serves one authenticated inbound connection; owns only its once-per-connection log state.
class peer_service {
  public:
    peer_service(cluster_context& ctx, session_directory& dir, std::string peer);
    // Publishes the peer's directory gauges as the link ends (after a drop: 0).
    ~peer_service();
    peer_service(const peer_service&) = delete;
    peer_service& operator=(const peer_service&) = delete;

    // Appends the frames to send back (FORWARD_RESULT, PONG) to reply; reject: a protocol error.
    verdict on_frame(const frame& f, std::string& reply);

  private:
    void skipped(rpc::op o, uint32_t n);
    void applied(proto::target_kind kind, const apply_result& r);
    void publish(proto::target_kind kind);

    cluster_context& ctx_;
    session_directory& dir_;
    std::string peer_;
    bool skipped_logged_ = false;  // one warning per connection for refused entries
};

}  // namespace imgate::gw
