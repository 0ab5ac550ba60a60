#include <gtest/gtest.h>

#include <random>

#include "common/frame.hpp"
#include "common/protocol.hpp"

using namespace imgate;
namespace p = imgate::proto;

namespace {

std::string sample_stream() {
    std::string out;
    p::encode(out, p::login_msg{"tok.en.sig"}, 1);
    p::encode(out, p::ping_msg{}, 2);
    p::encode(out, p::send_msg{p::target_kind::room, "lobby", 42, std::string(1000, 'x')}, 3);
    p::encode(out, p::ack_msg{7}, 4);
    return out;
}

}  // namespace

TEST(Frame, HeaderBytesAreExact) {
    auto f = p::encode(p::ack_msg{0x0102030405060708ULL}, 0xAABBCCDD);
    const unsigned char want[] = {0,    0,    0, 8, 1, 0x13, 0, 0, 0xAA, 0xBB,
                                  0xCC, 0xDD, 1, 2, 3, 4,    5, 6, 7,    8};
    ASSERT_EQ(f.size(), sizeof want);
    EXPECT_EQ(0, std::memcmp(f.data(), want, sizeof want));
}

TEST(Frame, DecodesEverySplitOfTheStream) {
    auto stream = sample_stream();
    for (size_t chunk = 1; chunk <= 17; ++chunk) {
        frame_decoder d;
        std::vector<frame> got;
        for (size_t i = 0; i < stream.size(); i += chunk) {
            d.feed(std::string_view(stream).substr(i, chunk));
            while (auto f = d.next()) got.push_back(std::move(*f));
        }
        ASSERT_EQ(d.error(), frame_error::none);
        ASSERT_EQ(got.size(), 4u) << "chunk " << chunk;
        EXPECT_EQ(got[0].corr, 1u);
        EXPECT_EQ(got[2].op, static_cast<uint8_t>(p::op::send));
        auto s = p::decode<p::send_msg>(got[2]);
        ASSERT_TRUE(s);
        EXPECT_EQ(s->target, "lobby");
        EXPECT_EQ(s->client_msg_id, 42u);
        EXPECT_EQ(s->payload.size(), 1000u);
        EXPECT_EQ(d.buffered(), 0u);
    }
}

// next(input), the way a session reads: each chunk lives in one reused buffer that is
// overwritten after the frames were taken (and, half the time, before next() ran dry: keep()).
TEST(Frame, FramesTakenFromTheInputSurviveTheReusedReadBuffer) {
    auto stream = sample_stream() + sample_stream();
    for (size_t chunk = 1; chunk <= stream.size(); chunk += (chunk < 40 ? 1 : 97)) {
        frame_decoder d;
        std::vector<frame> got;
        std::string read_buf;
        bool stop_early = false;
        for (size_t i = 0; i < stream.size(); i += chunk) {
            read_buf.assign(stream, i, chunk);
            std::string_view input(read_buf);
            stop_early = !stop_early;
            while (auto f = d.next(input)) {
                got.push_back(std::move(*f));
                if (stop_early) break;  // like a session that stops decoding for a moment
            }
            d.keep(input);
            EXPECT_TRUE(input.empty());
            read_buf.assign(read_buf.size(), '\xee');  // the next read overwrites it
        }
        while (auto f = d.next()) got.push_back(std::move(*f));
        ASSERT_EQ(d.error(), frame_error::none) << "chunk " << chunk;
        ASSERT_EQ(got.size(), 8u) << "chunk " << chunk;
        for (size_t k = 0; k < 8; ++k) EXPECT_EQ(got[k].corr, uint32_t(k % 4 + 1));
        auto s = p::decode<p::send_msg>(got[6]);
        ASSERT_TRUE(s);
        EXPECT_EQ(s->payload, std::string(1000, 'x'));
        EXPECT_EQ(d.buffered(), 0u);
    }
}

TEST(Frame, OversizedHeaderInTheInputFailsAndKeepsNothing) {
    std::string big;
    p::encode(big, p::send_msg{p::target_kind::user, "zoë@example.org", 1, std::string(600, 'y')});
    frame_decoder d(100);
    std::string_view input(big);
    EXPECT_FALSE(d.next(input));
    EXPECT_EQ(d.error(), frame_error::too_large);
    d.keep(input);
    EXPECT_EQ(d.buffered(), 0u);
}

TEST(Frame, CoalescedInputYieldsAllFrames) {
    auto stream = sample_stream() + sample_stream();
    frame_decoder d;
    d.feed(stream);
    int n = 0;
    while (d.next()) ++n;
    EXPECT_EQ(n, 8);
}

TEST(Frame, TruncatedFrameWaitsForMore) {
    auto f = p::encode(p::join_msg{"room-1"}, 9);
    frame_decoder d;
    d.feed(std::string_view(f).substr(0, f.size() - 1));
    EXPECT_FALSE(d.next());
    EXPECT_EQ(d.error(), frame_error::none);
    d.feed(std::string_view(f).substr(f.size() - 1));
    EXPECT_TRUE(d.next());
}

TEST(Frame, OversizedLengthRejectedFromHeaderAlone) {
    std::string hdr = {'\xff', '\xff', '\xff', '\xff', 1, 0x10, 0, 0, 0, 0, 0, 1};
    frame_decoder d(1024);
    d.feed(hdr);
    EXPECT_FALSE(d.next());
    EXPECT_EQ(d.error(), frame_error::too_large);
    EXPECT_LE(d.buffered(), hdr.size());
    d.feed("more");
    EXPECT_FALSE(d.next());  // stays failed
}

TEST(Frame, WrongVersionRejected) {
    auto f = p::encode(p::ping_msg{});
    f[4] = 9;
    frame_decoder d;
    d.feed(f);
    EXPECT_FALSE(d.next());
    EXPECT_EQ(d.error(), frame_error::bad_version);
}

TEST(Frame, UnknownOpIsAFrameTheCallerRejects) {
    std::string f;
    append_frame(f, client_protocol_version, 0x55, 1, "");
    frame_decoder d;
    d.feed(f);
    auto got = d.next();
    ASSERT_TRUE(got);
    EXPECT_FALSE(p::is_known_op(got->op));
    EXPECT_TRUE(p::is_known_op(static_cast<uint8_t>(p::op::deliver)));
}

TEST(Protocol, RoundTripsEveryMessage) {
    p::deliver_msg dm{99, p::target_kind::room, "alice", "phone", "lobby", 1234, "hi"};
    auto f = p::encode(dm, 5);
    frame_decoder d;
    d.feed(f);
    auto fr = d.next();
    ASSERT_TRUE(fr);
    auto back = p::decode<p::deliver_msg>(*fr);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->from_user, "alice");
    EXPECT_EQ(back->room, "lobby");
    EXPECT_EQ(back->payload, "hi");
    EXPECT_EQ(back->ts_ms, 1234u);

    p::send_result_msg sr{1, 2, p::code::offline, 0};
    frame_decoder d2;
    d2.feed(p::encode(sr));
    auto sr2 = p::decode<p::send_result_msg>(*d2.next());
    ASSERT_TRUE(sr2);
    EXPECT_EQ(sr2->status, p::code::offline);

    p::kick_msg k{p::kick_reason::replaced, 500, "another login"};
    frame_decoder d3;
    d3.feed(p::encode(k));
    auto k2 = p::decode<p::kick_msg>(*d3.next());
    ASSERT_TRUE(k2);
    EXPECT_EQ(k2->reason, p::kick_reason::replaced);
    EXPECT_EQ(k2->reconnect_after_ms, 500u);
}

TEST(Protocol, MalformedBodiesAreRejected) {
    frame f;
    f.op = static_cast<uint8_t>(p::op::send);
    f.body = std::string("\x01\x00\x05", 3);  // target length 5 but no bytes
    EXPECT_FALSE(p::decode<p::send_msg>(f));
    f.op = static_cast<uint8_t>(p::op::ack);
    f.body = std::string(9, '\0');  // one trailing byte
    EXPECT_FALSE(p::decode<p::ack_msg>(f));
    f.body = std::string(8, '\0');
    EXPECT_TRUE(p::decode<p::ack_msg>(f));
    EXPECT_FALSE(p::decode<p::ping_msg>(f));  // wrong op
    // send with an invalid target kind
    std::string body;
    byte_writer w(body);
    w.u8(7);
    w.str16("bob");
    w.u64(1);
    w.blob32("x");
    f.op = static_cast<uint8_t>(p::op::send);
    f.body = body;
    EXPECT_FALSE(p::decode<p::send_msg>(f));
}

TEST(Protocol, CodeNamesRoundTrip) {
    EXPECT_STREQ(p::to_string(p::code::ok), "delivered");
    EXPECT_EQ(p::code_from_string("rate_limited"), p::code::rate_limited);
    EXPECT_FALSE(p::code_from_string("nope"));
}
