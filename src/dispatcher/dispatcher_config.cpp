#include "dispatcher/dispatcher_config.hpp"

#include <set>

#include "common/ids.hpp"

namespace imgate::disp {

dispatcher_config parse_dispatcher_config(yaml_map root, bool load_fleet_file) {
    dispatcher_config c;
    c.file = root.file();
    c.id = root.str("id", c.id);
    if (!ids::valid_node_id(c.id)) root.fail("id", "must be 1-64 characters of [A-Za-z0-9._-]");
    c.fleet_file = resolve_path(root.file(), root.str("fleet"));
    if (auto e = root.address_opt("listen")) c.listen = *e;
    if (auto e = root.address_opt("admin_listen")) c.admin_listen = *e;
    if (c.listen.port != 0 && c.listen == c.admin_listen)
        root.fail("admin_listen", "must differ from listen");
    auto https = root.map("https");  // read even when empty: `https:` alone is no unknown key
    if (root.has("https")) {
        c.https.listen = https.address("listen");
        // The TLS keys are the gateway's `tls:` keys (parse_tls_settings reads and finishes the
        // map; `listen` was read above, so it is not an unknown key there).
        c.https.tls = parse_tls_settings(https);
        if (!c.https.tls.enabled()) https.fail("cert_file", "required (with key_file)");
        if (c.https.listen->port != 0 &&
            (*c.https.listen == c.listen || *c.https.listen == c.admin_listen))
            https.fail("listen", "must differ from listen and admin_listen");
    }
    c.threads = static_cast<uint32_t>(root.integer("threads", 1, 1, 64));

    auto poll = root.map("poll");
    c.poll.interval = poll.duration("interval", c.poll.interval);
    if (c.poll.interval < std::chrono::milliseconds(10))
        poll.fail("interval", "must be at least 10ms");
    c.poll.timeout = poll.duration("timeout", c.poll.timeout);
    if (c.poll.timeout < std::chrono::milliseconds(1)) poll.fail("timeout", "must be at least 1ms");
    if (c.poll.timeout > c.poll.interval)
        poll.fail("timeout", "must not exceed poll.interval (pulls would pile up)");
    c.poll.fast_interval = poll.duration("fast_interval", c.poll.fast_interval);
    if (c.poll.fast_interval < std::chrono::milliseconds(10))
        poll.fail("fast_interval", "must be at least 10ms");
    c.poll.jitter = poll.number("jitter", c.poll.jitter, 0.0, 0.5);
    c.poll.rise = static_cast<uint32_t>(poll.integer("rise", c.poll.rise, 1, 100));
    c.poll.fall = static_cast<uint32_t>(poll.integer("fall", c.poll.fall, 1, 100));
    c.poll.slow_start = poll.duration("slow_start", c.poll.slow_start);
    c.poll.degraded_after =
        static_cast<uint32_t>(poll.integer("degraded_after", c.poll.degraded_after, 1, 1000));
    poll.finish();

    auto ov = root.map("overload");
    c.overload.high_water = ov.number("high_water", c.overload.high_water, 0.01, 1.0);
    c.overload.low_water = ov.number("low_water", c.overload.low_water, 0.0, 1.0);
    if (c.overload.low_water >= c.overload.high_water)
        ov.fail("low_water", "must be below overload.high_water (hysteresis)");
    ov.finish();

    auto regions = root.map("regions");
    c.regions.set_default(regions.str("default", "default"));
    if (!ids::valid_node_id(c.regions.default_region()))
        regions.fail("default", "must be 1-64 characters of [A-Za-z0-9._-]");
    for (auto& e : regions.maps("table")) {
        auto cidr = e.str("cidr");
        auto region = e.str("region");
        if (!ids::valid_node_id(region))
            e.fail("region", "must be 1-64 characters of [A-Za-z0-9._-]");
        if (auto err = c.regions.add(cidr, region)) e.fail("cidr", *err);
        e.finish();
    }
    regions.finish();

    c.alternates = static_cast<uint32_t>(root.integer("alternates", c.alternates, 0, 16));

    auto q = root.map("query");
    c.max_uid_length = static_cast<uint32_t>(q.integer("max_uid_length", 128, 1, 4096));
    c.max_exclude = static_cast<uint32_t>(q.integer("max_exclude", 32, 0, 1024));
    q.finish();

    auto http = root.map("http");
    c.http.max_connections =
        static_cast<size_t>(http.integer("max_connections", 10000, 1, 1000000));
    c.http.read_timeout = http.duration("read_timeout", c.http.read_timeout);
    c.http.write_timeout = http.duration("write_timeout", c.http.write_timeout);
    if (c.http.read_timeout.count() <= 0) http.fail("read_timeout", "must be positive");
    if (c.http.write_timeout.count() <= 0) http.fail("write_timeout", "must be positive");
    c.http.header_limit = static_cast<uint32_t>(http.integer("header_limit", 8192, 512, 65536));
    http.finish();

    auto admin = root.map("admin");
    if (admin.has("token_file")) {
        c.admin.token_file = resolve_path(root.file(), admin.str("token_file"));
        // Skipped with the fleet file (the fuzzer parses without touching the file system).
        if (load_fleet_file) {
            try {
                c.admin.token = read_protected_secret_file(c.admin.token_file);
            } catch (const std::exception& e) {
                admin.fail("token_file", e.what());
            }
        }
    }
    admin.finish();

    auto dl = root.map("decision_log");
    c.decision_log.enabled = dl.boolean("enabled", c.decision_log.enabled);
    c.decision_log.sample = dl.number("sample", c.decision_log.sample, 0.0, 1.0);
    dl.finish();

    constexpr std::chrono::milliseconds ten_minutes{600000};
    auto rc = root.map("reconnect");
    c.reconnect.base = rc.duration("base", c.reconnect.base);
    if (c.reconnect.base.count() <= 0) rc.fail("base", "must be positive");
    if (c.reconnect.base > ten_minutes) rc.fail("base", "must be at most 10m");
    c.reconnect.max = rc.duration("max", c.reconnect.max);
    if (c.reconnect.max < c.reconnect.base) rc.fail("max", "must be at least reconnect.base");
    if (c.reconnect.max > ten_minutes) rc.fail("max", "must be at most 10m");
    c.reconnect.jitter = rc.duration("jitter", c.reconnect.jitter);
    if (c.reconnect.jitter.count() < 0) rc.fail("jitter", "must not be negative");
    if (c.reconnect.jitter > ten_minutes) rc.fail("jitter", "must be at most 10m");
    rc.finish();

    auto rb = root.map("rebalance");
    c.rebalance.enabled = rb.boolean("enabled", c.rebalance.enabled);
    c.rebalance.threshold = rb.number("threshold", c.rebalance.threshold, 0.0, 10.0);
    c.rebalance.rate = rb.number("rate", c.rebalance.rate, 0.0, 1000000.0);
    if (c.rebalance.rate <= 0) rb.fail("rate", "must be above 0 (sessions per second)");
    c.rebalance.max_per_request = static_cast<uint64_t>(rb.integer(
        "max_per_request", static_cast<int64_t>(c.rebalance.max_per_request), 1, 10000000));
    c.rebalance.interval = rb.duration("interval", c.rebalance.interval);
    if (c.rebalance.interval < std::chrono::milliseconds(100))
        rb.fail("interval", "must be at least 100ms");
    if (c.rebalance.interval > std::chrono::milliseconds(3600000))
        rb.fail("interval", "must be at most 1h");
    if (rb.has("token_file")) {
        c.rebalance.token_file = resolve_path(root.file(), rb.str("token_file"));
        if (load_fleet_file) {
            try {
                c.rebalance.token = read_protected_secret_file(c.rebalance.token_file);
            } catch (const std::exception& e) {
                rb.fail("token_file", e.what());
            }
        }
    }
    // The gateways' POST /rebalance takes their admin bearer token: without one every request
    // would be refused, so an enabled rebalancer without it is a configuration error.
    if (c.rebalance.enabled && c.rebalance.token_file.empty())
        rb.fail("enabled",
                "true needs rebalance.token_file (the gateways' admin token, sent as the bearer "
                "of POST /rebalance)");
    rb.finish();

    c.log = parse_log_config(root.map("log"));
    root.finish();
    if (load_fleet_file) c.fleet = load_fleet(c.fleet_file);
    return c;
}

dispatcher_config load_dispatcher_config(const std::string& path) {
    return parse_dispatcher_config(yaml_map(load_yaml_file(path), path));
}

}  // namespace imgate::disp
