// The real imgate-dispatcher binary against in-process fake gateways whose /status we script:
// the public contract, drain/full/overload exclusion, fall/rise on a gateway that stops
// answering, 503, SIGHUP reload (applied and refused), and the slowloris deadline.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "../support/loopback_http.hpp"
#include "../support/process.hpp"
#include "common/http_server.hpp"
#include "common/metrics.hpp"

namespace {

using namespace imgate;
using namespace imgate::test;
using json = nlohmann::json;

// A gateway admin listener serving a scripted GET /status from its own io thread.
class fake_gateway {
  public:
    enum class mode { normal, hang, error };

    explicit fake_gateway(std::string id) : id_(std::move(id)) {
        status_ = {{"id", id_},         {"state", "serving"},
                   {"connections", 0},  {"max_connections", 10000},
                   {"sessions", 0},     {"full", false},
                   {"load", 0.0},       {"pid", 4242},
                   {"version", "fake"}, {"uptime_s", 100.0}};
        http_handler h = [this](http_request_ctx) -> asio::awaitable<http_response> {
            auto m = mode_.load();
            if (m == mode::hang) {
                // Like a SIGSTOPped process: the connection is accepted, nothing comes back.
                asio::steady_timer t(co_await asio::this_coro::executor);
                t.expires_after(std::chrono::seconds(3));
                co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
                co_return http_response::error(http::status::service_unavailable, "late");
            }
            if (m == mode::error)
                co_return http_response::error(http::status::internal_server_error, "boom");
            std::lock_guard lk(mu_);
            co_return http_response::json(http::status::ok, status_.dump());
        };
        http_.server().route(http::verb::get, "/status", h);
        http_.start();
    }
    std::string admin() const { return http_.addr(); }
    void set(const std::string& key, json v) {
        std::lock_guard lk(mu_);
        status_[key] = std::move(v);
    }
    void set_mode(mode m) { mode_ = m; }

  private:
    std::string id_;
    std::mutex mu_;
    json status_;
    std::atomic<mode> mode_{mode::normal};
    // Last: destroyed (stopped and joined) before the state its handlers use.
    loopback_http http_{[this] {
        http_server_options o;
        o.name = "fake-" + id_;
        return o;
    }()};
};

struct gw_def {
    std::string id;
    int weight;
    std::string region = "local";
};

std::string fleet_yaml(const std::vector<gw_def>& defs,
                       const std::map<std::string, std::unique_ptr<fake_gateway>>& gws) {
    std::string y = "gateways:\n";
    int n = 0;
    for (auto& d : defs) {
        ++n;
        y += "  - id: " + d.id + "\n";
        y += "    client: 127.0.0.1:" + std::to_string(19000 + n) + "\n";
        y += "    admin: " + gws.at(d.id)->admin() + "\n";
        y += "    rpc: 127.0.0.1:" + std::to_string(19100 + n) + "\n";
        y += "    weight: " + std::to_string(d.weight) + "\n";
        y += "    region: " + d.region + "\n";
    }
    return y;
}

const char* dispatcher_yaml = R"(id: test-disp
fleet: fleet.yaml
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
poll: {interval: 50ms, timeout: 40ms, rise: 2, fall: 2, slow_start: 0ms}
regions:
  default: local
  table:
    - {cidr: 10.0.0.0/8, region: far}
alternates: 2
http: {read_timeout: 400ms, write_timeout: 1s}
log: {level: info}
)";

class DispatcherFakeFleet : public ::testing::Test {
  protected:
    void start(std::vector<gw_def> defs, const std::string& extra_yaml = "") {
        defs_ = defs;
        for (auto& d : defs) gws_[d.id] = std::make_unique<fake_gateway>(d.id);
        write_file(dir_.file("fleet.yaml"), fleet_yaml(defs, gws_));
        write_file(dir_.file("dispatcher.yaml"), yaml_ + extra_yaml);
        disp_ = std::make_unique<daemon_process>(
            "dispatcher", binary_path("imgate-dispatcher"),
            std::vector<std::string>{"--config", dir_.file("dispatcher.yaml")}, dir_);
        ASSERT_TRUE(disp_->wait_ready()) << disp_->log();
        pub_ = disp_->addr("public");
        admin_ = disp_->addr("admin");
    }

    json status() { return http_get(admin_, "/status").json(); }
    std::string state_of(const std::string& id) {
        auto s = status();
        if (!s.is_object()) return "?";
        for (auto& g : s["gateways"])
            if (g["id"] == id) return g["state"];
        return "?";
    }
    bool wait_state(const std::string& id, const std::string& st,
                    std::chrono::milliseconds timeout = 5000ms) {
        return eventually([&] { return state_of(id) == st; }, timeout, 10ms);
    }
    std::map<std::string, int> picks(int n, const std::string& query = "") {
        std::map<std::string, int> c;
        for (int i = 0; i < n; ++i) {
            auto r = http_get(pub_, "/get-tcp-ip" + query);
            if (r.status == 200)
                c[r.json()["id"].get<std::string>()]++;
            else
                c["<" + std::to_string(r.status) + ">"]++;
        }
        return c;
    }
    double metric(const std::string& series) {
        auto body = http_get(admin_, "/metrics").body;
        auto pos = body.find("\n" + series + " ");
        if (pos == std::string::npos) return -1;
        return std::stod(body.substr(pos + series.size() + 2));
    }

    std::string yaml_ = dispatcher_yaml;  // a test may edit it before start()
    temp_dir dir_;
    std::vector<gw_def> defs_;
    std::map<std::string, std::unique_ptr<fake_gateway>> gws_;
    std::unique_ptr<daemon_process> disp_;
    std::string pub_, admin_;
};

TEST_F(DispatcherFakeFleet, HandsOutByWeightWithAlternates) {
    start({{"gw1", 100}, {"gw2", 100}, {"gw3", 50}});
    for (auto* id : {"gw1", "gw2", "gw3"}) ASSERT_TRUE(wait_state(id, "up")) << disp_->log();

    auto r = http_get(pub_, "/get-tcp-ip?uid=alice");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["Content-Type"], "application/json");
    auto j = r.json();
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_EQ(j["host"], "127.0.0.1");
    ASSERT_EQ(j["alternates"].size(), 2u);
    std::set<std::string> ids{j["id"].get<std::string>()};
    for (auto& a : j["alternates"]) {
        ids.insert(a["id"].get<std::string>());
        EXPECT_EQ(a["host"], "127.0.0.1");
        EXPECT_GT(a["port"].get<int>(), 19000);
    }
    EXPECT_EQ(ids.size(), 3u);  // distinct

    auto c = picks(500);
    EXPECT_NEAR(c["gw1"], 200, 50);
    EXPECT_NEAR(c["gw2"], 200, 50);
    EXPECT_NEAR(c["gw3"], 100, 40);
    auto s = status();
    EXPECT_EQ(s["id"], "test-disp");
    EXPECT_EQ(s["poll_interval_ms"], 50);
    EXPECT_EQ(s["poll_fast_interval_ms"], 50);  // 100 ms by default, capped at the interval
    int total = 0;
    for (auto& g : s["gateways"]) total += g["picks"].get<int>();
    EXPECT_EQ(total, 501);
    EXPECT_EQ(s["picks"], 501);
    EXPECT_EQ(metric("imgate_dispatcher_picks_total{gateway=\"gw3\"}"),
              s["gateways"][2]["picks"].get<double>());
}

TEST_F(DispatcherFakeFleet, PublicListenerRefusesEverythingElse) {
    start({{"gw1", 100}});
    ASSERT_TRUE(wait_state("gw1", "up")) << disp_->log();
    auto bad = [&](const std::string& target, const std::string& code) {
        auto r = http_get(pub_, target);
        EXPECT_EQ(r.status, 400) << target;
        EXPECT_EQ(r.json().value("error", ""), code) << target << " " << r.body;
    };
    bad("/get-tcp-ip?bogus=1", "unknown_parameter");
    bad("/get-tcp-ip?region=mars", "unknown_region");
    bad("/get-tcp-ip?exclude=gw1,,gw2", "bad_exclude");
    bad("/get-tcp-ip?uid=" + std::string(129, 'u'), "bad_uid");
    bad("/get-tcp-ip?uid=%G1", "bad_query");
    EXPECT_EQ(http_get(pub_, "/get-tcp-ip?region=far").status, 200);  // known, empty: fallback
    EXPECT_EQ(http_get(pub_, "/nope").status, 404);
    EXPECT_EQ(http_get(pub_, "/status").status, 404);  // admin routes are not public
    EXPECT_EQ(http_get(pub_, "/healthz").status, 200);
    auto post = http_request(pub_, http::verb::post, "/get-tcp-ip", "{}");
    EXPECT_TRUE(post.status == 405 || post.status == 413) << post.status;
    auto big = http_request(pub_, http::verb::get, "/get-tcp-ip", "",
                            {{"X-Filler", std::string(9000, 'x')}});
    EXPECT_EQ(big.status, 431);
    EXPECT_GE(metric("imgate_dispatcher_bad_requests_total{reason=\"unknown_parameter\"}"), 1);
}

TEST_F(DispatcherFakeFleet, DrainingFullAndOverloadedGatewaysAreNotHandedOut) {
    start({{"gw1", 100}, {"gw2", 100}, {"gw3", 100}});
    for (auto* id : {"gw1", "gw2", "gw3"}) ASSERT_TRUE(wait_state(id, "up")) << disp_->log();
    gws_["gw1"]->set("state", "draining");
    gws_["gw2"]->set("full", true);
    ASSERT_TRUE(wait_state("gw1", "draining"));
    ASSERT_TRUE(wait_state("gw2", "overloaded"));
    auto c = picks(100);
    EXPECT_EQ(c["gw3"], 100);
    // Overload by connections, with hysteresis: readmitted only at or below low water (0.8).
    gws_["gw2"]->set("full", false);
    gws_["gw2"]->set("connections", 9500);
    gws_["gw1"]->set("state", "serving");
    ASSERT_TRUE(wait_state("gw1", "up"));
    gws_["gw2"]->set("connections", 8500);
    // Several pulls later it is still out: hysteresis, not a missed pull.
    int pulls_before = 0;
    ASSERT_TRUE(eventually([&] {
        auto s = status();
        pulls_before = static_cast<int>(
            metric("imgate_dispatcher_pulls_total{gateway=\"gw2\",result=\"ok\"}"));
        return s["gateways"][1]["connections"] == 8500;
    }));
    ASSERT_TRUE(eventually([&] {
        return metric("imgate_dispatcher_pulls_total{gateway=\"gw2\",result=\"ok\"}") >=
               pulls_before + 3;
    }));
    EXPECT_EQ(state_of("gw2"), "overloaded");
    gws_["gw2"]->set("connections", 100);
    EXPECT_TRUE(wait_state("gw2", "up"));
}

TEST_F(DispatcherFakeFleet, SilentGatewayGoesDownAfterFallAndReturnsAfterRise) {
    start({{"gw1", 100}, {"gw2", 100}});
    for (auto* id : {"gw1", "gw2"}) ASSERT_TRUE(wait_state(id, "up")) << disp_->log();
    gws_["gw1"]->set_mode(fake_gateway::mode::hang);
    ASSERT_TRUE(wait_state("gw1", "down")) << disp_->log();
    auto s = status();
    EXPECT_NE(s["gateways"][0]["last_error"].get<std::string>().find("timeout"), std::string::npos)
        << s.dump();
    EXPECT_NE(s["gateways"][0]["reason"].get<std::string>().find("down since"), std::string::npos);
    EXPECT_EQ(picks(50)["gw2"], 50);
    gws_["gw1"]->set_mode(fake_gateway::mode::normal);
    ASSERT_TRUE(wait_state("gw1", "up")) << disp_->log();
    EXPECT_GT(picks(100)["gw1"], 10);
    // An HTTP error from /status is a failed pull too, with the code in last_error.
    gws_["gw2"]->set_mode(fake_gateway::mode::error);
    ASSERT_TRUE(wait_state("gw2", "down"));
    EXPECT_NE(status()["gateways"][1]["last_error"].get<std::string>().find("HTTP 500"),
              std::string::npos);
}

// poll.fast_interval: between states, the next pull comes after 50 ms instead of the 2 s
// interval. Without it, rise 2 would need a second regular pull (>= 1.8 s with jitter) before a
// new gateway is handed out, and fall 2 a second one after the first failure.
TEST_F(DispatcherFakeFleet, FastIntervalBetweenStatesJoinsAndLeavesSooner) {
    const std::string from = "poll: {interval: 50ms,";
    yaml_.replace(yaml_.find(from), from.size(), "poll: {interval: 2s, fast_interval: 50ms,");
    auto t0 = std::chrono::steady_clock::now();
    start({{"gw1", 100}});
    ASSERT_TRUE(wait_state("gw1", "up", 5s)) << disp_->log();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
    EXPECT_EQ(picks(5)["gw1"], 5);

    gws_["gw1"]->set_mode(fake_gateway::mode::error);
    // The first failed pull shows as last_error while the gateway is still up (fall 2).
    auto first_failure = [&] {
        auto s = status();
        if (!s.is_object()) return false;
        auto& e = s["gateways"][0]["last_error"];
        return e.is_string() && !e.get<std::string>().empty();
    };
    ASSERT_TRUE(eventually(first_failure, 5s, 5ms)) << disp_->log();
    auto t1 = std::chrono::steady_clock::now();
    ASSERT_TRUE(wait_state("gw1", "down", 5s)) << disp_->log();
    EXPECT_LT(std::chrono::steady_clock::now() - t1, 1000ms);
}

TEST_F(DispatcherFakeFleet, WrongIdOrBadStatusIsAFailedPull) {
    start({{"gw1", 100}});
    gws_["gw1"]->set("id", "gw9");
    ASSERT_TRUE(eventually([&] {
        auto s = status();
        return s.is_object() && s["gateways"][0]["last_error"].is_string() &&
               s["gateways"][0]["last_error"].get<std::string>().find("id mismatch") !=
                   std::string::npos;
    })) << status().dump();
    gws_["gw1"]->set("id", "gw1");
    gws_["gw1"]->set("load", "high");
    ASSERT_TRUE(eventually([&] {
        auto s = status();
        return s["gateways"][0]["last_error"] == "status field 'load' is not a number in 0..1";
    })) << status().dump();
    EXPECT_EQ(state_of("gw1"), "down");
}

TEST_F(DispatcherFakeFleet, NoGatewayAnswers503WithRetryAfter) {
    start({{"gw1", 100}, {"gw2", 100}});
    ASSERT_TRUE(wait_state("gw1", "up"));
    ASSERT_TRUE(wait_state("gw2", "up"));
    auto ex = http_get(pub_, "/get-tcp-ip?exclude=gw1,gw2");
    EXPECT_EQ(ex.status, 503);
    gws_["gw1"]->set_mode(fake_gateway::mode::error);
    gws_["gw2"]->set("state", "stopping");
    ASSERT_TRUE(wait_state("gw1", "down"));
    ASSERT_TRUE(wait_state("gw2", "draining"));
    auto r = http_get(pub_, "/get-tcp-ip?uid=bob");
    EXPECT_EQ(r.status, 503);
    // Spread per answer (issue 14): base 1 s (the 50 ms poll interval rounded up) plus
    // uniform [0, reconnect.jitter = 1 s]; dispatcher_reconnect_policy_test checks the spread.
    auto j = r.json();
    EXPECT_EQ(j["error"], "no_gateway_available") << r.body;
    auto ms = j.value("retry_after_ms", int64_t(-1));
    EXPECT_GE(ms, 1000) << r.body;
    EXPECT_LE(ms, 2000) << r.body;
    EXPECT_EQ(r.headers["Retry-After"], std::to_string((ms + 999) / 1000));
    EXPECT_EQ(metric("imgate_dispatcher_no_gateway_total"), 2);
}

TEST_F(DispatcherFakeFleet, SighupAppliesWeightsKeepsStateAndRefusesABrokenFile) {
    start({{"gw1", 100}, {"gw2", 100}});
    ASSERT_TRUE(wait_state("gw1", "up"));
    ASSERT_TRUE(wait_state("gw2", "up"));
    gws_["gw3"] = std::make_unique<fake_gateway>("gw3");
    write_file(dir_.file("fleet.yaml"), fleet_yaml({{"gw1", 100}, {"gw3", 100}, {"gw2", 0}}, gws_));
    auto before = status()["gateways"][0];
    disp_->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return metric("imgate_dispatcher_reloads_total") == 1; }));
    auto s = status();
    EXPECT_EQ(s["last_reload"]["ok"], true);
    EXPECT_EQ(s["gateways"][0]["id"], "gw1");
    // Kept, not re-created: same state since the same moment, counters carried on.
    EXPECT_EQ(s["gateways"][0]["state"], "up");
    EXPECT_EQ(s["gateways"][0]["state_since_ms"], before["state_since_ms"]);
    EXPECT_GE(s["gateways"][0]["good_pulls_in_row"].get<int>(),
              before["good_pulls_in_row"].get<int>());
    EXPECT_EQ(s["gateways"][2]["state"], "disabled");  // weight 0 applies at once
    EXPECT_EQ(s["gateways"][1]["id"], "gw3");
    ASSERT_TRUE(wait_state("gw3", "up"));
    ASSERT_TRUE(wait_state("gw1", "up"));
    auto c = picks(100);
    EXPECT_EQ(c["gw2"], 0);
    EXPECT_EQ(c["gw1"] + c["gw3"], 100);

    // A broken edit is refused: old config keeps running, error with file:line, counted.
    write_file(dir_.file("fleet.yaml"),
               fleet_yaml({{"gw1", 100}, {"gw3", 100}}, gws_) + "    wieght: 5\n");
    disp_->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return metric("imgate_dispatcher_reload_failures_total") == 1; }));
    s = status();
    EXPECT_EQ(s["last_reload"]["ok"], false);
    EXPECT_NE(s["last_reload"]["error"].get<std::string>().find(
                  "fleet.yaml:14:5: gateways[1].wieght: unknown key"),
              std::string::npos)
        << s["last_reload"];
    EXPECT_EQ(s["gateways"].size(), 3u);
    auto still = picks(20);  // the running config still hands out gw1 and gw3
    EXPECT_EQ(still["gw1"] + still["gw3"], 20);
    EXPECT_NE(disp_->log().find("reload refused"), std::string::npos);
    EXPECT_TRUE(disp_->running());
}

TEST_F(DispatcherFakeFleet, SlowlorisConnectionIsClosedAtTheReadDeadline) {
    start({{"gw1", 100}});
    auto [host, port] = split_hostport(pub_);
    asio::io_context io;
    beast::tcp_stream s(io);
    s.connect(asio::ip::tcp::endpoint(asio::ip::make_address(host), port));
    std::string partial = "GET /get-tcp-ip HTTP/1.1\r\nHost: x\r\n";
    s.expires_after(std::chrono::seconds(1));
    asio::write(s.socket(), asio::buffer(partial));
    // read_timeout is 400ms: the server must close well before our 5s guard.
    s.expires_after(std::chrono::seconds(5));
    char buf[256];
    boost::system::error_code ec;
    auto started = std::chrono::steady_clock::now();
    s.socket().read_some(asio::buffer(buf), ec);
    EXPECT_EQ(ec, asio::error::eof);
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));
    EXPECT_GE(metric("imgate_http_read_timeouts_total{server=\"public\"}"), 1);
}

// Listening sockets (TCP state 0A) bound to 127.0.0.1:port, from /proc/net/tcp.
int listening_sockets_on(uint16_t port) {
    std::ifstream in("/proc/net/tcp");
    char want[32];
    std::snprintf(want, sizeof want, "0100007F:%04X", port);
    int n = 0;
    for (std::string line; std::getline(in, line);) {
        std::istringstream f(line);
        std::string sl, local, remote, state;
        f >> sl >> local >> remote >> state;
        if (local == want && state == "0A") ++n;
    }
    return n;
}

TEST_F(DispatcherFakeFleet, SeveralThreadsServeConcurrentClientsConsistently) {
    start({{"gw1", 100}, {"gw2", 100}, {"gw3", 100}}, "threads: 2\n");
    for (auto* id : {"gw1", "gw2", "gw3"}) ASSERT_TRUE(wait_state(id, "up")) << disp_->log();
    // One SO_REUSEPORT socket per thread on the public port; the admin listener stays single.
    EXPECT_EQ(listening_sockets_on(split_hostport(pub_).second), 2);
    EXPECT_EQ(listening_sockets_on(split_hostport(admin_).second), 1);
    std::atomic<int> ok{0}, failed{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t)
        clients.emplace_back([&] {
            for (int i = 0; i < 150; ++i) {
                auto r = http_get(pub_, "/get-tcp-ip?uid=t" + std::to_string(i));
                (r.status == 200 && r.json().contains("id") ? ok : failed)++;
            }
        });
    for (auto& c : clients) c.join();
    EXPECT_EQ(ok.load(), 600);
    EXPECT_EQ(failed.load(), 0);
    EXPECT_EQ(status()["picks"], 600);  // every hand-out counted exactly once
}

TEST(DispatcherCli, CheckConfigReportsFileAndLine) {
    temp_dir dir;
    write_file(dir.file("fleet.yaml"),
               "gateways:\n  - {id: gw1, client: 127.0.0.1:1, admin: 127.0.0.1:2, rpc: "
               "127.0.0.1:3}\n");
    write_file(dir.file("ok.yaml"), "fleet: fleet.yaml\n");
    write_file(dir.file("bad.yaml"), "fleet: fleet.yaml\npoll:\n  rise: 0\n");
    auto bin = binary_path("imgate-dispatcher");
    auto [rc, out] = run_command(bin + " --check-config --config " + dir.file("ok.yaml"));
    EXPECT_EQ(rc, 0) << out;
    auto [rc2, out2] = run_command(bin + " --check-config --config " + dir.file("bad.yaml"));
    EXPECT_EQ(rc2, 1);
    EXPECT_NE(out2.find("bad.yaml:3:3: poll.rise: must be between 1 and 100"), std::string::npos)
        << out2;
    auto [rc3, out3] = run_command(bin + " --version");
    EXPECT_EQ(rc3, 0);
    EXPECT_NE(out3.find("imgate-dispatcher "), std::string::npos);
}

}  // namespace
