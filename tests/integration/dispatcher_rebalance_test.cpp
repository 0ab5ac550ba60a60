// The real imgate-dispatcher driving rebalancing (issue 14 D, dispatcher half) against in-process
// fake gateways whose /status we script and which record every POST /rebalance: the requests an
// overfull gateway gets (target, max, rate, the admin bearer token), once per interval while it
// stays overfull and none after; none while disabled or while the only gateway below its fair
// share is in slow start; SIGHUP turning it on; failed answers counted and shown on /status.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../support/loopback_http.hpp"
#include "../support/process.hpp"
#include "common/http_server.hpp"

namespace {

using namespace imgate;
using namespace imgate::test;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

const std::string admin_token = "rebalance-admin-token-0123456789";

// A gateway admin listener: GET /status from a scripted JSON, POST /rebalance recorded and
// answered like the gateway does (or with a scripted error status).
class fake_gateway {
  public:
    struct call {
        clock_type::time_point at;
        std::string authorization;
        json body;
    };

    explicit fake_gateway(std::string id) : id_(std::move(id)) {
        status_ = {{"id", id_},         {"state", "serving"},
                   {"connections", 0},  {"max_connections", 100000},
                   {"sessions", 0},     {"full", false},
                   {"load", 0.0},       {"pid", 4242},
                   {"version", "fake"}, {"uptime_s", 100.0}};
        http_sync_handler st = [this](const http_request_ctx&) {
            if (failing_) return http_response::error(http::status::internal_server_error, "x");
            std::lock_guard lk(mu_);
            return http_response::json(http::status::ok, status_.dump());
        };
        http_.server().route(http::verb::get, "/status", st);
        http_sync_handler rb = [this](const http_request_ctx& ctx) {
            std::lock_guard lk(mu_);
            auto auth = ctx.req[http::field::authorization];
            calls_.push_back({clock_type::now(), std::string(auth),
                              json::parse(ctx.req.body(), nullptr, false)});
            if (answer_ != 200)
                return http_response::error(static_cast<http::status>(answer_.load()), "draining");
            auto target = calls_.back().body.value("target", uint64_t(0));
            auto max = calls_.back().body.value("max", uint64_t(0));
            auto sessions = status_["connections"].get<uint64_t>();
            json a = {{"sessions", sessions},
                      {"target", target},
                      {"to_move", std::min(max, sessions > target ? sessions - target : 0)}};
            return http_response::json(http::status::ok, a.dump());
        };
        route_options o;
        o.body_limit = 4096;
        http_.server().route(http::verb::post, "/rebalance", rb, o);
        http_.start();
    }
    std::string admin() const { return http_.addr(); }
    void set_connections(uint64_t n) {
        std::lock_guard lk(mu_);
        status_["connections"] = n;
        status_["sessions"] = n;
    }
    void set_failing(bool f) { failing_ = f; }
    void set_answer(int status) { answer_ = status; }
    std::vector<call> calls() {
        std::lock_guard lk(mu_);
        return calls_;
    }
    size_t call_count() { return calls().size(); }

  private:
    std::string id_;
    std::mutex mu_;
    json status_;
    std::vector<call> calls_;
    std::atomic<bool> failing_{false};
    std::atomic<int> answer_{200};
    loopback_http http_;  // last: stopped before the state its handlers use
};

class DispatcherRebalance : public ::testing::Test {
  protected:
    void start(const std::vector<std::string>& ids, const std::string& rebalance,
               const std::string& slow_start = "0ms") {
        for (auto& id : ids) gws_[id] = std::make_unique<fake_gateway>(id);
        std::string fleet = "gateways:\n";
        int n = 0;
        for (auto& id : ids) {
            ++n;
            fleet += "  - {id: " + id + ", client: 127.0.0.1:" + std::to_string(19000 + n) +
                     ", admin: " + gws_[id]->admin() +
                     ", rpc: 127.0.0.1:" + std::to_string(19100 + n) + ", weight: 100}\n";
        }
        write_file(dir_.file("fleet.yaml"), fleet);
        write_secret_file(dir_.file("admin.token"), admin_token + "\n");
        write_config(rebalance, slow_start);
        disp_ = std::make_unique<daemon_process>(
            "dispatcher", binary_path("imgate-dispatcher"),
            std::vector<std::string>{"--config", dir_.file("dispatcher.yaml")}, dir_);
        ASSERT_TRUE(disp_->wait_ready()) << disp_->log();
        admin_ = disp_->addr("admin");
    }
    // A flow map of rebalance settings plus the gateways' token file.
    static std::string with_token(const std::string& rebalance) {
        return "{token_file: admin.token, " + rebalance.substr(1);
    }
    void write_config(const std::string& rebalance, const std::string& slow_start) {
        write_file(dir_.file("dispatcher.yaml"),
                   "id: rebalance-disp\nfleet: fleet.yaml\nlisten: 127.0.0.1:0\n"
                   "admin_listen: 127.0.0.1:0\n"
                   "poll: {interval: 50ms, timeout: 40ms, rise: 1, fall: 1, slow_start: " +
                       slow_start + "}\nlog: {level: info}\nrebalance: " + with_token(rebalance) +
                       "\n");
    }
    void reload() {
        auto before = status()["reloads"].get<int>();
        disp_->signal(SIGHUP);
        ASSERT_TRUE(eventually([&] { return status()["reloads"].get<int>() == before + 1; }))
            << disp_->log();
    }

    json status() { return http_get(admin_, "/status").json(); }
    json gateway(const std::string& id) {
        auto s = status();  // kept: a range-for over status()["gateways"] would dangle
        for (auto& g : s["gateways"])
            if (g["id"] == id) return g;
        return nullptr;
    }
    // Waits until every gateway of `want` is up with those connections in the dispatcher's view.
    bool wait_pulled(const std::map<std::string, uint64_t>& want) {
        return eventually(
            [&] {
                auto s = status();
                if (!s.is_object()) return false;
                for (auto& g : s["gateways"]) {
                    auto it = want.find(g["id"].get<std::string>());
                    if (it == want.end()) continue;
                    if (g["state"] != "up" || g["connections"] != it->second) return false;
                }
                return true;
            },
            5000ms, 10ms);
    }
    double metric(const std::string& series) {
        std::istringstream in(http_get(admin_, "/metrics").body);
        for (std::string line; std::getline(in, line);)
            if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
        return -1;
    }
    double rounds() { return metric("imgate_dispatcher_rebalance_rounds_total"); }
    // Waits for n more evaluations of the planner.
    void wait_rounds(int n) {
        double r0 = rounds();
        ASSERT_TRUE(eventually([&] { return rounds() >= r0 + n; }, 10000ms, 20ms)) << disp_->log();
    }

    temp_dir dir_;
    std::map<std::string, std::unique_ptr<fake_gateway>> gws_;
    std::unique_ptr<daemon_process> disp_;
    std::string admin_;
};

TEST_F(DispatcherRebalance, AsksTheOverfullGatewayOncePerIntervalWithTheAdminToken) {
    start({"gw1", "gw2", "gw3"},
          "{enabled: true, interval: 200ms, threshold: 0.1, rate: 150, max_per_request: 5000}");
    gws_["gw1"]->set_connections(3000);
    gws_["gw2"]->set_connections(1000);
    gws_["gw3"]->set_connections(1000);
    ASSERT_TRUE(wait_pulled({{"gw1", 3000}, {"gw2", 1000}, {"gw3", 1000}})) << disp_->log();
    auto t0 = clock_type::now();
    ASSERT_TRUE(eventually([&] { return gws_["gw1"]->call_count() >= 5; }, 10000ms, 10ms))
        << disp_->log();
    auto elapsed = clock_type::now() - t0;
    auto calls = gws_["gw1"]->calls();
    // 5000 over three equal weights: fair 1666.67 -> target 1667, max ceil(3000 - 1666.67).
    for (auto& c : calls) {
        EXPECT_EQ(c.body, (json{{"target", 1667}, {"rate", 150}, {"max", 1334}})) << c.body;
        EXPECT_EQ(c.authorization, "Bearer " + admin_token);
    }
    // Once per 200 ms interval: never two within one (100 ms of slack for a loaded machine),
    // never more than the time allows.
    for (size_t i = 1; i < calls.size(); ++i) EXPECT_GE(calls[i].at - calls[i - 1].at, 100ms) << i;
    EXPECT_LE(static_cast<double>(calls.size()), elapsed / 200ms + 2.0);
    EXPECT_EQ(gws_["gw2"]->call_count(), 0u);
    EXPECT_EQ(gws_["gw3"]->call_count(), 0u);

    auto g1 = gateway("gw1");
    EXPECT_NEAR(g1["fair_share"].get<double>(), 1666.7, 0.05);
    EXPECT_NEAR(gateway("gw2")["fair_share"].get<double>(), 1666.7, 0.05);
    ASSERT_TRUE(g1["last_rebalance"].is_object()) << g1.dump();
    EXPECT_EQ(g1["last_rebalance"]["target"], 1667);
    EXPECT_EQ(g1["last_rebalance"]["max"], 1334);
    EXPECT_EQ(g1["last_rebalance"]["result"], "ok");
    EXPECT_EQ(g1["last_rebalance"]["status"], 200);
    EXPECT_EQ(g1["last_rebalance"]["answer"],
              (json{{"sessions", 3000},
                    {"target", 1667},
                    {"to_move", 1333}}));  // the fake: min(max, 3000 - 1667)
    EXPECT_TRUE(gateway("gw2")["last_rebalance"].is_null());
    auto s = status()["rebalance"];
    EXPECT_EQ(s["enabled"], true);
    EXPECT_EQ(s["interval_ms"], 200);
    EXPECT_EQ(s["triggered"], true);
    double ok = metric("imgate_dispatcher_rebalance_requests_total{gateway=\"gw1\",result=\"ok\"}");
    EXPECT_GE(ok, 5);
    EXPECT_EQ(metric("imgate_dispatcher_rebalance_sessions_asked_total{gateway=\"gw1\"}"),
              ok * 1334);

    // Balanced within the threshold (fair 1666.7, gw1 below 1833.3): the requests stop.
    gws_["gw1"]->set_connections(1800);
    gws_["gw2"]->set_connections(1600);
    gws_["gw3"]->set_connections(1600);
    ASSERT_TRUE(wait_pulled({{"gw1", 1800}, {"gw2", 1600}, {"gw3", 1600}}));
    wait_rounds(1);  // a request of a round evaluated on the old pulls may still land
    auto settled = gws_["gw1"]->call_count();
    wait_rounds(4);
    EXPECT_EQ(gws_["gw1"]->call_count(), settled);
    for (auto* id : {"gw2", "gw3"}) EXPECT_EQ(gws_[id]->call_count(), 0u);

    // Overfull again, and the gateway refuses (as one that drains does): counted as failed and
    // shown with its status; the dispatcher asks again the next interval.
    gws_["gw1"]->set_answer(409);
    gws_["gw1"]->set_connections(3000);
    gws_["gw2"]->set_connections(1000);
    gws_["gw3"]->set_connections(1000);
    ASSERT_TRUE(eventually(
        [&] {
            return metric(
                       "imgate_dispatcher_rebalance_requests_total{gateway=\"gw1\","
                       "result=\"failed\"}") >= 2;
        },
        10000ms, 20ms));
    auto last = gateway("gw1")["last_rebalance"];
    EXPECT_EQ(last["result"], "failed");
    EXPECT_EQ(last["status"], 409);
    EXPECT_EQ(last["answer"]["error"], "draining");
    // Failed requests ask nobody to move anything.
    EXPECT_EQ(
        metric("imgate_dispatcher_rebalance_sessions_asked_total{gateway=\"gw1\"}"),
        metric("imgate_dispatcher_rebalance_requests_total{gateway=\"gw1\",result=\"ok\"}") * 1334);
}

TEST_F(DispatcherRebalance, DisabledSendsNothingUntilAReloadEnablesIt) {
    start({"gw1", "gw2"}, "{enabled: false, interval: 150ms}");
    gws_["gw1"]->set_connections(4000);
    gws_["gw2"]->set_connections(0);
    ASSERT_TRUE(wait_pulled({{"gw1", 4000}, {"gw2", 0}})) << disp_->log();
    wait_rounds(5);
    EXPECT_EQ(gws_["gw1"]->call_count(), 0u);
    EXPECT_EQ(gws_["gw2"]->call_count(), 0u);
    // The fair shares are shown all the same.
    EXPECT_EQ(status()["rebalance"]["enabled"], false);
    EXPECT_DOUBLE_EQ(gateway("gw1")["fair_share"].get<double>(), 2000);
    EXPECT_EQ(metric("imgate_dispatcher_rebalance_requests_total{gateway=\"gw1\",result=\"ok\"}"),
              -1);

    write_config("{enabled: true, interval: 150ms, max_per_request: 700, rate: 2.5}", "0ms");
    reload();
    ASSERT_TRUE(eventually([&] { return gws_["gw1"]->call_count() >= 2; }, 5000ms, 10ms))
        << disp_->log();
    for (auto& c : gws_["gw1"]->calls())
        EXPECT_EQ(c.body, (json{{"target", 2000}, {"rate", 2.5}, {"max", 700}}));
    EXPECT_EQ(gws_["gw2"]->call_count(), 0u);
}

TEST_F(DispatcherRebalance, NothingWhileTheGatewayBelowFairIsInSlowStart) {
    start({"gw1", "gw2"}, "{enabled: true, interval: 150ms}", "1h");
    gws_["gw1"]->set_connections(3000);
    gws_["gw2"]->set_connections(3000);
    ASSERT_TRUE(wait_pulled({{"gw1", 3000}, {"gw2", 3000}})) << disp_->log();
    // gw2 goes down and comes back empty: it ramps in for an hour.
    gws_["gw2"]->set_failing(true);
    ASSERT_TRUE(eventually([&] { return gateway("gw2")["state"] == "down"; }));
    gws_["gw2"]->set_connections(0);
    gws_["gw2"]->set_failing(false);
    ASSERT_TRUE(wait_pulled({{"gw1", 3000}, {"gw2", 0}}));
    EXPECT_LT(gateway("gw2")["slow_start_factor"].get<double>(), 1.0);
    wait_rounds(5);
    EXPECT_EQ(gws_["gw1"]->call_count(), 0u);
    EXPECT_EQ(status()["rebalance"]["triggered"], false);
    EXPECT_DOUBLE_EQ(gateway("gw1")["fair_share"].get<double>(), 1500);

    // Slow start over (a reload with slow_start 0): gw1 is asked to come down to 1500.
    write_config("{enabled: true, interval: 150ms}", "0ms");
    reload();
    ASSERT_TRUE(eventually([&] { return gws_["gw1"]->call_count() >= 1; }, 5000ms, 10ms))
        << disp_->log();
    EXPECT_EQ(gws_["gw1"]->calls()[0].body, (json{{"target", 1500}, {"rate", 200}, {"max", 1500}}));
    EXPECT_EQ(gws_["gw2"]->call_count(), 0u);
}

TEST_F(DispatcherRebalance, EnabledWithoutAnAdminTokenDoesNotStart) {
    write_file(dir_.file("fleet.yaml"),
               "gateways:\n  - {id: gw1, client: 127.0.0.1:19001, admin: 127.0.0.1:19201, rpc: "
               "127.0.0.1:19101}\n");
    write_file(dir_.file("dispatcher.yaml"), "fleet: fleet.yaml\nrebalance:\n  enabled: true\n");
    auto [rc, out] = run_command("timeout 30 " + binary_path("imgate-dispatcher") + " --config " +
                                 dir_.file("dispatcher.yaml") + " --check-config 2>&1");
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("dispatcher.yaml:3:3: rebalance.enabled: true needs rebalance.token_file"),
              std::string::npos)
        << out;
}

}  // namespace
