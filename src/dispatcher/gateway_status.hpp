#pragma once
// The health and load figures a gateway reports on GET /status, and their strict parsing: a
// missing or ill-typed field is a failed pull with an explicit reason, never a guess.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace imgate::disp {

struct gateway_status {
    std::string id;
    std::string state;  // serving | draining | stopping
    uint64_t connections = 0;
    uint64_t max_connections = 0;
    uint64_t sessions = 0;
    bool full = false;
    double load = 0;  // 0..1
    int64_t pid = 0;
    std::string version;
    double uptime_s = 0;
    // Optional (gateways before issue 19 do not report them; absent is not an error, ill-typed
    // is): the mesh counts and the fingerprint of the current (first) JWT secret.
    std::optional<uint64_t> peers_expected;
    std::optional<uint64_t> links_up;
    std::optional<std::string> jwt_fingerprint;
};

// Parses a /status body; on failure returns the reason ("field 'load' missing", ...).
std::variant<gateway_status, std::string> parse_gateway_status(std::string_view body);

}  // namespace imgate::disp
