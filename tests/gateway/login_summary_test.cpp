#include "gateway/login_summary.hpp"

#include <gtest/gtest.h>

#include <string>

using imgate::gw::login_summary;
using namespace std::chrono_literals;

TEST(LoginSummary, NoFailuresNoLine) {
    login_summary s;
    EXPECT_EQ(s.take(10s), "");
}

TEST(LoginSummary, CountsByResultAndTopSourcesThenStartsAfresh) {
    login_summary s(1024, 2);
    for (int i = 0; i < 400; ++i) s.failed("auth_failed", "203.0.113.9");
    for (int i = 0; i < 100; ++i) s.failed("auth_failed", "198.51.100.4");
    for (int i = 0; i < 23; ++i) s.failed("token_expired", "192.0.2.1");
    EXPECT_EQ(s.pending(), 523u);
    EXPECT_EQ(s.take(10s),
              "login failures in the last 10 s: 523 (auth_failed 500, token_expired 23); top "
              "sources: 203.0.113.9 (400), 198.51.100.4 (100); +23 more");
    EXPECT_EQ(s.pending(), 0u);
    EXPECT_EQ(s.take(10s), "");
    s.failed("rate_limited", "192.0.2.7");
    EXPECT_EQ(s.take(1500ms),
              "login failures in the last 1500 ms: 1 (rate_limited 1); top sources: 192.0.2.7 "
              "(1)");
}

TEST(LoginSummary, SourcesPastTheCapAreCountedButNotTracked) {
    login_summary s(3, 5);
    for (int i = 0; i < 1000; ++i) s.failed("auth_failed", "10.0.0." + std::to_string(i % 250));
    auto line = s.take(10s);
    EXPECT_NE(line.find(": 1000 (auth_failed 1000)"), std::string::npos) << line;
    // Three addresses tracked (4 failures each), the other 988 failures summed up.
    EXPECT_NE(line.find("10.0.0.0 (4), 10.0.0.1 (4), 10.0.0.2 (4); +988 more"), std::string::npos)
        << line;
}
