// Issue 14 on the dispatcher side, socket-free: the `reconnect:` and `rebalance:` blocks of
// dispatcher.yaml, the reconnect object of a 200 answer, the spread 503 retry hint, the
// rebalancing planner and fleet_state's load snapshot it reads.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "../support/process.hpp"
#include "dispatcher/dispatcher_config.hpp"
#include "dispatcher/fleet_state.hpp"
#include "dispatcher/query.hpp"
#include "dispatcher/rebalance.hpp"

using namespace imgate;
using namespace imgate::disp;
using namespace std::chrono_literals;

namespace {

const char* fleet_yaml = R"(gateways:
  - {id: gw1, client: 127.0.0.1:9001, admin: 127.0.0.1:9101, rpc: 127.0.0.1:9201}
)";

struct config_files {
    test::temp_dir d;
    config_files() {
        test::write_file(d.file("fleet.yaml"), fleet_yaml);
        test::write_secret_file(d.file("admin.token"), "storm-admin-token-0123456789\n");
    }
    dispatcher_config load(const std::string& body) {
        test::write_file(d.file("dispatcher.yaml"), "fleet: fleet.yaml\n" + body);
        return load_dispatcher_config(d.file("dispatcher.yaml"));
    }
    std::string error(const std::string& body) {
        try {
            load(body);
        } catch (const config_error& e) {
            return e.what();
        }
        return "accepted";
    }
};

gateway_load gw(const std::string& id, uint64_t conns, uint32_t weight = 100,
                gw_state st = gw_state::up, bool slow = false) {
    gateway_load g;
    g.id = id;
    g.admin = {"127.0.0.1", static_cast<uint16_t>(9100 + id.back() - '0')};
    g.state = st;
    g.weight = weight;
    g.slow_start = slow;
    g.connections = conns;
    return g;
}

rebalance_settings settings() {
    rebalance_settings s;
    s.enabled = true;
    return s;
}

}  // namespace

TEST(StormConfig, DefaultsWhenTheBlocksAreAbsent) {
    config_files f;
    auto c = f.load("");
    EXPECT_EQ(c.reconnect.base, 500ms);
    EXPECT_EQ(c.reconnect.max, 30s);
    EXPECT_EQ(c.reconnect.jitter, 1s);
    EXPECT_FALSE(c.rebalance.enabled);
    EXPECT_DOUBLE_EQ(c.rebalance.threshold, 0.10);
    EXPECT_DOUBLE_EQ(c.rebalance.rate, 200);
    EXPECT_EQ(c.rebalance.max_per_request, 2000u);
    EXPECT_EQ(c.rebalance.interval, 5s);
}

TEST(StormConfig, ReadsEveryKey) {
    config_files f;
    auto c = f.load(
        "reconnect: {base: 250ms, max: 2m, jitter: 0}\n"
        "rebalance: {enabled: true, threshold: 0.25, rate: 37.5, max_per_request: 9, "
        "interval: 750ms, token_file: admin.token}\n");
    EXPECT_EQ(c.reconnect.base, 250ms);
    EXPECT_EQ(c.reconnect.max, 120s);
    EXPECT_EQ(c.reconnect.jitter, 0ms);
    EXPECT_TRUE(c.rebalance.enabled);
    EXPECT_DOUBLE_EQ(c.rebalance.threshold, 0.25);
    EXPECT_DOUBLE_EQ(c.rebalance.rate, 37.5);
    EXPECT_EQ(c.rebalance.max_per_request, 9u);
    EXPECT_EQ(c.rebalance.interval, 750ms);
    EXPECT_FALSE(c.rebalance.token.empty());
    EXPECT_TRUE(c.admin.token.empty()) << "the gateways' token must not become the admin token";
}

TEST(StormConfig, ErrorsNameFileLineAndKey) {
    config_files f;
    auto has = [](const std::string& what, const std::string& fragment) {
        return what.find(fragment) != std::string::npos;
    };
    // Line 1 is `fleet:`; the block starts on line 2.
    auto e = f.error("reconnect:\n  base: 0ms\n");
    EXPECT_TRUE(has(e, "dispatcher.yaml:3:3: reconnect.base: must be positive")) << e;
    e = f.error("reconnect:\n  base: 2s\n  max: 1s\n");
    EXPECT_TRUE(has(e, "dispatcher.yaml:4:3: reconnect.max: must be at least reconnect.base")) << e;
    e = f.error("reconnect: {max: 11m}\n");
    EXPECT_TRUE(has(e, "reconnect.max: must be at most 10m")) << e;
    e = f.error("reconnect: {base: 11m, max: 11m}\n");
    EXPECT_TRUE(has(e, "reconnect.base: must be at most 10m")) << e;
    e = f.error("reconnect: {jitter: 601s}\n");
    EXPECT_TRUE(has(e, "reconnect.jitter: must be at most 10m")) << e;
    e = f.error("reconnect: {jiter: 1s}\n");
    EXPECT_TRUE(has(e, "reconnect.jiter: unknown key")) << e;
    e = f.error("reconnect: {base: soon}\n");
    EXPECT_TRUE(has(e, "reconnect.base")) << e;

    e = f.error("rebalance:\n  enabled: true\n");
    EXPECT_TRUE(has(e, "dispatcher.yaml:3:3: rebalance.enabled: true needs rebalance.token_file"))
        << e;
    e = f.error("admin: {token_file: admin.token}\nrebalance: {enabled: true}\n");
    EXPECT_TRUE(has(e, "rebalance.enabled: true needs rebalance.token_file")) << e;
    e = f.error("rebalance: {rate: 0}\n");
    EXPECT_TRUE(has(e, "rebalance.rate: must be above 0")) << e;
    e = f.error("rebalance: {threshold: -0.1}\n");
    EXPECT_TRUE(has(e, "rebalance.threshold")) << e;
    e = f.error("rebalance: {max_per_request: 0}\n");
    EXPECT_TRUE(has(e, "rebalance.max_per_request")) << e;
    e = f.error("rebalance: {interval: 50ms}\n");
    EXPECT_TRUE(has(e, "rebalance.interval: must be at least 100ms")) << e;
    e = f.error("rebalance: {enabled: yes please}\n");
    EXPECT_TRUE(has(e, "rebalance.enabled")) << e;
    e = f.error("rebalance: {target: 5}\n");
    EXPECT_TRUE(has(e, "rebalance.target: unknown key")) << e;
    // Disabled without a token is fine: nothing will be sent.
    EXPECT_EQ(f.error("rebalance: {enabled: false, rate: 10}\n"), "accepted");
}

TEST(ReconnectAnswer, TheTopLevelCarriesThePolicyExactly) {
    std::vector<pick_target> t{{"gw1", {"127.0.0.1", 9001}}, {"gw2", {"127.0.0.1", 9002}}};
    reconnect_policy p{250, 0, 120000};
    EXPECT_EQ(render_pick(t, transport::tcp, &p),
              R"({"alternates":[{"host":"127.0.0.1","id":"gw2","port":9002,"transport":"tcp"}],)"
              R"("host":"127.0.0.1","id":"gw1","port":9001,)"
              R"("reconnect":{"base_ms":250,"jitter_ms":0,"max_ms":120000},"transport":"tcp"})");
    // The same bytes nlohmann::json would print, for ws too (url after transport).
    reconnect_policy d;
    auto s = render_pick(t, transport::ws, &d);
    auto j = nlohmann::json::parse(s);
    EXPECT_EQ(j.dump(), s);
    EXPECT_EQ(j["reconnect"],
              (nlohmann::json{{"base_ms", 500}, {"jitter_ms", 1000}, {"max_ms", 30000}}));
    EXPECT_FALSE(j["alternates"][0].contains("reconnect"));
}

TEST(RetryHint, SpreadOverBasePlusJitterWithCeilSeconds) {
    std::mt19937_64 rng(7);
    std::set<int64_t> seen;
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 2000; ++i) {
        auto ms = spread_retry_ms(1000, 1000, rng);
        ASSERT_GE(ms, 1000);
        ASSERT_LE(ms, 2000);
        lo = std::min(lo, ms);
        hi = std::max(hi, ms);
        seen.insert(ms);
    }
    EXPECT_GT(seen.size(), 500u);  // spread, not a handful of values
    EXPECT_LT(lo, 1100);           // both ends of the range are reached
    EXPECT_GT(hi, 1900);
    // Same seed, same sequence: the random source is the injected one.
    std::mt19937_64 a(99), b(99);
    for (int i = 0; i < 10; ++i)
        EXPECT_EQ(spread_retry_ms(0, 5000, a), spread_retry_ms(0, 5000, b));
    EXPECT_EQ(spread_retry_ms(3000, 0, rng), 3000);  // jitter 0: exactly the base

    EXPECT_EQ(retry_after_seconds(1000), 1);
    EXPECT_EQ(retry_after_seconds(1001), 2);
    EXPECT_EQ(retry_after_seconds(1999), 2);
    EXPECT_EQ(retry_after_seconds(2000), 2);
    EXPECT_EQ(retry_after_seconds(0), 1);
    EXPECT_EQ(render_no_gateway(1234), R"({"error":"no_gateway_available","retry_after_ms":1234})");
}

// 40 clients on gw1, gw2 joined empty: the first request asks gw1 to keep 20. Halfway through,
// 10 redirected clients are between gateways (gw1 30, gw2 0): counted from the connected ones
// only, the fair share would be 15 and gw1 asked to go down to 15. The floor keeps it at 20.
TEST(RebalancePlanner, ClientsInTransitDoNotLowerTheTarget) {
    auto first = plan_rebalance({gw("gw1", 40), gw("gw2", 0)}, settings());
    ASSERT_EQ(first.requests.size(), 1u);
    EXPECT_EQ(first.requests[0].target, 20u);
    auto naive = plan_rebalance({gw("gw1", 30), gw("gw2", 0)}, settings());
    ASSERT_EQ(naive.requests.size(), 1u);
    EXPECT_EQ(naive.requests[0].target, 15u) << "the failure the floor exists for";
    auto floored = plan_rebalance({gw("gw1", 30), gw("gw2", 0)}, settings(), 40);
    ASSERT_EQ(floored.requests.size(), 1u);
    EXPECT_EQ(floored.requests[0].target, 20u);
    EXPECT_EQ(floored.requests[0].max, 10u);
    // A floor below the connected total changes nothing.
    EXPECT_EQ(plan_rebalance({gw("gw1", 40), gw("gw2", 0)}, settings(), 7).requests[0].target, 20u);
}

TEST(TotalWindow, KeepsTheLargestTotalOfTheSpan) {
    steady_time t0{};
    total_window w(10s);
    EXPECT_EQ(w.max(t0), 0u);
    w.add(t0, 40);
    w.add(t0 + 1s, 30);
    w.add(t0 + 2s, 25);
    EXPECT_EQ(w.max(t0 + 2s), 40u);
    EXPECT_EQ(w.max(t0 + 10s), 40u);
    w.add(t0 + 11s, 38);
    EXPECT_EQ(w.max(t0 + 11s), 38u) << "40 is older than the span";
    w.add(t0 + 22s, 20);
    EXPECT_EQ(w.max(t0 + 22s), 20u) << "a total that stayed low for the span is believed";
    EXPECT_EQ(total_window::span_for(5s), 10s);
    EXPECT_EQ(total_window::span_for(30s), 60s);
    EXPECT_EQ(pool_total({gw("gw1", 40), gw("gw2", 5)}), 45u);
}

TEST(RebalancePlanner, AsksOnlyTheOverfullWhenSomeoneOutOfSlowStartIsBelowFair) {
    // 5000 over three equal weights: fair 1666.67 each; gw1 above 1833.3.
    auto p = plan_rebalance({gw("gw1", 3000), gw("gw2", 1000), gw("gw3", 1000)}, settings());
    EXPECT_TRUE(p.triggered);
    ASSERT_EQ(p.requests.size(), 1u);
    auto& r = p.requests[0];
    EXPECT_EQ(r.id, "gw1");
    EXPECT_EQ(r.admin.port, 9101);
    EXPECT_EQ(r.target, 1667u);  // ceil(1666.67)
    EXPECT_EQ(r.max, 1334u);     // ceil(3000 - 1666.67)
    EXPECT_DOUBLE_EQ(r.rate, 200);
    EXPECT_NEAR(p.fair.at("gw2"), 1666.67, 0.01);
    EXPECT_EQ(rebalance_body(r), R"({"max":1334,"rate":200,"target":1667})");
}

TEST(RebalancePlanner, ExactSharesAreNotRoundedUpAndMaxIsCapped) {
    auto s = settings();
    s.max_per_request = 500;
    s.rate = 12.5;
    // 6000 over weights 1:1:1 (exactly 2000 each); gw1 at 4000.
    auto p = plan_rebalance({gw("gw1", 4000, 1), gw("gw2", 1000, 1), gw("gw3", 1000, 1)}, s);
    ASSERT_EQ(p.requests.size(), 1u);
    EXPECT_EQ(p.requests[0].target, 2000u);
    EXPECT_EQ(p.requests[0].max, 500u);  // min(500, 2000)
    EXPECT_EQ(rebalance_body(p.requests[0]), R"({"max":500,"rate":12.5,"target":2000})");
}

TEST(RebalancePlanner, WeightsShapeTheFairShare) {
    // Weights 300:100: fair 3000 and 1000 of 4000; gw2 at 2000 is overfull, gw1 below.
    auto p = plan_rebalance({gw("gw1", 2000, 300), gw("gw2", 2000, 100)}, settings());
    ASSERT_EQ(p.requests.size(), 1u);
    EXPECT_EQ(p.requests[0].id, "gw2");
    EXPECT_EQ(p.requests[0].target, 1000u);
    EXPECT_EQ(p.requests[0].max, 1000u);
    EXPECT_DOUBLE_EQ(p.fair.at("gw1"), 3000);
}

TEST(RebalancePlanner, ThresholdIsStrict) {
    // 2000 + 1000 + 1000 over three: fair 1333.33, threshold 0.5 -> overfull above 2000.
    auto s = settings();
    s.threshold = 0.5;
    EXPECT_TRUE(
        plan_rebalance({gw("gw1", 2000), gw("gw2", 1000), gw("gw3", 1000)}, s).requests.empty());
    auto p = plan_rebalance({gw("gw1", 2001), gw("gw2", 1000), gw("gw3", 1000)}, s);
    ASSERT_EQ(p.requests.size(), 1u);
    // Within the default 10 % nobody is asked even though shares differ.
    EXPECT_TRUE(plan_rebalance({gw("gw1", 1050), gw("gw2", 950)}, settings()).requests.empty());
}

TEST(RebalancePlanner, NothingWhileEveryGatewayBelowFairIsInSlowStart) {
    auto p = plan_rebalance(
        {gw("gw1", 3000), gw("gw2", 0, 100, gw_state::up, true), gw("gw3", 3000)}, settings());
    EXPECT_FALSE(p.triggered);
    EXPECT_TRUE(p.requests.empty());
    EXPECT_DOUBLE_EQ(p.fair.at("gw2"), 2000);  // it still counts in the fair share
    // Once it is out of slow start, gw1 and gw3 (3000 > 2200) are both asked.
    p = plan_rebalance({gw("gw1", 3000), gw("gw2", 0), gw("gw3", 3000)}, settings());
    ASSERT_EQ(p.requests.size(), 2u);
    EXPECT_EQ(p.requests[0].id, "gw1");
    EXPECT_EQ(p.requests[1].id, "gw3");
    EXPECT_EQ(p.requests[1].target, 2000u);
    EXPECT_EQ(p.requests[1].max, 1000u);
    // An overfull gateway in slow start (restarted, refilled fast) is asked like any other.
    p = plan_rebalance({gw("gw1", 3000, 100, gw_state::up, true), gw("gw2", 0)}, settings());
    ASSERT_EQ(p.requests.size(), 1u);
    EXPECT_EQ(p.requests[0].id, "gw1");
}

TEST(RebalancePlanner, GatewaysThatCannotTakeClientsAreLeftOut) {
    for (auto st : {gw_state::draining, gw_state::overloaded, gw_state::disabled, gw_state::down,
                    gw_state::degraded}) {
        // gw3 holds many clients but cannot take more: not in the fair share, never asked.
        auto p =
            plan_rebalance({gw("gw1", 1500), gw("gw2", 500), gw("gw3", 9000, 100, st)}, settings());
        EXPECT_EQ(p.fair.count("gw3"), 0u) << to_string(st);
        ASSERT_EQ(p.requests.size(), 1u) << to_string(st);
        EXPECT_EQ(p.requests[0].id, "gw1");
        EXPECT_EQ(p.requests[0].target, 1000u);
        EXPECT_EQ(p.requests[0].max, 500u);
    }
    // Weight 0 at runtime (up by health but takes no clients).
    auto p = plan_rebalance({gw("gw1", 1500), gw("gw2", 500), gw("gw3", 9000, 0)}, settings());
    EXPECT_EQ(p.fair.count("gw3"), 0u);
    ASSERT_EQ(p.requests.size(), 1u);
}

TEST(RebalancePlanner, EdgeCases) {
    // Nothing at all, a single gateway, zero total weight, nobody connected.
    EXPECT_TRUE(plan_rebalance({}, settings()).requests.empty());
    auto one = plan_rebalance({gw("gw1", 5000)}, settings());
    EXPECT_TRUE(one.requests.empty());
    EXPECT_DOUBLE_EQ(one.fair.at("gw1"), 5000);
    auto zero = plan_rebalance({gw("gw1", 5000, 0), gw("gw2", 0, 0)}, settings());
    EXPECT_TRUE(zero.requests.empty());
    EXPECT_TRUE(zero.fair.empty());
    EXPECT_TRUE(plan_rebalance({gw("gw1", 0), gw("gw2", 0)}, settings()).requests.empty());
    // A gateway whose connections are unknown takes no part (neither count nor weight).
    auto unknown = gw("gw3", 0);
    unknown.connections.reset();
    auto p = plan_rebalance({gw("gw1", 1500), gw("gw2", 500), unknown}, settings());
    EXPECT_EQ(p.fair.count("gw3"), 0u);
    ASSERT_EQ(p.requests.size(), 1u);
    EXPECT_EQ(p.requests[0].target, 1000u);
    // One client too many is still one to move (max >= 1) when the threshold is 0.
    auto s = settings();
    s.threshold = 0;
    p = plan_rebalance({gw("gw1", 2), gw("gw2", 1)}, s);  // fair 1.5: gw1 above, gw2 below
    ASSERT_EQ(p.requests.size(), 1u);
    EXPECT_EQ(p.requests[0].target, 2u);
    EXPECT_EQ(p.requests[0].max, 1u);
}

TEST(RebalancePlanner, LoadSnapshotReportsStateWeightSlowStartAndConnections) {
    manual_clock clock;
    fleet_state fs(clock, 1);
    fleet_config f;
    for (int i = 1; i <= 3; ++i) {
        gateway_spec g;
        g.id = "gw" + std::to_string(i);
        g.client = {"127.0.0.1", static_cast<uint16_t>(9000 + i)};
        g.admin = {"127.0.0.1", static_cast<uint16_t>(9100 + i)};
        g.rpc = {"127.0.0.1", static_cast<uint16_t>(9200 + i)};
        g.weight = 100;
        f.gateways.push_back(g);
    }
    health_params hp;
    hp.slow_start = 10s;
    fs.apply(f, hp, true);
    auto pull = [&](const std::string& id, uint64_t conns) {
        gateway_status s;
        s.id = id;
        s.state = "serving";
        s.connections = conns;
        s.max_connections = 100000;
        s.uptime_s = 100;
        auto t = fs.pull_started(id);
        fs.pull_succeeded(id, t, s, 1.0);
    };
    for (int i = 0; i < 2; ++i) {
        pull("gw1", 3000);
        pull("gw2", 1000);
    }
    fs.set_weight("gw2", 300, "test");
    auto snap = fs.load_snapshot();
    ASSERT_EQ(snap.size(), 3u);
    EXPECT_EQ(snap[0].state, gw_state::up);
    EXPECT_EQ(snap[0].connections, 3000u);
    EXPECT_FALSE(snap[0].slow_start);  // the start-up fleet is not ramped
    EXPECT_EQ(snap[1].weight, 300u);   // the runtime override is the weight in force
    EXPECT_EQ(snap[2].state, gw_state::down);
    EXPECT_FALSE(snap[2].connections.has_value());
    EXPECT_EQ(snap[2].admin.port, 9103);
    // gw2 goes down and comes back: it ramps in, and the snapshot says so until slow start ends.
    auto fail = [&](const std::string& id) {
        auto t = fs.pull_started(id);
        fs.pull_failed(id, t, "connect: refused", 1.0);
    };
    fail("gw2");
    fail("gw2");
    EXPECT_EQ(fs.load_snapshot()[1].state, gw_state::down);
    pull("gw2", 0);
    pull("gw2", 0);
    snap = fs.load_snapshot();
    EXPECT_EQ(snap[1].state, gw_state::up);
    EXPECT_TRUE(snap[1].slow_start);
    // gw1 is far above fair, gw2 below, but ramping: nothing is asked yet.
    EXPECT_TRUE(plan_rebalance(snap, settings()).requests.empty());
    clock.advance(10s);
    snap = fs.load_snapshot();
    EXPECT_FALSE(snap[1].slow_start);
    auto p = plan_rebalance(snap, settings());
    ASSERT_EQ(p.requests.size(), 1u);
    EXPECT_EQ(p.requests[0].id, "gw1");
    EXPECT_EQ(p.requests[0].target, 750u);  // 3000 * 100 / 400
}
