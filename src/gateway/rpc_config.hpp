#pragma once
// Settings of the gateway-to-gateway RPC (the `cluster_rpc:` section of gateway.yaml).
#include <chrono>
#include <cstdint>

#include "common/config.hpp"

namespace imgate::gw {

struct rpc_config {
    std::chrono::milliseconds call_timeout{2000};  // deadline of every forward
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds ping_interval{5000};  // idle pings on each peer link
    std::chrono::milliseconds peer_timeout{15000};  // read deadline: silent this long = dead
    std::chrono::milliseconds backoff_min{100};     // reconnect backoff (with jitter)
    std::chrono::milliseconds backoff_max{5000};
    uint32_t max_in_flight = 10000;              // per peer; beyond: fail fast (unavailable)
    uint64_t max_queue_bytes = 8 * 1024 * 1024;  // per peer outbound queue bound
    // Inbound connections still in their handshake; more are closed at accept. Bounds what
    // anyone who can reach the RPC port (no secret needed) can hold open.
    uint32_t max_handshakes = 64;
    // Directory entries one peer may hold here (users from its PRESENCE, rooms from its
    // ROOM_INTEREST): bounds what a peer with the secret — or a bug — can make this gateway
    // store (~150 bytes an entry). The default holds a whole product-scale fleet (300k–500k
    // users) on one peer.
    uint32_t max_peer_users = 500000;
    uint32_t max_peer_rooms = 500000;
    // How long a peer's directory entries are kept after its inbound link ended without a clean
    // close (watchdog, reset, I/O error): the peer may be alive behind a partition, and sends to
    // its users then answer unavailable rather than a false offline. A partition longer than
    // this answers offline for the far side's users; a host that really died silently answers
    // unavailable this long before offline. 0: drop at once, like a clean close.
    std::chrono::milliseconds unreachable_hold{60000};
};

// Parses the `cluster_rpc:` mapping (absent: defaults). Throws config_error.
rpc_config parse_rpc_config(yaml_map m);

}  // namespace imgate::gw
