#include "gateway/rpc_wire.hpp"

#include <gtest/gtest.h>

#include <tuple>
#include <type_traits>

#include "common/ids.hpp"

using namespace imgate;
using namespace imgate::gw;

namespace {

frame one_frame(const std::string& bytes) {
    frame_decoder d(rpc::max_body, rpc_protocol_version);
    d.feed(bytes);
    auto f = d.next();
    EXPECT_TRUE(f.has_value());
    EXPECT_EQ(d.error(), frame_error::none);
    return f.value_or(frame{});
}

outbound_message sample() {
    outbound_message m;
    m.server_msg_id = 0x0102030405060708ull;
    m.kind = proto::target_kind::room;
    m.target = "room-1";
    m.from_user = "alice";
    m.from_device = "phone";
    m.ts_ms = 1700000000123;
    m.payload = std::string("hi\0there", 8);
    m.is_push = false;
    m.origin_gateway = "gw1";
    m.origin_session = 42;
    m.client_msg_id = 7;
    return m;
}

}  // namespace

TEST(RpcWire, ForwardRoundTripKeepsEveryFieldAndCorr) {
    auto f = one_frame(rpc::encode(rpc::forward_msg{sample()}, 99));
    EXPECT_EQ(f.op, static_cast<uint8_t>(rpc::op::forward));
    EXPECT_EQ(f.corr, 99u);
    auto d = rpc::decode<rpc::forward_msg>(f);
    ASSERT_TRUE(d);
    auto e = sample();
    EXPECT_EQ(d->m.server_msg_id, e.server_msg_id);
    EXPECT_EQ(d->m.kind, e.kind);
    EXPECT_EQ(d->m.target, e.target);
    EXPECT_EQ(d->m.from_user, e.from_user);
    EXPECT_EQ(d->m.from_device, e.from_device);
    EXPECT_EQ(d->m.ts_ms, e.ts_ms);
    EXPECT_EQ(d->m.payload, e.payload);
    EXPECT_EQ(d->m.is_push, e.is_push);
    EXPECT_EQ(d->m.origin_gateway, e.origin_gateway);
    EXPECT_EQ(d->m.origin_session, e.origin_session);
    EXPECT_EQ(d->m.client_msg_id, e.client_msg_id);
}

TEST(RpcWire, RpcFramesAreRefusedByAClientDecoderAndViceVersa) {
    frame_decoder client;  // client_protocol_version
    client.feed(rpc::encode(rpc::ping_msg{}));
    EXPECT_FALSE(client.next());
    EXPECT_EQ(client.error(), frame_error::bad_version);

    frame_decoder rpcd(rpc::max_body, rpc_protocol_version);
    rpcd.feed(proto::encode(proto::ping_msg{}));
    EXPECT_FALSE(rpcd.next());
    EXPECT_EQ(rpcd.error(), frame_error::bad_version);
}

TEST(RpcWire, EveryTruncationOfAForwardIsRejected) {
    auto bytes = rpc::encode(rpc::forward_msg{sample()});
    auto body = bytes.substr(frame_header_size);
    for (size_t n = 0; n < body.size(); ++n) {
        rpc::forward_msg m;
        EXPECT_FALSE(rpc::read_body(std::string_view(body).substr(0, n), m)) << n;
    }
    rpc::forward_msg m;
    EXPECT_TRUE(rpc::read_body(body, m));
    EXPECT_FALSE(rpc::read_body(body + "x", m));  // trailing bytes
}

TEST(RpcWire, ForwardWithBadKindIsRejectedBadTargetIsNotUsable) {
    auto m = sample();
    auto body = rpc::encode(rpc::forward_msg{m}).substr(frame_header_size);
    body[8] = 3;  // kind
    rpc::forward_msg out;
    EXPECT_FALSE(rpc::read_body(body, out));
    // An id outside the rule is not a structural fault (the link stays): the receiver answers
    // that one forward bad_request.
    m.target = "bad id with spaces";
    body = rpc::encode(rpc::forward_msg{m}).substr(frame_header_size);
    ASSERT_TRUE(rpc::read_body(body, out));
    EXPECT_FALSE(rpc::usable(out.m));
    m = sample();
    m.origin_gateway.clear();  // a receipt would have nowhere to go
    body = rpc::encode(rpc::forward_msg{m}).substr(frame_header_size);
    EXPECT_FALSE(rpc::read_body(body, out));
}

// Issue 11: the RPC refused ids every client may log in with, and with them the whole frame.
TEST(RpcWire, EveryClientIdCrossesTheRpc) {
    for (std::string id : {std::string("carol@example.com"), std::string("x#y"), std::string("Zoë"),
                           std::string("王伟"), std::string("😀party"), std::string("a+b/c=d"),
                           std::string(ids::max_bytes, 'q')}) {
        auto m = sample();
        m.target = id;
        m.from_user = id;
        m.from_device = id;
        auto d = rpc::decode<rpc::forward_msg>(one_frame(rpc::encode(rpc::forward_msg{m}, 3)));
        ASSERT_TRUE(d) << id;
        EXPECT_TRUE(rpc::usable(d->m)) << id;
        EXPECT_EQ(d->m.target, id);
        auto p = rpc::decode<rpc::presence_msg>(
            one_frame(rpc::encode(rpc::presence_msg{false, {{true, id}}})));
        ASSERT_TRUE(p) << id;
        ASSERT_EQ(p->changes.size(), 1u) << id;
        EXPECT_EQ(p->changes[0].key, id);
        EXPECT_EQ(p->skipped, 0u);
        auto c = rpc::decode<rpc::device_claim_msg>(
            one_frame(rpc::encode(rpc::device_claim_msg{id, "phone"})));
        ASSERT_TRUE(c) << id;
        EXPECT_TRUE(rpc::usable(*c));
        EXPECT_EQ(c->user, id);
    }
}

// One unusable entry is skipped and counted; the others in the same frame still apply.
TEST(RpcWire, PresenceEntryOutsideTheIdRuleIsSkippedNotFatal) {
    rpc::presence_msg p{true,
                        {{true, "alice"},
                         {true, "has space"},
                         {true, std::string("\xff\xfe", 2)},
                         {true, std::string(ids::max_bytes + 1, 'l')},
                         {false, "bob@example.com"}}};
    auto d = rpc::decode<rpc::presence_msg>(one_frame(rpc::encode(p)));
    ASSERT_TRUE(d);
    EXPECT_TRUE(d->reset);
    EXPECT_EQ(d->skipped, 3u);
    ASSERT_EQ(d->changes.size(), 2u);
    EXPECT_EQ(d->changes[0], (rpc::delta{true, "alice"}));
    EXPECT_EQ(d->changes[1], (rpc::delta{false, "bob@example.com"}));
}

// Snapshot chunks stay within max_body however long the ids are (2000 ids of 1 KiB would not).
TEST(RpcWire, SnapshotOfLongIdsStaysWithinTheFrameLimit) {
    std::vector<std::string> keys;
    for (int i = 0; i < 3000; ++i) {
        auto k = std::to_string(i) + "@";
        keys.push_back(k + std::string(ids::max_bytes - k.size(), 'x'));
    }
    std::string out;
    rpc::encode_snapshot<rpc::presence_msg>(out, keys);
    frame_decoder dec(rpc::max_body, rpc_protocol_version);
    dec.feed(out);
    size_t n = 0;
    int frames = 0;
    while (auto f = dec.next()) {
        auto m = rpc::decode<rpc::presence_msg>(*f);
        ASSERT_TRUE(m);
        EXPECT_EQ(m->reset, frames == 0);
        n += m->changes.size();
        ++frames;
    }
    EXPECT_EQ(dec.error(), frame_error::none);
    EXPECT_EQ(n, keys.size());
    EXPECT_GT(frames, 3);
}

TEST(RpcWire, ForwardOfTheLargestPayloadFitsAFrame) {
    auto m = sample();
    m.target = m.from_user = m.from_device = std::string(ids::max_bytes, 'x');
    m.origin_gateway = std::string(ids::max_node_id_bytes, 'g');
    m.payload.assign(rpc::max_forward_payload, 'p');
    auto bytes = rpc::encode(rpc::forward_msg{m}, 1);
    EXPECT_LE(bytes.size() - frame_header_size, rpc::max_body);
    frame_decoder dec(rpc::max_body, rpc_protocol_version);
    dec.feed(bytes);
    auto f = dec.next();
    ASSERT_TRUE(f);
    EXPECT_TRUE(rpc::decode<rpc::forward_msg>(*f));
}

TEST(RpcWire, ForwardResultRejectsUnknownStatus) {
    auto f = one_frame(rpc::encode(rpc::forward_result_msg{proto::code::ok, 3}, 5));
    auto d = rpc::decode<rpc::forward_result_msg>(f);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->status, proto::code::ok);
    EXPECT_EQ(d->reached, 3u);
    EXPECT_EQ(f.corr, 5u);
    f.body[0] = char(0x7f);
    EXPECT_FALSE(rpc::decode<rpc::forward_result_msg>(f));
}

TEST(RpcWire, HandshakeMessagesCheckSizes) {
    std::string nonce(rpc::nonce_size, 'n');
    auto f = one_frame(rpc::encode(rpc::hello_msg{"gw1", nonce}));
    auto h = rpc::decode<rpc::hello_msg>(f);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->gateway_id, "gw1");
    EXPECT_FALSE(
        rpc::decode<rpc::hello_msg>(one_frame(rpc::encode(rpc::hello_msg{"gw1", "short"}))));
    EXPECT_FALSE(rpc::decode<rpc::auth_msg>(one_frame(rpc::encode(rpc::auth_msg{"short"}))));
    EXPECT_FALSE(rpc::decode<rpc::challenge_msg>(f));  // wrong op
}

TEST(RpcWire, PresenceRoundTripAndSnapshotChunking) {
    rpc::presence_msg p{false, {{true, "alice"}, {false, "bob"}}};
    auto d = rpc::decode<rpc::presence_msg>(one_frame(rpc::encode(p)));
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->reset);
    EXPECT_EQ(d->changes, p.changes);

    std::vector<std::string> keys;
    for (size_t i = 0; i < rpc::snapshot_chunk * 2 + 5; ++i)
        keys.push_back("u" + std::to_string(i));
    std::string out;
    rpc::encode_snapshot<rpc::room_interest_msg>(out, keys);
    frame_decoder dec(rpc::max_body, rpc_protocol_version);
    dec.feed(out);
    std::vector<std::string> seen;
    int frames = 0;
    while (auto f = dec.next()) {
        auto m = rpc::decode<rpc::room_interest_msg>(*f);
        ASSERT_TRUE(m);
        EXPECT_EQ(m->reset, frames == 0);
        for (auto& c : m->changes) {
            EXPECT_TRUE(c.on);
            seen.push_back(c.key);
        }
        ++frames;
    }
    EXPECT_EQ(frames, 3);
    EXPECT_EQ(seen, keys);

    out.clear();
    rpc::encode_snapshot<rpc::presence_msg>(out, {});
    auto empty = rpc::decode<rpc::presence_msg>(one_frame(out));
    ASSERT_TRUE(empty);
    EXPECT_TRUE(empty->reset);
    EXPECT_TRUE(empty->changes.empty());
}

TEST(RpcWire, PresenceRejectsHugeCountsBadFlagsAndTrailingBytes) {
    std::string body;
    byte_writer w(body);
    w.u8(0);
    w.u32(0xffffffff);
    rpc::presence_msg m;
    EXPECT_FALSE(rpc::read_body(body, m));
    body.clear();
    w.u8(2);
    w.u32(0);
    EXPECT_FALSE(rpc::read_body(body, m));
    body = rpc::encode(rpc::presence_msg{true, {{true, "a"}}}).substr(frame_header_size);
    EXPECT_TRUE(rpc::read_body(body, m));
    EXPECT_FALSE(rpc::read_body(body + "z", m));
}

TEST(RpcWire, UnknownOpsAreKnownToBeUnknown) {
    EXPECT_TRUE(rpc::is_known_op(0x10));
    EXPECT_FALSE(rpc::is_known_op(0x00));
    EXPECT_FALSE(rpc::is_known_op(0x55));
    EXPECT_STREQ(rpc::to_string(static_cast<rpc::op>(0x55)), "UNKNOWN");
}

TEST(RpcWire, ReceiptRoundTrip) {
    rpc::receipt_msg r;
    r.origin_session = 12;
    r.r = proto::receipt_msg{1, 2, "bob", "tab"};
    auto d = rpc::decode<rpc::receipt_msg>(one_frame(rpc::encode(r)));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->origin_session, 12u);
    EXPECT_EQ(d->r.client_msg_id, 1u);
    EXPECT_EQ(d->r.server_msg_id, 2u);
    EXPECT_EQ(d->r.user, "bob");
    EXPECT_EQ(d->r.device, "tab");
    r.origin_session = 0;
    EXPECT_FALSE(rpc::decode<rpc::receipt_msg>(one_frame(rpc::encode(r))));
}

namespace {

// Every member of an outbound_message (it has no operator==), spelled apart from the codec's
// field list so a field the list leaves out shows up.
void expect_same(const outbound_message& a, const outbound_message& b) {
    EXPECT_EQ(a.server_msg_id, b.server_msg_id);
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.target, b.target);
    EXPECT_EQ(a.from_user, b.from_user);
    EXPECT_EQ(a.from_device, b.from_device);
    EXPECT_EQ(a.ts_ms, b.ts_ms);
    EXPECT_EQ(a.payload, b.payload);
    EXPECT_EQ(a.is_push, b.is_push);
    EXPECT_EQ(a.origin_gateway, b.origin_gateway);
    EXPECT_EQ(a.origin_session, b.origin_session);
    EXPECT_EQ(a.client_msg_id, b.client_msg_id);
}

template <class M>
void expect_same(const M& a, const M& b) {
    if constexpr (std::is_same_v<M, rpc::forward_msg>)
        expect_same(a.m, b.m);
    else
        EXPECT_EQ(a, b) << rpc::to_string(M::opcode);
}

// Every RPC message with every field away from its default (and valid, so it decodes).
auto rpc_samples() {
    std::string nonce(rpc::nonce_size, 'n'), proof(rpc::proof_size, 'p');
    auto push = sample();
    push.is_push = true;
    push.kind = proto::target_kind::user;
    return std::tuple{
        rpc::hello_msg{"gw1", nonce},
        rpc::challenge_msg{"gw2", nonce},
        rpc::auth_msg{proof},
        rpc::auth_ok_msg{proof},
        rpc::auth_fail_msg{"bad proof"},
        rpc::ping_msg{},
        rpc::pong_msg{},
        rpc::forward_msg{sample()},
        rpc::forward_msg{push},
        rpc::forward_result_msg{proto::code::timeout, 4},
        rpc::receipt_msg{12, proto::receipt_msg{1, 2, "bob", "tab"}},
        rpc::presence_msg{true, {{true, "alice"}, {false, "bob"}}},
        rpc::room_interest_msg{true, {{false, "room-1"}, {true, "room-2"}}},
        rpc::device_claim_msg{"alice", "phone"},
    };
}

std::string rpc_body(const auto& m) {
    std::string b;
    byte_writer w(b);
    rpc::write_body(w, m);
    return b;
}

}  // namespace

TEST(RpcWire, RoundTripsEveryMessage) {
    uint32_t corr = 500;
    std::apply(
        [&](const auto&... msgs) {
            auto one = [&](const auto& m) {
                using M = std::decay_t<decltype(m)>;
                auto bytes = rpc::encode(m, ++corr);
                auto f = one_frame(bytes);
                EXPECT_EQ(f.op, static_cast<uint8_t>(M::opcode));
                EXPECT_EQ(f.corr, corr);
                auto back = rpc::decode<M>(f);
                ASSERT_TRUE(back) << rpc::to_string(M::opcode);
                expect_same(*back, m);
                EXPECT_EQ(rpc::encode(*back, corr), bytes) << rpc::to_string(M::opcode);
            };
            (one(msgs), ...);
        },
        rpc_samples());
}

TEST(RpcWire, EveryTruncationOfEveryBodyIsRefused) {
    std::apply(
        [&](const auto&... msgs) {
            auto one = [&](const auto& m) {
                using M = std::decay_t<decltype(m)>;
                auto body = rpc_body(m);
                for (size_t n = 0; n < body.size(); ++n) {
                    M out;
                    EXPECT_FALSE(rpc::read_body(std::string_view(body).substr(0, n), out))
                        << rpc::to_string(M::opcode) << " cut at " << n;
                }
                M out;
                EXPECT_TRUE(rpc::read_body(body, out)) << rpc::to_string(M::opcode);
                EXPECT_FALSE(rpc::read_body(body + "x", out)) << rpc::to_string(M::opcode);
            };
            (one(msgs), ...);
        },
        rpc_samples());
}

// The copy-free FORWARD encoder and forward_msg share one field list: same bytes.
TEST(RpcWire, EncodeForwardWritesTheBytesOfAForwardMsg) {
    for (bool push : {false, true}) {
        auto m = sample();
        m.is_push = push;
        std::string out = "prefix";
        rpc::encode_forward(out, m, 77);
        EXPECT_EQ(out, "prefix" + rpc::encode(rpc::forward_msg{m}, 77));
    }
}

TEST(RpcWire, BadFlagsOfAForwardOrADeltaAreRefused) {
    auto fwd = rpc_body(rpc::forward_msg{sample()});
    fwd[9] = 2;  // is_push: 0 or 1 only
    rpc::forward_msg f;
    EXPECT_FALSE(rpc::read_body(fwd, f));
    auto pres = rpc_body(rpc::presence_msg{false, {{true, "alice"}}});
    pres[5] = 2;  // the entry's on flag
    rpc::presence_msg p;
    EXPECT_FALSE(rpc::read_body(pres, p));
    // A bad flag on an entry that would be skipped still refuses the frame.
    pres = rpc_body(rpc::presence_msg{false, {{true, "has space"}}});
    pres[5] = 2;
    EXPECT_FALSE(rpc::read_body(pres, p));
}

// A decoded message reused for the next body starts over: no entries or skips carried across.
TEST(RpcWire, ReadingIntoAReusedPresenceStartsOver) {
    rpc::presence_msg p;
    ASSERT_TRUE(
        rpc::read_body(rpc_body(rpc::presence_msg{false, {{true, "a b"}, {true, "x"}}}), p));
    EXPECT_EQ(p.skipped, 1u);
    ASSERT_TRUE(rpc::read_body(rpc_body(rpc::presence_msg{true, {{false, "y"}}}), p));
    EXPECT_EQ(p.skipped, 0u);
    EXPECT_EQ(p.changes, (std::vector<rpc::delta>{{false, "y"}}));
    EXPECT_TRUE(p.reset);
}
