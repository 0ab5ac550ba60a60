#include "gateway/login_limiter.hpp"

#include <gtest/gtest.h>

using imgate::gw::login_limiter;
using namespace std::chrono_literals;

namespace {
const login_limiter::clock::time_point t0{std::chrono::seconds(1000)};
}

TEST(LoginLimiter, BurstThenRate) {
    login_limiter l(10, 5);
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(l.allow("1.2.3.4", t0)) << i;
    EXPECT_FALSE(l.allow("1.2.3.4", t0));
    // 10/s: one token every 100 ms.
    EXPECT_FALSE(l.allow("1.2.3.4", t0 + 50ms));
    EXPECT_TRUE(l.allow("1.2.3.4", t0 + 150ms));
    EXPECT_FALSE(l.allow("1.2.3.4", t0 + 160ms));
    // Refills to the burst, never beyond.
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(l.allow("1.2.3.4", t0 + 60s)) << i;
    EXPECT_FALSE(l.allow("1.2.3.4", t0 + 60s));
}

TEST(LoginLimiter, AddressesAreIndependent) {
    login_limiter l(1, 2);
    EXPECT_TRUE(l.allow("a", t0));
    EXPECT_TRUE(l.allow("a", t0));
    EXPECT_FALSE(l.allow("a", t0));
    EXPECT_TRUE(l.allow("b", t0));
    EXPECT_TRUE(l.allow("b", t0));
    EXPECT_FALSE(l.allow("b", t0));
}

TEST(LoginLimiter, ZeroRateDisables) {
    login_limiter l(0, 1);
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(l.allow("a", t0));
    EXPECT_EQ(l.tracked(), 0u);
}

TEST(LoginLimiter, SetLimitsAppliesToExistingBuckets) {
    login_limiter l(1, 100);
    EXPECT_TRUE(l.allow("a", t0));
    l.set_limits(1, 2);
    EXPECT_TRUE(l.allow("a", t0));
    EXPECT_TRUE(l.allow("a", t0));
    EXPECT_FALSE(l.allow("a", t0));
    l.set_limits(0, 2);
    EXPECT_TRUE(l.allow("a", t0));
}

TEST(LoginLimiter, TableIsBoundedRefilledBucketsPrunedFullTableFailsOpen) {
    login_limiter l(1, 1, 3);
    EXPECT_TRUE(l.allow("a", t0));
    EXPECT_TRUE(l.allow("b", t0));
    EXPECT_TRUE(l.allow("c", t0));
    EXPECT_EQ(l.tracked(), 3u);
    // Full, nothing refilled yet: a new address is let through but not tracked.
    EXPECT_TRUE(l.allow("d", t0));
    EXPECT_EQ(l.tracked(), 3u);
    EXPECT_EQ(l.untracked(), 1u);
    // Tracked addresses are still limited.
    EXPECT_FALSE(l.allow("a", t0));
    // Two seconds later every bucket has refilled: pruned, and "e" gets a bucket.
    EXPECT_TRUE(l.allow("e", t0 + 2s));
    EXPECT_EQ(l.tracked(), 1u);
    EXPECT_FALSE(l.allow("e", t0 + 2s));
}
