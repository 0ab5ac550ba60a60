#include "gateway/backend_config.hpp"

namespace imgate::gw {

const char* to_string(directory_mode m) {
    return m == directory_mode::redis ? "redis" : "announced";
}

const char* to_string(events_overflow o) {
    return o == events_overflow::refuse ? "refuse" : "drop";
}

namespace {

std::chrono::milliseconds positive(yaml_map& m, const char* key, std::chrono::milliseconds def) {
    auto v = m.duration(key, def);
    if (v.count() <= 0) m.fail(key, "must be positive");
    return v;
}

}  // namespace

void parse_backend_config(yaml_map d, yaml_map r, yaml_map e, const std::string& config_path,
                          directory_config& dir, redis_config& rc, events_config& ev) {
    auto mode = d.str("mode", "announced");
    if (mode == "announced")
        dir.mode = directory_mode::announced;
    else if (mode == "redis")
        dir.mode = directory_mode::redis;
    else
        d.fail("mode", "must be announced or redis, not \"" + mode + "\"");
    dir.lease = positive(d, "lease", dir.lease);
    // The lease is renewed every third of it: below 300 ms a busy Redis round trip could let a
    // live gateway's lease lapse.
    if (dir.lease < std::chrono::milliseconds(300)) d.fail("lease", "must be at least 300ms");
    dir.entry_ttl = positive(d, "entry_ttl", dir.entry_ttl);
    if (dir.entry_ttl < 3 * dir.lease) d.fail("entry_ttl", "must be at least three leases");
    dir.cache_ttl = d.duration("cache_ttl", dir.cache_ttl);
    if (dir.cache_ttl >= dir.lease) d.fail("cache_ttl", "must be shorter than lease");
    dir.cache_entries = size_t(d.integer("cache_entries", int64_t(dir.cache_entries), 0, 10000000));
    d.finish();

    rc.configured = r.has("address") || r.has("unix_socket");
    auto& c = rc.conn;
    if (r.has("address") && r.has("unix_socket"))
        r.fail("unix_socket", "give address or unix_socket, not both");
    if (r.has("address")) {
        auto ep = r.address("address");
        if (ep.port == 0) r.fail("address", "needs a port (Redis listens on 6379 by default)");
        c.host = ep.host;
        c.port = ep.port;
    }
    if (r.has("unix_socket")) c.unix_path = resolve_path(config_path, r.str("unix_socket"));
    if (r.has("password_file")) {
        rc.password_file = resolve_path(config_path, r.str("password_file"));
        try {
            c.password = read_protected_secret_file(rc.password_file);
        } catch (const std::exception& ex) {
            r.fail("password_file", ex.what());
        }
    }
    c.db = uint32_t(r.integer("db", 0, 0, 1000000));
    rc.prefix = r.str("prefix", rc.prefix);
    c.connect_timeout = positive(r, "connect_timeout", c.connect_timeout);
    c.command_timeout = positive(r, "command_timeout", c.command_timeout);
    c.backoff_min = positive(r, "backoff_min", c.backoff_min);
    c.backoff_max = positive(r, "backoff_max", c.backoff_max);
    if (c.backoff_min > c.backoff_max) r.fail("backoff_min", "must not exceed backoff_max");
    c.max_pending = size_t(r.integer("max_pending", int64_t(c.max_pending), 1, 10000000));
    r.finish();

    ev.enabled = e.boolean("enabled", ev.enabled);
    ev.stream = e.str("stream", ev.stream);
    if (ev.stream.empty()) e.fail("stream", "must not be empty");
    ev.maxlen = size_t(e.integer("maxlen", int64_t(ev.maxlen), 1, int64_t(1) << 40));
    ev.messages = e.boolean("messages", ev.messages);
    ev.max_buffered = size_t(e.integer("max_buffered", int64_t(ev.max_buffered), 1, 100000000));
    auto overflow = e.str("overflow", "drop");
    if (overflow == "drop")
        ev.overflow = events_overflow::drop;
    else if (overflow == "refuse")
        ev.overflow = events_overflow::refuse;
    else
        e.fail("overflow", "must be drop or refuse, not \"" + overflow + "\"");
    e.finish();

    if (!rc.configured && dir.mode == directory_mode::redis)
        d.fail("mode", "redis mode needs a redis: section with address or unix_socket");
    if (!rc.configured && ev.enabled)
        e.fail("enabled", "events need a redis: section with address or unix_socket");
}

}  // namespace imgate::gw
