#include "common/backoff.hpp"

#include <gtest/gtest.h>

#include <random>
#include <set>

using namespace imgate;
using namespace std::chrono_literals;

TEST(Backoff, InjectedSourceGrowsCapsJittersOverTheUpperHalfAndResets) {
    double r = 0.0;
    backoff b(100ms, 1000ms, [&] { return r; });
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

TEST(Backoff, AServerHintLongerThanTheDelayWins) {
    backoff b(100ms, 1000ms, [] { return 0.0; });
    EXPECT_EQ(b.next(300ms), 300ms);  // base 100 -> 50, the floor wins
    EXPECT_EQ(b.next(10ms), 100ms);   // base 200 -> 100, longer than the floor
    EXPECT_EQ(b.attempts(), 2u);
}

TEST(Backoff, ACallerOwnedGeneratorDrawsOverTheUpperHalf) {
    std::mt19937_64 rng(7);
    backoff b(100ms, 400ms);
    std::set<int64_t> seen;
    for (int i = 0; i < 50; ++i) {
        b.reset();
        auto d = b.next(rng);
        EXPECT_GE(d, 50ms);
        EXPECT_LE(d, 100ms);
        seen.insert(d.count());
    }
    EXPECT_GT(seen.size(), 3u);
    b.next(rng);  // base 200
    b.next(rng);  // base 400
    for (int i = 0; i < 20; ++i) {
        auto d = b.next(rng);
        EXPECT_GE(d, 200ms);
        EXPECT_LE(d, 400ms);
    }
}

TEST(Backoff, OutOfRangeDrawsAreClampedAndALongRunStaysCapped) {
    double r = -3;
    backoff b(100ms, 1000ms, [&] { return r; });
    EXPECT_EQ(b.next(), 50ms);
    r = 7;
    for (int i = 0; i < 200; ++i)
        EXPECT_EQ(b.next(), i == 0 ? 200ms : i == 1 ? 400ms : i == 2 ? 800ms : 1000ms);
}
