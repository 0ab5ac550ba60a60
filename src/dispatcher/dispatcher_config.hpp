#pragma once
// dispatcher.yaml: listeners, poll and overload settings, the region table, HTTP limits, logging,
// plus the fleet file it points to. Parsing is strict (unknown keys name file:line).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/config.hpp"
#include "common/tls.hpp"
#include "dispatcher/region_table.hpp"

namespace imgate::disp {

struct poll_settings {
    std::chrono::milliseconds interval{500};
    std::chrono::milliseconds timeout{300};
    // While a gateway is between states (some good pulls of `rise`, or some failed of `fall`),
    // the next pull comes after this instead of `interval` (HAProxy's fastinter): a dead gateway
    // leaves and a new one joins sooner, with the same rise/fall evidence. Capped at interval.
    std::chrono::milliseconds fast_interval{100};
    double jitter = 0.1;  // each wait is interval × (1 ± jitter), so dispatchers do not align
    uint32_t rise = 2;    // consecutive good pulls before a down gateway is up
    uint32_t fall = 2;    // consecutive failed pulls before an up gateway is down
    std::chrono::milliseconds slow_start{10000};
    // Good pulls in a row reporting 0 mesh links (peers expected) before a gateway is degraded.
    uint32_t degraded_after = 3;
    bool operator==(const poll_settings&) const = default;
};

struct overload_settings {
    double high_water = 0.9;  // utilisation at or above which a gateway becomes overloaded
    double low_water = 0.8;   // utilisation at or below which it is readmitted
    bool operator==(const overload_settings&) const = default;
};

struct http_limits {
    size_t max_connections = 10000;
    std::chrono::milliseconds read_timeout{5000};
    std::chrono::milliseconds write_timeout{5000};
    uint32_t header_limit = 8192;
};

// The runtime admin API (POST /gateways/{id}/...): without a token it answers 403.
struct admin_settings {
    std::string token_file;  // resolved; empty: no token configured
    std::string token;       // read_secret_file(token_file)
};

// One log line per sampled /get-tcp-ip pick (docs/configuration.md, decision_log).
struct decision_log_settings {
    bool enabled = false;
    double sample = 0.01;  // fraction of picks logged, drawn from the balancer's random source
};

// The optional HTTPS public listener (`https:`): the same routes as `listen`, over TLS.
struct https_settings {
    std::optional<endpoint> listen;  // none: no HTTPS listener
    tls_settings tls;                // cert_file, key_file, min_version, handshake_timeout, ...
    bool enabled() const { return listen.has_value(); }
};

// `reconnect:` — the reconnect policy every 200 /get-tcp-ip answer hands to clients, and the
// jitter that spreads the 503 Retry-After per answer (docs/protocol.md section 1).
struct reconnect_settings {
    std::chrono::milliseconds base{500};     // delay before the 2nd attempt; doubles per round
    std::chrono::milliseconds max{30000};    // cap of that delay
    std::chrono::milliseconds jitter{1000};  // uniform [0, jitter] added to every wait
    bool operator==(const reconnect_settings&) const = default;
};

// `rebalance:` — whether and how the dispatcher asks overfull gateways to shed sessions
// (POST /rebalance on their admin address; rebalance.hpp).
struct rebalance_settings {
    bool enabled = false;
    double threshold = 0.10;  // overfull: connections > fair share * (1 + threshold)
    double rate = 200;        // sessions per second asked of each overfull gateway
    uint64_t max_per_request = 2000;
    std::chrono::milliseconds interval{5000};
    // The gateways' admin token, sent as the bearer of POST /rebalance. Its own key, so that the
    // dispatcher's admin.token (runtime overrides) never has to be the gateways' token, which
    // can push to every user.
    std::string token_file;  // resolved; required when enabled
    std::string token;
    bool operator==(const rebalance_settings&) const = default;
};

struct dispatcher_config {
    std::string file;  // the dispatcher.yaml path as given
    std::string id = "dispatcher";
    std::string fleet_file;  // resolved
    endpoint listen{"127.0.0.1", 8080};
    endpoint admin_listen{"127.0.0.1", 8081};
    https_settings https;
    uint32_t threads = 1;
    poll_settings poll;
    overload_settings overload;
    region_table regions;
    uint32_t alternates = 2;
    uint32_t max_uid_length = 128;
    uint32_t max_exclude = 32;
    http_limits http;
    log_config log;
    admin_settings admin;
    decision_log_settings decision_log;
    reconnect_settings reconnect;
    rebalance_settings rebalance;
    fleet_config fleet;
};

// Reads dispatcher.yaml and the fleet file it names; throws config_error ("file:line:col: ...").
dispatcher_config load_dispatcher_config(const std::string& path);
dispatcher_config parse_dispatcher_config(yaml_map root, bool load_fleet_file = true);

}  // namespace imgate::disp
