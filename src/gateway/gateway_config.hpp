#pragma once
// gateway.yaml: everything one gateway reads at start-up and again on SIGHUP.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/ids.hpp"
#include "common/tls.hpp"
#include "gateway/backend_config.hpp"
#include "gateway/rpc_config.hpp"

namespace imgate::gw {

// Limits and timings that SIGHUP may change on a running gateway.
struct gateway_limits {
    uint32_t max_connections = 100000;
    double login_rate = 1000;  // LOGIN attempts per second per source address (0: no limit)
    double login_burst = 5000;
    // LOGIN attempts per second over the whole gateway (0: no limit), checked after the
    // per-address bucket: it protects the gateway's CPU (a login is a JWT HMAC plus directory
    // announcements to every peer) during a reconnect storm. Defaults: docs/configuration.md.
    double gateway_login_rate = 8000;
    double gateway_login_burst = 16000;
    // A LOGIN refused for a rate reason or server_busy gets a REDIRECT whose reconnect_after_ms is
    // login_retry_after + uniform[0, login_retry_jitter]: refused clients come back spread out.
    std::chrono::milliseconds login_retry_after{1000};
    std::chrono::milliseconds login_retry_jitter{1000};
    uint32_t max_frame_bytes = 64 * 1024;  // largest frame body accepted from a client
    // Longest LOGIN token: before login a frame body is capped at this plus the str16 prefix, so
    // an unauthenticated connection buffers at most that much (docs/security.md).
    uint32_t max_token_bytes = 8192;
    uint32_t max_payload_bytes = 32 * 1024;  // largest message payload
    double send_rate = 50;                   // sends per second per session (token bucket)
    double send_burst = 100;
    // JOIN and LEAVE share one bucket: each can toggle this gateway's interest in a room, which
    // is one ROOM_INTEREST frame to every peer.
    double room_ops_rate = 10;
    double room_ops_burst = 64;  // a client joining max_rooms_per_session rooms at login passes
    // Clients ping every heartbeat_interval (30 s by default); reachability probes on network
    // changes and monitoring tools ping more often, and a PING costs this gateway one PONG.
    double ping_rate = 5;
    double ping_burst = 20;
    // A session refused this many times (any rate limit) within flood_window is closed.
    uint32_t flood_refusals = 100;
    std::chrono::milliseconds flood_window{10000};
    // After a flood close the session's user may not log in on this gateway for this long
    // (0: no penalty): a flooder that reconnects at once would otherwise get a fresh burst.
    std::chrono::milliseconds flood_penalty{30000};
    // Failed logins are logged as one summary line per interval (0: no summary).
    std::chrono::milliseconds login_failure_summary{10000};
    uint64_t max_outbound_bytes = 1 << 20;  // queued per session; past it: slow consumer
    uint32_t max_rooms_per_session = 64;
    uint32_t max_id_length = uint32_t(ids::default_max_bytes);  // user, device, room ids (bytes)
    std::chrono::milliseconds login_timeout{10000};
    std::chrono::milliseconds heartbeat_interval{30000};
    std::chrono::milliseconds idle_timeout{90000};
    std::chrono::milliseconds write_timeout{10000};  // one gathered write may take this long
    // How long frames queued for an idle session wait for more to join the same socket write.
    std::chrono::milliseconds write_coalesce{1};
    std::chrono::milliseconds ack_timeout{60000};  // how long a delivery waits for its ack
    uint32_t max_pending_acks = 200000;
    uint32_t dedupe_window = 1 << 18;                // recent forwarded ids remembered
    double drain_rate = 1000;                        // sessions redirected per second on drain
    std::chrono::milliseconds reconnect_hint{1000};  // reconnect_after_ms in redirect/kick
    // Added per session to reconnect_hint, uniform[0, this]: a drained or stopped gateway's
    // clients do not all come back in the same instant.
    std::chrono::milliseconds reconnect_jitter{1000};
    std::chrono::milliseconds shutdown_grace{10000};
};

// The largest LOGIN token (max_token_bytes) is a LOGIN body of this plus its str16 length prefix.
inline constexpr uint32_t login_body_overhead = 2;
// A LOGIN body is one str16: its token can never be longer than this.
inline constexpr uint32_t absolute_max_token_bytes = 65535;

// The largest frame body a client may send before its LOGIN succeeded: what the longest allowed
// LOGIN needs, never more than max_frame_bytes.
inline uint32_t prelogin_max_frame_body(const gateway_limits& l) {
    return std::min(l.max_frame_bytes, l.max_token_bytes + login_body_overhead);
}

struct gateway_config {
    std::string file;
    std::string id;          // from --id or `id:`
    std::string fleet_file;  // resolved
    fleet_config fleet;
    std::vector<std::string> token_secrets;  // current first, then previous
    std::vector<std::string> token_secret_files;
    int64_t token_leeway_s = 0;
    std::string admin_token;  // empty: /push and /drain refused
    std::string admin_token_file;
    uint32_t workers = 0;  // 0: hardware concurrency
    gateway_limits limits;
    log_config log;
    rpc_config rpc;
    std::string cluster_secret;  // empty: single node
    // Certificate of the tls and wss listeners; handshake_timeout and max_handshakes apply to
    // the ws listener too (docs/configuration.md, `tls:`).
    tls_settings tls;
    // The optional shared engine (start-up only; docs/configuration.md).
    directory_config directory;
    redis_config redis;
    events_config events;
};

// Loads and validates gateway.yaml (and the fleet and secret files it names). id_override wins
// over the file's `id:`. Throws config_error with file:line for any problem.
gateway_config load_gateway_config(const std::string& path, const std::string& id_override);
// The event-loop threads the gateway runs: `workers`, or the hardware's concurrency for 0.
unsigned worker_threads(const gateway_config& c);

}  // namespace imgate::gw
