#pragma once
// What this gateway does with the frames an authenticated peer sends on its inbound link, without
// a socket: FORWARD delivered locally and answered, RECEIPT and DEVICE_CLAIM handed to the core,
// PRESENCE and ROOM_INTEREST applied to the directory, PING answered. Entries whose ids break the
// id rule are skipped and counted, never a reason to drop the link.
#include <string>

#include "common/frame.hpp"
#include "gateway/cluster_context.hpp"
#include "gateway/directory.hpp"
#include "gateway/frame_verdict.hpp"

namespace imgate::gw {

// Serves one authenticated inbound connection; owns only its once-per-connection log state.
class peer_service {
  public:
    peer_service(cluster_context& ctx, session_directory& dir, std::string peer)
        : ctx_(ctx), dir_(dir), peer_(std::move(peer)) {}

    // Appends the frames to send back (FORWARD_RESULT, PONG) to reply; reject: a protocol error.
    verdict on_frame(const frame& f, std::string& reply);

  private:
    void skipped(rpc::op o, uint32_t n);

    cluster_context& ctx_;
    session_directory& dir_;
    std::string peer_;
    bool skipped_logged_ = false;  // one warning per connection for refused entries
};

}  // namespace imgate::gw
