#pragma once
// The health and load figures a gateway reports on GET /status, and their strict parsing: a
// missing or ill-typed field is a failed pull with an explicit reason, never a guess.
#include <cstdint>
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
};

// Parses a /status body; on failure returns the reason ("field 'load' missing", ...).
std::variant<gateway_status, std::string> parse_gateway_status(std::string_view body);

}  // namespace imgate::disp
