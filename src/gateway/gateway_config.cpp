#include "gateway/gateway_config.hpp"

#include <algorithm>
#include <thread>

#include "common/frame.hpp"
#include "common/ids.hpp"
#include "gateway/rpc_wire.hpp"

namespace imgate::gw {

namespace {

gateway_limits parse_limits(yaml_map m, yaml_map t, yaml_map d) {
    gateway_limits l;
    l.max_connections = uint32_t(m.integer("max_connections", l.max_connections, 1, 10000000));
    l.max_frame_bytes =
        uint32_t(m.integer("max_frame_bytes", l.max_frame_bytes, 256, absolute_max_frame_body));
    l.max_payload_bytes =
        uint32_t(m.integer("max_payload_bytes", l.max_payload_bytes, 1, absolute_max_frame_body));
    l.max_token_bytes =
        uint32_t(m.integer("max_token_bytes", l.max_token_bytes, 64, absolute_max_token_bytes));
    l.send_rate = m.number("send_rate", l.send_rate, 0.001, 1e7);
    l.send_burst = m.number("send_burst", l.send_burst, 1, 1e7);
    l.room_ops_rate = m.number("room_ops_rate", l.room_ops_rate, 0.001, 1e7);
    l.room_ops_burst = m.number("room_ops_burst", l.room_ops_burst, 1, 1e7);
    l.ping_rate = m.number("ping_rate", l.ping_rate, 0.001, 1e7);
    l.ping_burst = m.number("ping_burst", l.ping_burst, 1, 1e7);
    l.flood_refusals = uint32_t(m.integer("flood_refusals", l.flood_refusals, 1, 10000000));
    l.flood_window = m.duration("flood_window", l.flood_window);
    if (l.flood_window.count() <= 0) m.fail("flood_window", "must be positive");
    l.flood_penalty = m.duration("flood_penalty", l.flood_penalty);
    if (l.flood_penalty.count() < 0) m.fail("flood_penalty", "must not be negative");
    l.login_failure_summary = m.duration("login_failure_summary", l.login_failure_summary);
    if (l.login_failure_summary.count() < 0)
        m.fail("login_failure_summary", "must not be negative");
    l.login_rate = m.number("login_rate", l.login_rate, 0, 1e7);
    l.login_burst = m.number("login_burst", l.login_burst, 1, 1e7);
    l.gateway_login_rate = m.number("gateway_login_rate", l.gateway_login_rate, 0, 1e7);
    l.gateway_login_burst = m.number("gateway_login_burst", l.gateway_login_burst, 0, 1e7);
    if (l.gateway_login_rate > 0 && l.gateway_login_burst < 1)
        m.fail("gateway_login_burst", "must be at least 1 when gateway_login_rate is set");
    auto retry = [&](const char* key, std::chrono::milliseconds def, bool positive) {
        auto v = m.duration(key, def);
        if (positive ? v.count() <= 0 : v.count() < 0)
            m.fail(key, positive ? "must be positive" : "must not be negative");
        if (v > std::chrono::minutes(10)) m.fail(key, "must be at most 10min");
        return v;
    };
    l.login_retry_after = retry("login_retry_after", l.login_retry_after, true);
    l.login_retry_jitter = retry("login_retry_jitter", l.login_retry_jitter, false);
    l.max_outbound_bytes =
        uint64_t(m.integer("max_outbound_bytes", int64_t(l.max_outbound_bytes), 1024, 1LL << 32));
    l.max_rooms_per_session =
        uint32_t(m.integer("max_rooms_per_session", l.max_rooms_per_session, 0, 100000));
    l.max_id_length =
        uint32_t(m.integer("max_id_length", l.max_id_length, 1, int64_t(ids::max_bytes)));
    l.max_pending_acks = uint32_t(m.integer("max_pending_acks", l.max_pending_acks, 0, 100000000));
    l.dedupe_window = uint32_t(m.integer("dedupe_window", l.dedupe_window, 1024, 100000000));
    if (l.max_payload_bytes > l.max_frame_bytes)
        m.fail("max_payload_bytes", "must not exceed max_frame_bytes");
    // A message to a user on another gateway travels in one RPC FORWARD frame: a payload the
    // RPC cannot carry would be accepted here and then fail on every cross-node send.
    if (l.max_payload_bytes > rpc::max_forward_payload)
        m.fail("max_payload_bytes", "must not exceed " + std::to_string(rpc::max_forward_payload) +
                                        " (the largest payload a cross-gateway FORWARD carries)");
    m.finish();

    auto positive = [&](const char* key, std::chrono::milliseconds def) {
        auto v = t.duration(key, def);
        if (v.count() <= 0) t.fail(key, "must be positive");
        return v;
    };
    l.login_timeout = positive("login_timeout", l.login_timeout);
    l.heartbeat_interval = positive("heartbeat_interval", l.heartbeat_interval);
    l.idle_timeout = positive("idle_timeout", l.idle_timeout);
    l.write_timeout = positive("write_timeout", l.write_timeout);
    l.ack_timeout = positive("ack_timeout", l.ack_timeout);
    l.write_coalesce = t.duration("write_coalesce", l.write_coalesce);
    if (l.write_coalesce.count() < 0 || l.write_coalesce > std::chrono::milliseconds(100))
        t.fail("write_coalesce", "must be between 0s and 100ms");
    l.shutdown_grace = t.duration("shutdown_grace", l.shutdown_grace);
    if (l.idle_timeout <= l.heartbeat_interval)
        t.fail("idle_timeout", "must be longer than heartbeat_interval");
    t.finish();

    l.drain_rate = d.number("rate", l.drain_rate, 0.1, 1e7);
    l.reconnect_hint = d.duration("reconnect_after", l.reconnect_hint);
    l.reconnect_jitter = d.duration("reconnect_jitter", l.reconnect_jitter);
    if (l.reconnect_jitter.count() < 0 || l.reconnect_jitter > std::chrono::minutes(10))
        d.fail("reconnect_jitter", "must be between 0 and 10min");
    d.finish();
    return l;
}

}  // namespace

unsigned worker_threads(const gateway_config& c) {
    return c.workers ? c.workers : std::max(1u, std::thread::hardware_concurrency());
}

gateway_config load_gateway_config(const std::string& path, const std::string& id_override) {
    gateway_config c;
    c.file = path;
    yaml_map root(load_yaml_file(path), path);
    c.id = root.str("id", "");
    if (!id_override.empty()) c.id = id_override;
    if (c.id.empty()) root.fail("id", "no gateway id: pass --id or set id:");
    c.fleet_file = resolve_path(path, root.str("fleet"));
    c.workers = uint32_t(root.integer("workers", 0, 0, 1024));

    auto auth = root.map("auth");
    c.token_secret_files = auth.strings("secret_files");
    if (c.token_secret_files.empty())
        auth.fail("secret_files", "at least one token secret file is required");
    for (auto& f : c.token_secret_files) {
        f = resolve_path(path, f);
        try {
            c.token_secrets.push_back(read_protected_secret_file(f));
        } catch (const std::exception& e) {
            auth.fail("secret_files", e.what());
        }
    }
    c.token_leeway_s = auth.duration("leeway", std::chrono::milliseconds(0)).count() / 1000;
    auth.finish();

    auto admin = root.map("admin");
    if (admin.has("token_file")) {
        c.admin_token_file = resolve_path(path, admin.str("token_file"));
        try {
            c.admin_token = read_protected_secret_file(c.admin_token_file);
        } catch (const std::exception& e) {
            admin.fail("token_file", e.what());
        }
    }
    admin.finish();

    c.limits = parse_limits(root.map("limits"), root.map("timeouts"), root.map("drain"));
    c.log = parse_log_config(root.map("log"));
    c.rpc = parse_rpc_config(root.map("cluster_rpc"));
    c.tls = parse_tls_settings(root.map("tls"));
    parse_backend_config(root.map("directory"), root.map("redis"), root.map("events"), path,
                         c.directory, c.redis, c.events);
    root.finish();

    c.fleet = load_fleet(c.fleet_file);
    if (!c.fleet.find(c.id))
        throw config_error(c.fleet_file + ": gateway id \"" + c.id + "\" is not in the fleet");
    const auto* spec = c.fleet.find(c.id);
    if ((spec->serves(transport::tls) || spec->serves(transport::wss)) && !c.tls.enabled())
        throw config_error(path + ": tls: gateway \"" + c.id + "\" serves " +
                           (spec->serves(transport::tls) ? "tls" : "wss") + " in " + c.fleet_file +
                           " but has no certificate: set tls.cert_file and tls.key_file");
    // The certificate is loaded here too, so --check-config and a reload refuse a bad one.
    if (c.tls.enabled()) make_server_tls_context(c.tls, nullptr);
    if (!c.fleet.cluster_secret_file.empty()) {
        try {
            c.cluster_secret = read_protected_secret_file(c.fleet.cluster_secret_file);
        } catch (const std::exception& e) {
            throw config_error(c.fleet_file + ": cluster.secret_file: " + e.what());
        }
    }
    return c;
}

}  // namespace imgate::gw
