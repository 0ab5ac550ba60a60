// The one id rule (src/common/ids.hpp): what apps really use passes, what can hide, spoof or
// break a display does not.
#include <gtest/gtest.h>

#include <string>

#include "common/ids.hpp"

using namespace imgate;

TEST(Ids, RealWorldIdsPass) {
    for (std::string id :
         {"alice", "carol@example.com", "x#y", "Zoë", "王伟", "Ελένη", "محمد", "😀party",
          "user+tag@mail.example", "O'Brien", "a/b:c=d", "device-7f3a.phone_2"})
        EXPECT_EQ(ids::check(id), ids::id_error::none) << id;
}

TEST(Ids, LengthIsCountedInBytesAndBounded) {
    EXPECT_EQ(ids::check(""), ids::id_error::empty);
    EXPECT_EQ(ids::check(std::string(ids::max_bytes, 'a')), ids::id_error::none);
    EXPECT_EQ(ids::check(std::string(ids::max_bytes + 1, 'a')), ids::id_error::too_long);
    // "王伟" is 6 bytes of UTF-8.
    EXPECT_EQ(ids::check("王伟", 6), ids::id_error::none);
    EXPECT_EQ(ids::check("王伟", 5), ids::id_error::too_long);
    // A configured limit above the hard bound is the hard bound.
    EXPECT_EQ(ids::check(std::string(ids::max_bytes + 1, 'a'), 1 << 20), ids::id_error::too_long);
}

TEST(Ids, MalformedUtf8IsRefused) {
    for (std::string id :
         {std::string("\xff"), std::string("a\x80"), std::string("\xc0\xaf"),
          std::string("\xe0\x80\xaf"), std::string("\xed\xa0\x80"), std::string("\xf4\x90\x80\x80"),
          std::string("\xe4\xb8"), std::string("\xf8\x88\x80\x80\x80")})
        EXPECT_EQ(ids::check(id), ids::id_error::bad_utf8) << ::testing::PrintToString(id);
}

TEST(Ids, ControlWhitespaceAndInvisibleFormattingAreRefused) {
    for (std::string id :
         {std::string("a b"), std::string("a\tb"), std::string("a\nb"), std::string("a\0b", 3),
          std::string("a\x7f"), std::string("a\u00a0b"), std::string("a\u0085"),
          std::string("al\u200bice"), std::string("\u202eecila"), std::string("a\u2066b"),
          std::string("\ufeffbob"), std::string("a\u3000b"), std::string("a\u2028b"),
          std::string("x\U0010fffe")})
        EXPECT_EQ(ids::check(id), ids::id_error::forbidden) << ::testing::PrintToString(id);
}

TEST(Ids, NodeIdsStayPlainAscii) {
    EXPECT_TRUE(ids::valid_node_id("gw-1.eu_west"));
    EXPECT_FALSE(ids::valid_node_id(""));
    EXPECT_FALSE(ids::valid_node_id("gw 1"));
    EXPECT_FALSE(ids::valid_node_id("gw@1"));
    EXPECT_FALSE(ids::valid_node_id("Zoë"));
    EXPECT_FALSE(ids::valid_node_id(std::string(65, 'g')));
}
