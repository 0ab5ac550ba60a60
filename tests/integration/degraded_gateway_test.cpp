// Issue 19 (1): a gateway that is alive but useless must not be handed out. A real fleet of three
// gateways where gw3 has its own JWT secret (a new host whose secrets were not copied): the
// gateways report their mesh and secret fingerprints on /status, and the dispatcher marks gw3
// degraded (jwt_secret_mismatch) and never hands it out.
#include <gtest/gtest.h>

#include <csignal>

#include "common/fingerprint.hpp"
#include "fleet_truth_fixture.hpp"

namespace {

using namespace imgate::test;

TEST(DegradedGateway, GatewayWithAnotherJwtSecretIsNeverHandedOut) {
    truth_fleet f({"gw1", "gw2", "gw3"});
    write_secret_file(f.files.dir().file("other.secret"),
                      "a-fresh-secret-nobody-signs-with-0123\n");
    auto other = f.gateway_config_variant("gateway-gw3.yaml", R"(secret_files: \[token.secret\])",
                                          "secret_files: [other.secret]");
    ASSERT_TRUE(f.start_gateway("gw1")) << f.gws["gw1"]->log();
    ASSERT_TRUE(f.start_gateway("gw2")) << f.gws["gw2"]->log();
    ASSERT_TRUE(f.start_gateway("gw3", other)) << f.gws["gw3"]->log();
    ASSERT_TRUE(f.start_dispatcher()) << f.disp->log();

    // Every /get-tcp-ip answer from the dispatcher's first one on: gw3 is never in it.
    std::map<std::string, int> seen;
    ASSERT_TRUE(eventually(
        [&] {
            auto c = f.picks(5);
            for (auto& [k, v] : c) seen[k] += v;
            return f.state_of("gw1") == "up" && f.state_of("gw2") == "up" &&
                   f.state_of("gw3") == "degraded";
        },
        8000ms, 10ms))
        << f.status().dump(1) << "\n"
        << f.disp->log();
    for (auto& [k, v] : f.picks(60)) seen[k] += v;
    EXPECT_EQ(seen["gw3"], 0);
    EXPECT_GT(seen["gw1"] + seen["gw2"], 60);

    // What the operator sees: the gateway's own /status ...
    auto gs = http_get(f.gws["gw3"]->addr("admin"), "/status").json();
    auto token = read_file(f.files.dir().file("token.secret"));
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
        token.pop_back();
    auto good_fp = imgate::secret_fingerprint("jwt", token);
    auto bad_fp = imgate::secret_fingerprint("jwt", "a-fresh-secret-nobody-signs-with-0123");
    EXPECT_EQ(gs["secrets"]["jwt"], nlohmann::json::array({bad_fp})) << gs;
    EXPECT_EQ(gs["secrets"]["jwt"].dump().find("a-fresh-secret"), std::string::npos);
    EXPECT_TRUE(gs["secrets"]["cluster"].is_string());
    EXPECT_EQ(gs["mesh"]["peers_expected"], 2);
    auto g1 = http_get(f.gws["gw1"]->addr("admin"), "/status").json();
    EXPECT_EQ(g1["secrets"]["jwt"], nlohmann::json::array({good_fp}));
    EXPECT_EQ(g1["secrets"]["cluster"], gs["secrets"]["cluster"]);  // same cluster secret
    // ... the dispatcher's /status, and its metrics.
    auto d3 = f.gateway("gw3");
    EXPECT_EQ(d3["state"], "degraded");
    EXPECT_EQ(d3["degraded_reason"], "jwt_secret_mismatch");
    EXPECT_EQ(d3["jwt_fingerprint"], bad_fp);
    EXPECT_EQ(f.status()["jwt_majority"], good_fp);
    EXPECT_EQ(f.metric(R"(imgate_dispatcher_gateway_state{gateway="gw3",state="degraded"})"), 1);
    EXPECT_EQ(
        f.metric(
            R"(imgate_dispatcher_gateway_degraded{gateway="gw3",reason="jwt_secret_mismatch"})"),
        1);
    EXPECT_EQ(
        f.metric(
            R"(imgate_dispatcher_gateway_degraded{gateway="gw1",reason="jwt_secret_mismatch"})"),
        0);
    EXPECT_EQ(f.metric(R"(imgate_dispatcher_picks_total{gateway="gw3"})"), 0);
}

TEST(DegradedGateway, StatusShowsTheMeshLinksPerPeer) {
    truth_fleet f({"gw1", "gw2"});
    ASSERT_TRUE(f.start_gateway("gw1")) << f.gws["gw1"]->log();
    ASSERT_TRUE(f.start_gateway("gw2")) << f.gws["gw2"]->log();
    auto admin1 = f.gws["gw1"]->addr("admin");
    auto peer_state = [&] {
        auto s = http_get(admin1, "/status").json();
        if (!s.is_object() || !s["mesh"]["peers"].is_array() || s["mesh"]["peers"].empty())
            return std::string("?");
        return s["mesh"]["peers"][0].value("state", "?");
    };
    ASSERT_TRUE(eventually([&] { return peer_state() == "up"; }, 8000ms))
        << http_get(admin1, "/status").body;
    auto s = http_get(admin1, "/status").json();
    EXPECT_EQ(s["mesh"]["links_up"], 1);
    EXPECT_EQ(s["mesh"]["peers_expected"], 1);
    EXPECT_EQ(s["mesh"]["peers"][0]["id"], "gw2");
    EXPECT_TRUE(s["mesh"]["peers"][0]["since_ms"].is_number_integer());
    f.gws["gw2"]->signal(SIGKILL);
    ASSERT_TRUE(f.gws["gw2"]->wait_exit());
    ASSERT_TRUE(eventually([&] { return peer_state() == "down"; }, 8000ms))
        << http_get(admin1, "/status").body;
    EXPECT_EQ(http_get(admin1, "/status").json()["mesh"]["links_up"], 0);
}

TEST(DegradedGateway, GatewayCutOffFromAWorkingMeshIsDegradedAfterTheGrace) {
    // gw3 has another cluster secret: its links never authenticate, in either direction, while
    // gw1 and gw2 form a mesh. gw3 is cut off from it (its users would be `offline` for everyone
    // else), so it is not handed out; the other two are, and the dispatcher stays ready.
    truth_fleet f({"gw1", "gw2", "gw3"}, "");
    write_secret_file(f.files.dir().file("other-cluster.secret"),
                      "another-cluster-secret-0123456789\n");
    auto fleet = read_file(f.files.dir().file("fleet.yaml"));
    write_file(f.files.dir().file("fleet-gw3.yaml"),
               std::regex_replace(fleet, std::regex("secret_file: cluster.secret"),
                                  "secret_file: other-cluster.secret"));
    auto cfg3 =
        f.gateway_config_variant("gateway-gw3.yaml", "fleet: fleet.yaml", "fleet: fleet-gw3.yaml");
    ASSERT_TRUE(f.start_gateway("gw1")) << f.gws["gw1"]->log();
    ASSERT_TRUE(f.start_gateway("gw2")) << f.gws["gw2"]->log();
    ASSERT_TRUE(f.start_gateway("gw3", cfg3)) << f.gws["gw3"]->log();
    ASSERT_TRUE(f.start_dispatcher()) << f.disp->log();
    ASSERT_TRUE(f.wait_state("gw3", "degraded")) << f.status().dump(1);
    EXPECT_EQ(f.gateway("gw3")["degraded_reason"], "no_mesh_links");
    EXPECT_EQ(
        f.metric(R"(imgate_dispatcher_gateway_degraded{gateway="gw3",reason="no_mesh_links"})"), 1);
    EXPECT_NE(f.gateway("gw3")["reason"].get<std::string>().find("no_mesh_links"),
              std::string::npos);
    EXPECT_EQ(f.state_of("gw1"), "up") << f.status().dump(1);
    EXPECT_EQ(f.state_of("gw2"), "up") << f.status().dump(1);
    auto seen = f.picks(60);
    EXPECT_EQ(seen["gw3"], 0);
    EXPECT_EQ(seen["gw1"] + seen["gw2"], 60);
    EXPECT_EQ(http_get(f.pub, "/healthz").status, 200);

    // gw2 dies: gw1 keeps its link to nobody and is still handed out (never a 503 because its
    // peers are gone); gw3 stays out until a mesh it is not in is gone too.
    f.gws["gw2"]->signal(SIGKILL);
    ASSERT_TRUE(f.gws["gw2"]->wait_exit());
    ASSERT_TRUE(f.wait_state("gw2", "down")) << f.status().dump(1);
    ASSERT_TRUE(eventually([&] { return f.picks(5)["gw1"] == 5; }, 8000ms)) << f.status().dump(1);
    EXPECT_EQ(http_get(f.pub, "/healthz").status, 200);
}

}  // namespace
