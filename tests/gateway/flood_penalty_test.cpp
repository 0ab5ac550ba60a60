#include "gateway/flood_penalty.hpp"

#include <gtest/gtest.h>

#include <string>

using imgate::gw::flood_penalty;
using namespace std::chrono_literals;

namespace {
const flood_penalty::clock::time_point t0{std::chrono::seconds(1000)};
}

TEST(FloodPenalty, PenalisedUntilTheEndThenFree) {
    flood_penalty p;
    EXPECT_FALSE(p.until("mallory", t0));
    p.penalise("mallory", t0 + 30s, t0);
    ASSERT_TRUE(p.until("mallory", t0 + 1s));
    EXPECT_EQ(*p.until("mallory", t0 + 29s), t0 + 30s);
    EXPECT_FALSE(p.until("alice", t0 + 1s));
    EXPECT_FALSE(p.until("mallory", t0 + 30s));
    EXPECT_EQ(p.size(), 0u);  // the expired entry was dropped
}

TEST(FloodPenalty, APenaltyAgainReplacesTheFirst) {
    flood_penalty p;
    p.penalise("mallory", t0 + 30s, t0);
    p.penalise("mallory", t0 + 40s, t0 + 10s);
    EXPECT_EQ(p.size(), 1u);
    EXPECT_EQ(*p.until("mallory", t0 + 35s), t0 + 40s);
}

TEST(FloodPenalty, FullTableEvictsTheOldestPenalty) {
    flood_penalty p(3);
    p.penalise("u1", t0 + 30s, t0);
    p.penalise("u2", t0 + 31s, t0 + 1s);
    p.penalise("u3", t0 + 32s, t0 + 2s);
    p.penalise("u1", t0 + 33s, t0 + 3s);  // u1 again: now the newest, nothing evicted
    EXPECT_EQ(p.evicted(), 0u);
    p.penalise("u4", t0 + 34s, t0 + 4s);  // full: u2 (oldest) goes
    EXPECT_EQ(p.size(), 3u);
    EXPECT_EQ(p.evicted(), 1u);
    EXPECT_FALSE(p.until("u2", t0 + 5s));
    EXPECT_TRUE(p.until("u1", t0 + 5s));
    EXPECT_TRUE(p.until("u3", t0 + 5s));
    EXPECT_TRUE(p.until("u4", t0 + 5s));
}

TEST(FloodPenalty, ManyUsersStayBounded) {
    flood_penalty p(100);
    for (int i = 0; i < 10000; ++i)
        p.penalise("user" + std::to_string(i), t0 + 30s, t0 + std::chrono::milliseconds(i));
    EXPECT_EQ(p.size(), 100u);
    EXPECT_TRUE(p.until("user9999", t0 + 11s));
    EXPECT_FALSE(p.until("user0", t0 + 11s));
}
