#include "gateway/rpc_link.hpp"

#include <gtest/gtest.h>

#include "gateway/rpc_wire.hpp"

using namespace imgate;
using namespace imgate::gw;
using namespace std::chrono_literals;

namespace {

const std::string secret = "0123456789abcdef-cluster";

std::vector<frame> frames_of(const std::string& bytes) {
    frame_decoder d(rpc::max_body, rpc_protocol_version);
    d.feed(bytes);
    std::vector<frame> out;
    while (auto f = d.next()) out.push_back(*f);
    EXPECT_EQ(d.error(), frame_error::none);
    return out;
}

bool fleet(std::string_view id) {
    return id == "gw1" || id == "gw2" || id == "gw3";
}

struct pair_result {
    rpc::hs_step::state connector = rpc::hs_step::state::pending;
    rpc::hs_step::state acceptor = rpc::hs_step::state::pending;
    rpc::hs_error connector_error = rpc::hs_error::none;
    rpc::hs_error acceptor_error = rpc::hs_error::none;
};

// Drives both sides against each other the way the transport does.
pair_result run(rpc::connector_handshake& c, rpc::acceptor_handshake& a) {
    pair_result r;
    std::string to_acceptor = c.hello();
    std::string to_connector;
    for (int round = 0; round < 4; ++round) {
        for (auto& f : frames_of(std::exchange(to_acceptor, {}))) {
            auto s = a.on_frame(f);
            to_connector += s.out;
            r.acceptor = s.st;
            r.acceptor_error = s.error;
        }
        for (auto& f : frames_of(std::exchange(to_connector, {}))) {
            auto s = c.on_frame(f);
            to_acceptor += s.out;
            r.connector = s.st;
            r.connector_error = s.error;
        }
    }
    return r;
}

std::string nonce(char c) {
    return std::string(rpc::nonce_size, c);
}

}  // namespace

TEST(RpcHandshake, SameSecretAuthenticatesBothWays) {
    rpc::connector_handshake c("gw1", "gw2", secret, nonce('a'));
    rpc::acceptor_handshake a("gw2", secret, fleet, nonce('b'));
    auto r = run(c, a);
    EXPECT_EQ(r.connector, rpc::hs_step::state::ok);
    EXPECT_EQ(r.acceptor, rpc::hs_step::state::ok);
    EXPECT_EQ(a.peer_id(), "gw1");
}

TEST(RpcHandshake, ConnectorWithWrongSecretIsRefusedByTheAcceptor) {
    rpc::connector_handshake c("gw1", "gw2", "wrong-secret-wrong-secret", nonce('a'));
    rpc::acceptor_handshake a("gw2", secret, fleet, nonce('b'));
    auto r = run(c, a);
    EXPECT_EQ(r.acceptor, rpc::hs_step::state::failed);
    EXPECT_EQ(r.acceptor_error, rpc::hs_error::bad_proof);
    EXPECT_EQ(r.connector, rpc::hs_step::state::failed);
    EXPECT_EQ(r.connector_error, rpc::hs_error::refused);
}

TEST(RpcHandshake, AcceptorWithWrongSecretIsRejectedByTheConnector) {
    rpc::connector_handshake c("gw1", "gw2", secret, nonce('a'));
    auto ch = frames_of(rpc::encode(rpc::challenge_msg{"gw2", nonce('b')}));
    auto s = c.on_frame(ch[0]);
    EXPECT_EQ(s.st, rpc::hs_step::state::pending);
    // An impostor acceptor accepts anything, but cannot produce the acceptor proof.
    auto forged = rpc::handshake_proof("wrong-secret-wrong-secret", "acceptor", "gw1", "gw2",
                                       nonce('a'), nonce('b'));
    s = c.on_frame(frames_of(rpc::encode(rpc::auth_ok_msg{forged}))[0]);
    EXPECT_EQ(s.st, rpc::hs_step::state::failed);
    EXPECT_EQ(s.error, rpc::hs_error::bad_proof);
}

TEST(RpcHandshake, ReflectingAProofDoesNotWork) {
    // The connector's own AUTH proof, reflected back as the acceptor's AUTH_OK proof, must fail:
    // the role is part of the MAC input.
    rpc::connector_handshake c("gw1", "gw2", secret, nonce('a'));
    auto s = c.on_frame(frames_of(rpc::encode(rpc::challenge_msg{"gw2", nonce('b')}))[0]);
    auto auth = rpc::decode<rpc::auth_msg>(frames_of(s.out)[0]);
    ASSERT_TRUE(auth);
    s = c.on_frame(frames_of(rpc::encode(rpc::auth_ok_msg{auth->proof}))[0]);
    EXPECT_EQ(s.st, rpc::hs_step::state::failed);
    EXPECT_EQ(s.error, rpc::hs_error::bad_proof);
}

TEST(RpcHandshake, UnknownPeerSelfAndGarbageAreRefused) {
    rpc::acceptor_handshake a("gw2", secret, fleet, nonce('b'));
    auto s = a.on_frame(frames_of(rpc::encode(rpc::hello_msg{"gw9", nonce('a')}))[0]);
    EXPECT_EQ(s.error, rpc::hs_error::unknown_peer);
    rpc::acceptor_handshake self("gw2", secret, fleet, nonce('b'));
    s = self.on_frame(frames_of(rpc::encode(rpc::hello_msg{"gw2", nonce('a')}))[0]);
    EXPECT_EQ(s.error, rpc::hs_error::unknown_peer);
    rpc::acceptor_handshake g("gw2", secret, fleet, nonce('b'));
    s = g.on_frame(frames_of(rpc::encode(rpc::ping_msg{}))[0]);
    EXPECT_EQ(s.error, rpc::hs_error::bad_frame);
    EXPECT_FALSE(s.out.empty());
}

TEST(RpcHandshake, ConnectorRejectsAnImpostorAcceptorId) {
    rpc::connector_handshake c("gw1", "gw2", secret, nonce('a'));
    rpc::acceptor_handshake a("gw3", secret, fleet, nonce('b'));
    auto r = run(c, a);
    EXPECT_EQ(r.connector, rpc::hs_step::state::failed);
    EXPECT_EQ(r.connector_error, rpc::hs_error::unknown_peer);
}

TEST(RpcHandshake, ConnectorSeesARefusal) {
    rpc::connector_handshake c("gw9", "gw2", secret, nonce('a'));
    rpc::acceptor_handshake a("gw2", secret, fleet, nonce('b'));
    auto r = run(c, a);
    EXPECT_EQ(r.acceptor_error, rpc::hs_error::unknown_peer);
    EXPECT_EQ(r.connector, rpc::hs_step::state::failed);
    EXPECT_EQ(r.connector_error, rpc::hs_error::refused);
}

TEST(RpcCallTable, AnswerTimeoutAndLinkFailureEachCompleteExactlyOnce) {
    rpc::call_table t(10);
    auto t0 = rpc::clock::time_point{} + 1h;
    std::vector<forward_result> got(3);
    std::vector<int> calls(3, 0);
    auto cb = [&](int i) {
        return [&, i](forward_result r) {
            got[i] = r;
            ++calls[i];
        };
    };
    uint32_t a = t.add(t0 + 100ms, cb(0));
    uint32_t b = t.add(t0 + 200ms, cb(1));
    uint32_t c = t.add(t0 + 300ms, cb(2));
    EXPECT_NE(a, 0u);
    EXPECT_NE(a, b);
    EXPECT_EQ(t.next_deadline(), t0 + 100ms);
    EXPECT_TRUE(t.complete(a, {proto::code::ok, 2}));
    EXPECT_FALSE(t.complete(a, {proto::code::ok, 2}));  // duplicate answer
    EXPECT_EQ(t.next_deadline(), t0 + 200ms);
    EXPECT_EQ(t.expire(t0 + 199ms), 0u);
    EXPECT_EQ(t.expire(t0 + 200ms), 1u);
    EXPECT_FALSE(t.complete(b, {proto::code::ok, 1}));  // late answer is ignored
    EXPECT_EQ(t.fail_all(proto::code::unavailable), 1u);
    EXPECT_EQ(t.size(), 0u);
    EXPECT_FALSE(t.next_deadline());
    EXPECT_EQ(calls, (std::vector<int>{1, 1, 1}));
    EXPECT_EQ(got[0].status, proto::code::ok);
    EXPECT_EQ(got[0].reached, 2u);
    EXPECT_EQ(got[1].status, proto::code::timeout);
    EXPECT_EQ(got[2].status, proto::code::unavailable);
    (void)c;
}

TEST(RpcCallTable, BoundedInFlight) {
    rpc::call_table t(2);
    auto now = rpc::clock::now();
    EXPECT_NE(t.add(now, [](forward_result) {}), 0u);
    EXPECT_NE(t.add(now, [](forward_result) {}), 0u);
    EXPECT_EQ(t.add(now, [](forward_result) {}), 0u);
    t.expire(now);
    EXPECT_NE(t.add(now, [](forward_result) {}), 0u);
}

TEST(RpcCallTable, CallbackMayStartANewCall) {
    rpc::call_table t(4);
    auto now = rpc::clock::time_point{} + 1h;
    int done = 0;
    t.add(now, [&](forward_result) {
        ++done;
        t.add(now + 1s, [&](forward_result) { ++done; });
    });
    EXPECT_EQ(t.expire(now), 1u);
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(t.fail_all(proto::code::unavailable), 1u);
    EXPECT_EQ(done, 2);
}

TEST(RpcBackoff, GrowsCapsJittersAndResets) {
    double r = 0.0;
    rpc::backoff b(100ms, 1000ms, [&] { return r; });
    EXPECT_EQ(b.next(), 50ms);   // base 100, r=0 -> half
    EXPECT_EQ(b.next(), 100ms);  // base 200
    r = 1.0;
    EXPECT_EQ(b.next(), 400ms);   // base 400, r=1 -> full
    EXPECT_EQ(b.next(), 800ms);   // base 800
    EXPECT_EQ(b.next(), 1000ms);  // capped
    EXPECT_EQ(b.next(), 1000ms);
    r = 0.5;
    b.reset();
    EXPECT_EQ(b.next(), 75ms);
}

TEST(RpcCombiner, DeliveredOfflineAndFailures) {
    rpc::result_combiner none;
    EXPECT_EQ(none.result().status, proto::code::offline);

    rpc::result_combiner c;
    c.add({proto::code::offline, 0});
    c.add({proto::code::unavailable, 0});
    EXPECT_EQ(c.result().status, proto::code::unavailable);
    c.add({proto::code::timeout, 0});
    EXPECT_EQ(c.result().status, proto::code::timeout);
    c.add({proto::code::ok, 2});
    c.add({proto::code::ok, 1});
    EXPECT_EQ(c.result().status, proto::code::ok);
    EXPECT_EQ(c.result().reached, 3u);

    rpc::result_combiner off;
    off.add({proto::code::offline, 0});
    off.add({proto::code::offline, 0});
    EXPECT_EQ(off.result().status, proto::code::offline);
}
