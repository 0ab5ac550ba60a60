#include "gateway/rpc_handshake.hpp"

#include <gtest/gtest.h>

#include "rpc_frames.hpp"

#include "gateway/rpc_wire.hpp"

using namespace imgate;
using namespace imgate::gw;
using namespace std::chrono_literals;

namespace {

const std::string secret = "0123456789abcdef-cluster";

using imgate::test::rpc_frames_of;

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
        for (auto& f : rpc_frames_of(std::exchange(to_acceptor, {}))) {
            auto s = a.on_frame(f);
            to_connector += s.out;
            r.acceptor = s.st;
            r.acceptor_error = s.error;
        }
        for (auto& f : rpc_frames_of(std::exchange(to_connector, {}))) {
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
    auto ch = rpc_frames_of(rpc::encode(rpc::challenge_msg{"gw2", nonce('b')}));
    auto s = c.on_frame(ch[0]);
    EXPECT_EQ(s.st, rpc::hs_step::state::pending);
    // An impostor acceptor accepts anything, but cannot produce the acceptor proof.
    auto forged = rpc::handshake_proof("wrong-secret-wrong-secret", "acceptor", "gw1", "gw2",
                                       nonce('a'), nonce('b'));
    s = c.on_frame(rpc_frames_of(rpc::encode(rpc::auth_ok_msg{forged}))[0]);
    EXPECT_EQ(s.st, rpc::hs_step::state::failed);
    EXPECT_EQ(s.error, rpc::hs_error::bad_proof);
}

TEST(RpcHandshake, ReflectingAProofDoesNotWork) {
    // The connector's own AUTH proof, reflected back as the acceptor's AUTH_OK proof, must fail:
    // the role is part of the MAC input.
    rpc::connector_handshake c("gw1", "gw2", secret, nonce('a'));
    auto s = c.on_frame(rpc_frames_of(rpc::encode(rpc::challenge_msg{"gw2", nonce('b')}))[0]);
    auto auth = rpc::decode<rpc::auth_msg>(rpc_frames_of(s.out)[0]);
    ASSERT_TRUE(auth);
    s = c.on_frame(rpc_frames_of(rpc::encode(rpc::auth_ok_msg{auth->proof}))[0]);
    EXPECT_EQ(s.st, rpc::hs_step::state::failed);
    EXPECT_EQ(s.error, rpc::hs_error::bad_proof);
}

TEST(RpcHandshake, UnknownPeerSelfAndGarbageAreRefused) {
    rpc::acceptor_handshake a("gw2", secret, fleet, nonce('b'));
    auto s = a.on_frame(rpc_frames_of(rpc::encode(rpc::hello_msg{"gw9", nonce('a')}))[0]);
    EXPECT_EQ(s.error, rpc::hs_error::unknown_peer);
    rpc::acceptor_handshake self("gw2", secret, fleet, nonce('b'));
    s = self.on_frame(rpc_frames_of(rpc::encode(rpc::hello_msg{"gw2", nonce('a')}))[0]);
    EXPECT_EQ(s.error, rpc::hs_error::unknown_peer);
    rpc::acceptor_handshake g("gw2", secret, fleet, nonce('b'));
    s = g.on_frame(rpc_frames_of(rpc::encode(rpc::ping_msg{}))[0]);
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

// The pre-handshake frame cap (rpc::max_handshake_body) must admit every frame of a valid
// handshake between the longest valid ids, and nothing a valid handshake does not need.
TEST(RpcHandshake, EveryHandshakeFrameFitsThePreHandshakeCapExactly) {
    std::string longest_a(ids::max_node_id_bytes, 'a'), longest_b(ids::max_node_id_bytes, 'b');
    ASSERT_TRUE(ids::valid_node_id(longest_a));
    ASSERT_FALSE(ids::valid_node_id(longest_a + "a"));
    auto member = [&](std::string_view id) { return id == longest_a || id == longest_b; };
    rpc::connector_handshake c(longest_a, longest_b, secret, nonce('a'));
    rpc::acceptor_handshake a(longest_b, secret, member, nonce('b'));
    // Drive it by hand to see every frame each way.
    size_t largest = 0;
    std::string to_acceptor = c.hello();
    for (int round = 0; round < 3; ++round) {
        std::string to_connector;
        for (auto& f : rpc_frames_of(std::exchange(to_acceptor, {}))) {
            largest = std::max(largest, f.body.size());
            to_connector += a.on_frame(f).out;
        }
        for (auto& f : rpc_frames_of(to_connector)) {
            largest = std::max(largest, f.body.size());
            auto s = c.on_frame(f);
            to_acceptor += s.out;
            if (s.st == rpc::hs_step::state::ok) round = 3;
        }
    }
    EXPECT_EQ(largest, rpc::max_handshake_body);  // HELLO/CHALLENGE between the longest ids
    // Every refusal the acceptor can send fits too (the connector reads it before its cap rises).
    for (auto* why : {"expected HELLO", "not a fleet member", "bad proof", "expected AUTH"})
        EXPECT_LE(rpc_frames_of(rpc::encode(rpc::auth_fail_msg{why}))[0].body.size(),
                  rpc::max_handshake_body);
    std::vector<std::string> fails;
    rpc::acceptor_handshake g("gw2", secret, fleet, nonce('b'));
    fails.push_back(g.on_frame(rpc_frames_of(rpc::encode(rpc::ping_msg{}))[0]).out);
    rpc::acceptor_handshake u("gw2", secret, fleet, nonce('b'));
    fails.push_back(
        u.on_frame(rpc_frames_of(rpc::encode(rpc::hello_msg{"gw9", nonce('a')}))[0]).out);
    for (auto& out : fails) {
        auto frames = rpc_frames_of(out);
        ASSERT_EQ(frames.size(), 1u);
        EXPECT_LE(frames[0].body.size(), rpc::max_handshake_body);
    }
}
