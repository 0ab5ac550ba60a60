// Issue 19 (2): the dispatcher's /healthz is readiness ("can hand out a gateway now"), so a load
// balancer that checks status codes does not send clients to a dispatcher with nothing to give;
// /livez is liveness.
#include <gtest/gtest.h>

#include "fleet_truth_fixture.hpp"

namespace {

using namespace imgate::test;

TEST(DispatcherReadiness, HealthzIs503UntilAGatewayIsPulledUp) {
    truth_fleet f({"gw1"});
    ASSERT_TRUE(f.start_dispatcher()) << f.disp->log();
    // No gateway runs yet: nothing to hand out, and both listeners say so.
    for (auto* addr : {&f.pub, &f.admin}) {
        auto h = http_get(*addr, "/healthz");
        EXPECT_EQ(h.status, 503) << h.body;
        EXPECT_EQ(h.json()["reason"], "no_gateway_available") << h.body;
        EXPECT_EQ(h.json()["configured_gateways"], 1) << h.body;
        EXPECT_EQ(http_get(*addr, "/livez").status, 200);
    }
    EXPECT_EQ(http_get(f.pub, "/get-tcp-ip?uid=a").status, 503);
    EXPECT_FALSE(f.status()["ready"].get<bool>());

    ASSERT_TRUE(f.start_gateway("gw1")) << f.gws["gw1"]->log();
    ASSERT_TRUE(eventually([&] { return http_get(f.pub, "/healthz").status == 200; }, 8000ms))
        << f.disp->log();
    // Ready means it really hands out.
    auto r = http_get(f.pub, "/get-tcp-ip?uid=a");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["id"], "gw1");
    EXPECT_EQ(http_get(f.admin, "/healthz").json()["available_gateways"], 1);
    EXPECT_GE(f.metric("imgate_dispatcher_not_ready_total"), 2);

    // Draining the only gateway: not ready again, while still alive.
    auto token = f.admin_token();
    auto d = http_request(f.gws["gw1"]->addr("admin"), boost::beast::http::verb::post, "/drain", "",
                          {{"Authorization", "Bearer " + token}});
    ASSERT_EQ(d.status, 200) << d.body;
    ASSERT_TRUE(eventually([&] { return http_get(f.pub, "/healthz").status == 503; }, 8000ms));
    EXPECT_EQ(http_get(f.pub, "/livez").status, 200);
    // The gateway's own /healthz stays liveness: 200 while draining.
    EXPECT_EQ(http_get(f.gws["gw1"]->addr("admin"), "/healthz").status, 200);
}

TEST(DispatcherReadiness, RuntimeChangesAreRefusedWithoutAConfiguredToken) {
    truth_fleet f({"gw1"});  // dispatcher.yaml without admin.token_file
    ASSERT_TRUE(f.start_dispatcher()) << f.disp->log();
    auto r = f.admin_post("/gateways/disable?id=gw1", f.admin_token());
    EXPECT_EQ(r.status, 403) << r.body;
    EXPECT_EQ(r.json()["error"], "no_admin_token");
    EXPECT_NE(r.json()["message"].get<std::string>().find("admin.token_file"), std::string::npos);
    EXPECT_EQ(f.gateway("gw1")["override"], nullptr);
}

}  // namespace
