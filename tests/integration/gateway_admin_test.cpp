// The gateway's admin API and lifecycle against the real binary: /status, /metrics, /push, drain,
// SIGTERM graceful stop and SIGHUP reload; GatewayAdminContract checks docs/admin-api.md.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include "gateway_fixture.hpp"
#include "stranger_client.hpp"

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
    gateway_under_test gw("", "",
                          "drain:\n  rate: 50\n  reconnect_after: 750ms\n  reconnect_jitter: 0s\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    std::vector<std::unique_ptr<test_client>> clients;
    for (int i = 0; i < 5; ++i) {
        clients.push_back(gw.client("u" + std::to_string(i)));
        ASSERT_TRUE(clients.back());
    }
    EXPECT_EQ(gw.admin_post("/drain", "{}", "").status, 401);
    auto r = gw.admin_post("/drain", "");
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
    gateway_under_test gw("", "  shutdown_grace: 3s\n",
                          "drain:\n  reconnect_after: 2s\n  reconnect_jitter: 0s\n");
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
    write_secret_file(gw.dir.file("fresh.secret"), fresh + "\n");
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

// ---- docs/admin-api.md and the drain contract of docs/protocol.md, as a stranger reads them ----

namespace {

namespace w = imgate::test::wire;

std::string base64(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    int n =
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                        reinterpret_cast<const unsigned char*>(bytes.data()), int(bytes.size()));
    out.resize(size_t(n));
    return out;
}

std::unique_ptr<w::stranger> stranger_login(gateway_under_test& gw, const std::string& user,
                                            const std::string& device) {
    auto s = std::make_unique<w::stranger>();
    if (!s->connect(gw.client_addr())) return nullptr;
    if (!s->send(w::frame(w::op::login, 1, w::str16(make_token(gw_token_secret, user, device)))))
        return nullptr;
    auto f = s->next();
    if (!f || f->op != w::op::login_result) return nullptr;
    return s;
}

}  // namespace

TEST(GatewayAdminContract, PushPayloadB64DeliversTheExactBytes) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto wang = stranger_login(gw, "王伟", "phone");
    ASSERT_TRUE(wang);
    // Not UTF-8 (a NUL, 0xff, a lone continuation byte, a truncated sequence): JSON strings cannot
    // carry these, payload_b64 can.
    const std::string bytes("\x00\xff\xfe\x80 binary \xe4\xbd", 14);
    nlohmann::json req{{"user", "王伟"}, {"payload_b64", base64(bytes)}};
    auto r = gw.admin_post("/push", req.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    auto j = r.json();
    EXPECT_EQ(j.value("status", ""), "delivered");
    EXPECT_EQ(j.value("reached", -1), 1);
    uint64_t id = j.value("server_msg_id", uint64_t(0));
    ASSERT_NE(id, 0u);
    auto p = wang->next();
    ASSERT_TRUE(p);
    EXPECT_EQ(p->op, w::op::push);
    EXPECT_EQ(p->corr, 0u);
    // u64 server_msg_id, str16 room "", u64 ts_ms, blob32 payload
    ASSERT_EQ(p->body.size(), 8u + 2 + 8 + 4 + bytes.size());
    EXPECT_EQ(p->body.substr(0, 10), w::u64(id) + w::str16(""));
    EXPECT_EQ(p->body.substr(18), w::blob32(bytes));

    // The same bytes to a room, and an empty payload.
    ASSERT_TRUE(wang->send(w::frame(w::op::join, 2, w::str16("通知"))));
    auto rr = wang->next();
    ASSERT_TRUE(rr);
    ASSERT_EQ(rr->body, w::str16("通知") + w::u16(0));
    r = gw.admin_post("/push", nlohmann::json{{"room", "通知"}, {"payload_b64", ""}}.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    p = wang->next();
    ASSERT_TRUE(p);
    EXPECT_EQ(p->body.substr(8, 2 + 6), w::str16("通知"));
    EXPECT_EQ(p->body.substr(8 + 8 + 8), w::blob32(""));
}

TEST(GatewayAdminContract, PushRefusesBadBase64AndAmbiguousPayloads) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto wang = stranger_login(gw, "王伟", "phone");
    ASSERT_TRUE(wang);
    for (std::string bad :
         {"not base64!", "QUJD=", "QQ=A", " QUJD", "QUJD\n", "QUJ-", "====", "QUJD===="}) {
        auto r =
            gw.admin_post("/push", nlohmann::json{{"user", "王伟"}, {"payload_b64", bad}}.dump());
        EXPECT_EQ(r.status, 400) << bad;
        auto j = r.json();
        EXPECT_EQ(j.value("error", ""), "bad_request") << bad;
        EXPECT_NE(j.value("message", "").find("payload_b64"), std::string::npos) << r.body;
    }
    auto both = gw.admin_post(
        "/push",
        nlohmann::json{{"user", "王伟"}, {"payload", "x"}, {"payload_b64", "eA=="}}.dump());
    EXPECT_EQ(both.status, 400) << both.body;
    EXPECT_EQ(both.json().value("message", ""),
              "give exactly one of \"payload\" or \"payload_b64\"");
    auto neither = gw.admin_post("/push", nlohmann::json{{"user", "王伟"}}.dump());
    EXPECT_EQ(neither.status, 400) << neither.body;
    auto not_string =
        gw.admin_post("/push", nlohmann::json{{"user", "王伟"}, {"payload_b64", 42}}.dump());
    EXPECT_EQ(not_string.status, 400) << not_string.body;
    // None of them reached the user: the next frame is the answer to this PING.
    ASSERT_TRUE(wang->send(w::frame(w::op::ping, 3, "")));
    auto f = wang->next();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->op, w::op::pong);
}

TEST(GatewayAdminContract, ErrorsAreTheDocumentedStatusAndJson) {
    gateway_under_test gw("  max_frame_bytes: 4096\n  max_payload_bytes: 1000\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto nf = http_get(gw.admin_addr(), "/nope");
    EXPECT_EQ(nf.status, 404);
    EXPECT_EQ(nf.body, R"({"error":"not_found"})");
    auto get_push = http_get(gw.admin_addr(), "/push");
    EXPECT_EQ(get_push.status, 405);
    EXPECT_EQ(get_push.body, R"({"error":"method_not_allowed"})");
    EXPECT_EQ(get_push.headers["Allow"], "POST");
    auto post_status = gw.admin_post("/status", "{}");
    EXPECT_EQ(post_status.status, 405);
    EXPECT_EQ(post_status.headers["Allow"], "GET");
    auto unauth = gw.admin_post("/push", R"({"user":"王伟","payload":"x"})", "wrong-token");
    EXPECT_EQ(unauth.status, 401);
    EXPECT_EQ(unauth.body,
              R"({"error":"unauthorized","message":"missing or wrong admin bearer token"})");
    auto big = gw.admin_post(
        "/push", nlohmann::json{{"user", "王伟"}, {"payload", std::string(1001, 'x')}}.dump());
    EXPECT_EQ(big.status, 413);
    EXPECT_EQ(big.body,
              R"({"error":"payload_too_large","message":"payload exceeds max_payload_bytes"})");
    auto not_json = gw.admin_post("/push", "user=王伟");
    EXPECT_EQ(not_json.status, 400);
    EXPECT_EQ(not_json.body, R"({"error":"bad_request","message":"body must be a JSON object"})");
    auto offline = gw.admin_post("/push", R"({"user":"carol@example.com","payload":"x"})");
    EXPECT_EQ(offline.status, 200);
    auto oj = offline.json();
    EXPECT_EQ(oj.value("status", ""), "offline");
    EXPECT_EQ(oj.value("reached", -1), 0);
    EXPECT_EQ(oj.size(), 3u) << offline.body;  // reached, server_msg_id, status
    auto health = http_get(gw.admin_addr(), "/healthz");
    EXPECT_EQ(health.status, 200);
    EXPECT_EQ(health.body, R"({"state":"serving","status":"ok"})");
    // A request body over the admin listener's 1 MiB limit is refused from its header.
    raw_conn c;
    ASSERT_TRUE(c.connect(gw.admin_addr()));
    ASSERT_TRUE(c.send("POST /push HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " +
                       gw_admin_token +
                       "\r\nContent-Type: application/json\r\nContent-Length: 1048577\r\n\r\n"));
    ASSERT_TRUE(c.wait_closed(3s));
    EXPECT_EQ(c.received().rfind("HTTP/1.1 413 ", 0), 0u) << c.received();
    EXPECT_NE(c.received().find(R"({"error":"request_too_large"})"), std::string::npos);
}

TEST(GatewayAdminContract, DrainRefusesNewConnectionsAndLoginsOnOpenOnes) {
    gateway_under_test gw(
        "", "", "drain:\n  rate: 50\n  reconnect_after: 1500ms\n  reconnect_jitter: 0s\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto carol = stranger_login(gw, "carol@example.com", "phone");
    ASSERT_TRUE(carol);
    w::stranger early;  // connected before the drain, not logged in yet
    ASSERT_TRUE(early.connect(gw.client_addr()));
    ASSERT_TRUE(eventually([&] { return gw.status().value("connections", -1) == 2; }));

    auto r = gw.admin_post("/drain", "");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.body, R"({"connections":2,"state":"draining"})");

    // The logged-in session: the REDIRECT of §4, to the byte, then close.
    auto rd = carol->next(5s);
    ASSERT_TRUE(rd);
    EXPECT_EQ(rd->bytes, w::frame(w::op::redirect, 0,
                                  w::u32(1500) + w::str16("") + w::u16(0) + w::str16("drain")));
    EXPECT_TRUE(carol->closed_after_last_frame());

    // The connection without a session got nothing from the drain; its LOGIN is refused with the
    // LOGIN's corr, then closed.
    ASSERT_TRUE(early.send(
        w::frame(w::op::login, 41, w::str16(make_token(gw_token_secret, "Zoë", "tablet")))));
    auto e = early.next();
    ASSERT_TRUE(e);
    EXPECT_EQ(
        e->bytes,
        w::frame(w::op::error, 41,
                 w::u16(53) + w::str16("gateway is draining; reconnect through the dispatcher")));
    EXPECT_TRUE(early.closed_after_last_frame());

    // The listener is closed: new connections are refused by the operating system.
    EXPECT_TRUE(eventually([&] {
        raw_conn c;
        return !c.connect(gw.client_addr());
    }));
    EXPECT_EQ(gw.status().value("state", ""), "draining");
    EXPECT_EQ(http_get(gw.admin_addr(), "/healthz").body, R"({"state":"draining","status":"ok"})");
    EXPECT_GE(gw.metric(R"(imgate_gateway_logins_total{result="draining"})"), 1);
}
