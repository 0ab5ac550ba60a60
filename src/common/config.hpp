#pragma once
// Strict YAML reading (unknown keys, wrong types and bad values name file:line:key) and the fleet
// description that both daemons read.
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace imgate {

// Raised at start-up or reload for any invalid configuration; what() is "file:line:col: key: why".
class config_error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct endpoint {
    std::string host;
    uint16_t port = 0;
    std::string to_string() const;  // host:port, [v6]:port
    bool operator==(const endpoint&) const = default;
};

// Parses "host:port" or "[v6]:port"; nullopt on anything else (port 0 allowed: pick a free one).
std::optional<endpoint> parse_endpoint(std::string_view s);

// One YAML mapping read strictly: every key read is remembered so that finish() can reject the
// rest as unknown. Children share the file name and extend the key path for messages.
class yaml_map {
  public:
    yaml_map(YAML::Node node, std::string file, std::string path = "");

    bool has(const std::string& key) const;
    std::string str(const std::string& key, const std::string& def);
    std::string str(const std::string& key);  // required
    int64_t integer(const std::string& key, int64_t def, int64_t min, int64_t max);
    int64_t integer(const std::string& key, int64_t min, int64_t max);  // required
    double number(const std::string& key, double def, double min, double max);
    bool boolean(const std::string& key, bool def);
    // Durations: an integer (milliseconds) or a string with a unit: "250ms", "2s", "5m", "1h".
    std::chrono::milliseconds duration(const std::string& key, std::chrono::milliseconds def);
    endpoint address(const std::string& key);  // required host:port
    std::optional<endpoint> address_opt(const std::string& key);
    std::vector<std::string> strings(const std::string& key);  // absent: empty
    std::map<std::string, std::string> string_map(const std::string& key);
    yaml_map map(const std::string& key);  // absent: an empty map
    std::vector<yaml_map> maps(const std::string& key);

    // Throws config_error for the first key that was never read.
    void finish() const;
    [[noreturn]] void fail(const std::string& key, const std::string& why) const;

    const std::string& file() const { return file_; }
    std::string where(const std::string& key) const;  // file:line:col of key (or of the map)
    std::string key_path(const std::string& key) const;

  private:
    YAML::Node get(const std::string& key);
    template <class T>
    T as(const YAML::Node& n, const std::string& key, const char* what);

    YAML::Node node_;
    std::string file_;
    std::string path_;
    std::set<std::string> used_;
};

// Loads a YAML file; syntax errors become config_error with file:line:col.
YAML::Node load_yaml_file(const std::string& path);

// Resolves p against the directory of base_file unless it is absolute.
std::string resolve_path(const std::string& base_file, const std::string& p);

// Reads a secret file: whole content with surrounding whitespace removed; empty is an error.
// No permission check: the client tool reads whatever file its user points it at.
std::string read_secret_file(const std::string& path);

// Throws config_error naming the file, its mode and the fix unless the file is safe to hold a
// daemon's secret: not readable or writable by others, not group-writable, and owned by root or
// by the user the daemon runs as (the effective uid).
void check_secret_file_mode(const std::string& path);
// check_secret_file_mode, then read_secret_file: what the daemons use for every secret they hold.
std::string read_protected_secret_file(const std::string& path);

struct log_config {
    std::string level = "info";   // trace|debug|info|warn|error|critical|off
    std::string format = "text";  // text|json
    // "<N>" syslog priority prefix on each line, which journald turns into PRIORITY= (so
    // `journalctl -p warning` works): auto (when stderr is the journal stream), always, never.
    std::string priority_prefix = "auto";
};
log_config parse_log_config(yaml_map m);

// How a client reaches a gateway (docs/protocol.md, "Transports"): the same frames over plain
// TCP, inside TLS, or one frame per binary WebSocket message over ws or wss.
enum class transport { tcp, tls, ws, wss };
inline constexpr transport all_transports[] = {transport::tcp, transport::tls, transport::ws,
                                               transport::wss};
const char* to_string(transport t);
std::optional<transport> parse_transport(std::string_view s);

// One gateway as the fleet file describes it.
struct gateway_spec {
    std::string id;
    // Per transport: the address handed to clients and where the gateway binds (default: the
    // same). An empty host means the gateway does not serve that transport. `client` is tcp.
    endpoint client;         // handed to clients by the dispatcher
    endpoint client_listen;  // where the gateway binds (default: client)
    endpoint tls, tls_listen;
    endpoint ws, ws_listen;
    endpoint wss, wss_listen;
    endpoint admin;         // status/metrics/drain/push, pulled by the dispatcher
    endpoint rpc;           // gateway-to-gateway RPC
    uint32_t weight = 100;  // 0: no new clients
    std::string region = "default";
    std::map<std::string, std::string> labels;
    // The high 16 bits of every server_msg_id the gateway issues: `node:` in the fleet file, or
    // default_node_number(id). The fleet file is refused when two gateways would share one.
    uint16_t node = 0;
    bool operator==(const gateway_spec&) const = default;

    // nullptr when the gateway does not serve t.
    const endpoint* address_of(transport t) const;
    const endpoint* listen_of(transport t) const;
    bool serves(transport t) const { return address_of(t) != nullptr; }
};

// The single source of truth for fleet membership, read by both daemons.
struct fleet_config {
    std::string file;
    std::string cluster_secret_file;  // resolved path; may be empty when no cross-node RPC
    std::vector<gateway_spec> gateways;

    const gateway_spec* find(const std::string& id) const;
};

fleet_config load_fleet(const std::string& path);
// A stable 16-bit hash of a gateway id (FNV-1a folded), never 0.
uint16_t default_node_number(std::string_view gateway_id);
fleet_config parse_fleet(yaml_map root);

}  // namespace imgate
