#include "dispatcher/health.hpp"

#include <gtest/gtest.h>

using namespace imgate;
using namespace imgate::disp;
using namespace std::chrono_literals;

namespace {

gateway_status serving(uint64_t conns = 0, uint64_t max = 1000) {
    gateway_status s;
    s.id = "gw1";
    s.state = "serving";
    s.connections = conns;
    s.max_connections = max;
    s.version = "t";
    s.uptime_s = 100;
    return s;
}

health_params params() {
    health_params p;
    p.rise = 2;
    p.fall = 3;
    p.slow_start = 10s;
    p.high_water = 0.9;
    p.low_water = 0.8;
    return p;
}

}  // namespace

TEST(Health, StartsDownAndNeedsRiseGoodPulls) {
    manual_clock clk;
    gateway_health h(false);
    auto p = params();
    EXPECT_EQ(h.state(100), gw_state::down);
    h.pull_ok(serving(), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::down);
    EXPECT_EQ(h.good_in_row(), 1u);
    h.pull_ok(serving(), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::up);
}

// in_transition drives the poller's fast_interval: true only while some pulls have counted
// towards rise (from down) or fall (from up) but not enough yet.
TEST(Health, InTransitionOnlyBetweenStates) {
    manual_clock clk;
    gateway_health h(false);
    auto p = params();                // rise 2, fall 3
    EXPECT_FALSE(h.in_transition());  // down, nothing good seen
    h.pull_failed("refused", clk.now(), p);
    EXPECT_FALSE(h.in_transition());  // down and failing: the normal interval
    h.pull_ok(serving(), clk.now(), p);
    EXPECT_TRUE(h.in_transition());  // 1 of 2 towards up
    h.pull_ok(serving(), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::up);
    EXPECT_FALSE(h.in_transition());
    h.pull_failed("timeout", clk.now(), p);
    EXPECT_TRUE(h.in_transition());  // 1 of 3 towards down
    h.pull_failed("timeout", clk.now(), p);
    EXPECT_TRUE(h.in_transition());
    h.pull_failed("timeout", clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::down);
    EXPECT_FALSE(h.in_transition());
    h.pull_ok(serving(), clk.now(), p);
    EXPECT_TRUE(h.in_transition());
    h.pull_failed("timeout", clk.now(), p);
    EXPECT_FALSE(h.in_transition());  // the rise progress is reset by a failure
}

TEST(Health, FailureResetsRiseProgress) {
    manual_clock clk;
    gateway_health h(false);
    auto p = params();
    h.pull_ok(serving(), clk.now(), p);
    h.pull_failed("timeout", clk.now(), p);
    h.pull_ok(serving(), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::down);
    h.pull_ok(serving(), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::up);
}

TEST(Health, GoesDownOnlyAfterFallFailedPullsInARow) {
    manual_clock clk;
    gateway_health h(false);
    auto p = params();  // fall = 3
    h.pull_ok(serving(), clk.now(), p);
    h.pull_ok(serving(), clk.now(), p);
    h.pull_failed("a", clk.now(), p);
    h.pull_failed("b", clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::up);
    h.pull_ok(serving(), clk.now(), p);  // resets the fall count
    h.pull_failed("c", clk.now(), p);
    h.pull_failed("d", clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::up);
    h.pull_failed("e", clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::down);
    EXPECT_EQ(h.last_error(), "e");
    ASSERT_TRUE(h.down_since().has_value());
}

TEST(Health, NoSlowStartForTheStartUpFleetButAfterComingBack) {
    manual_clock clk;
    gateway_health h(false);
    auto p = params();
    h.pull_ok(serving(), clk.now(), p);
    h.pull_ok(serving(), clk.now(), p);
    EXPECT_DOUBLE_EQ(h.slow_start_factor(clk.now(), p), 1.0);
    for (int i = 0; i < 3; ++i) h.pull_failed("x", clk.now(), p);
    ASSERT_EQ(h.state(100), gw_state::down);
    h.pull_ok(serving(), clk.now(), p);
    h.pull_ok(serving(), clk.now(), p);
    ASSERT_EQ(h.state(100), gw_state::up);
    EXPECT_DOUBLE_EQ(h.slow_start_factor(clk.now(), p), 0.05);  // a trickle at once
    clk.advance(4s);
    EXPECT_NEAR(h.slow_start_factor(clk.now(), p), 0.4, 1e-9);
    clk.advance(6s);
    EXPECT_DOUBLE_EQ(h.slow_start_factor(clk.now(), p), 1.0);
    clk.advance(60s);
    EXPECT_DOUBLE_EQ(h.slow_start_factor(clk.now(), p), 1.0);
}

TEST(Health, AddedGatewayIsSlowStartedOnFirstUp) {
    manual_clock clk;
    gateway_health h(true);
    auto p = params();
    h.pull_ok(serving(), clk.now(), p);
    h.pull_ok(serving(), clk.now(), p);
    clk.advance(5s);
    EXPECT_NEAR(h.slow_start_factor(clk.now(), p), 0.5, 1e-9);
}

TEST(Health, RestartedProcessIsRampedAgain) {
    manual_clock clk;
    gateway_health h(false);
    auto p = params();
    h.pull_ok(serving(), clk.now(), p);
    h.pull_ok(serving(), clk.now(), p);
    auto restarted = serving();
    restarted.uptime_s = 0.5;  // was 100: the process restarted between two pulls
    h.pull_ok(restarted, clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::up);
    EXPECT_DOUBLE_EQ(h.slow_start_factor(clk.now(), p), 0.05);
}

TEST(Health, OverloadHasHysteresis) {
    manual_clock clk;
    gateway_health h(false);
    auto p = params();  // high 0.9, low 0.8
    h.pull_ok(serving(850), clk.now(), p);
    h.pull_ok(serving(850), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::up);
    h.pull_ok(serving(900), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::overloaded);
    h.pull_ok(serving(850), clk.now(), p);  // below high water but above low water: still out
    EXPECT_EQ(h.state(100), gw_state::overloaded);
    h.pull_ok(serving(801), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::overloaded);
    h.pull_ok(serving(800), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::up);
    h.pull_ok(serving(899), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::up);
}

TEST(Health, ReportedLoadAndFullCountAsOverload) {
    manual_clock clk;
    gateway_health h(false);
    auto p = params();
    auto s = serving(10);
    s.load = 0.95;
    h.pull_ok(s, clk.now(), p);
    h.pull_ok(s, clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::overloaded);
    auto f = serving(10);
    f.full = true;
    h.pull_ok(f, clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::overloaded);
    h.pull_ok(serving(10), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::up);
}

TEST(Health, DrainingAndStoppingAreNotHandedOut) {
    manual_clock clk;
    gateway_health h(false);
    auto p = params();
    auto d = serving();
    d.state = "draining";
    h.pull_ok(d, clk.now(), p);
    h.pull_ok(d, clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::draining);
    d.state = "stopping";
    h.pull_ok(d, clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::draining);
    h.pull_ok(serving(), clk.now(), p);
    EXPECT_EQ(h.state(100), gw_state::up);
}

TEST(Health, WeightZeroIsDisabledWhateverTheHealth) {
    manual_clock clk;
    gateway_health h(false);
    auto p = params();
    EXPECT_EQ(h.state(0), gw_state::disabled);
    h.pull_ok(serving(), clk.now(), p);
    h.pull_ok(serving(), clk.now(), p);
    EXPECT_EQ(h.state(0), gw_state::disabled);
    EXPECT_EQ(h.state(1), gw_state::up);
}

TEST(Health, UtilisationCountsExtraPicks) {
    manual_clock clk;
    gateway_health h(false);
    auto p = params();
    h.pull_ok(serving(100, 1000), clk.now(), p);
    EXPECT_DOUBLE_EQ(h.utilisation(0), 0.1);
    EXPECT_DOUBLE_EQ(h.utilisation(400), 0.5);
    EXPECT_DOUBLE_EQ(h.utilisation(5000), 1.0);
}
