// Parsing of what comes from outside: gateway /status bodies, get-tcp-ip queries, the region
// table and dispatcher.yaml.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <boost/asio/ip/address.hpp>
#include <filesystem>
#include <fstream>

#include "dispatcher/dispatcher_config.hpp"
#include "dispatcher/gateway_status.hpp"
#include "dispatcher/query.hpp"
#include "dispatcher/region_table.hpp"

using namespace imgate;
using namespace imgate::disp;

namespace {
const char* good_status =
    R"({"id":"gw1","state":"serving","connections":5,"max_connections":100,"sessions":4,)"
    R"("full":false,"load":0.05,"pid":42,"version":"0.1.0","uptime_s":12.5,"extra":1})";
}

TEST(GatewayStatus, ParsesAllFields) {
    auto r = parse_gateway_status(good_status);
    ASSERT_TRUE(std::holds_alternative<gateway_status>(r)) << std::get<std::string>(r);
    auto& s = std::get<gateway_status>(r);
    EXPECT_EQ(s.id, "gw1");
    EXPECT_EQ(s.connections, 5u);
    EXPECT_EQ(s.max_connections, 100u);
    EXPECT_EQ(s.sessions, 4u);
    EXPECT_DOUBLE_EQ(s.load, 0.05);
    EXPECT_EQ(s.pid, 42);
    EXPECT_DOUBLE_EQ(s.uptime_s, 12.5);
}

TEST(GatewayStatus, MissingOrInvalidFieldsAreNamed) {
    auto err = [](const std::string& body) {
        auto r = parse_gateway_status(body);
        return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : "";
    };
    EXPECT_EQ(err("not json"), "status body is not valid JSON");
    EXPECT_EQ(err("[1]"), "status body is not a JSON object");
    std::string noload = good_status;
    noload.replace(noload.find("\"load\":0.05,"), 12, "");
    EXPECT_EQ(err(noload), "status field 'load' missing");
    std::string badconn = good_status;
    badconn.replace(badconn.find("\"connections\":5"), 15, "\"connections\":-1");
    EXPECT_EQ(err(badconn), "status field 'connections' is not a non-negative integer");
    std::string badload = good_status;
    badload.replace(badload.find("0.05"), 4, "1.50");
    EXPECT_EQ(err(badload), "status field 'load' is not a number in 0..1");
    std::string badstate = good_status;
    badstate.replace(badstate.find("serving"), 7, "zombie!");
    EXPECT_NE(err(badstate).find("'state' is \"zombie!\""), std::string::npos);
    std::string fullstr = good_status;
    fullstr.replace(fullstr.find("false"), 5, "\"no\"");
    EXPECT_EQ(err(fullstr), "status field 'full' is not a boolean");
}

namespace {
query_error qerr(std::string_view q) {
    auto r = parse_tcp_ip_query(q, {16, 3});
    if (auto* e = std::get_if<query_error>(&r)) return *e;
    return {"", ""};
}
tcp_ip_query qok(std::string_view q) {
    auto r = parse_tcp_ip_query(q, {16, 3});
    EXPECT_TRUE(std::holds_alternative<tcp_ip_query>(r)) << std::get<query_error>(r).message;
    return std::holds_alternative<tcp_ip_query>(r) ? std::get<tcp_ip_query>(r) : tcp_ip_query{};
}
}  // namespace

TEST(TcpIpQuery, AcceptsTheDocumentedParameters) {
    auto q = qok("uid=alice%40x&exclude=gw1,gw-2&region=eu");
    EXPECT_EQ(q.uid, "alice@x");
    EXPECT_EQ(q.exclude, (std::vector<std::string>{"gw1", "gw-2"}));
    EXPECT_EQ(q.region, "eu");
    EXPECT_TRUE(qok("").exclude.empty());
    EXPECT_TRUE(qok("exclude=").exclude.empty());
    EXPECT_FALSE(qok("uid=bob").region.has_value());
}

TEST(TcpIpQuery, RefusesMalformedQueries) {
    EXPECT_EQ(qerr("foo=1").code, "unknown_parameter");
    EXPECT_EQ(qerr("uid=a&uid=b").code, "bad_query");
    EXPECT_EQ(qerr("uid=%zz").code, "bad_query");
    EXPECT_EQ(qerr("uid=0123456789abcdefX").code, "bad_uid");
    EXPECT_EQ(qerr("uid=a%0Ab").code, "bad_uid");
    EXPECT_EQ(qerr("exclude=gw1,,gw2").code, "bad_exclude");
    EXPECT_EQ(qerr("exclude=gw1,").code, "bad_exclude");
    EXPECT_EQ(qerr("exclude=gw%201").code, "bad_exclude");
    EXPECT_EQ(qerr("exclude=a,b,c,d").code, "bad_exclude");
    EXPECT_EQ(qerr("region=").code, "bad_region");
    EXPECT_EQ(qerr("region=a%2Fb").code, "bad_region");
}

TEST(TcpIpQuery, RendersPickWithAlternates) {
    std::vector<pick_target> t{{"gw1", {"10.0.0.1", 9001}}, {"gw2", {"10.0.0.2", 9002}}};
    EXPECT_EQ(
        render_pick(t),
        R"({"alternates":[{"host":"10.0.0.2","id":"gw2","port":9002,"transport":"tcp"}],"host":"10.0.0.1","id":"gw1","port":9001,"transport":"tcp"})");
}

// The rendered body is valid JSON whatever the host string holds (escaped, not passed through).
TEST(TcpIpQuery, RenderedPickEscapesHostsThatNeedIt) {
    std::vector<pick_target> t{{"gw1", {"h\"o\\st\n", 1}}, {"gw2", {"plain.example", 2}}};
    auto j = nlohmann::json::parse(render_pick(t), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << render_pick(t);
    EXPECT_EQ(j["host"], "h\"o\\st\n");
    EXPECT_EQ(j["alternates"][0]["host"], "plain.example");
}

TEST(RegionTable, LongestPrefixWinsAndDefaultCoversTheRest) {
    region_table t;
    t.set_default("world");
    ASSERT_FALSE(t.add("10.0.0.0/8", "ten"));
    ASSERT_FALSE(t.add("10.1.0.0/16", "ten-one"));
    ASSERT_FALSE(t.add("2001:db8::/32", "v6"));
    auto a = [](const char* s) { return boost::asio::ip::make_address(s); };
    EXPECT_EQ(t.lookup(a("10.2.3.4")), "ten");
    EXPECT_EQ(t.lookup(a("10.1.3.4")), "ten-one");
    EXPECT_EQ(t.lookup(a("::ffff:10.1.3.4")), "ten-one");
    EXPECT_EQ(t.lookup(a("2001:db8::1")), "v6");
    EXPECT_EQ(t.lookup(a("11.0.0.1")), "world");
    EXPECT_EQ(t.lookup(a("::1")), "world");
}

TEST(RegionTable, RefusesBadEntries) {
    region_table t;
    EXPECT_TRUE(t.add("10.0.0.0", "x"));
    EXPECT_TRUE(t.add("10.0.0.0/33", "x"));
    EXPECT_TRUE(t.add("10.0.0.1/8", "x"));  // host bits set
    EXPECT_TRUE(t.add("nope/8", "x"));
    EXPECT_TRUE(t.add("10.0.0.0/x", "x"));
    EXPECT_EQ(t.size(), 0u);
}

namespace {
struct temp_dir {
    std::filesystem::path p;
    temp_dir() {
        p = std::filesystem::temp_directory_path() /
            ("imgate-disp-test-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(p);
    }
    ~temp_dir() { std::filesystem::remove_all(p); }
    std::string write(const std::string& name, const std::string& text) {
        std::ofstream(p / name) << text;
        return (p / name).string();
    }
};
const char* fleet_yaml = R"(gateways:
  - {id: gw1, client: 127.0.0.1:9001, admin: 127.0.0.1:9101, rpc: 127.0.0.1:9201}
)";
}  // namespace

TEST(DispatcherConfig, DefaultsAndRelativeFleetPath) {
    temp_dir d;
    d.write("fleet.yaml", fleet_yaml);
    auto path = d.write("dispatcher.yaml", "fleet: fleet.yaml\n");
    auto c = load_dispatcher_config(path);
    EXPECT_EQ(c.fleet.gateways.size(), 1u);
    EXPECT_EQ(c.poll.interval, std::chrono::milliseconds(500));
    EXPECT_EQ(c.poll.timeout, std::chrono::milliseconds(300));
    EXPECT_EQ(c.poll.rise, 2u);
    EXPECT_EQ(c.poll.fall, 2u);
    EXPECT_EQ(c.poll.fast_interval, std::chrono::milliseconds(100));
    EXPECT_EQ(c.http.header_limit, 8192u);
    EXPECT_EQ(c.alternates, 2u);
}

TEST(DispatcherConfig, ErrorsNameFileLineAndKey) {
    temp_dir d;
    d.write("fleet.yaml", fleet_yaml);
    auto expect_error = [&](const std::string& yaml, const std::string& fragment) {
        auto path = d.write("dispatcher.yaml", yaml);
        try {
            load_dispatcher_config(path);
            ADD_FAILURE() << "accepted: " << yaml;
        } catch (const config_error& e) {
            EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
        }
    };
    expect_error("fleet: fleet.yaml\npoll:\n  intervall: 1s\n",
                 "dispatcher.yaml:3:3: poll.intervall: unknown key");
    expect_error("fleet: fleet.yaml\npoll: {interval: 100ms, timeout: 200ms}\n",
                 "poll.timeout: must not exceed poll.interval");
    expect_error("fleet: fleet.yaml\npoll: {fast_interval: 5ms}\n",
                 "poll.fast_interval: must be at least 10ms");
    expect_error("fleet: fleet.yaml\noverload: {high_water: 0.5, low_water: 0.6}\n",
                 "overload.low_water: must be below");
    expect_error("fleet: fleet.yaml\nregions:\n  table:\n    - {cidr: 10.0.0.1/8, region: a}\n",
                 "dispatcher.yaml:4:8: regions.table[0].cidr: host bits set");
    expect_error("fleet: missing.yaml\n", "missing.yaml: cannot open file");
    expect_error("listen: 127.0.0.1:1\n", "fleet: required key is missing");
}

TEST(GatewayStatus, MeshAndSecretsAreOptionalButCheckedWhenPresent) {
    auto parse = [](const std::string& extra) {
        std::string body = good_status;
        body.insert(body.size() - 1, extra);
        return parse_gateway_status(body);
    };
    // Older gateways do not send them: no fields, no error.
    auto old = std::get<gateway_status>(parse(""));
    EXPECT_FALSE(old.links_up);
    EXPECT_FALSE(old.peers_expected);
    EXPECT_FALSE(old.jwt_fingerprint);
    auto r = parse(R"(,"mesh":{"peers_expected":2,"links_up":1,"peers":[]},)"
                   R"("secrets":{"jwt":["aaaa","bbbb"],"cluster":null})");
    ASSERT_TRUE(std::holds_alternative<gateway_status>(r)) << std::get<std::string>(r);
    auto& s = std::get<gateway_status>(r);
    EXPECT_EQ(s.peers_expected, 2u);
    EXPECT_EQ(s.links_up, 1u);
    EXPECT_EQ(s.jwt_fingerprint, "aaaa");  // the current one: first
    auto err = [&](const std::string& extra) {
        auto x = parse(extra);
        return std::holds_alternative<std::string>(x) ? std::get<std::string>(x) : "";
    };
    EXPECT_EQ(err(R"(,"mesh":[])"), "status field 'mesh' is not an object");
    EXPECT_EQ(err(R"(,"mesh":{"links_up":-1})"),
              "status field 'mesh.links_up' is not a non-negative integer");
    EXPECT_EQ(err(R"(,"secrets":{"jwt":"aaaa"})"), "status field 'secrets.jwt' is not an array");
    EXPECT_EQ(err(R"(,"secrets":{"jwt":[1]})"), "status field 'secrets.jwt' holds a non-string");
}

TEST(DispatcherConfig, AdminTokenDegradedAfterAndDecisionLog) {
    temp_dir d;
    d.write("fleet.yaml", fleet_yaml);
    auto token_file = d.write("admin.token", "  s3cret-admin-token-0123\n");
    std::filesystem::permissions(
        token_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    auto path = d.write("dispatcher.yaml",
                        "fleet: fleet.yaml\nadmin: {token_file: admin.token}\n"
                        "poll: {degraded_after: 5}\ndecision_log: {enabled: true, sample: 0.5}\n");
    auto c = load_dispatcher_config(path);
    EXPECT_EQ(c.admin.token, "s3cret-admin-token-0123");
    EXPECT_EQ(c.poll.degraded_after, 5u);
    EXPECT_TRUE(c.decision_log.enabled);
    EXPECT_DOUBLE_EQ(c.decision_log.sample, 0.5);
    auto def = load_dispatcher_config(d.write("dispatcher.yaml", "fleet: fleet.yaml\n"));
    EXPECT_TRUE(def.admin.token.empty());
    EXPECT_EQ(def.poll.degraded_after, 3u);
    EXPECT_FALSE(def.decision_log.enabled);
    auto bad = d.write("dispatcher.yaml", "fleet: fleet.yaml\nadmin: {token_file: nope.token}\n");
    EXPECT_THROW(load_dispatcher_config(bad), config_error);
    // A token every user can read is refused like the gateways' secret files, naming the fix.
    std::filesystem::permissions(token_file, std::filesystem::perms::others_read,
                                 std::filesystem::perm_options::add);
    try {
        load_dispatcher_config(
            d.write("dispatcher.yaml", "fleet: fleet.yaml\nadmin: {token_file: admin.token}\n"));
        ADD_FAILURE() << "a world-readable admin token was accepted";
    } catch (const config_error& e) {
        EXPECT_NE(std::string(e.what()).find("readable by every user"), std::string::npos)
            << e.what();
    }
    auto bad_rate = d.write("dispatcher.yaml", "fleet: fleet.yaml\ndecision_log: {sample: 2}\n");
    EXPECT_THROW(load_dispatcher_config(bad_rate), config_error);
}
