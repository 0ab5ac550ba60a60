#include "gateway/rpc_config.hpp"

namespace imgate::gw {

rpc_config parse_rpc_config(yaml_map m) {
    rpc_config c;
    c.call_timeout = m.duration("call_timeout", c.call_timeout);
    c.connect_timeout = m.duration("connect_timeout", c.connect_timeout);
    c.ping_interval = m.duration("ping_interval", c.ping_interval);
    c.peer_timeout = m.duration("peer_timeout", c.peer_timeout);
    c.backoff_min = m.duration("backoff_min", c.backoff_min);
    c.backoff_max = m.duration("backoff_max", c.backoff_max);
    // Any duration the parser takes (0 up to 7 days): 0 drops a vanished peer's entries at once.
    c.unreachable_hold = m.duration("unreachable_hold", c.unreachable_hold);
    c.max_in_flight =
        static_cast<uint32_t>(m.integer("max_in_flight", c.max_in_flight, 1, 1000000));
    c.max_queue_bytes =
        static_cast<uint64_t>(m.integer("max_queue_bytes", c.max_queue_bytes, 65536, 1LL << 32));
    c.max_handshakes =
        static_cast<uint32_t>(m.integer("max_handshakes", c.max_handshakes, 1, 100000));
    c.max_peer_users =
        static_cast<uint32_t>(m.integer("max_peer_users", c.max_peer_users, 1, 10000000));
    c.max_peer_rooms =
        static_cast<uint32_t>(m.integer("max_peer_rooms", c.max_peer_rooms, 1, 10000000));
    if (c.call_timeout.count() <= 0) m.fail("call_timeout", "must be positive");
    if (c.ping_interval.count() <= 0) m.fail("ping_interval", "must be positive");
    if (c.connect_timeout.count() <= 0) m.fail("connect_timeout", "must be positive");
    // A ping goes out once a link has been quiet for ping_interval (noticed within half of it)
    // and its PONG must be read before peer_timeout: less than twice the interval leaves no
    // room for the round trip, and healthy links would be closed.
    if (c.peer_timeout < 2 * c.ping_interval)
        m.fail("peer_timeout", "must be at least twice ping_interval");
    if (c.backoff_min.count() <= 0) m.fail("backoff_min", "must be positive");
    if (c.backoff_min > c.backoff_max) m.fail("backoff_min", "must not exceed backoff_max");
    m.finish();
    return c;
}

}  // namespace imgate::gw
