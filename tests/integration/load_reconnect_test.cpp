// `imgate load --reconnect` against a real local fleet: a gateway killed with SIGKILL loses its
// clients, and every one of them logs in again elsewhere, its first attempt spread over the
// reconnect jitter (docs/protocol.md section 5); two shards of one run share the user-id space
// without overlapping.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "../support/local_fleet.hpp"
#include "../support/process.hpp"
#include "../support/tool_process.hpp"

namespace {

using namespace imgate::test;
using json = nlohmann::json;

std::vector<json> read_events(const std::string& path) {
    std::vector<json> v;
    std::istringstream in(read_file(path));
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        auto j = json::parse(line, nullptr, false);
        if (j.is_object()) v.push_back(std::move(j));
    }
    return v;
}

json read_status(const std::string& path) {
    return json::parse(read_file(path), nullptr, false);
}

class LoadReconnect : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string why;
        ASSERT_TRUE(fleet_.start(&why)) << why;
        url_ = "http://" + fleet_.dispatcher().addr("public");
        ASSERT_TRUE(eventually(
            [&] {
                auto s = http_get(fleet_.dispatcher().addr("admin"), "/status").json();
                if (!s.is_object()) return false;
                size_t up = 0;
                for (auto& g : s["gateways"]) up += g["state"] == "up";
                return up == fleet_.gateways().size();
            },
            5000ms))
            << fleet_.dispatcher().log();
    }

    std::vector<std::string> load_args(std::vector<std::string> extra) {
        std::vector<std::string> a{
            "load",        "--dispatcher", url_, "--secret-file", dir_.file("token.secret"),
            "--reconnect", "--rooms",      "0",  "--room-share",  "0",
            "--json"};
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    }

    bool connected(const std::string& status_file, int want) {
        auto s = read_status(status_file);
        return s.is_object() && s.value("connected", -1) == want;
    }

    local_fleet fleet_{{.ids = {"gw1", "gw2", "gw3"},
                        .poll = "{interval: 100ms, timeout: 80ms, rise: 1, fall: 1, "
                                "slow_start: 0ms}"}};
    const temp_dir& dir_ = fleet_.dir();
    std::string url_;
};

TEST_F(LoadReconnect, ClientsOfAKilledGatewayLogInElsewhereWithSpreadFirstAttempts) {
    constexpr int clients = 60;
    auto events = dir_.file("events.jsonl");
    auto status = dir_.file("status.json");
    tool_process load(
        dir_, "load",
        load_args({"--clients", std::to_string(clients), "--rate", "0", "--duration", "12s",
                   "--run-id", "storm-é", "--events", events, "--status-file", status}));
    // A run id outside [A-Za-z0-9_-] is refused before anything connects.
    EXPECT_EQ(load.wait(5000ms), std::optional<int>(1));
    EXPECT_NE(load.err().find("--run-id"), std::string::npos) << load.err();

    tool_process run(
        dir_, "load2",
        load_args({"--clients", std::to_string(clients), "--rate", "0", "--duration", "12s",
                   "--run-id", "storm1", "--events", events, "--status-file", status}));
    ASSERT_TRUE(eventually([&] { return connected(status, clients); }, 30000ms))
        << run.err() << read_file(status);
    // Kill the gateway holding the most clients (the dispatcher spreads them over all three).
    auto st = read_status(status);
    std::string victim;
    int held = 0;
    for (auto& [id, n] : st["by_gateway"].items())
        if (n.get<int>() > held) {
            held = n.get<int>();
            victim = id;
        }
    ASSERT_FALSE(victim.empty()) << st.dump();
    ASSERT_GT(held, 1);
    fleet_.gw(victim).signal(SIGKILL);
    // Everyone is back, none on the dead gateway.
    ASSERT_TRUE(eventually(
        [&] {
            auto s = read_status(status);
            return s.is_object() && s.value("connected", -1) == clients &&
                   !s["by_gateway"].contains(victim) && s.value("lost_total", 0) >= held;
        },
        20000ms))
        << run.err() << read_file(status);
    auto rc = run.wait(40000ms);
    ASSERT_TRUE(rc) << run.err();
    EXPECT_EQ(*rc, 0) << run.out() << run.err();
    auto report = json::parse(run.out(), nullptr, false);
    ASSERT_TRUE(report.is_object()) << run.out();
    EXPECT_EQ(report["stuck"], 0);
    EXPECT_EQ(report["losses"], held);
    EXPECT_EQ(report["relogins"], held);
    EXPECT_EQ(report["params"]["reconnect_concurrency"], 1000);

    // Per client: its lost event on the victim, then a later login elsewhere.
    auto ev = read_events(events);
    std::map<int, int64_t> lost_at;
    std::map<int, int64_t> first_attempt;  // first event after the loss (failed or login)
    std::map<int, std::string> relogin_gw;
    std::set<int> logged_in;
    for (auto& e : ev) {
        int c = e["client"];
        std::string what = e["event"];
        if (what == "login") logged_in.insert(c);
        if (what == "lost") {
            EXPECT_EQ(e["gateway"], victim) << e.dump();
            std::string reason = e["reason"];
            EXPECT_TRUE(reason == "eof" || reason == "reset") << e.dump();
            lost_at[c] = e["t_ms"];
            continue;
        }
        if (!lost_at.count(c)) continue;
        if (!first_attempt.count(c)) first_attempt[c] = e["t_ms"];
        if (what == "login" && !relogin_gw.count(c)) {
            relogin_gw[c] = e["gateway"];
            // The first round excluded the dead gateway, which the dispatcher may still have
            // believed up: the first gateway tried took the login.
            EXPECT_EQ(e["attempts"].get<int>(), 1) << e.dump();
        }
    }
    EXPECT_EQ(logged_in.size(), size_t(clients));
    ASSERT_EQ(lost_at.size(), size_t(held));
    for (auto& [c, t] : lost_at) {
        ASSERT_TRUE(relogin_gw.count(c)) << "client " << c << " never logged in again";
        EXPECT_NE(relogin_gw[c], victim);
    }
    // First attempts: within the default jitter (1 s) plus slack, and spread, not in lockstep.
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (auto& [c, t] : first_attempt) {
        int64_t d = t - lost_at[c];
        EXPECT_GE(d, 0);
        EXPECT_LE(d, 1000 + 700) << "client " << c;
        lo = std::min(lo, t);
        hi = std::max(hi, t);
    }
    std::cerr << "DEBUG " << run.out() << "\nDEBUG held " << held << " spread " << (hi - lo)
              << "\n";
    for (auto& [c, t] : first_attempt) std::cerr << (t - lost_at[c]) << " ";
    std::cerr << "\n" << run.err() << "\n";
    EXPECT_GT(hi - lo, 50) << "the first attempts after the loss came within one 50 ms window";
}

TEST_F(LoadReconnect, TwoShardsOfOneRunHaveDisjointUsersAndBothConnect) {
    constexpr int clients = 21;  // odd: shards of 10 and 11
    std::vector<std::unique_ptr<tool_process>> shards;
    for (int i = 0; i < 2; ++i) {
        auto n = std::to_string(i);
        shards.push_back(std::make_unique<tool_process>(
            dir_, "shard" + n,
            load_args({"--clients", std::to_string(clients), "--shard", n + "/2", "--run-id",
                       "shared_run", "--duration", "3s", "--rate", "20", "--events",
                       dir_.file("ev" + n), "--status-file", dir_.file("st" + n)})));
    }
    ASSERT_TRUE(eventually([&] { return connected(dir_.file("st0"), 10); }, 20000ms))
        << shards[0]->err();
    ASSERT_TRUE(eventually([&] { return connected(dir_.file("st1"), 11); }, 20000ms))
        << shards[1]->err();
    std::set<int> seen[2];
    for (int i = 0; i < 2; ++i) {
        auto rc = shards[i]->wait(30000ms);
        ASSERT_TRUE(rc);
        EXPECT_EQ(*rc, 0) << shards[i]->out() << shards[i]->err();
        auto report = json::parse(shards[i]->out(), nullptr, false);
        ASSERT_TRUE(report.is_object()) << shards[i]->out();
        EXPECT_EQ(report["params"]["shard"], std::to_string(i) + "/2");
        // Same user id in both shards would replace one session by the other: no losses at all.
        EXPECT_EQ(report["losses"], 0) << shards[i]->out();
        // 1:1 sends go to users of the whole run; every one got a result.
        EXPECT_GT(report["sends_user"].get<int>(), 20) << shards[i]->out();
        EXPECT_EQ(report["missing"], 0) << shards[i]->out();
        EXPECT_GT(report["results"].value("delivered", 0), 0) << shards[i]->out();
        for (auto& e : read_events(dir_.file("ev" + std::to_string(i))))
            if (e["event"] == "login") seen[i].insert(e["client"].get<int>());
    }
    EXPECT_EQ(seen[0].size(), 10u);
    EXPECT_EQ(seen[1].size(), 11u);
    for (int c : seen[0]) {
        EXPECT_LT(c, 10);
        EXPECT_FALSE(seen[1].count(c)) << c;
    }
    for (int c : seen[1]) EXPECT_GE(c, 10);
}

}  // namespace
