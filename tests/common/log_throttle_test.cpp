#include "common/log_throttle.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <sstream>

namespace imgate {
namespace {

TEST(LogThrottle, LetsABurstThroughThenAFewPerSecondAndCountsTheRest) {
    manual_clock clock;
    log_throttle t(2, 3, clock);
    uint64_t s = 99;
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(t.admit(&s)) << i;
        EXPECT_EQ(s, 0u);
    }
    for (int i = 0; i < 1000; ++i) EXPECT_FALSE(t.admit(&s));
    clock.advance(std::chrono::milliseconds(499));
    EXPECT_FALSE(t.admit(&s));
    clock.advance(std::chrono::milliseconds(1));
    ASSERT_TRUE(t.admit(&s));
    EXPECT_EQ(s, 1001u);  // the next admitted line reports every refused one
    EXPECT_FALSE(t.admit(&s));
    clock.advance(std::chrono::milliseconds(500));
    ASSERT_TRUE(t.admit(&s));
    EXPECT_EQ(s, 1u);
    EXPECT_EQ(t.suppressed_total(), 1002u);
}

TEST(LogThrottle, SuppressedNoteSaysHowManyLinesWereLeftOut) {
    EXPECT_EQ(suppressed_note(0), "");
    EXPECT_EQ(suppressed_note(1), " (1 similar line suppressed)");
    EXPECT_EQ(suppressed_note(4653), " (4653 similar lines suppressed)");
}

TEST(LogThrottle, MacroWritesAtMostTheBurstFromOneCallSite) {
    std::ostringstream out_;
    auto before = spdlog::default_logger();
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("t", sink));
    for (int i = 0; i < 100; ++i) IMGATE_LOG_THROTTLED(warn, "refused {} of {}", i, 100);
    for (int i = 0; i < 100; ++i) IMGATE_LOG_THROTTLED(warn, "no arguments");
    spdlog::set_default_logger(before);
    std::string s = out_.str();
    size_t lines = std::count(s.begin(), s.end(), '\n');
    EXPECT_EQ(lines, 10u) << s;  // five from each call site (default burst)
    EXPECT_NE(s.find("refused 4 of 100"), std::string::npos) << s;
    EXPECT_EQ(s.find("refused 5 of 100"), std::string::npos) << s;
}

}  // namespace
}  // namespace imgate
