#pragma once
// The optional shared engine of gateway.yaml (docs/configuration.md): `directory:` (where the
// fleet's users and rooms are looked up), `redis:` (the server both the redis directory and the
// upstream events use) and `events:` (session events and messages appended to a Redis Stream).
// All three are read at start-up only: a reload that changes them applies the rest of the file,
// keeps these as they were, and logs "restart to apply".
#include <chrono>
#include <cstdint>
#include <string>

#include "common/config.hpp"
#include "common/redis.hpp"

namespace imgate::gw {

enum class directory_mode { announced, redis };
const char* to_string(directory_mode m);

struct directory_config {
    directory_mode mode = directory_mode::announced;
    // redis mode: this gateway's lease key lives this long and is renewed every third of it; a
    // gateway whose lease is gone (dead, or cut off from Redis) is not a location any more.
    std::chrono::milliseconds lease{10000};
    // redis mode: each location key's TTL, renewed by its gateways while they hold the key, so a
    // dead gateway's keys leave Redis by themselves.
    std::chrono::milliseconds entry_ttl{600000};
    // redis mode: how long a looked-up location may be reused without asking Redis again (0: ask
    // every time). Only answers that found the target are cached (never "offline").
    std::chrono::milliseconds cache_ttl{200};
    size_t cache_entries = 100000;  // most cached lookups held
};

struct redis_config {
    bool configured = false;  // a `redis:` section is present
    redis::options conn;      // host/port or unix socket, timeouts, backoff, queue bound
    std::string password_file;
    std::string prefix = "imgate:";  // every key imgate writes starts with it
};

enum class events_overflow { drop, refuse };
const char* to_string(events_overflow o);

struct events_config {
    bool enabled = false;
    std::string stream = "imgate:events";  // the Stream key (XADD)
    size_t maxlen = 1000000;               // XADD MAXLEN ~ this
    bool messages = false;                 // also append 1:1 and room messages (with payloads)
    // Events waiting for Redis (not yet acknowledged); past it `overflow` decides: drop (count
    // and go on) or refuse (the SEND that would add a message event is refused `unavailable`;
    // session events are still dropped and counted).
    size_t max_buffered = 100000;
    events_overflow overflow = events_overflow::drop;
};

// Parses the three sections (absent: defaults, announced, no events). `redis:` is required by
// directory.mode redis and by events.enabled. Throws config_error with file:line.
void parse_backend_config(yaml_map directory, yaml_map redis, yaml_map events,
                          const std::string& config_path, directory_config& dir, redis_config& r,
                          events_config& ev);

}  // namespace imgate::gw
