#include "common/token_bucket.hpp"

#include <gtest/gtest.h>

using imgate::token_bucket;
using namespace std::chrono_literals;
using steady_time = token_bucket::time_point;

TEST(TokenBucket, BurstThenRate) {
    steady_time t0{};
    token_bucket b(10, 3, t0);  // 10/s, burst 3
    EXPECT_TRUE(b.take(t0));
    EXPECT_TRUE(b.take(t0));
    EXPECT_TRUE(b.take(t0));
    EXPECT_FALSE(b.take(t0));
    EXPECT_FALSE(b.take(t0 + 50ms));  // half a token
    EXPECT_TRUE(b.take(t0 + 100ms));
    EXPECT_FALSE(b.take(t0 + 100ms));
    // A long pause refills only up to the burst.
    auto t1 = t0 + 10s;
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.take(t1));
    EXPECT_FALSE(b.take(t1));
}

TEST(TokenBucket, ReloadCapsStoredTokens) {
    steady_time t0{};
    token_bucket b(10, 100, t0);
    b.set_limits(1, 2, t0);
    EXPECT_TRUE(b.take(t0));
    EXPECT_TRUE(b.take(t0));
    EXPECT_FALSE(b.take(t0));
    EXPECT_TRUE(b.take(t0 + 1s));
}

TEST(TokenBucket, FullAtTellsWhenNoHistoryIsLeft) {
    steady_time t0{};
    token_bucket b(2, 4, t0);
    EXPECT_TRUE(b.full_at(t0));
    EXPECT_TRUE(b.take(t0));
    EXPECT_FALSE(b.full_at(t0));
    EXPECT_FALSE(b.full_at(t0 + 400ms));
    EXPECT_TRUE(b.full_at(t0 + 500ms));
}
