#include "common/config.hpp"

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/ids.hpp"

#include <sys/stat.h>
#include <unistd.h>

namespace imgate {

std::string endpoint::to_string() const {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

std::optional<endpoint> parse_endpoint(std::string_view s) {
    endpoint e;
    std::string_view port;
    if (!s.empty() && s.front() == '[') {
        auto close = s.find(']');
        if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
            return std::nullopt;
        e.host = std::string(s.substr(1, close - 1));
        port = s.substr(close + 2);
    } else {
        auto colon = s.rfind(':');
        if (colon == std::string_view::npos || s.find(':') != colon) return std::nullopt;
        e.host = std::string(s.substr(0, colon));
        port = s.substr(colon + 1);
    }
    if (e.host.empty() || port.empty()) return std::nullopt;
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc() || p != port.data() + port.size() || v > 65535) return std::nullopt;
    e.port = static_cast<uint16_t>(v);
    return e;
}

yaml_map::yaml_map(YAML::Node node, std::string file, std::string path)
    : node_(node), file_(std::move(file)), path_(std::move(path)) {
    if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
        auto m = node_.Mark();
        throw config_error(
            file_ + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) + ": " +
            (path_.empty() ? std::string("top level") : path_) + ": expected a mapping");
    }
}

std::string yaml_map::key_path(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
}

std::string yaml_map::where(const std::string& key) const {
    YAML::Mark m = node_.Mark();
    if (node_.IsMap() && !key.empty()) {
        for (auto it = node_.begin(); it != node_.end(); ++it) {
            if (it->first.Scalar() == key) {
                m = it->first.Mark();
                break;
            }
        }
    }
    if (m.line < 0) return file_;
    return file_ + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

void yaml_map::fail(const std::string& key, const std::string& why) const {
    throw config_error(where(key) + ": " + key_path(key) + ": " + why);
}

bool yaml_map::has(const std::string& key) const {
    return node_.IsMap() && node_[key].IsDefined() && !node_[key].IsNull();
}

YAML::Node yaml_map::get(const std::string& key) {
    used_.insert(key);
    if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node n = node_[key];
    if (!n.IsDefined() || n.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
    return n;
}

template <class T>
T yaml_map::as(const YAML::Node& n, const std::string& key, const char* what) {
    if (!n.IsScalar()) fail(key, std::string("expected ") + what);
    try {
        return n.as<T>();
    } catch (const YAML::Exception&) {
        fail(key, std::string("expected ") + what + ", got \"" + n.Scalar() + "\"");
    }
}

std::string yaml_map::str(const std::string& key, const std::string& def) {
    auto n = get(key);
    if (!n.IsDefined()) return def;
    return as<std::string>(n, key, "a string");
}

std::string yaml_map::str(const std::string& key) {
    auto n = get(key);
    if (!n.IsDefined()) fail(key, "required key is missing");
    return as<std::string>(n, key, "a string");
}

int64_t yaml_map::integer(const std::string& key, int64_t def, int64_t min, int64_t max) {
    auto n = get(key);
    if (!n.IsDefined()) return def;
    auto v = as<int64_t>(n, key, "an integer");
    if (v < min || v > max)
        fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                      ", got " + std::to_string(v));
    return v;
}

int64_t yaml_map::integer(const std::string& key, int64_t min, int64_t max) {
    if (!has(key)) {
        used_.insert(key);
        fail(key, "required key is missing");
    }
    return integer(key, 0, min, max);
}

double yaml_map::number(const std::string& key, double def, double min, double max) {
    auto n = get(key);
    if (!n.IsDefined()) return def;
    auto v = as<double>(n, key, "a number");
    if (!(v >= min && v <= max))
        fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    return v;
}

bool yaml_map::boolean(const std::string& key, bool def) {
    auto n = get(key);
    if (!n.IsDefined()) return def;
    return as<bool>(n, key, "true or false");
}

std::chrono::milliseconds yaml_map::duration(const std::string& key,
                                             std::chrono::milliseconds def) {
    auto n = get(key);
    if (!n.IsDefined()) return def;
    if (!n.IsScalar()) fail(key, "expected a duration such as 500ms, 2s or 1m");
    const std::string& s = n.Scalar();
    double value = 0;
    const char* end = s.data() + s.size();
    auto [p, ec] = std::from_chars(s.data(), end, value);
    if (ec != std::errc() || value < 0)
        fail(key, "expected a duration such as 500ms, 2s or 1m, got \"" + s + "\"");
    std::string_view unit(p, end - p);
    double ms;
    if (unit.empty() || unit == "ms")
        ms = value;
    else if (unit == "s")
        ms = value * 1000;
    else if (unit == "m")
        ms = value * 60000;
    else if (unit == "h")
        ms = value * 3600000;
    else
        fail(key, "unknown duration unit \"" + std::string(unit) + "\" (use ms, s, m or h)");
    if (ms > 7.0 * 24 * 3600 * 1000) fail(key, "duration too long (at most 7 days)");
    return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

std::optional<endpoint> yaml_map::address_opt(const std::string& key) {
    auto n = get(key);
    if (!n.IsDefined()) return std::nullopt;
    auto s = as<std::string>(n, key, "host:port");
    auto e = parse_endpoint(s);
    if (!e) fail(key, "expected host:port, got \"" + s + "\"");
    return e;
}

endpoint yaml_map::address(const std::string& key) {
    auto e = address_opt(key);
    if (!e) fail(key, "required key is missing");
    return *e;
}

std::vector<std::string> yaml_map::strings(const std::string& key) {
    auto n = get(key);
    std::vector<std::string> out;
    if (!n.IsDefined()) return out;
    if (!n.IsSequence()) fail(key, "expected a list of strings");
    for (const auto& item : n) {
        if (!item.IsScalar()) fail(key, "expected a list of strings");
        out.push_back(item.Scalar());
    }
    return out;
}

std::map<std::string, std::string> yaml_map::string_map(const std::string& key) {
    auto n = get(key);
    std::map<std::string, std::string> out;
    if (!n.IsDefined()) return out;
    if (!n.IsMap()) fail(key, "expected a mapping of strings");
    for (auto it = n.begin(); it != n.end(); ++it) {
        if (!it->second.IsScalar()) fail(key, "expected a mapping of strings");
        out[it->first.Scalar()] = it->second.Scalar();
    }
    return out;
}

yaml_map yaml_map::map(const std::string& key) {
    auto n = get(key);
    if (n.IsDefined() && !n.IsMap()) fail(key, "expected a mapping");
    return yaml_map(n, file_, key_path(key));
}

std::vector<yaml_map> yaml_map::maps(const std::string& key) {
    auto n = get(key);
    std::vector<yaml_map> out;
    if (!n.IsDefined()) return out;
    if (!n.IsSequence()) fail(key, "expected a list");
    size_t i = 0;
    for (const auto& item : n) {
        std::string p = key_path(key) + "[" + std::to_string(i++) + "]";
        if (!item.IsMap()) {
            auto m = item.Mark();
            throw config_error(file_ + ":" + std::to_string(m.line + 1) + ":" +
                               std::to_string(m.column + 1) + ": " + p + ": expected a mapping");
        }
        out.emplace_back(item, file_, p);
    }
    return out;
}

void yaml_map::finish() const {
    if (!node_.IsMap()) return;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
        const std::string& k = it->first.Scalar();
        if (!used_.count(k)) {
            auto m = it->first.Mark();
            throw config_error(file_ + ":" + std::to_string(m.line + 1) + ":" +
                               std::to_string(m.column + 1) + ": " + key_path(k) + ": unknown key");
        }
    }
}

YAML::Node load_yaml_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw config_error(path + ": cannot open file");
    try {
        return YAML::Load(in);
    } catch (const YAML::Exception& e) {
        throw config_error(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                           std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
    }
}

std::string resolve_path(const std::string& base_file, const std::string& p) {
    std::filesystem::path path(p);
    if (path.is_absolute() || p.empty()) return p;
    return (std::filesystem::path(base_file).parent_path() / path).lexically_normal().string();
}

std::string read_secret_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw config_error(path + ": cannot read secret file");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    auto b = s.find_first_not_of(" \t\r\n");
    auto e = s.find_last_not_of(" \t\r\n");
    if (b == std::string::npos) throw config_error(path + ": secret file is empty");
    s = s.substr(b, e - b + 1);
    if (s.size() < 16) throw config_error(path + ": secret is shorter than 16 bytes");
    return s;
}

void check_secret_file_mode(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw config_error(path + ": cannot read secret file");
    auto mode = st.st_mode & 07777;
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    std::string why;
    if (mode & S_IROTH)
        why = "is readable by every user";
    else if (mode & S_IWOTH)
        why = "is writable by every user";
    else if (mode & S_IWGRP)
        why = "is writable by its group";
    else if (st.st_uid != 0 && st.st_uid != ::geteuid())
        why = "is owned by uid " + std::to_string(st.st_uid) +
              ", neither root nor the user this daemon runs as";
    if (why.empty()) return;
    // Whoever can read the token secret mints tokens for any user; whoever can write it chooses
    // the secret. Refuse rather than run with a secret that may already be known.
    throw config_error(path + ": secret file (mode " + octal + ") " + why + "; fix: chmod 0640 " +
                       path + "; chown root:imgate " + path);
}

std::string read_protected_secret_file(const std::string& path) {
    check_secret_file_mode(path);
    return read_secret_file(path);
}

log_config parse_log_config(yaml_map m) {
    log_config c;
    c.level = m.str("level", c.level);
    static const std::set<std::string> levels{"trace", "debug",    "info", "warn",
                                              "error", "critical", "off"};
    if (!levels.count(c.level))
        m.fail("level", "expected one of trace, debug, info, warn, error, critical, off");
    c.format = m.str("format", c.format);
    if (c.format != "text" && c.format != "json") m.fail("format", "expected text or json");
    c.priority_prefix = m.str("priority_prefix", c.priority_prefix);
    if (c.priority_prefix != "auto" && c.priority_prefix != "always" &&
        c.priority_prefix != "never")
        m.fail("priority_prefix", "expected auto, always or never");
    m.finish();
    return c;
}

uint16_t default_node_number(std::string_view gateway_id) {
    // Stable across builds and platforms (std::hash is not): every gateway and the dispatcher
    // must compute the same number from the same fleet file.
    uint32_t h = 2166136261u;
    for (unsigned char c : gateway_id) {
        h ^= c;
        h *= 16777619u;
    }
    return static_cast<uint16_t>((((h >> 16) ^ (h & 0xffff)) % 0xffff) + 1);
}

const char* to_string(transport t) {
    switch (t) {
        case transport::tcp:
            return "tcp";
        case transport::tls:
            return "tls";
        case transport::ws:
            return "ws";
        case transport::wss:
            return "wss";
    }
    return "tcp";
}

std::optional<transport> parse_transport(std::string_view s) {
    for (auto t : all_transports)
        if (s == to_string(t)) return t;
    return std::nullopt;
}

const endpoint* gateway_spec::address_of(transport t) const {
    const endpoint* e = t == transport::tcp   ? &client
                        : t == transport::tls ? &tls
                        : t == transport::ws  ? &ws
                                              : &wss;
    return e->host.empty() ? nullptr : e;
}

const endpoint* gateway_spec::listen_of(transport t) const {
    if (!address_of(t)) return nullptr;
    return t == transport::tcp   ? &client_listen
           : t == transport::tls ? &tls_listen
           : t == transport::ws  ? &ws_listen
                                 : &wss_listen;
}

const gateway_spec* fleet_config::find(const std::string& id) const {
    for (const auto& g : gateways)
        if (g.id == id) return &g;
    return nullptr;
}

fleet_config parse_fleet(yaml_map root) {
    fleet_config f;
    f.file = root.file();
    auto cluster = root.map("cluster");
    auto secret = cluster.str("secret_file", "");
    if (!secret.empty()) f.cluster_secret_file = resolve_path(root.file(), secret);
    cluster.finish();
    std::set<std::string> ids;
    std::set<std::string> addrs;
    std::map<uint16_t, std::string> nodes;  // node number -> the gateway that has it
    auto gws = root.maps("gateways");
    if (gws.empty()) root.fail("gateways", "at least one gateway is required");
    for (auto& g : gws) {
        gateway_spec s;
        s.id = g.str("id");
        if (!ids::valid_node_id(s.id)) g.fail("id", "must be 1-64 characters of [A-Za-z0-9._-]");
        if (!ids.insert(s.id).second) g.fail("id", "duplicate gateway id \"" + s.id + "\"");
        // Every transport is optional, but a gateway must serve at least one.
        struct keyed {
            const char* key;
            const char* listen_key;
            endpoint* addr;
            endpoint* listen;
        };
        keyed transports[] = {{"client", "client_listen", &s.client, &s.client_listen},
                              {"tls", "tls_listen", &s.tls, &s.tls_listen},
                              {"ws", "ws_listen", &s.ws, &s.ws_listen},
                              {"wss", "wss_listen", &s.wss, &s.wss_listen}};
        bool any = false;
        std::set<std::string> own;  // one listen address per transport within this gateway
        for (auto& t : transports) {
            auto a = g.address_opt(t.key);
            auto l = g.address_opt(t.listen_key);
            if (!a && l) g.fail(t.listen_key, std::string("needs `") + t.key + ":" + "` too");
            if (!a) continue;
            any = true;
            *t.addr = *a;
            *t.listen = l.value_or(*a);
            if (t.listen->port != 0 && !own.insert(t.listen->to_string()).second)
                g.fail(t.listen_key, "address " + t.listen->to_string() +
                                         " is used by two transports of this gateway");
        }
        if (!any)
            g.fail("client",
                   "a gateway needs at least one transport: client (tcp), tls, ws or wss");
        s.admin = g.address("admin");
        s.rpc = g.address("rpc");
        for (auto* key : {"admin", "rpc"}) {
            auto e = std::string(key) == "admin" ? s.admin : s.rpc;
            if (e.port != 0 && !addrs.insert(e.to_string()).second)
                g.fail(key, "address " + e.to_string() + " is used twice in the fleet");
        }
        s.weight = static_cast<uint32_t>(g.integer("weight", 100, 0, 1000000));
        s.region = g.str("region", "default");
        if (!ids::valid_node_id(s.region))
            g.fail("region", "must be 1-64 characters of [A-Za-z0-9._-]");
        s.labels = g.string_map("labels");
        bool explicit_node = g.has("node");
        s.node = explicit_node ? static_cast<uint16_t>(g.integer("node", 0, 1, 65535))
                               : default_node_number(s.id);
        // Two gateways with one node number would issue the same server_msg_ids, and a receiver
        // would drop a real message as a duplicate: refuse the file instead.
        if (auto [it, fresh] = nodes.emplace(s.node, s.id); !fresh)
            g.fail(explicit_node ? "node" : "id",
                   "gateways \"" + it->second + "\" and \"" + s.id + "\" would share node number " +
                       std::to_string(s.node) + (explicit_node ? "" : " (derived from the id)") +
                       " and so server_msg_ids; give one of them an explicit, unique `node:` "
                       "(1-65535)");
        g.finish();
        f.gateways.push_back(std::move(s));
    }
    root.finish();
    return f;
}

fleet_config load_fleet(const std::string& path) {
    return parse_fleet(yaml_map(load_yaml_file(path), path));
}

}  // namespace imgate
