// Issue 19 (3): change a weight or disable a gateway at runtime through the dispatcher's admin
// API, without editing files; a reload (SIGHUP) drops the overrides (the fleet file wins). Also
// the decision log, sampled at 1.
#include <gtest/gtest.h>

#include <csignal>

#include "common/fingerprint.hpp"
#include "fleet_truth_fixture.hpp"

namespace {

using namespace imgate::test;

class DispatcherRuntimeAdmin : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(f_.start_gateway("gw1")) << f_.gws["gw1"]->log();
        ASSERT_TRUE(f_.start_gateway("gw2")) << f_.gws["gw2"]->log();
        ASSERT_TRUE(f_.start_dispatcher()) << f_.disp->log();
        ASSERT_TRUE(f_.wait_state("gw1", "up")) << f_.disp->log();
        ASSERT_TRUE(f_.wait_state("gw2", "up")) << f_.disp->log();
        token_ = f_.admin_token();
    }
    truth_fleet f_{{"gw1", "gw2"},
                   "admin: {token_file: admin.token}\ndecision_log: {enabled: true, sample: 1}\n"};
    std::string token_;
};

TEST_F(DispatcherRuntimeAdmin, WeightZeroDisableAndEnableTakeEffectAtOnce) {
    EXPECT_EQ(f_.admin_post("/gateways/weight?id=gw1&value=0", "").status, 401);
    EXPECT_EQ(f_.admin_post("/gateways/weight?id=gw1&value=0", "wrong").status, 401);
    EXPECT_EQ(f_.metric(R"(imgate_dispatcher_admin_changes_total{action="weight"})"), 0);

    auto r = f_.admin_post("/gateways/weight?id=gw1&value=0", token_);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["state"], "disabled");
    auto c = f_.picks(40);
    EXPECT_EQ(c["gw1"], 0);
    EXPECT_EQ(c["gw2"], 40);
    auto g1 = f_.gateway("gw1");
    EXPECT_EQ(g1["override"]["weight"], 0) << g1;
    EXPECT_EQ(g1["file_weight"], 100);
    auto by = g1["override"]["by"].get<std::string>();
    EXPECT_NE(by.find("127.0.0.1"), std::string::npos) << by;
    EXPECT_NE(by.find(imgate::secret_fingerprint("admin", token_)), std::string::npos) << by;
    EXPECT_EQ(by.find(token_), std::string::npos);  // never the token itself

    ASSERT_EQ(f_.admin_post("/gateways/disable?id=gw2", token_).status, 200);
    EXPECT_EQ(f_.picks(5)["503"], 5);
    EXPECT_EQ(http_get(f_.pub, "/healthz").status, 503);

    ASSERT_EQ(f_.admin_post("/gateways/enable?id=gw2", token_).status, 200);
    ASSERT_EQ(f_.admin_post("/gateways/weight?id=gw1&value=100", token_).status, 200);
    c = f_.picks(60);
    EXPECT_GT(c["gw1"], 5);
    EXPECT_GT(c["gw2"], 5);
    EXPECT_EQ(f_.gateway("gw1")["override"], nullptr);  // back to the file's weight
    EXPECT_EQ(f_.metric(R"(imgate_dispatcher_admin_changes_total{action="weight"})"), 2);
    EXPECT_EQ(f_.metric(R"(imgate_dispatcher_admin_changes_total{action="disable"})"), 1);
    EXPECT_EQ(f_.metric(R"(imgate_dispatcher_admin_changes_total{action="enable"})"), 1);
    auto log = f_.disp->log();
    EXPECT_NE(log.find("audit: gateway gw1 weight=0 by 127.0.0.1 token"), std::string::npos) << log;
    EXPECT_NE(log.find("audit: gateway gw2 disabled by"), std::string::npos);
}

TEST_F(DispatcherRuntimeAdmin, BadRequestsGetClearErrors) {
    auto r = f_.admin_post("/gateways/disable?id=gw9", token_);
    EXPECT_EQ(r.status, 404) << r.body;
    EXPECT_EQ(r.json()["error"], "unknown_gateway");
    for (auto* q : {"/gateways/weight?id=gw1", "/gateways/weight?id=gw1&value=-1",
                    "/gateways/weight?id=gw1&value=abc", "/gateways/weight?id=gw1&value=99999999",
                    "/gateways/weight?id=gw1&value=10001"}) {
        r = f_.admin_post(q, token_);
        EXPECT_EQ(r.status, 400) << q << " " << r.body;
        EXPECT_EQ(r.json()["error"], "bad_value") << q;
    }
    r = f_.admin_post("/gateways/enable", token_);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(f_.gateway("gw1")["override"], nullptr);
    EXPECT_GE(
        f_.metric(R"(imgate_dispatcher_admin_refused_total{action="weight",reason="bad_value"})"),
        5);
}

TEST_F(DispatcherRuntimeAdmin, ReloadDropsOverridesAndTheFleetFileWins) {
    ASSERT_EQ(f_.admin_post("/gateways/disable?id=gw1", token_).status, 200);
    EXPECT_EQ(f_.picks(20)["gw1"], 0);
    double reloads = f_.metric("imgate_dispatcher_reloads_total");
    f_.disp->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return f_.metric("imgate_dispatcher_reloads_total") > reloads; }))
        << f_.disp->log();
    EXPECT_EQ(f_.gateway("gw1")["override"], nullptr);
    EXPECT_EQ(f_.state_of("gw1"), "up");
    EXPECT_GT(f_.picks(60)["gw1"], 5);
    EXPECT_NE(f_.disp->log().find("runtime overrides dropped [gw1]"), std::string::npos);
}

TEST_F(DispatcherRuntimeAdmin, DecisionLogExplainsEachSampledPick) {
    ASSERT_EQ(f_.admin_post("/gateways/disable?id=gw1", token_).status, 200);
    auto r = http_get(f_.pub, "/get-tcp-ip?uid=alice");
    ASSERT_EQ(r.status, 200);
    ASSERT_TRUE(eventually([&] {
        return f_.disp->log().find("decision: client=127.0.0.1 uid=alice") != std::string::npos;
    }));
    auto log = f_.disp->log();
    auto line = log.substr(log.find("decision: client=127.0.0.1 uid=alice"));
    line = line.substr(0, line.find('\n'));
    EXPECT_NE(line.find("chosen=gw2"), std::string::npos) << line;
    EXPECT_NE(line.find("skipped=[gw1:disabled]"), std::string::npos) << line;
    EXPECT_NE(line.find("pool=region"), std::string::npos) << line;
}

}  // namespace
