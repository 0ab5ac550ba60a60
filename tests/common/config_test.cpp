#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/config.hpp"

using namespace imgate;

namespace {

std::string write_tmp(const std::string& name, const std::string& text) {
    auto dir = std::filesystem::temp_directory_path() / "imgate_config_test";
    std::filesystem::create_directories(dir);
    auto p = (dir / name).string();
    std::ofstream(p) << text;
    return p;
}

std::string error_of(const std::string& path) {
    try {
        load_fleet(path);
    } catch (const config_error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(Config, LoadsTheLocalFleet) {
    auto f = load_fleet(std::string(IMGATE_SOURCE_DIR) + "/config/local/fleet.yaml");
    ASSERT_EQ(f.gateways.size(), 3u);
    EXPECT_EQ(f.gateways[0].id, "gw1");
    EXPECT_NE(f.find("gw3"), nullptr);
    EXPECT_FALSE(f.cluster_secret_file.empty());
}

TEST(Config, UnknownKeyNamesFileLineAndKey) {
    auto p = write_tmp("unknown.yaml",
                       "gateways:\n"
                       "  - id: a\n"
                       "    client: 127.0.0.1:1\n"
                       "    admin: 127.0.0.1:2\n"
                       "    rpc: 127.0.0.1:3\n"
                       "    wieght: 5\n");
    auto e = error_of(p);
    EXPECT_NE(e.find("unknown.yaml:6:5"), std::string::npos) << e;
    EXPECT_NE(e.find("gateways[0].wieght: unknown key"), std::string::npos) << e;
}

TEST(Config, WrongTypeAndRange) {
    auto p = write_tmp("type.yaml",
                       "gateways:\n"
                       "  - id: a\n"
                       "    client: 127.0.0.1:1\n"
                       "    admin: 127.0.0.1:2\n"
                       "    rpc: 127.0.0.1:3\n"
                       "    weight: heavy\n");
    auto e = error_of(p);
    EXPECT_NE(e.find(":6:"), std::string::npos) << e;
    EXPECT_NE(e.find("weight: expected an integer"), std::string::npos) << e;
    auto p2 = write_tmp("addr.yaml",
                        "gateways:\n"
                        "  - id: a\n"
                        "    client: nowhere\n"
                        "    admin: 127.0.0.1:2\n"
                        "    rpc: 127.0.0.1:3\n");
    EXPECT_NE(error_of(p2).find("client: expected host:port"), std::string::npos);
}

TEST(Config, DuplicateIdsAndSyntaxErrors) {
    auto p = write_tmp("dup.yaml",
                       "gateways:\n"
                       "  - {id: a, client: '127.0.0.1:1', admin: '127.0.0.1:2', rpc: "
                       "'127.0.0.1:3'}\n"
                       "  - {id: a, client: '127.0.0.1:4', admin: '127.0.0.1:5', rpc: "
                       "'127.0.0.1:6'}\n");
    EXPECT_NE(error_of(p).find("duplicate gateway id"), std::string::npos);
    auto p2 = write_tmp("syntax.yaml", "gateways: [\n  - id: a\n");
    EXPECT_NE(error_of(p2).find("YAML syntax error"), std::string::npos);
    EXPECT_NE(error_of("/nonexistent/x.yaml").find("cannot open"), std::string::npos);
}

TEST(Config, Durations) {
    YAML::Node n = YAML::Load("a: 250\nb: 2s\nc: 1m\nd: 5 parsecs\n");
    yaml_map m(n, "t.yaml");
    EXPECT_EQ(m.duration("a", {}), std::chrono::milliseconds(250));
    EXPECT_EQ(m.duration("b", {}), std::chrono::milliseconds(2000));
    EXPECT_EQ(m.duration("c", {}), std::chrono::milliseconds(60000));
    EXPECT_THROW(m.duration("d", {}), config_error);
    EXPECT_EQ(m.duration("zzz", std::chrono::milliseconds(7)), std::chrono::milliseconds(7));
}

TEST(Config, Endpoints) {
    EXPECT_EQ(parse_endpoint("127.0.0.1:80")->port, 80);
    EXPECT_EQ(parse_endpoint("[::1]:9000")->host, "::1");
    EXPECT_FALSE(parse_endpoint("::1:9000"));
    EXPECT_FALSE(parse_endpoint("host:99999"));
    EXPECT_FALSE(parse_endpoint("host:"));
    EXPECT_EQ(parse_endpoint("[::1]:9000")->to_string(), "[::1]:9000");
}

namespace {
std::string two_gateways(const std::string& a, const std::string& b,
                         const std::string& extra_a = "", const std::string& extra_b = "") {
    return "gateways:\n"
           "  - {id: " +
           a + ", client: 127.0.0.1:1, admin: 127.0.0.1:2, rpc: 127.0.0.1:3" + extra_a +
           "}\n"
           "  - {id: " +
           b + ", client: 127.0.0.1:4, admin: 127.0.0.1:5, rpc: 127.0.0.1:6" + extra_b + "}\n";
}
}  // namespace

// Issue 11: server_msg_id prefixes came from a 16-bit hash of the id, so gw102/gw399 and
// gw211/gw326 issued the same ids and a receiver dropped real messages as duplicates.
TEST(Config, GatewaysThatWouldShareAMessageIdPrefixAreRefused) {
    auto e = error_of(write_tmp("node-clash.yaml", two_gateways("gw102", "gw399")));
    EXPECT_NE(e.find("\"gw102\" and \"gw399\" would share node number"), std::string::npos) << e;
    EXPECT_NE(e.find("node:"), std::string::npos) << e;
    e = error_of(write_tmp("node-clash2.yaml", two_gateways("gw211", "gw326")));
    EXPECT_NE(e.find("would share node number"), std::string::npos) << e;
    // An explicit node number resolves it.
    auto f = load_fleet(write_tmp("node-ok.yaml", two_gateways("gw102", "gw399", "", ", node: 7")));
    EXPECT_EQ(f.find("gw399")->node, 7);
    EXPECT_EQ(f.find("gw102")->node, default_node_number("gw102"));
    // Two explicit equal numbers are refused too, naming the key.
    e = error_of(write_tmp("node-dup.yaml", two_gateways("a", "b", ", node: 9", ", node: 9")));
    EXPECT_NE(e.find("node"), std::string::npos) << e;
    EXPECT_NE(e.find("\"a\" and \"b\""), std::string::npos) << e;
    e = error_of(write_tmp("node-range.yaml", two_gateways("a", "b", ", node: 0")));
    EXPECT_NE(e.find("node"), std::string::npos) << e;
}

TEST(Config, LocalFleetNodeNumbersAreDistinctAndNonZero) {
    auto f = load_fleet(std::string(IMGATE_SOURCE_DIR) + "/config/local/fleet.yaml");
    std::set<uint16_t> nodes;
    for (auto& g : f.gateways) {
        EXPECT_NE(g.node, 0);
        EXPECT_TRUE(nodes.insert(g.node).second) << g.id;
    }
}

TEST(Config, TransportsArePerGatewayAndOptional) {
    auto f = load_fleet(write_tmp("transports.yaml", R"(gateways:
  - {id: a, client: 127.0.0.1:9001, tls: gw-a.example.com:443, tls_listen: 0.0.0.0:9441,
     wss: gw-a.example.com:8443, admin: 127.0.0.1:9101, rpc: 127.0.0.1:9201}
  - {id: b, wss: 127.0.0.1:9602, admin: 127.0.0.1:9102, rpc: 127.0.0.1:9202}
)"));
    const auto* a = f.find("a");
    ASSERT_TRUE(a);
    EXPECT_TRUE(a->serves(transport::tcp));
    EXPECT_EQ(a->address_of(transport::tls)->to_string(), "gw-a.example.com:443");
    EXPECT_EQ(a->listen_of(transport::tls)->to_string(), "0.0.0.0:9441");
    EXPECT_EQ(a->listen_of(transport::wss)->to_string(), "gw-a.example.com:8443");
    EXPECT_FALSE(a->serves(transport::ws));
    const auto* b = f.find("b");
    EXPECT_FALSE(b->serves(transport::tcp));
    EXPECT_TRUE(b->serves(transport::wss));
    EXPECT_EQ(parse_transport("wss"), transport::wss);
    EXPECT_EQ(parse_transport("https"), std::nullopt);
    EXPECT_STREQ(to_string(transport::tls), "tls");

    auto e = error_of(write_tmp("no-transport.yaml", R"(gateways:
  - {id: a, admin: 127.0.0.1:9101, rpc: 127.0.0.1:9201}
)"));
    EXPECT_NE(e.find("at least one transport"), std::string::npos) << e;
    e = error_of(write_tmp("listen-only.yaml", R"(gateways:
  - {id: a, client: 127.0.0.1:9001, ws_listen: 127.0.0.1:9501, admin: 127.0.0.1:9101,
     rpc: 127.0.0.1:9201}
)"));
    EXPECT_NE(e.find("ws_listen"), std::string::npos) << e;
    e = error_of(write_tmp("same-port.yaml", R"(gateways:
  - {id: a, client: 127.0.0.1:9001, tls: 127.0.0.1:9001, admin: 127.0.0.1:9101,
     rpc: 127.0.0.1:9201}
)"));
    EXPECT_NE(e.find("used by two transports"), std::string::npos) << e;
}
