// Issue 19: POST /undrain undoes a drain (accepts logins again, stops redirecting, reports
// serving), and /status tells the mesh and the secrets in use by fingerprint only.
#include <gtest/gtest.h>

#include "common/fingerprint.hpp"
#include "gateway_fixture.hpp"

namespace {

using namespace imgate;
using namespace imgate::test;

TEST(GatewayUndrain, StatusShowsSecretFingerprintsAndAnEmptyMeshForASingleNode) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto s = gw.status();
    EXPECT_EQ(s["secrets"]["jwt"],
              nlohmann::json::array({secret_fingerprint("jwt", gw_token_secret),
                                     secret_fingerprint("jwt", gw_old_secret)}))
        << s;
    EXPECT_EQ(s["secrets"]["jwt"][0].get<std::string>().size(), 16u);
    EXPECT_TRUE(s["secrets"]["cluster"].is_null());
    EXPECT_EQ(s["mesh"]["peers_expected"], 0);
    EXPECT_EQ(s["mesh"]["links_up"], 0);
    EXPECT_EQ(s["mesh"]["peers"], nlohmann::json::array());
    EXPECT_EQ(s.dump().find(gw_token_secret), std::string::npos);
}

TEST(GatewayUndrain, UndrainAcceptsLoginsAgainAndIsIdempotent) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto keep = gw.client("stays");
    ASSERT_TRUE(keep);
    ASSERT_EQ(gw.admin_post("/drain", "").status, 200);
    ASSERT_TRUE(eventually([&] { return gw.status().value("sessions", -1) == 0; }));
    EXPECT_FALSE(gw.client("late"));  // listener closed / login refused

    EXPECT_EQ(gw.admin_post("/undrain", "", "").status, 401);
    EXPECT_EQ(gw.status().value("state", ""), "draining");
    auto r = gw.admin_post("/undrain", "");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["state"], "serving");
    EXPECT_EQ(r.json()["changed"], true);
    EXPECT_EQ(gw.status().value("state", ""), "serving");
    auto back = gw.client("back");  // same client address and port as before the drain
    ASSERT_TRUE(back) << gw.proc->log();

    r = gw.admin_post("/undrain", "");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["changed"], false);
    EXPECT_EQ(gw.metric(R"(imgate_gateway_undrains_total{result="undrained"})"), 1);
    EXPECT_EQ(gw.metric(R"(imgate_gateway_undrains_total{result="already_serving"})"), 1);

    // And it drains again like the first time.
    ASSERT_EQ(gw.admin_post("/drain", "").status, 200);
    EXPECT_EQ(gw.status().value("state", ""), "draining");
    auto rd = back->read<proto::redirect_msg>(5s);
    EXPECT_TRUE(rd);
}

TEST(GatewayUndrain, UndrainStopsTheRedirectsOfTheDrain) {
    // One redirect per second: the first is due 1 s after the drain.
    gateway_under_test gw("", "", "drain:\n  rate: 1\n  reconnect_after: 500ms\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    std::vector<std::unique_ptr<test_client>> clients;
    for (int i = 0; i < 4; ++i) {
        clients.push_back(gw.client("u" + std::to_string(i)));
        ASSERT_TRUE(clients.back());
    }
    ASSERT_EQ(gw.admin_post("/drain", "").status, 200);
    ASSERT_EQ(gw.admin_post("/undrain", "").status, 200);
    // Within the next 2.5 s a running drain would have redirected two sessions.
    EXPECT_FALSE(clients[0]->read<proto::redirect_msg>(2500ms));
    EXPECT_EQ(gw.metric("imgate_gateway_redirects_total"), 0);
    EXPECT_EQ(gw.status().value("sessions", -1), 4);
}

// Issue 19 item 3: every admin call that changes something leaves one audit line naming the
// caller's address and token fingerprint (never the token), what it called and the result; a
// refused caller leaves no audit line of its own (only the throttled refusal warning).
TEST(GatewayUndrain, AdminCallsLeaveAuditLinesWithTheTokenFingerprint) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    ASSERT_EQ(gw.admin_post("/drain", "").status, 200);
    ASSERT_EQ(gw.admin_post("/undrain", "").status, 200);
    ASSERT_EQ(gw.admin_post("/drain", "", "wrong-token-of-a-stranger").status, 401);
    std::string fp = secret_fingerprint("admin", gw_admin_token);
    std::string log;
    ASSERT_TRUE(eventually([&] {
        log = gw.proc->log();
        return log.find("POST /undrain from 127.0.0.1 token " + fp + ": 200") != std::string::npos;
    })) << log;
    EXPECT_NE(log.find("audit: admin POST /drain from 127.0.0.1 token " + fp + ": 200"),
              std::string::npos)
        << log;
    EXPECT_EQ(
        log.find("token " + secret_fingerprint("admin", "wrong-token-of-a-stranger") + ": 401"),
        std::string::npos)
        << log;
    EXPECT_EQ(log.find(gw_admin_token), std::string::npos);
    EXPECT_EQ(gw.metric("imgate_gateway_admin_unauthorized_total"), 1);
}

}  // namespace
