#include <gtest/gtest.h>

#include "common/protocol.hpp"
#include "gateway/router.hpp"

using namespace imgate;
using namespace imgate::gw;

// The gateway encodes DELIVER/PUSH by hand (no temporary message copies); it must stay
// byte-identical to the protocol codec.
TEST(DeliveryEncoding, MatchesTheProtocolCodec) {
    outbound_message m;
    m.server_msg_id = 0x0102030405060708ull;
    m.kind = proto::target_kind::room;
    m.target = "lobby";
    m.from_user = "alice";
    m.from_device = "phone";
    m.ts_ms = 1795000000123ull;
    m.payload = std::string(300, 'p');
    proto::deliver_msg d{m.server_msg_id, m.kind,  m.from_user, m.from_device,
                         "lobby",         m.ts_ms, m.payload};
    EXPECT_EQ(*encode_delivery(m), proto::encode(d));

    m.kind = proto::target_kind::user;
    m.target = "bob";
    d.kind = m.kind;
    d.room = "";
    EXPECT_EQ(*encode_delivery(m), proto::encode(d));

    m.is_push = true;
    proto::push_msg p{m.server_msg_id, "", m.ts_ms, m.payload};
    EXPECT_EQ(*encode_delivery(m), proto::encode(p));
    m.kind = proto::target_kind::room;
    m.target = "news";
    p.room = "news";
    EXPECT_EQ(*encode_delivery(m), proto::encode(p));
}

TEST(DeliveryEncoding, CombineResults) {
    uint32_t total = 0;
    EXPECT_EQ(combine_results(2, {proto::code::offline, 0}, total), proto::code::ok);
    EXPECT_EQ(total, 2u);
    EXPECT_EQ(combine_results(0, {proto::code::ok, 3}, total), proto::code::ok);
    EXPECT_EQ(total, 3u);
    EXPECT_EQ(combine_results(0, {proto::code::offline, 0}, total), proto::code::offline);
    EXPECT_EQ(combine_results(0, {proto::code::unavailable, 0}, total), proto::code::unavailable);
    EXPECT_EQ(combine_results(1, {proto::code::timeout, 0}, total), proto::code::ok);
}
