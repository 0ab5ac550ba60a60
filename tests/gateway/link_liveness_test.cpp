#include "gateway/link_liveness.hpp"

#include <gtest/gtest.h>

#include <utility>

using namespace imgate::gw;
using namespace std::chrono_literals;
using action = rpc::link_liveness::action;

namespace {

const auto t0 = rpc::link_liveness::clock::time_point{} + 1h;

}  // namespace

TEST(LinkLiveness, TickCatchesBothDeadlinesButNeverSpins) {
    EXPECT_EQ(rpc::link_liveness::tick(1000ms, 3000ms), 500ms);
    EXPECT_EQ(rpc::link_liveness::tick(5000ms, 1000ms), 250ms);
    EXPECT_EQ(rpc::link_liveness::tick(4ms, 8ms), 10ms);
}

TEST(LinkLiveness, DiallerPingsAQuietLinkOncePerInterval) {
    rpc::link_liveness l(1000ms, 3000ms, true, t0);
    EXPECT_EQ(l.on_tick(t0 + 500ms, true, true, std::nullopt), action::none);
    EXPECT_EQ(l.on_tick(t0 + 1500ms, false, false, std::nullopt), action::ping);
    // The ping is a write; the read side is still quiet but the ping interval has not passed.
    EXPECT_EQ(l.on_tick(t0 + 2000ms, false, false, std::nullopt), action::none);
    EXPECT_EQ(l.on_tick(t0 + 2500ms, true, false, std::nullopt), action::ping);
}

TEST(LinkLiveness, DiallerThatOnlyWritesStillPingsSoItsReadDeadlineNeverFires) {
    rpc::link_liveness l(1000ms, 2500ms, true, t0);
    int pings = 0;
    bool pong_due = false;
    for (auto t = 250ms; t <= 10s; t += 250ms) {
        // Announcements go out on every tick; the only reads are the PONGs, one tick after each
        // ping.
        auto a = l.on_tick(t0 + t, std::exchange(pong_due, false), true, std::nullopt);
        ASSERT_NE(a, action::close_read_timeout) << t.count();
        if (a == action::ping) {
            ++pings;
            pong_due = true;
        }
    }
    // A ping each time the read side has been quiet for ping_interval: one per 1250ms.
    EXPECT_EQ(pings, 8);
}

TEST(LinkLiveness, AcceptorNeverPingsAndClosesASilentPeer) {
    rpc::link_liveness l(1000ms, 3000ms, false, t0);
    EXPECT_EQ(l.on_tick(t0 + 1500ms, false, false, std::nullopt), action::none);
    EXPECT_EQ(l.on_tick(t0 + 3000ms, false, true, std::nullopt), action::none);
    EXPECT_EQ(l.on_tick(t0 + 3001ms, false, true, std::nullopt), action::close_read_timeout);
}

TEST(LinkLiveness, AWriteStuckForPeerTimeoutClosesTheLink) {
    rpc::link_liveness l(1000ms, 3000ms, false, t0);
    auto started = t0 + 100ms;
    EXPECT_EQ(l.on_tick(t0 + 3000ms, true, false, started), action::none);
    EXPECT_EQ(l.on_tick(t0 + 3101ms, true, false, started), action::close_write_stall);
}
