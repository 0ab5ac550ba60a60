// The gateway's admin API and lifecycle against the real binary: /status, /metrics, /push, drain,
// SIGTERM graceful stop and SIGHUP reload.
#include <gtest/gtest.h>

#include "gateway_fixture.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace std::chrono_literals;
namespace proto = imgate::proto;
namespace http = boost::beast::http;

TEST(GatewayAdmin, StatusHasTheFieldsTheDispatcherPulls) {
    gateway_under_test gw("  max_connections: 50\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto a = gw.client("alice");
    ASSERT_TRUE(a);
    ASSERT_TRUE(a->send(proto::join_msg{"lobby"}));
    ASSERT_TRUE(a->read<proto::room_result_msg>());
    auto st = gw.status();
    ASSERT_TRUE(st.is_object());
    EXPECT_EQ(st.value("id", ""), "gwt");
    EXPECT_EQ(st.value("state", ""), "serving");
    EXPECT_EQ(st.value("connections", -1), 1);
    EXPECT_EQ(st.value("max_connections", -1), 50);
    EXPECT_EQ(st.value("sessions", -1), 1);
    EXPECT_EQ(st.value("users", -1), 1);
    EXPECT_EQ(st.value("rooms", -1), 1);
    EXPECT_EQ(st.value("full", true), false);
    EXPECT_NEAR(st.value("load", -1.0), 1.0 / 50, 0.5);
    EXPECT_EQ(st.value("pid", -1), gw.proc->pid());
    EXPECT_TRUE(st.contains("version"));
    EXPECT_GE(st.value("uptime_s", -1.0), 0.0);
    auto h = http_get(gw.admin_addr(), "/healthz");
    EXPECT_EQ(h.status, 200);
    auto m = http_get(gw.admin_addr(), "/metrics");
    EXPECT_EQ(m.status, 200);
    EXPECT_NE(m.body.find("imgate_gateway_sessions 1"), std::string::npos) << m.body;
}

TEST(GatewayAdmin, PushNeedsTheAdminTokenAndReachesUsersAndRooms) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto bob = gw.client("bob");
    ASSERT_TRUE(bob);
    ASSERT_TRUE(bob->send(proto::join_msg{"news"}));
    ASSERT_TRUE(bob->read<proto::room_result_msg>());

    EXPECT_EQ(gw.admin_post("/push", R"({"user":"bob","payload":"x"})", "").status, 401);
    EXPECT_EQ(gw.admin_post("/push", R"({"user":"bob","payload":"x"})", "wrong").status, 401);
    EXPECT_GE(gw.metric("imgate_gateway_admin_unauthorized_total"), 2);
    EXPECT_EQ(gw.admin_post("/push", R"({"payload":"x"})").status, 400);
    EXPECT_EQ(gw.admin_post("/push", "not json").status, 400);

    auto r = gw.admin_post("/push", R"({"user":"bob","payload":"hello from backend"})");
    ASSERT_EQ(r.status, 200) << r.body;
    auto j = r.json();
    EXPECT_EQ(j.value("status", ""), "delivered");
    EXPECT_EQ(j.value("reached", 0), 1);
    EXPECT_NE(j.value("server_msg_id", uint64_t(0)), 0u);
    auto p = bob->read<proto::push_msg>();
    ASSERT_TRUE(p);
    EXPECT_EQ(p->payload, "hello from backend");
    EXPECT_EQ(p->room, "");
    EXPECT_EQ(p->server_msg_id, j.value("server_msg_id", uint64_t(0)));

    r = gw.admin_post("/push", R"({"room":"news","payload":"breaking"})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json().value("reached", 0), 1);
    p = bob->read<proto::push_msg>();
    ASSERT_TRUE(p);
    EXPECT_EQ(p->room, "news");

    r = gw.admin_post("/push", R"({"user":"nobody","payload":"x"})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json().value("status", ""), "offline");
    EXPECT_EQ(r.json().value("reached", -1), 0);
}

TEST(GatewayAdmin, DrainRedirectsClientsToTheDispatcherAndStopsAccepting) {
    gateway_under_test gw("", "", "drain:\n  rate: 50\n  reconnect_after: 750ms\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    std::vector<std::unique_ptr<test_client>> clients;
    for (int i = 0; i < 5; ++i) {
        clients.push_back(gw.client("u" + std::to_string(i)));
        ASSERT_TRUE(clients.back());
    }
    EXPECT_EQ(gw.admin_post("/drain", "{}", "").status, 401);
    auto r = gw.admin_post("/drain", "{}");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(gw.status().value("state", ""), "draining");
    for (auto& c : clients) {
        auto rd = c->read<proto::redirect_msg>(5s);
        ASSERT_TRUE(rd);
        EXPECT_EQ(rd->host, "");  // ask the dispatcher
        EXPECT_EQ(rd->reconnect_after_ms, 750u);
        EXPECT_TRUE(c->wait_closed());
    }
    EXPECT_TRUE(eventually([&] { return gw.status().value("connections", -1) == 0; }));
    // No new sessions: the listener is closed (refused) or the connection is closed at once.
    test_client late;
    if (late.connect(gw.client_addr(), 1s)) {
        EXPECT_FALSE(late.login(make_token(gw_token_secret, "late")));
    }
    EXPECT_EQ(gw.status().value("state", ""), "draining");
}

TEST(GatewayLifecycle, SigtermKicksWithShutdownAndExitsZero) {
    gateway_under_test gw("", "  shutdown_grace: 3s\n", "drain:\n  reconnect_after: 2s\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto a = gw.client("a"), b = gw.client("b");
    ASSERT_TRUE(a && b);
    gw.proc->signal(SIGTERM);
    for (auto* c : {a.get(), b.get()}) {
        auto k = c->read<proto::kick_msg>(5s);
        ASSERT_TRUE(k);
        EXPECT_EQ(k->reason, proto::kick_reason::shutdown);
        EXPECT_EQ(k->reconnect_after_ms, 2000u);
        EXPECT_TRUE(c->wait_closed());
    }
    ASSERT_TRUE(gw.proc->wait_exit(10s)) << gw.proc->log();
    EXPECT_EQ(gw.proc->exit_code(), 0) << gw.proc->log();
}

TEST(GatewayLifecycle, SighupReloadsLimitsWithoutDroppingAndBadConfigKeepsOld) {
    gateway_under_test gw("  max_connections: 100\n  send_rate: 1000\n  send_burst: 1000\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto a = gw.client("a"), b = gw.client("b");
    ASSERT_TRUE(a && b);

    // Tighten the limits and reload.
    write_gateway_config(gw.dir, "  max_connections: 7\n  send_rate: 0.01\n  send_burst: 1\n", "");
    gw.proc->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return gw.status().value("max_connections", 0) == 7; }))
        << gw.proc->log();
    EXPECT_EQ(gw.metric(R"(imgate_gateway_reloads_total{result="ok"})"), 1);
    // Same connections, new rate limit.
    for (uint64_t i = 1; i <= 2; ++i)
        ASSERT_TRUE(a->send(proto::send_msg{proto::target_kind::user, "b", i, "x"}));
    auto r1 = a->read<proto::send_result_msg>();
    auto r2 = a->read<proto::send_result_msg>();
    ASSERT_TRUE(r1 && r2);
    EXPECT_EQ(r1->status, proto::code::ok);
    EXPECT_EQ(r2->status, proto::code::rate_limited);
    EXPECT_TRUE(b->read<proto::deliver_msg>());

    // A broken file: the reload fails with file:line in the log, the old config stays.
    write_file(gw.config,
               "fleet: fleet.yaml\nauth:\n  secret_files: [token.secret]\nlimits:\n"
               "  max_connections: not-a-number\n");
    gw.proc->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] {
        return gw.metric(R"(imgate_gateway_reloads_total{result="failed"})") == 1;
    })) << gw.proc->log();
    EXPECT_NE(gw.proc->log().find("gateway.yaml:5"), std::string::npos) << gw.proc->log();
    EXPECT_EQ(gw.status().value("max_connections", 0), 7);
    ASSERT_TRUE(b->send(proto::ping_msg{}));
    EXPECT_TRUE(b->read<proto::pong_msg>());
    EXPECT_EQ(gw.status().value("connections", 0), 2);
}

TEST(GatewayLifecycle, CheckConfigAndVersion) {
    temp_dir dir;
    auto cfg = write_gateway_config(dir, "", "");
    auto [rc, out] = run_command(binary_path("imgate-gateway") + " --config " + cfg +
                                 " --id gwt --check-config");
    EXPECT_EQ(rc, 0) << out;
    auto [rc2, out2] = run_command(binary_path("imgate-gateway") + " --config " + cfg +
                                   " --id nosuch --check-config");
    EXPECT_EQ(rc2, 1) << out2;
    EXPECT_NE(out2.find("nosuch"), std::string::npos);
    auto [rc3, out3] = run_command(binary_path("imgate-gateway") + " --version");
    EXPECT_EQ(rc3, 0);
    EXPECT_NE(out3.find("imgate-gateway"), std::string::npos);
}

TEST(GatewayLifecycle, SighupRotatesTokenSecretsWithoutDroppingSessions) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto a = gw.client("a");
    ASSERT_TRUE(a);
    // Rotate: a new current secret, the old current one kept as previous, old.secret dropped.
    const std::string fresh = "gateway-fresh-secret-5555555555";
    write_file(gw.dir.file("fresh.secret"), fresh + "\n");
    write_file(gw.config,
               "fleet: fleet.yaml\nworkers: 2\nauth:\n"
               "  secret_files: [fresh.secret, token.secret]\n"
               "admin:\n  token_file: admin.token\n");
    gw.proc->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] {
        return gw.metric(R"(imgate_gateway_reloads_total{result="ok"})") == 1;
    })) << gw.proc->log();
    test_client c1, c2, c3;
    ASSERT_TRUE(c1.connect(gw.client_addr()));
    EXPECT_TRUE(c1.login(make_token(fresh, "new-secret-user")));
    ASSERT_TRUE(c2.connect(gw.client_addr()));
    EXPECT_TRUE(c2.login(make_token(gw_token_secret, "previous-secret-user")));
    ASSERT_TRUE(c3.connect(gw.client_addr()));
    EXPECT_FALSE(c3.login(make_token(gw_old_secret, "dropped-secret-user")));
    ASSERT_TRUE(c3.last_error());
    EXPECT_EQ(c3.last_error()->status, proto::code::auth_failed);
    // The session from before the reload is still there.
    ASSERT_TRUE(a->send(proto::ping_msg{}));
    EXPECT_TRUE(a->read<proto::pong_msg>());
}
