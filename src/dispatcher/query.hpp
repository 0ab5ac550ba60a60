#pragma once
// Parsing and validation of the GET /get-tcp-ip query string, and the JSON answers of the public
// API. Socket-free.
#include <optional>
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

// {"id":..,"host":..,"port":..,"transport":..,["url":..,]"alternates":[{same keys},..]}: host and
// port are the targets' addresses for `via`; url (ws and wss only) is "ws[s]://host:port/" with an
// IPv6 host in brackets.
std::string render_pick(const std::vector<pick_target>& targets, transport via = transport::tcp);

}  // namespace imgate::disp
