// The gateway's client protocol against the real binary: login, heartbeats, replace, 1:1, rooms,
// limits, and (GatewayContract) docs/protocol.md checked byte for byte by a client built from it.
// Each test starts its own single-node gateway on free loopback ports.
#include <gtest/gtest.h>

#include "gateway_fixture.hpp"
#include "stranger_client.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace std::chrono_literals;
namespace proto = imgate::proto;

namespace {

std::optional<proto::send_result_msg> send_to(test_client& c, const std::string& to, uint64_t cid,
                                              const std::string& text,
                                              proto::target_kind kind = proto::target_kind::user) {
    if (!c.send(proto::send_msg{kind, to, cid, text})) return std::nullopt;
    return c.read<proto::send_result_msg>();
}

}  // namespace

TEST(GatewayLogin, AcceptsValidTokenAndAnnouncesHeartbeat) {
    gateway_under_test gw("", "  heartbeat_interval: 20s\n  idle_timeout: 60s\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto c = gw.client();
    ASSERT_TRUE(c);
    auto r = c->login(make_token(gw_token_secret, "alice", "phone"));
    ASSERT_TRUE(r) << (c->last_error() ? c->last_error()->message : "no answer");
    EXPECT_EQ(r->user, "alice");
    EXPECT_EQ(r->device, "phone");
    EXPECT_EQ(r->gateway_id, "gwt");
    EXPECT_EQ(r->heartbeat_ms, 20000u);
    EXPECT_EQ(r->idle_timeout_ms, 60000u);
    ASSERT_TRUE(c->send(proto::ping_msg{}, 77));
    auto f = c->read_frame();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->op, uint8_t(proto::op::pong));
    EXPECT_EQ(f->corr, 77u);
    // A second LOGIN on the same connection is refused but does not close it.
    ASSERT_TRUE(c->send(proto::login_msg{make_token(gw_token_secret, "alice", "phone")}));
    auto e = c->read<proto::error_msg>();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->status, proto::code::already_logged_in);
    ASSERT_TRUE(c->send(proto::ping_msg{}));
    EXPECT_TRUE(c->read<proto::pong_msg>());
}

TEST(GatewayLogin, RotatedPreviousSecretStillAccepted) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto c = gw.client();
    ASSERT_TRUE(c);
    EXPECT_TRUE(c->login(make_token(gw_old_secret, "alice")));
}

TEST(GatewayLogin, RefusesBadExpiredAndAlgNoneTokensThenCloses) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    struct case_t {
        std::string token;
        proto::code want;
    };
    int64_t now = jwt::now_seconds();
    std::string none =
        jwt::base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." +
        jwt::base64url_encode(R"({"sub":"eve","exp":)" + std::to_string(now + 3600) + "}") + ".";
    std::vector<case_t> cases{
        {make_token("some-other-secret-entirely", "eve"), proto::code::auth_failed},
        {jwt::sign({"eve", "", now - 10}, gw_token_secret, now - 100), proto::code::token_expired},
        {none, proto::code::auth_failed},
        {"not.a.jwt", proto::code::auth_failed},
    };
    for (auto& tc : cases) {
        auto c = gw.client();
        ASSERT_TRUE(c);
        EXPECT_FALSE(c->login(tc.token));
        ASSERT_TRUE(c->last_error()) << tc.token;
        EXPECT_EQ(c->last_error()->status, tc.want) << tc.token;
        EXPECT_TRUE(c->wait_closed()) << tc.token;
    }
    EXPECT_GE(gw.metric(R"(imgate_gateway_logins_total{result="auth_failed"})"), 3);
    EXPECT_GE(gw.metric(R"(imgate_gateway_logins_total{result="token_expired"})"), 1);
}

TEST(GatewayLogin, FirstFrameMustBeLogin) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto c = gw.client();
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->send(proto::send_msg{proto::target_kind::user, "bob", 1, "hi"}));
    auto e = c->read_error();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->status, proto::code::login_required);
    EXPECT_TRUE(c->wait_closed());
}

TEST(GatewayLogin, LoginTimeoutClosesSilentConnection) {
    gateway_under_test gw("", "  login_timeout: 300ms\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto c = gw.client();
    ASSERT_TRUE(c);
    auto e = c->read_error(5s);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->status, proto::code::login_timeout);
    EXPECT_TRUE(c->wait_closed());
}

TEST(GatewaySession, HeartbeatsKeepAliveAndSilenceIsClosed) {
    gateway_under_test gw("", "  heartbeat_interval: 100ms\n  idle_timeout: 500ms\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto c = gw.client("alice");
    ASSERT_TRUE(c);
    // Pinging every 100 ms for well over idle_timeout keeps the session.
    auto until = std::chrono::steady_clock::now() + 1200ms;
    while (std::chrono::steady_clock::now() < until) {
        ASSERT_TRUE(c->send(proto::ping_msg{}));
        ASSERT_TRUE(c->read<proto::pong_msg>()) << "session closed while heartbeating";
        std::this_thread::sleep_for(100ms);  // the client's heartbeat period, not a sync wait
    }
    // Then silence: kicked with reason idle and closed.
    auto k = c->read<proto::kick_msg>(5s);
    ASSERT_TRUE(k);
    EXPECT_EQ(k->reason, proto::kick_reason::idle);
    EXPECT_TRUE(c->wait_closed());
    EXPECT_GE(gw.metric("imgate_gateway_idle_timeout_total"), 1);
}

TEST(GatewaySession, SameUserAndDeviceReplacesOldSession) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto first = gw.client("bob", "phone");
    ASSERT_TRUE(first);
    auto other_device = gw.client("bob", "tablet");
    ASSERT_TRUE(other_device);
    auto second = gw.client("bob", "phone");
    ASSERT_TRUE(second);
    auto k = first->read<proto::kick_msg>();
    ASSERT_TRUE(k);
    EXPECT_EQ(k->reason, proto::kick_reason::replaced);
    EXPECT_TRUE(first->wait_closed());
    // The other device is untouched and both live sessions receive bob's messages.
    auto alice = gw.client("alice");
    ASSERT_TRUE(alice);
    auto r = send_to(*alice, "bob", 1, "hello");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(r->reached, 2u);
    EXPECT_TRUE(other_device->read<proto::deliver_msg>());
    EXPECT_TRUE(second->read<proto::deliver_msg>());
    EXPECT_TRUE(eventually([&] { return gw.status().value("sessions", 0) == 3; }));
}

TEST(GatewayMessages, OneToOneDeliveredWithReceiptAndOffline) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto alice = gw.client("alice", "phone");
    auto bob1 = gw.client("bob", "phone");
    auto bob2 = gw.client("bob", "laptop");
    ASSERT_TRUE(alice && bob1 && bob2);

    auto r = send_to(*alice, "bob", 41, "hi bob");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(r->reached, 2u);
    EXPECT_EQ(r->client_msg_id, 41u);
    ASSERT_NE(r->server_msg_id, 0u);

    auto d = bob1->read<proto::deliver_msg>();
    ASSERT_TRUE(d);
    EXPECT_EQ(d->from_user, "alice");
    EXPECT_EQ(d->from_device, "phone");
    EXPECT_EQ(d->payload, "hi bob");
    EXPECT_EQ(d->kind, proto::target_kind::user);
    EXPECT_EQ(d->server_msg_id, r->server_msg_id);
    ASSERT_TRUE(bob2->read<proto::deliver_msg>());

    ASSERT_TRUE(bob1->send(proto::ack_msg{d->server_msg_id}));
    auto rc = alice->read<proto::receipt_msg>();
    ASSERT_TRUE(rc);
    EXPECT_EQ(rc->client_msg_id, 41u);
    EXPECT_EQ(rc->server_msg_id, r->server_msg_id);
    EXPECT_EQ(rc->user, "bob");
    EXPECT_EQ(rc->device, "phone");
    // An ack from someone who was not the recipient gives no receipt.
    ASSERT_TRUE(alice->send(proto::ack_msg{d->server_msg_id}));
    ASSERT_TRUE(alice->send(proto::ping_msg{}));
    ASSERT_TRUE(alice->read_frame());  // the pong; a receipt would have come first
    EXPECT_EQ(alice->skipped(), 0u);

    auto off = send_to(*alice, "nobody", 42, "anyone?");
    ASSERT_TRUE(off);
    EXPECT_EQ(off->status, proto::code::offline);
    EXPECT_EQ(off->reached, 0u);
    EXPECT_EQ(off->client_msg_id, 42u);
}

TEST(GatewayMessages, RoomReachExcludesSenderSession) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto a = gw.client("a"), b = gw.client("b"), c = gw.client("c"), outsider = gw.client("o");
    ASSERT_TRUE(a && b && c && outsider);
    for (auto* cl : {a.get(), b.get(), c.get()}) {
        ASSERT_TRUE(cl->send(proto::join_msg{"lobby"}));
        auto rr = cl->read<proto::room_result_msg>();
        ASSERT_TRUE(rr);
        EXPECT_EQ(rr->status, proto::code::ok);
    }
    auto r = send_to(*a, "lobby", 1, "hello room", proto::target_kind::room);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(r->reached, 2u);  // b and c, not a's own session
    auto d = b->read<proto::deliver_msg>();
    ASSERT_TRUE(d);
    EXPECT_EQ(d->room, "lobby");
    EXPECT_EQ(d->from_user, "a");
    ASSERT_TRUE(c->read<proto::deliver_msg>());

    // A non-member may send to the room; every member is reached.
    r = send_to(*outsider, "lobby", 2, "from outside", proto::target_kind::room);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->reached, 3u);

    ASSERT_TRUE(b->send(proto::leave_msg{"lobby"}));
    auto lr = b->read<proto::room_result_msg>();
    ASSERT_TRUE(lr);
    EXPECT_EQ(lr->status, proto::code::ok);
    ASSERT_TRUE(b->send(proto::leave_msg{"lobby"}));
    lr = b->read<proto::room_result_msg>();
    ASSERT_TRUE(lr);
    EXPECT_EQ(lr->status, proto::code::not_in_room);

    r = send_to(*outsider, "empty-room", 3, "x", proto::target_kind::room);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::offline);
}

TEST(GatewayLimits, MaxRoomsPerSession) {
    gateway_under_test gw("  max_rooms_per_session: 2\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto a = gw.client("a");
    ASSERT_TRUE(a);
    for (std::string room : {"r1", "r2", "r3"}) ASSERT_TRUE(a->send(proto::join_msg{room}));
    std::vector<proto::code> got;
    for (int i = 0; i < 3; ++i) {
        auto rr = a->read<proto::room_result_msg>();
        ASSERT_TRUE(rr);
        got.push_back(rr->status);
    }
    EXPECT_EQ(got, (std::vector<proto::code>{proto::code::ok, proto::code::ok,
                                             proto::code::too_many_rooms}));
}

TEST(GatewayLimits, SendRateLimitGivesErrorResult) {
    gateway_under_test gw("  send_rate: 0.5\n  send_burst: 2\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto a = gw.client("a"), b = gw.client("b");
    ASSERT_TRUE(a && b);
    for (uint64_t i = 1; i <= 3; ++i)
        ASSERT_TRUE(a->send(proto::send_msg{proto::target_kind::user, "b", i, "x"}));
    std::map<uint64_t, proto::code> res;
    for (int i = 0; i < 3; ++i) {
        auto r = a->read<proto::send_result_msg>();
        ASSERT_TRUE(r);
        res[r->client_msg_id] = r->status;
    }
    EXPECT_EQ(res[1], proto::code::ok);
    EXPECT_EQ(res[2], proto::code::ok);
    EXPECT_EQ(res[3], proto::code::rate_limited);
    EXPECT_GE(gw.metric(R"(imgate_gateway_errors_total{code="rate_limited"})"), 1);
}

TEST(GatewayLimits, PayloadAndFrameSize) {
    gateway_under_test gw("  max_frame_bytes: 2048\n  max_payload_bytes: 1000\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto a = gw.client("a");
    ASSERT_TRUE(a);
    auto r = send_to(*a, "b", 5, std::string(1500, 'x'));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::payload_too_large);
    EXPECT_EQ(r->client_msg_id, 5u);
    // A frame over max_frame_bytes is refused from its header, and the connection closed.
    ASSERT_TRUE(a->send(proto::send_msg{proto::target_kind::user, "b", 6, std::string(4000, 'y')}));
    auto e = a->read<proto::error_msg>();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->status, proto::code::frame_too_large);
    EXPECT_TRUE(a->wait_closed());
    EXPECT_GE(gw.metric(R"(imgate_gateway_errors_total{code="frame_too_large"})"), 1);
}

TEST(GatewayLimits, MaxConnectionsServerBusyAndFull) {
    gateway_under_test gw("  max_connections: 2\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto a = gw.client("a"), b = gw.client("b");
    ASSERT_TRUE(a && b);
    EXPECT_TRUE(eventually([&] { return gw.status().value("full", false); }));
    auto c = gw.client();
    ASSERT_TRUE(c);
    auto e = c->read_error();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->status, proto::code::server_busy);
    EXPECT_TRUE(c->wait_closed());
    EXPECT_GE(gw.metric(R"(imgate_gateway_rejected_total{reason="server_busy"})"), 1);
    auto st = gw.status();
    EXPECT_EQ(st.value("connections", 0), 2);
    EXPECT_EQ(st.value("max_connections", 0), 2);
    EXPECT_GE(st.value("load", 0.0), 1.0);
    // A slot frees up when a client leaves.
    a->close();
    EXPECT_TRUE(eventually([&] { return !gw.status().value("full", true); }));
    EXPECT_TRUE(gw.client("a2"));
}

TEST(GatewayLimits, SlowConsumerIsClosedAndSenderStillGetsResults) {
    gateway_under_test gw(
        "  max_outbound_bytes: 65536\n  send_rate: 100000\n  send_burst: 100000\n"
        "  max_frame_bytes: 65536\n  max_payload_bytes: 32768\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto slow = std::make_unique<test_client>();
    // A small receive buffer so the kernel does not absorb everything.
    boost::system::error_code ec;
    ASSERT_TRUE(slow->connect(gw.client_addr()));
    slow->socket().set_option(boost::asio::socket_base::receive_buffer_size(4096), ec);
    ASSERT_TRUE(slow->login(make_token(gw_token_secret, "slow")));
    auto fast = gw.client("fast");
    ASSERT_TRUE(fast);
    const int n = 600;  // 600 x 30 KB = 18 MB: far past kernel buffers plus the 64 KiB bound
    std::string payload(30000, 'z');
    int results = 0, delivered = 0;
    for (int i = 1; i <= n; ++i) {
        ASSERT_TRUE(
            fast->send(proto::send_msg{proto::target_kind::user, "slow", uint64_t(i), payload}));
        // Read results as we go so the fast client is never a slow consumer itself.
        while (auto f = fast->read_frame(1ms)) {
            if (auto r = proto::decode<proto::send_result_msg>(*f)) {
                ++results;
                if (r->status == proto::code::ok) ++delivered;
            }
        }
    }
    while (results < n) {
        auto r = fast->read<proto::send_result_msg>(5s);
        ASSERT_TRUE(r) << "missing send results: got " << results;
        ++results;
        if (r->status == proto::code::ok) ++delivered;
    }
    EXPECT_EQ(results, n);    // exactly one result per message
    EXPECT_LT(delivered, n);  // the later ones found the slow session gone: offline
    EXPECT_TRUE(eventually([&] { return gw.metric("imgate_gateway_slow_consumer_total") >= 1; }));
    // The server dropped the slow session (reading what it had already sent through a 4 KB
    // window would take long, so the server-side view is checked instead).
    EXPECT_TRUE(eventually([&] { return gw.status().value("sessions", -1) == 1; }, 10s));
    EXPECT_EQ(gw.status().value("users", -1), 1);
}

TEST(GatewayLimits, IdLengthsAreEnforced) {
    gateway_under_test gw("  max_id_length: 16\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    // A user id over the limit cannot log in.
    auto c = gw.client();
    ASSERT_TRUE(c);
    EXPECT_FALSE(c->login(make_token(gw_token_secret, std::string(17, 'u'))));
    ASSERT_TRUE(c->last_error());
    EXPECT_EQ(c->last_error()->status, proto::code::auth_failed);
    EXPECT_TRUE(c->wait_closed());
    // Targets and rooms over the limit are refused per request; the session stays.
    auto a = gw.client("a");
    ASSERT_TRUE(a);
    auto r = send_to(*a, std::string(17, 'b'), 1, "x");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::bad_request);
    ASSERT_TRUE(a->send(proto::join_msg{std::string(17, 'r')}));
    auto rr = a->read<proto::room_result_msg>();
    ASSERT_TRUE(rr);
    EXPECT_EQ(rr->status, proto::code::bad_request);
    ASSERT_TRUE(a->send(proto::ping_msg{}));
    EXPECT_TRUE(a->read<proto::pong_msg>());
}

// ---- The contract of docs/protocol.md, checked byte for byte by a client written from it ----

namespace {

namespace w = imgate::test::wire;

std::string login_frame(uint32_t corr, const std::string& token) {
    return w::frame(w::op::login, corr, w::str16(token));
}

// A stranger's client logged in as user (token without `dev` when device is empty).
std::unique_ptr<w::stranger> logged_in(gateway_under_test& gw, const std::string& user,
                                       const std::string& device = "") {
    auto s = std::make_unique<w::stranger>();
    if (!s->connect(gw.client_addr())) return nullptr;
    if (!s->send(login_frame(1, make_token(gw_token_secret, user, device)))) return nullptr;
    auto f = s->next();
    if (!f || f->op != w::op::login_result) return nullptr;
    return s;
}

// An HS256 token with claims given as JSON, for claims make_token does not write (nbf).
std::string token_with_claims(const std::string& payload_json) {
    std::string input = jwt::base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." +
                        jwt::base64url_encode(payload_json);
    return input + "." + jwt::base64url_encode(jwt::hmac_sha256(gw_token_secret, input));
}

std::string error_body(uint16_t code, const std::string& message) {
    return w::u16(code) + w::str16(message);
}

}  // namespace

TEST(GatewayContract, EveryAnswerEchoesTheRequestsCorr) {
    gateway_under_test gw("  max_payload_bytes: 1000\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    w::stranger c;
    ASSERT_TRUE(c.connect(gw.client_addr()));
    ASSERT_TRUE(
        c.send(login_frame(0x0a0b0c0d, make_token(gw_token_secret, "carol@example.com", "phone"))));
    auto f = c.next();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->op, w::op::login_result);
    EXPECT_EQ(f->corr, 0x0a0b0c0du);

    struct request {
        const char* what;
        std::string bytes;
        uint8_t want_op;
        std::string want_body;  // exact
    };
    const uint64_t cid = 0x0102030405060708;
    std::vector<request> reqs{
        {"SEND to a user nobody is",
         w::frame(w::op::send, 101,
                  w::u8(1) + w::str16("dave@example.com") + w::u64(cid) + w::blob32("hi")),
         w::op::send_result, ""},  // body checked below: server_msg_id is the gateway's
        {"SEND over max_payload_bytes",
         w::frame(w::op::send, 102,
                  w::u8(1) + w::str16("dave@example.com") + w::u64(cid + 1) +
                      w::blob32(std::string(1001, 'x'))),
         w::op::send_result, w::u64(cid + 1) + w::u64(0) + w::u16(31) + w::u32(0)},
        {"unknown op", w::frame(0x55, 103, ""), w::op::error, ""},
        {"server-only op", w::frame(w::op::deliver, 104, ""), w::op::error, ""},
        {"ACK with 7 bytes", w::frame(w::op::ack, 105, std::string(7, '\0')), w::op::error, ""},
        {"JOIN with a short str16", w::frame(w::op::join, 106, w::u16(5) + "ab"), w::op::error, ""},
        {"second LOGIN", login_frame(107, make_token(gw_token_secret, "carol@example.com")),
         w::op::error, ""},
        {"PING with a body", w::frame(w::op::ping, 108, "x"), w::op::error, ""},
        {"PING", w::frame(w::op::ping, 109, ""), w::op::pong, ""},
        {"JOIN", w::frame(w::op::join, 110, w::str16("王伟的房间")), w::op::room_result,
         w::str16("王伟的房间") + w::u16(0)},
    };
    const std::vector<uint16_t> error_codes{12, 14, 10, 10, 24, 10};  // for the ERROR answers
    size_t next_error = 0;
    for (auto& r : reqs) {
        ASSERT_TRUE(c.send(r.bytes)) << r.what;
        auto a = c.next();
        ASSERT_TRUE(a) << r.what << ": no answer";
        EXPECT_EQ(a->op, r.want_op) << r.what;
        EXPECT_EQ(a->corr, w::be32(r.bytes, 8)) << r.what << ": corr not echoed";
        if (!r.want_body.empty()) EXPECT_EQ(a->body, r.want_body) << r.what;
        if (a->op == w::op::error) {
            ASSERT_GE(a->body.size(), 4u) << r.what;
            ASSERT_LT(next_error, error_codes.size());
            EXPECT_EQ(w::be16(a->body, 0), error_codes[next_error++]) << r.what;
        }
        if (a->op == w::op::send_result && r.want_body.empty()) {
            ASSERT_EQ(a->body.size(), 22u);
            EXPECT_EQ(w::be64(a->body, 0), cid);
            EXPECT_NE(w::be64(a->body, 8), 0u);   // offline still gets a server_msg_id
            EXPECT_EQ(w::be16(a->body, 16), 1u);  // offline
            EXPECT_EQ(w::be32(a->body, 18), 0u);  // reached
        }
    }
    EXPECT_EQ(next_error, error_codes.size());
    EXPECT_GE(gw.metric(R"(imgate_gateway_errors_total{code="bad_frame"})"), 3);
}

TEST(GatewayContract, LoginErrorsEchoTheLoginCorrThenClose) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    int64_t now = jwt::now_seconds();
    struct case_t {
        const char* what;
        std::string first_frame;
        std::string want;  // the whole ERROR frame
    };
    std::vector<case_t> cases{
        // The worked example of §4, to the byte.
        {"bad signature", login_frame(1, make_token("not-the-gateway-secret-0000", "Zoë")),
         w::frame(w::op::error, 1, error_body(21, "bad signature"))},
        {"nbf in the future",
         login_frame(0x77, token_with_claims(R"({"sub":"Zoë","exp":)" + std::to_string(now + 7200) +
                                             R"(,"nbf":)" + std::to_string(now + 3600) + "}")),
         w::frame(w::op::error, 0x77, error_body(21, "token not yet valid"))},
        {"expired", login_frame(0x78, jwt::sign({"Zoë", "", now - 10}, gw_token_secret, now - 100)),
         w::frame(w::op::error, 0x78, error_body(22, "token expired"))},
        {"first frame is not LOGIN", w::frame(w::op::ping, 0x79, ""),
         w::frame(w::op::error, 0x79, error_body(20, "the first frame must be LOGIN"))},
        {"LOGIN body does not parse", w::frame(w::op::login, 0x7a, w::u16(40) + "short"),
         w::frame(w::op::error, 0x7a, error_body(10, "malformed LOGIN"))},
    };
    for (auto& tc : cases) {
        w::stranger c;
        ASSERT_TRUE(c.connect(gw.client_addr())) << tc.what;
        ASSERT_TRUE(c.send(tc.first_frame)) << tc.what;
        auto f = c.next();
        ASSERT_TRUE(f) << tc.what;
        EXPECT_EQ(f->bytes, tc.want) << tc.what;
        EXPECT_TRUE(c.closed_after_last_frame()) << tc.what;
    }
}

TEST(GatewayContract, SendWithAnUnknownKindGetsOneBadRequestResult) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto zoe = logged_in(gw, "Zoë", "phone");
    ASSERT_TRUE(zoe);
    for (uint8_t kind : {uint8_t(0), uint8_t(3), uint8_t(0xff)}) {
        const uint64_t cid = 0xfedcba9876543210 - kind;
        ASSERT_TRUE(
            zoe->send(w::frame(w::op::send, 500u + kind,
                               w::u8(kind) + w::str16("王伟") + w::u64(cid) + w::blob32("你好"))));
        auto f = zoe->next();
        ASSERT_TRUE(f) << int(kind);
        EXPECT_EQ(f->bytes, w::frame(w::op::send_result, 500u + kind,
                                     w::u64(cid) + w::u64(0) + w::u16(14) + w::u32(0)))
            << int(kind);
    }
    // Exactly one answer per SEND: the next frame is the answer to this PING.
    ASSERT_TRUE(zoe->send(w::frame(w::op::ping, 9, "")));
    auto f = zoe->next();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->bytes, w::frame(w::op::pong, 9, ""));
}

TEST(GatewayContract, TokenWithoutDevIsDeviceDefault) {
    gateway_under_test gw("", "  heartbeat_interval: 30s\n  idle_timeout: 90s\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    w::stranger zoe;
    ASSERT_TRUE(zoe.connect(gw.client_addr()));
    ASSERT_TRUE(zoe.send(login_frame(3, make_token(gw_token_secret, "Zoë"))));
    auto f = zoe.next();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->bytes, w::frame(w::op::login_result, 3,
                                 w::str16("Zoë") + w::str16("default") + w::str16("gwt") +
                                     w::u32(30000) + w::u32(90000) + w::u32(65536)));
    auto carol = logged_in(gw, "carol@example.com", "laptop");
    ASSERT_TRUE(carol);
    ASSERT_TRUE(zoe.send(
        w::frame(w::op::send, 4,
                 w::u8(1) + w::str16("carol@example.com") + w::u64(77) + w::blob32("hi carol"))));
    auto d = carol->next();
    ASSERT_TRUE(d);
    ASSERT_EQ(d->op, w::op::deliver);
    EXPECT_EQ(d->corr, 0u);  // server-initiated
    // server_msg_id(8) kind(1) from_user from_device room ts(8) payload
    std::string_view b = d->body;
    size_t at = 9;
    EXPECT_EQ(b.substr(at, 2 + 4), w::str16("Zoë"));
    at += 2 + 4;
    EXPECT_EQ(b.substr(at, 2 + 7), w::str16("default"));
    auto r = zoe.next();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->op, w::op::send_result);
    EXPECT_EQ(r->corr, 4u);
}

TEST(GatewayContract, ReplacedKickIsTheDocumentedBytes) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto first = logged_in(gw, "王伟");  // no dev: both logins are device "default"
    ASSERT_TRUE(first);
    auto second = logged_in(gw, "王伟");
    ASSERT_TRUE(second);
    auto k = first->next();
    ASSERT_TRUE(k);
    // docs/protocol.md §4, "KICK replaced".
    const std::string documented = w::u32(0x1a) + w::u8(1) + w::u8(0x40) + w::u16(0) + w::u32(0) +
                                   w::u8(1) + w::u32(0) + w::str16("logged in elsewhere");
    EXPECT_EQ(k->bytes, documented);
    EXPECT_EQ(k->bytes, proto::encode(proto::kick_msg{proto::kick_reason::replaced, 0,
                                                      std::string(proto::kick_replaced_message)}));
    EXPECT_TRUE(first->closed_after_last_frame());
    ASSERT_TRUE(second->send(w::frame(w::op::ping, 5, "")));
    auto p = second->next();
    ASSERT_TRUE(p);
    EXPECT_EQ(p->bytes, w::frame(w::op::pong, 5, ""));
}
