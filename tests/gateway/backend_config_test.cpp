// The shared engine's sections of gateway.yaml: defaults, each key, and the refusals a mistyped
// file must get (with the key's path in the message).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "gateway/backend_config.hpp"

namespace imgate::gw {
namespace {

struct parsed {
    directory_config dir;
    redis_config redis;
    events_config events;
};

parsed parse(const std::string& text) {
    YAML::Node root = YAML::Load(text.empty() ? "{}" : text);
    yaml_map m(root, "/etc/imgate/gateway.yaml");
    parsed p;
    parse_backend_config(m.map("directory"), m.map("redis"), m.map("events"),
                         "/etc/imgate/gateway.yaml", p.dir, p.redis, p.events);
    return p;
}

std::string refusal(const std::string& text) {
    try {
        parse(text);
    } catch (const config_error& e) {
        return e.what();
    }
    return "";
}

TEST(BackendConfig, AbsentSectionsMeanAnnouncedAndNoEvents) {
    auto p = parse("");
    EXPECT_EQ(p.dir.mode, directory_mode::announced);
    EXPECT_FALSE(p.redis.configured);
    EXPECT_FALSE(p.events.enabled);
    EXPECT_EQ(p.dir.lease, std::chrono::seconds(10));
    EXPECT_EQ(p.dir.cache_ttl, std::chrono::milliseconds(200));
    EXPECT_EQ(p.redis.prefix, "imgate:");
    EXPECT_EQ(p.events.stream, "imgate:events");
    EXPECT_EQ(p.events.overflow, events_overflow::drop);
}

TEST(BackendConfig, RedisModeWithEveryKey) {
    auto p = parse(R"(
directory: {mode: redis, lease: 3s, entry_ttl: 1m, cache_ttl: 0, cache_entries: 500}
redis: {address: "127.0.0.1:6390", db: 2, prefix: "chat:", connect_timeout: 250ms,
        command_timeout: 400ms, backoff_min: 50ms, backoff_max: 2s, max_pending: 9000}
events: {enabled: true, stream: "chat:ev", maxlen: 5000, messages: true, max_buffered: 77,
         overflow: refuse}
)");
    EXPECT_EQ(p.dir.mode, directory_mode::redis);
    EXPECT_EQ(p.dir.lease, std::chrono::seconds(3));
    EXPECT_EQ(p.dir.entry_ttl, std::chrono::minutes(1));
    EXPECT_EQ(p.dir.cache_ttl.count(), 0);
    EXPECT_EQ(p.dir.cache_entries, 500u);
    EXPECT_TRUE(p.redis.configured);
    EXPECT_EQ(p.redis.conn.host, "127.0.0.1");
    EXPECT_EQ(p.redis.conn.port, 6390);
    EXPECT_EQ(p.redis.conn.db, 2u);
    EXPECT_EQ(p.redis.prefix, "chat:");
    EXPECT_EQ(p.redis.conn.connect_timeout, std::chrono::milliseconds(250));
    EXPECT_EQ(p.redis.conn.command_timeout, std::chrono::milliseconds(400));
    EXPECT_EQ(p.redis.conn.max_pending, 9000u);
    EXPECT_TRUE(p.events.enabled);
    EXPECT_TRUE(p.events.messages);
    EXPECT_EQ(p.events.stream, "chat:ev");
    EXPECT_EQ(p.events.maxlen, 5000u);
    EXPECT_EQ(p.events.max_buffered, 77u);
    EXPECT_EQ(p.events.overflow, events_overflow::refuse);
}

TEST(BackendConfig, UnixSocketIsRelativeToTheConfigFile) {
    auto p = parse("redis: {unix_socket: run/redis.sock}");
    EXPECT_TRUE(p.redis.configured);
    EXPECT_EQ(p.redis.conn.unix_path, "/etc/imgate/run/redis.sock");
}

TEST(BackendConfig, RefusesWhatCannotWork) {
    EXPECT_NE(refusal("directory: {mode: redis}").find("a redis: section"), std::string::npos);
    EXPECT_NE(refusal("events: {enabled: true}").find("a redis: section"), std::string::npos);
    EXPECT_NE(refusal("directory: {mode: gossip}").find("announced or redis"), std::string::npos);
    EXPECT_NE(refusal("redis: {address: '127.0.0.1:1', unix_socket: /x}").find("not both"),
              std::string::npos);
    EXPECT_NE(refusal("redis: {address: '127.0.0.1:0'}").find("needs a port"), std::string::npos);
    EXPECT_NE(refusal("directory: {lease: 100ms}").find("at least 300ms"), std::string::npos);
    EXPECT_NE(refusal("directory: {lease: 10s, entry_ttl: 20s}").find("three leases"),
              std::string::npos);
    EXPECT_NE(refusal("directory: {lease: 1s, cache_ttl: 1s}").find("shorter than lease"),
              std::string::npos);
    EXPECT_NE(refusal("events: {overflow: block}").find("drop or refuse"), std::string::npos);
    EXPECT_NE(refusal("redis: {address: '127.0.0.1:6379', backoff_min: 9s}")
                  .find("must not exceed backoff_max"),
              std::string::npos);
    // A typo is an unknown key, named with its path.
    EXPECT_NE(refusal("redis: {adress: '127.0.0.1:6379'}").find("adress"), std::string::npos);
}

}  // namespace
}  // namespace imgate::gw
