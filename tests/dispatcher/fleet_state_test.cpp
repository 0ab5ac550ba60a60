// The balancer and reload logic, driven with a manual clock and fixed seeds.
#include "dispatcher/fleet_state.hpp"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

using namespace imgate;
using namespace imgate::disp;
using namespace std::chrono_literals;

namespace {

gateway_spec gw(const std::string& id, uint32_t weight, const std::string& region = "eu") {
    gateway_spec g;
    g.id = id;
    auto n = static_cast<uint16_t>(std::stoi(id.substr(2)));
    g.client = {"10.0.0." + std::to_string(n), static_cast<uint16_t>(9000 + n)};
    g.admin = {"10.0.0." + std::to_string(n), static_cast<uint16_t>(9100 + n)};
    g.rpc = {"10.0.0." + std::to_string(n), static_cast<uint16_t>(9200 + n)};
    g.weight = weight;
    g.region = region;
    return g;
}

fleet_config fleet(std::vector<gateway_spec> g) {
    fleet_config f;
    f.gateways = std::move(g);
    return f;
}

health_params params() {
    health_params p;
    p.rise = 2;
    p.fall = 2;
    p.slow_start = 10s;
    return p;
}

gateway_status status(const std::string& id, uint64_t conns = 0, uint64_t max = 100000) {
    gateway_status s;
    s.id = id;
    s.state = "serving";
    s.connections = conns;
    s.max_connections = max;
    s.uptime_s = 1000;
    return s;
}

// Drives fleet_state the way the poller does.
struct harness {
    manual_clock clock;
    metrics_registry metrics;
    fleet_state fs;
    explicit harness(uint64_t seed = 42) : fs(clock, seed, &metrics) {}

    void ok(const std::string& id, uint64_t conns = 0, uint64_t max = 100000) {
        auto t = fs.pull_started(id);
        fs.pull_succeeded(id, t, status(id, conns, max), 1.0);
    }
    void ok(const gateway_status& s) {
        auto t = fs.pull_started(s.id);
        fs.pull_succeeded(s.id, t, s, 1.0);
    }
    void fail(const std::string& id) {
        auto t = fs.pull_started(id);
        fs.pull_failed(id, t, "connect: Connection refused", 1.0);
    }
    void bring_up(const std::vector<std::string>& ids) {
        for (int i = 0; i < 2; ++i)
            for (auto& id : ids) ok(id);
    }
    std::map<std::string, int> count(int n, const pick_request& r = {}, int pull_every = 0) {
        std::map<std::string, int> c;
        for (int i = 0; i < n; ++i) {
            auto t = fs.pick(r);
            if (!t.empty())
                c[t.front().id]++;
            else
                c[""]++;
            if (pull_every && (i + 1) % pull_every == 0)
                for (auto& g : fs.pull_targets()) ok(g.id);  // clients come and go: load stays flat
        }
        return c;
    }
};

}  // namespace

TEST(FleetState, PicksFollowStaticWeightsWithin3PercentOver100kPicks) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100), gw("gw3", 50), gw("gw4", 250)}), params(),
               true);
    h.bring_up({"gw1", "gw2", "gw3", "gw4"});
    auto c = h.count(100000, {}, 500);
    const double total_w = 500;
    std::map<std::string, double> w{{"gw1", 100}, {"gw2", 100}, {"gw3", 50}, {"gw4", 250}};
    for (auto& [id, weight] : w) {
        double expected = 100000 * weight / total_w;
        EXPECT_NEAR(c[id], expected, expected * 0.03) << id;
    }
    EXPECT_EQ(c[""], 0);
    EXPECT_EQ(h.fs.picks_of("gw4"), static_cast<uint64_t>(c["gw4"]));
}

TEST(FleetState, SharesHoldWhenPullsLandAtDifferentMomentsAndClientsStay) {
    harness h(7);
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 300), gw("gw3", 50)}), params(), true);
    const uint64_t max = 1'000'000'000;
    h.bring_up({"gw1", "gw2", "gw3"});
    std::vector<std::string> ids{"gw1", "gw2", "gw3"};
    std::map<std::string, int> c;
    for (int i = 0; i < 100000; ++i) {
        c[h.fs.pick({}).at(0).id]++;
        // One gateway pulled every 70 picks, in turn: each reports the clients it received.
        if (i % 70 == 69) {
            auto& id = ids[(i / 70) % 3];
            h.ok(id, c[id], max);
        }
    }
    EXPECT_NEAR(c["gw1"], 100000 * 100 / 450, 100000 * 100 / 450 * 0.03);
    EXPECT_NEAR(c["gw2"], 100000 * 300 / 450, 100000 * 300 / 450 * 0.03);
    EXPECT_NEAR(c["gw3"], 100000 * 50 / 450, 100000 * 50 / 450 * 0.03);
}

TEST(FleetState, HeadroomLowersTheShareOfABusierGateway) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100)}), params(), true);
    for (int i = 0; i < 2; ++i) {
        h.ok("gw1", 0, 1000);
        h.ok("gw2", 500, 1000);  // half full: half the headroom
    }
    auto c = h.count(3000);
    // Expected 2:1 from headroom alone, shifted further as picks since the pull count in.
    EXPECT_GT(c["gw1"], c["gw2"] * 3 / 2);
    EXPECT_GT(c["gw2"], 300);
}

TEST(FleetState, PicksSinceLastPullPreventHerdingOnStaleData) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100), gw("gw3", 100)}), params(), true);
    for (int i = 0; i < 2; ++i) {
        h.ok("gw1", 0, 10000);  // looks empty...
        h.ok("gw2", 600, 10000);
        h.ok("gw3", 600, 10000);
    }
    // ... and no pull comes for a while. Power of two choices: gw1 wins only when it is drawn,
    // so the others still get a share even though gw1 looks much better.
    auto first = h.count(300);
    EXPECT_GT(first["gw2"] + first["gw3"], 15);
    EXPECT_GT(first["gw1"], 200);
    // Picks since the pull count as connections: once gw1 has caught up (about 600) the shares
    // even out instead of gw1 taking everything on stale data.
    auto more = h.count(1700);
    int gw1 = first["gw1"] + more["gw1"];
    EXPECT_LT(gw1, 1300);  // ~1070 expected; blind least-connections would give gw1 ~1800
    EXPECT_GT(gw1, 900);
    auto j = h.fs.status_json();
    EXPECT_EQ(j[0]["picks_since_pull"].get<int>(), gw1);
    h.ok("gw1", gw1, 10000);
    EXPECT_EQ(h.fs.status_json()[0]["picks_since_pull"].get<int>(), 0);
}

TEST(FleetState, PicksDuringAPullInFlightStayCounted) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100)}), params(), true);
    h.bring_up({"gw1"});
    h.count(5);
    auto t = h.fs.pull_started("gw1");
    h.count(3);  // handed out while the pull is on the wire
    h.fs.pull_succeeded("gw1", t, status("gw1"), 1.0);
    EXPECT_EQ(h.fs.status_json()[0]["picks_since_pull"].get<int>(), 3);
}

TEST(FleetState, TwoDispatchersOnTheSameStaleDataStillSpreadByWeight) {
    harness a(1), b(2);
    for (auto* h : {&a, &b}) {
        h->fs.apply(fleet({gw("gw1", 100), gw("gw2", 100), gw("gw3", 200)}), params(), true);
        for (int i = 0; i < 2; ++i) {
            h->ok("gw1", 100, 10000);
            h->ok("gw2", 100, 10000);
            h->ok("gw3", 100, 10000);
        }
    }
    std::map<std::string, int> total;
    for (auto* h : {&a, &b})
        for (auto& [id, n] : h->count(2000)) total[id] += n;
    EXPECT_NEAR(total["gw3"], 2000, 150);
    EXPECT_NEAR(total["gw1"], 1000, 120);
    EXPECT_NEAR(total["gw2"], 1000, 120);
}

TEST(FleetState, DownDrainingOverloadedAndDisabledAreNotHandedOut) {
    harness h;
    h.fs.apply(
        fleet({gw("gw1", 100), gw("gw2", 100), gw("gw3", 100), gw("gw4", 0), gw("gw5", 100)}),
        params(), true);
    h.bring_up({"gw1", "gw2", "gw3", "gw4", "gw5"});
    h.fail("gw1");
    h.fail("gw1");
    auto d = status("gw2");
    d.state = "draining";
    h.ok(d);
    h.ok("gw3", 95000, 100000);
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::down);
    EXPECT_EQ(h.fs.state_of("gw2"), gw_state::draining);
    EXPECT_EQ(h.fs.state_of("gw3"), gw_state::overloaded);
    EXPECT_EQ(h.fs.state_of("gw4"), gw_state::disabled);
    auto c = h.count(500);
    EXPECT_EQ(c["gw5"], 500);
    EXPECT_EQ(h.fs.available(), 1u);
}

TEST(FleetState, OverloadedGatewayIsReadmittedBelowLowWater) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100)}), params(), true);
    h.bring_up({"gw1", "gw2"});
    pick_request only_gw1;
    only_gw1.exclude = {"gw2"};
    h.ok("gw1", 950, 1000);
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::overloaded);
    EXPECT_TRUE(h.fs.pick(only_gw1).empty());
    h.ok("gw1", 850, 1000);
    EXPECT_TRUE(h.fs.pick(only_gw1).empty());  // hysteresis: not yet
    h.ok("gw1", 700, 1000);
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::up);
    EXPECT_EQ(h.count(50, only_gw1)["gw1"], 50);
}

TEST(FleetState, ExcludeIsHonouredAndCanLeaveNothing) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100), gw("gw3", 100)}), params(), true);
    h.bring_up({"gw1", "gw2", "gw3"});
    pick_request r;
    r.exclude = {"gw1", "gw3", "nosuch"};
    auto c = h.count(200, r);
    EXPECT_EQ(c["gw2"], 200);
    r.exclude = {"gw1", "gw2", "gw3"};
    EXPECT_TRUE(h.fs.pick(r).empty());
}

TEST(FleetState, NoGatewayAvailableGivesAnEmptyAnswer) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100)}), params(), true);
    EXPECT_TRUE(h.fs.pick({}).empty());  // nothing pulled yet: all down
    h.bring_up({"gw1", "gw2"});
    EXPECT_FALSE(h.fs.pick({}).empty());
    for (int i = 0; i < 2; ++i) {
        h.fail("gw1");
        h.fail("gw2");
    }
    EXPECT_TRUE(h.fs.pick({}).empty());
}

TEST(FleetState, RegionPreferenceWithFallbackAndAlternates) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100, "eu"), gw("gw2", 100, "eu"), gw("gw3", 100, "us")}), params(),
               true);
    h.bring_up({"gw1", "gw2", "gw3"});
    pick_request us;
    us.region = "us";
    us.alternates = 2;
    for (int i = 0; i < 50; ++i) {
        auto t = h.fs.pick(us);
        ASSERT_EQ(t.size(), 3u);
        EXPECT_EQ(t[0].id, "gw3");
        EXPECT_NE(t[1].id, "gw3");
        EXPECT_NE(t[2].id, t[1].id);
        EXPECT_EQ(t[0].address.port, 9003);
    }
    pick_request eu;
    eu.region = "eu";
    eu.alternates = 2;
    auto t = h.fs.pick(eu);
    EXPECT_NE(t[0].id, "gw3");
    EXPECT_EQ(t[2].id, "gw3");  // other regions only after the preferred one
    // The preferred region is out: fall back.
    h.fail("gw3");
    h.fail("gw3");
    auto c = h.count(100, us);
    EXPECT_EQ(c["gw1"] + c["gw2"], 100);
    // Only the first of an answer counts as handed out.
    EXPECT_EQ(h.fs.picks_of("gw3"), 50u);
}

TEST(FleetState, SlowStartRampsAReturningGateway) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100)}), params(), true);
    h.bring_up({"gw1", "gw2"});
    h.fail("gw2");
    h.fail("gw2");
    h.bring_up({"gw2"});
    ASSERT_EQ(h.fs.state_of("gw2"), gw_state::up);
    auto early = h.count(2000, {}, 100);
    EXPECT_LT(early["gw2"], 2000 * 0.1);  // factor 0.05: about 5%
    EXPECT_GT(early["gw2"], 0);
    EXPECT_NE(h.fs.status_json()[1]["reason"].get<std::string>().find("slow start 5%"),
              std::string::npos);
    h.clock.advance(5s);
    auto mid = h.count(3000, {}, 100);
    EXPECT_NEAR(mid["gw2"], 1000, 150);  // 0.5 : 1
    h.clock.advance(5s);
    auto full = h.count(4000, {}, 100);
    EXPECT_NEAR(full["gw2"], 2000, 200);
}

TEST(FleetState, ReloadKeepsStateAddsDownAndDropsRemoved) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100), gw("gw3", 100)}), params(), true);
    h.bring_up({"gw1", "gw2", "gw3"});
    h.count(30);
    auto picks1 = h.fs.picks_of("gw1");
    auto g2 = gw("gw2", 300);  // weight edit
    auto sum = h.fs.apply(fleet({gw("gw1", 100), g2, gw("gw4", 100)}), params(), false);
    EXPECT_EQ(sum.added, std::vector<std::string>{"gw4"});
    EXPECT_EQ(sum.removed, std::vector<std::string>{"gw3"});
    EXPECT_EQ(sum.changed, std::vector<std::string>{"gw2"});
    EXPECT_EQ(sum.kept, std::vector<std::string>{"gw1"});
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::up);  // kept its health without a new pull
    EXPECT_EQ(h.fs.state_of("gw2"), gw_state::up);
    EXPECT_EQ(h.fs.state_of("gw4"), gw_state::down);
    EXPECT_EQ(h.fs.picks_of("gw1"), picks1);
    auto c = h.count(4000);  // no pulls: gw4 stays down
    EXPECT_EQ(c["gw3"], 0);
    EXPECT_EQ(c["gw4"], 0);
    EXPECT_NEAR(c["gw2"], 3000, 150);  // weight 300 vs 100 applies at once
    h.bring_up({"gw4"});
    EXPECT_EQ(h.fs.state_of("gw4"), gw_state::up);
    // The metrics of a removed gateway do not linger.
    EXPECT_EQ(h.metrics.render().find("gateway=\"gw3\""), std::string::npos);
    EXPECT_NE(h.metrics.render().find("gateway=\"gw4\""), std::string::npos);
}

TEST(FleetState, ReloadChangingTheAdminAddressResetsHealthAndIgnoresOldPulls) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100)}), params(), true);
    h.bring_up({"gw1"});
    auto stale = h.fs.pull_started("gw1");
    auto moved = gw("gw1", 100);
    moved.admin.port = 9999;
    h.fs.apply(fleet({moved}), params(), false);
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::down);
    h.fs.pull_succeeded("gw1", stale, status("gw1"), 1.0);
    h.fs.pull_succeeded("gw1", stale, status("gw1"), 1.0);
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::down);  // results for the old address ignored
    h.bring_up({"gw1"});
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::up);
}

TEST(FleetState, IdMismatchIsAFailedPull) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100)}), params(), true);
    for (int i = 0; i < 3; ++i) {
        auto t = h.fs.pull_started("gw1");
        h.fs.pull_succeeded("gw1", t, status("gw7"), 1.0);
    }
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::down);
    auto j = h.fs.status_json()[0];
    EXPECT_NE(j["last_error"].get<std::string>().find("id mismatch"), std::string::npos);
    EXPECT_TRUE(j["last_pull_ms"].is_null());
}

TEST(FleetState, StatusJsonExplainsEachGateway) {
    harness h;
    auto g1 = gw("gw1", 100);
    g1.labels = {{"zone", "a"}};
    h.fs.apply(fleet({g1, gw("gw2", 0), gw("gw3", 100)}), params(), true);
    h.bring_up({"gw1", "gw2"});
    h.fail("gw3");
    h.clock.advance(1500ms);
    h.count(10);
    h.ok("gw1", 25000, 100000);
    auto j = h.fs.status_json();
    EXPECT_EQ(j[0]["state"], "up");
    EXPECT_EQ(j[0]["reason"], "load headroom 0.75");
    EXPECT_DOUBLE_EQ(j[0]["effective_weight"].get<double>(), 75);
    EXPECT_EQ(j[0]["labels"]["zone"], "a");
    EXPECT_EQ(j[0]["admin"], "10.0.0.1:9101");
    EXPECT_EQ(j[0]["client"], "10.0.0.1:9001");
    EXPECT_EQ(j[0]["connections"], 25000);
    EXPECT_EQ(j[0]["last_pull_ms"].get<int64_t>(), h.clock.wall_ms());
    EXPECT_EQ(j[0]["picks"], 10);
    EXPECT_GT(j[0]["picks_per_s"].get<double>(), 0);
    EXPECT_EQ(j[1]["state"], "disabled");
    EXPECT_EQ(j[1]["reason"], "disabled (weight 0)");
    EXPECT_EQ(j[1]["effective_weight"], 0);
    EXPECT_EQ(j[2]["state"], "down");
    EXPECT_NE(j[2]["reason"].get<std::string>().find("Connection refused"), std::string::npos);
    EXPECT_TRUE(j[2]["connections"].is_null());
    auto m = h.metrics.render();
    EXPECT_NE(m.find("imgate_dispatcher_picks_total{gateway=\"gw1\"} 10"), std::string::npos);
    EXPECT_NE(m.find("imgate_dispatcher_gateway_state{gateway=\"gw3\",state=\"down\"} 1"),
              std::string::npos);
    EXPECT_NE(m.find("imgate_dispatcher_pulls_total{gateway=\"gw3\",result=\"failed\"} 1"),
              std::string::npos);
}

namespace {
gateway_status meshy(const std::string& id, std::optional<std::string> jwt, uint64_t links,
                     uint64_t peers = 2) {
    auto s = status(id);
    s.jwt_fingerprint = std::move(jwt);
    s.links_up = links;
    s.peers_expected = peers;
    return s;
}
}  // namespace

TEST(FleetState, GatewayWithAnotherJwtSecretIsDegradedAndNeverHandedOut) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100), gw("gw3", 100)}), params(), true);
    // First pulls in the worst order: the odd one first, when it is the only vote.
    for (int i = 0; i < 2; ++i) {
        h.ok(meshy("gw3", "bbbb", 2));
        h.ok(meshy("gw1", "aaaa", 2));
        h.ok(meshy("gw2", "aaaa", 2));
    }
    EXPECT_EQ(h.fs.state_of("gw3"), gw_state::degraded);
    EXPECT_EQ(h.fs.degraded_reason("gw3"), "jwt_secret_mismatch");
    EXPECT_EQ(h.fs.jwt_majority(), "aaaa");
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::up);
    auto c = h.count(3000);
    EXPECT_EQ(c["gw3"], 0);
    EXPECT_GT(c["gw1"], 1000);
    EXPECT_EQ(h.fs.picks_of("gw3"), 0u);
    auto text = h.metrics.render();
    EXPECT_NE(
        text.find(
            R"(imgate_dispatcher_gateway_degraded{gateway="gw3",reason="jwt_secret_mismatch"} 1)"),
        std::string::npos);
    EXPECT_NE(text.find(R"(imgate_dispatcher_gateway_state{gateway="gw3",state="degraded"} 1)"),
              std::string::npos);
    EXPECT_NE(
        text.find(
            R"(imgate_dispatcher_gateway_degraded{gateway="gw1",reason="jwt_secret_mismatch"} 0)"),
        std::string::npos);
    auto j = h.fs.status_json();
    EXPECT_EQ(j[2]["state"], "degraded");
    EXPECT_EQ(j[2]["degraded_reason"], "jwt_secret_mismatch");
    EXPECT_NE(j[2]["reason"].get<std::string>().find("bbbb"), std::string::npos);
    EXPECT_TRUE(j[0]["degraded_reason"].is_null());
    // Its secrets fixed (same process, next pull): handed out again.
    h.ok(meshy("gw3", "aaaa", 2));
    EXPECT_EQ(h.fs.state_of("gw3"), gw_state::up);
}

TEST(FleetState, EvenJwtSplitDegradesNobodyAndIsReported) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100)}), params(), true);
    for (int i = 0; i < 2; ++i) {
        h.ok(meshy("gw1", "aaaa", 1, 1));
        h.ok(meshy("gw2", "bbbb", 1, 1));
    }
    EXPECT_TRUE(h.fs.jwt_split());
    EXPECT_FALSE(h.fs.jwt_majority());
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::up);
    EXPECT_EQ(h.fs.state_of("gw2"), gw_state::up);
}

TEST(FleetState, GatewaysNotReportingMeshOrSecretsAreNotDegradedByTheirAbsence) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100), gw("gw3", 100)}), params(), true);
    for (int i = 0; i < 5; ++i) {
        h.ok("gw1");  // an older gateway: no mesh, no secrets
        h.ok(meshy("gw2", "aaaa", 2));
        h.ok(meshy("gw3", "aaaa", 2));
    }
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::up);
    EXPECT_EQ(h.fs.jwt_majority(), "aaaa");
}

TEST(FleetState, NoMeshLinksDegradesOnlyAfterTheGracePulls) {
    harness h;
    auto p = params();
    p.degraded_after = 3;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100)}), p, true);
    h.ok(meshy("gw1", "aaaa", 1, 1));
    h.ok(meshy("gw2", "aaaa", 0, 1));  // freshly started: links not formed yet
    h.ok(meshy("gw1", "aaaa", 1, 1));
    h.ok(meshy("gw2", "aaaa", 0, 1));
    EXPECT_EQ(h.fs.state_of("gw2"), gw_state::up);  // 2 of 3 grace pulls
    EXPECT_TRUE(h.fs.in_transition("gw2"));         // pulled fast while counting
    h.ok(meshy("gw2", "aaaa", 0, 1));
    EXPECT_EQ(h.fs.state_of("gw2"), gw_state::degraded);
    EXPECT_EQ(h.fs.degraded_reason("gw2"), "no_mesh_links");
    EXPECT_FALSE(h.fs.in_transition("gw2"));
    auto c = h.count(500);
    EXPECT_EQ(c["gw2"], 0);
    // One link comes up: the count restarts and it is a candidate at once.
    h.ok(meshy("gw2", "aaaa", 1, 1));
    EXPECT_EQ(h.fs.state_of("gw2"), gw_state::up);
    // A link that drops once is within the grace again.
    h.ok(meshy("gw2", "aaaa", 0, 1));
    EXPECT_EQ(h.fs.state_of("gw2"), gw_state::up);
}

TEST(FleetState, NoMeshLinksIsNotDegradedForASingleGatewayOrWithoutPeers) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100)}), params(), true);
    for (int i = 0; i < 6; ++i)
        h.ok(meshy("gw1", "aaaa", 0, 3));  // alone in this dispatcher's fleet
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::up);
    harness h2;
    h2.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100)}), params(), true);
    for (int i = 0; i < 6; ++i) {
        h2.ok(meshy("gw1", "aaaa", 0, 0));  // single-node gateway: nothing expected
        h2.ok(meshy("gw2", "aaaa", 0, 0));
    }
    EXPECT_EQ(h2.fs.state_of("gw1"), gw_state::up);
}

TEST(FleetState, EveryCandidateDegradedMeansNoAnswer) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100), gw("gw3", 100)}), params(), true);
    for (int i = 0; i < 2; ++i) {
        h.ok(meshy("gw1", "aaaa", 1));
        h.ok(meshy("gw2", "aaaa", 1));
        h.ok(meshy("gw3", "bbbb", 0));
    }
    ASSERT_EQ(h.fs.degraded_reason("gw3"), "jwt_secret_mismatch");
    ASSERT_TRUE(h.fs.set_disabled("gw1", true, "ops"));
    ASSERT_TRUE(h.fs.set_disabled("gw2", true, "ops"));
    // Only gw3 is left, and logins there fail: a clear 503 beats handing it out.
    EXPECT_TRUE(h.fs.pick({}).empty());
    EXPECT_EQ(h.fs.available(), 0u);
}

// A gateway whose peers are all gone has no links through no fault of its own: it is the last
// one serving (local delivery works), so it stays a candidate. Seen as a 503 storm in
// ClientCli.ListenerReconnectsAfterItsGatewayDies: gw1 killed, gw2 degraded for 0 links.
TEST(FleetState, NoMeshLinksIsNotDegradedWhenNoOtherGatewayHasLinks) {
    harness h;
    auto p = params();
    p.degraded_after = 1;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100), gw("gw3", 100)}), p, true);
    for (int i = 0; i < 2; ++i)
        for (auto id : {"gw1", "gw2", "gw3"}) h.ok(meshy(id, "aaaa", 2));
    for (int i = 0; i < 4; ++i) {
        h.fail("gw1");
        h.fail("gw2");
        h.ok(meshy("gw3", "aaaa", 0));
    }
    ASSERT_EQ(h.fs.state_of("gw1"), gw_state::down);
    EXPECT_EQ(h.fs.state_of("gw3"), gw_state::up);
    EXPECT_EQ(h.count(100)["gw3"], 100);
    // gw1 returns with a link to gw2's address gone too: still nobody with links, still up.
    h.ok(meshy("gw1", "aaaa", 0));
    h.ok(meshy("gw1", "aaaa", 0));
    EXPECT_EQ(h.fs.state_of("gw3"), gw_state::up);
    // A mesh forms elsewhere (gw1 and gw2 linked) while gw3 still has none: now it is cut off.
    h.ok(meshy("gw2", "aaaa", 1));
    h.ok(meshy("gw2", "aaaa", 1));
    h.ok(meshy("gw1", "aaaa", 1));
    h.ok(meshy("gw3", "aaaa", 0));
    EXPECT_EQ(h.fs.state_of("gw3"), gw_state::degraded);
    EXPECT_EQ(h.fs.degraded_reason("gw3"), "no_mesh_links");
}

TEST(FleetState, TwoGatewaysWithABrokenMeshBothStayCandidates) {
    harness h;
    auto p = params();
    p.degraded_after = 1;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100)}), p, true);
    for (int i = 0; i < 4; ++i) {
        h.ok(meshy("gw1", "aaaa", 0, 1));
        h.ok(meshy("gw2", "aaaa", 0, 1));
    }
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::up);
    EXPECT_EQ(h.fs.state_of("gw2"), gw_state::up);
    EXPECT_EQ(h.fs.available(), 2u);
}

TEST(FleetState, RuntimeOverridesApplyAtOnceAndAReloadDropsThem) {
    harness h;
    auto f = fleet({gw("gw1", 100), gw("gw2", 100)});
    h.fs.apply(f, params(), true);
    h.bring_up({"gw1", "gw2"});
    EXPECT_FALSE(h.fs.set_weight("gw9", 5, "x"));
    ASSERT_TRUE(h.fs.set_weight("gw1", 0, "127.0.0.1 token abcd"));
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::disabled);
    EXPECT_EQ(h.count(500)["gw1"], 0);
    auto ov = h.fs.override_of("gw1");
    ASSERT_TRUE(ov);
    EXPECT_EQ(ov->weight, 0u);
    EXPECT_EQ(ov->by, "127.0.0.1 token abcd");
    EXPECT_EQ(ov->at_ms, h.clock.wall_ms());
    auto j = h.fs.status_json();
    EXPECT_EQ(j[0]["override"]["weight"], 0);
    EXPECT_EQ(j[0]["file_weight"], 100);
    // Back to the file's weight: no override left.
    ASSERT_TRUE(h.fs.set_weight("gw1", 100, "x"));
    EXPECT_FALSE(h.fs.override_of("gw1"));
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::up);

    ASSERT_TRUE(h.fs.set_disabled("gw2", true, "x"));
    EXPECT_EQ(h.fs.state_of("gw2"), gw_state::disabled);
    auto c = h.count(500);
    EXPECT_EQ(c["gw2"], 0);
    EXPECT_EQ(c["gw1"], 500);
    ASSERT_TRUE(h.fs.set_disabled("gw2", false, "x"));
    EXPECT_EQ(h.fs.state_of("gw2"), gw_state::up);
    EXPECT_GT(h.count(500)["gw2"], 0);

    ASSERT_TRUE(h.fs.set_weight("gw2", 300, "x"));
    ASSERT_TRUE(h.fs.set_disabled("gw1", true, "x"));
    auto sum = h.fs.apply(f, params(), false);
    EXPECT_EQ(sum.overrides_dropped, (std::vector<std::string>{"gw1", "gw2"}));
    EXPECT_FALSE(h.fs.override_of("gw1"));
    EXPECT_EQ(h.fs.state_of("gw1"), gw_state::up);
    EXPECT_EQ(h.fs.status_json()[1]["weight"], 100);
}

TEST(FleetState, PickExplanationNamesSkippedGatewaysAndThePool) {
    harness h;
    h.fs.apply(fleet({gw("gw1", 100), gw("gw2", 100), gw("gw3", 100, "us")}), params(), true);
    h.bring_up({"gw1", "gw2", "gw3"});
    ASSERT_TRUE(h.fs.set_disabled("gw2", true, "x"));
    pick_request r;
    r.region = "eu";
    r.exclude = {"gw1"};
    pick_explanation why;
    auto t = h.fs.pick(r, &why);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].id, "gw3");
    EXPECT_EQ(why.pool, "fallback");
    EXPECT_EQ(why.skipped, (std::vector<std::pair<std::string, std::string>>{{"gw1", "excluded"},
                                                                             {"gw2", "disabled"}}));
    EXPECT_NE(why.chosen_why.find("weight 100"), std::string::npos);
}

TEST(FleetState, SamplingFollowsTheInjectedRandomSource) {
    harness a(5), b(5);
    int hits = 0;
    for (int i = 0; i < 10000; ++i) {
        bool x = a.fs.sample(0.1);
        EXPECT_EQ(x, b.fs.sample(0.1));  // same seed, same decisions
        hits += x;
    }
    EXPECT_NEAR(hits, 1000, 150);
    EXPECT_FALSE(a.fs.sample(0));
    EXPECT_TRUE(a.fs.sample(1));
}
