#pragma once
// Parsing and validation of the GET /get-tcp-ip query string, and the JSON answers of the public
// API. Socket-free.
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "dispatcher/fleet_state.hpp"

namespace imgate::disp {

struct tcp_ip_query {
    std::string uid;
    std::vector<std::string> exclude;
    std::optional<std::string> region;
    transport via = transport::tcp;  // ?transport=tcp|tls|ws|wss
};

struct query_error {
    std::string code;     // machine-readable, also the metric label
    std::string message;  // for humans
};

struct query_limits {
    size_t max_uid_length = 128;
    size_t max_exclude = 32;
};

std::variant<tcp_ip_query, query_error> parse_tcp_ip_query(std::string_view query,
                                                           const query_limits& limits);

// The reconnect policy a 200 answer hands to clients (dispatcher.yaml `reconnect:`), in ms.
struct reconnect_policy {
    int64_t base_ms = 500;
    int64_t jitter_ms = 1000;
    int64_t max_ms = 30000;
};

// {"id":..,"host":..,"port":..,"transport":..,["url":..,]"alternates":[{same keys},..]}: host and
// port are the targets' addresses for `via`; url (ws and wss only) is "ws[s]://host:port/" with an
// IPv6 host in brackets. With a policy the top level also has
// "reconnect":{"base_ms":..,"jitter_ms":..,"max_ms":..}.
std::string render_pick(const std::vector<pick_target>& targets, transport via = transport::tcp,
                        const reconnect_policy* policy = nullptr);

// The 503 no_gateway_available answer spread per client: R = base_ms + uniform[0, jitter_ms]
// drawn from `rng`, the body {"error":"no_gateway_available","retry_after_ms":R} and the header
// Retry-After: ceil(R / 1000) (at least 1).
int64_t spread_retry_ms(int64_t base_ms, int64_t jitter_ms, std::mt19937_64& rng);
int64_t retry_after_seconds(int64_t retry_ms);
std::string render_no_gateway(int64_t retry_ms);

}  // namespace imgate::disp
