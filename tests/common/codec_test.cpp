// The shared body codec (common/codec.hpp) on its own and on every client-protocol message.
#include "common/codec.hpp"

#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "common/frame.hpp"
#include "common/protocol.hpp"

using namespace imgate;
namespace p = imgate::proto;

namespace {

// A protocol of its own, so the codec is tested apart from the two real ones.
enum class test_op : uint8_t { sample = 0x42 };
constexpr uint8_t frame_version(test_op) {
    return 0x33;
}
enum class colour : uint16_t { red = 1, green = 2 };
constexpr bool wire_valid(colour c) {
    return c == colour::red || c == colour::green;
}

struct pair_field {
    uint8_t a = 0;
    std::string b;
    static auto fields(auto& m) { return codec::list(m.a, m.b); }
    bool operator==(const pair_field&) const = default;
};

struct sample_msg {
    static constexpr test_op opcode = test_op::sample;
    bool flag = false;
    colour c = colour::red;
    uint16_t u16 = 0;
    uint32_t u32 = 0;
    uint64_t u64 = 0;
    std::string name;
    std::string blob;
    std::vector<pair_field> items;
    static auto fields(auto& m) {
        return codec::list(m.flag, m.c, m.u16, m.u32, m.u64, m.name, codec::blob32(m.blob),
                           m.items);
    }
    bool operator==(const sample_msg&) const = default;
};

std::string hex(std::string_view s) {
    static const char* d = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        out += d[c >> 4];
        out += d[c & 15];
    }
    return out;
}

std::string body_of(const auto& m) {
    std::string b;
    byte_writer w(b);
    codec::write_body(w, m);
    return b;
}

frame one_frame(const std::string& bytes, uint8_t version = client_protocol_version) {
    frame_decoder d(absolute_max_frame_body, version);
    d.feed(bytes);
    auto f = d.next();
    EXPECT_TRUE(f.has_value());
    EXPECT_EQ(d.buffered(), 0u);
    return f.value_or(frame{});
}

// Every client message with every field away from its default, so a field missing from a field
// list shows up as a difference after the round trip (operator== compares every member).
auto client_samples() {
    return std::tuple{
        p::login_msg{"tok.en.sig"},
        p::login_result_msg{"alice", "phone", "gw1", 25000, 90000, 65536},
        p::ping_msg{},
        p::pong_msg{},
        p::send_msg{p::target_kind::room, "lobby", 0x0102030405060708ull, std::string("a\0b", 3)},
        p::send_result_msg{11, 22, p::code::rate_limited, 3},
        p::deliver_msg{99, p::target_kind::room, "bob", "tab", "lobby", 1700000000123, "hi"},
        p::ack_msg{0xfedcba9876543210ull},
        p::receipt_msg{5, 6, "carol", "watch"},
        p::join_msg{"room-1"},
        p::leave_msg{"room-2"},
        p::room_result_msg{"room-3", p::code::too_many_rooms},
        p::push_msg{77, "room-4", 1234, std::string(300, 'p')},
        p::kick_msg{p::kick_reason::slow_consumer, 1500, "bye"},
        p::redirect_msg{2500, "gw2.example", 7443, "draining"},
        p::error_msg{p::code::login_required, "log in first"},
    };
}

}  // namespace

TEST(Codec, WritesEachWireTypeAsDocumented) {
    sample_msg m{true, colour::green, 0x0102,    0x03040506, 0x0708090a0b0c0d0eull,
                 "ab", "xyz",         {{9, "k"}}};
    std::string b;
    byte_writer w(b);
    codec::write_body(w, m);
    EXPECT_EQ(hex(b),
              "01"                // bool
              "0002"              // enum, its underlying u16
              "0102"              // u16
              "03040506"          // u32
              "0708090a0b0c0d0e"  // u64
              "00026162"          // str16
              "0000000378797a"    // blob32
              "00000001"
              "09"
              "00016b");  // vector: u32 count, then each nested field list
    sample_msg back;
    EXPECT_TRUE(codec::read_body(b, back));
    EXPECT_EQ(back, m);
}

TEST(Codec, FramesCarryTheVersionOfTheMessagesProtocol) {
    auto bytes = codec::encode(sample_msg{}, 7);
    EXPECT_EQ(static_cast<uint8_t>(bytes[4]), 0x33);
    EXPECT_EQ(static_cast<uint8_t>(bytes[5]), 0x42);
    auto f = one_frame(bytes, 0x33);
    EXPECT_EQ(f.corr, 7u);
    EXPECT_EQ(codec::decode<sample_msg>(f), sample_msg{});

    // The client protocol goes through the same template with its own version.
    EXPECT_EQ(static_cast<uint8_t>(p::encode(p::ping_msg{})[4]), client_protocol_version);
}

TEST(Codec, OutOfRangeBoolsAndEnumsAreBadValuesNotMalformed) {
    auto body = body_of(sample_msg{});
    sample_msg m;
    EXPECT_EQ(codec::read_fields(body, m), codec::read_result::ok);
    auto bad_bool = body;
    bad_bool[0] = 2;
    EXPECT_EQ(codec::read_fields(bad_bool, m), codec::read_result::bad_value);
    EXPECT_FALSE(codec::read_body(bad_bool, m));
    auto bad_enum = body;
    bad_enum[2] = 3;
    EXPECT_EQ(codec::read_fields(bad_enum, m), codec::read_result::bad_value);
    EXPECT_FALSE(codec::read_body(bad_enum, m));
    // A structural fault wins over a bad value.
    EXPECT_EQ(codec::read_fields(bad_enum + "x", m), codec::read_result::malformed);
}

TEST(Codec, AVectorCountTheBodyCannotHoldIsRefused) {
    sample_msg m;
    auto body = body_of(m);
    // The count is the last field; each entry takes at least 3 bytes (u8 + str16 length).
    body.replace(body.size() - 4, 4, std::string("\x00\x01\x00\x00", 4));
    EXPECT_EQ(codec::read_fields(body, m), codec::read_result::malformed);
    EXPECT_TRUE(m.items.empty());
}

TEST(Codec, RoundTripsEveryClientMessage) {
    uint32_t corr = 100;
    std::apply(
        [&](const auto&... msgs) {
            auto one = [&](const auto& m) {
                using M = std::decay_t<decltype(m)>;
                auto bytes = p::encode(m, ++corr);
                auto f = one_frame(bytes);
                EXPECT_EQ(f.op, static_cast<uint8_t>(M::opcode));
                EXPECT_EQ(f.corr, corr);
                auto back = p::decode<M>(f);
                ASSERT_TRUE(back) << p::to_string(M::opcode);
                EXPECT_EQ(*back, m) << p::to_string(M::opcode);
                // Appending to a buffer writes the same bytes.
                std::string out = "prefix";
                p::encode(out, m, corr);
                EXPECT_EQ(out, "prefix" + bytes);
            };
            (one(msgs), ...);
        },
        client_samples());
}

TEST(Codec, EveryTruncationOfEveryClientBodyIsRefused) {
    std::apply(
        [&](const auto&... msgs) {
            auto one = [&](const auto& m) {
                using M = std::decay_t<decltype(m)>;
                auto body = body_of(m);
                for (size_t n = 0; n < body.size(); ++n) {
                    M out;
                    EXPECT_FALSE(p::read_body(std::string_view(body).substr(0, n), out))
                        << p::to_string(M::opcode) << " cut at " << n;
                }
                M out;
                EXPECT_TRUE(p::read_body(body, out)) << p::to_string(M::opcode);
                EXPECT_FALSE(p::read_body(body + "x", out)) << p::to_string(M::opcode);
            };
            (one(msgs), ...);
        },
        client_samples());
}

TEST(Codec, ClientEnumsOutsideTheirRangeAreRefused) {
    auto kick = body_of(p::kick_msg{p::kick_reason::admin, 0, ""});
    for (uint8_t r : {0, 7, 255}) {
        kick[0] = static_cast<char>(r);
        p::kick_msg m;
        EXPECT_FALSE(p::read_body(kick, m)) << int(r);
    }
    auto err = body_of(p::error_msg{p::code::internal, "x"});
    err[0] = 0;
    err[1] = 9;  // between ok/offline and bad_frame: no such code
    p::error_msg e;
    EXPECT_FALSE(p::read_body(err, e));
    auto del = body_of(p::deliver_msg{});
    del[8] = 0;  // kind
    p::deliver_msg d;
    EXPECT_FALSE(p::read_body(del, d));
}

// A SEND with a kind out of range is still answered (bad_request), so its fields must decode.
TEST(Codec, DecodeSendKeepsABadKindAnswerable) {
    p::send_msg s{p::target_kind::user, "bob", 42, "hello"};
    frame f = one_frame(p::encode(s));
    auto ok = p::decode_send(f);
    ASSERT_TRUE(ok);
    EXPECT_TRUE(ok->kind_valid);
    EXPECT_EQ(ok->msg, s);

    f.body[0] = 9;
    EXPECT_FALSE(p::decode<p::send_msg>(f));
    auto lenient = p::decode_send(f);
    ASSERT_TRUE(lenient);
    EXPECT_FALSE(lenient->kind_valid);
    EXPECT_EQ(lenient->msg.client_msg_id, 42u);
    EXPECT_EQ(lenient->msg.target, "bob");
    EXPECT_EQ(lenient->msg.payload, "hello");

    frame cut = f;
    cut.body.pop_back();
    EXPECT_FALSE(p::decode_send(cut));
    frame other = f;
    other.op = static_cast<uint8_t>(p::op::ack);
    EXPECT_FALSE(p::decode_send(other));
}
