// imgate-dispatcher against real imgate-gateway processes: a gateway killed with SIGKILL stops
// being handed out; a SIGSTOPped one is marked down and readmitted after SIGCONT.
#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>

#include "../support/process.hpp"

namespace {

using namespace imgate::test;
using json = nlohmann::json;

class DispatcherRealGateways : public ::testing::Test {
  protected:
    void SetUp() override {
        for (auto* f : {"token.secret", "admin.token", "cluster.secret"})
            write_file(dir_.file(f), read_file(source_path(std::string("config/local/") + f)));
        auto gw_yaml = read_file(source_path("config/local/gateway.yaml"));
        gw_yaml = std::regex_replace(gw_yaml, std::regex("workers: 0"), "workers: 1");
        write_file(dir_.file("gateway.yaml"), gw_yaml);
        std::string fleet = "cluster:\n  secret_file: cluster.secret\ngateways:\n";
        for (auto* id : {"gw1", "gw2", "gw3"}) {
            fleet += std::string("  - id: ") + id + "\n";
            fleet += "    client: 127.0.0.1:" + std::to_string(free_port()) + "\n";
            fleet += "    admin: 127.0.0.1:" + std::to_string(free_port()) + "\n";
            fleet += "    rpc: 127.0.0.1:" + std::to_string(free_port()) + "\n";
        }
        write_file(dir_.file("fleet.yaml"), fleet);
        write_file(dir_.file("dispatcher.yaml"),
                   "fleet: fleet.yaml\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"
                   "poll: {interval: 100ms, timeout: 80ms, rise: 2, fall: 2, slow_start: 0ms}\n"
                   "log: {level: info}\n");
        for (auto* id : {"gw1", "gw2", "gw3"}) {
            gws_[id] = std::make_unique<daemon_process>(
                id, binary_path("imgate-gateway"),
                std::vector<std::string>{"--config", dir_.file("gateway.yaml"), "--id", id}, dir_);
        }
        for (auto& [id, p] : gws_) ASSERT_TRUE(p->wait_ready()) << p->log();
        disp_ = std::make_unique<daemon_process>(
            "dispatcher", binary_path("imgate-dispatcher"),
            std::vector<std::string>{"--config", dir_.file("dispatcher.yaml")}, dir_);
        ASSERT_TRUE(disp_->wait_ready()) << disp_->log();
        pub_ = disp_->addr("public");
        admin_ = disp_->addr("admin");
        for (auto* id : {"gw1", "gw2", "gw3"})
            ASSERT_TRUE(wait_state(id, "up")) << id << "\n" << disp_->log();
    }

    std::string state_of(const std::string& id) {
        auto s = http_get(admin_, "/status").json();
        if (!s.is_object()) return "?";
        for (auto& g : s["gateways"])
            if (g["id"] == id) return g["state"];
        return "?";
    }
    bool wait_state(const std::string& id, const std::string& st) {
        return eventually([&] { return state_of(id) == st; }, 5000ms, 10ms);
    }
    std::map<std::string, int> picks(int n) {
        std::map<std::string, int> c;
        for (int i = 0; i < n; ++i) {
            auto r = http_get(pub_, "/get-tcp-ip?uid=u" + std::to_string(i));
            c[r.status == 200 ? r.json()["id"].get<std::string>() : "error"]++;
        }
        return c;
    }

    temp_dir dir_;
    std::map<std::string, std::unique_ptr<daemon_process>> gws_;
    std::unique_ptr<daemon_process> disp_;
    std::string pub_, admin_;
};

TEST_F(DispatcherRealGateways, KilledGatewayStopsBeingHandedOut) {
    EXPECT_GT(picks(60)["gw1"], 0);
    gws_["gw1"]->signal(SIGKILL);
    ASSERT_TRUE(gws_["gw1"]->wait_exit().has_value());
    // Marked down within fall pulls (plus a timeout), then never handed out.
    ASSERT_TRUE(wait_state("gw1", "down")) << disp_->log();
    auto s = http_get(admin_, "/status").json();
    EXPECT_NE(s["gateways"][0]["last_error"].get<std::string>().find("connect"), std::string::npos)
        << s["gateways"][0];
    auto c = picks(60);
    EXPECT_EQ(c["gw1"], 0);
    EXPECT_EQ(c["gw2"] + c["gw3"], 60);
}

TEST_F(DispatcherRealGateways, StoppedGatewayIsMarkedDownAndReadmittedAfterSigcont) {
    gws_["gw2"]->signal(SIGSTOP);
    ASSERT_TRUE(wait_state("gw2", "down")) << disp_->log();
    auto s = http_get(admin_, "/status").json();
    EXPECT_NE(s["gateways"][1]["last_error"].get<std::string>().find("timeout"), std::string::npos)
        << s["gateways"][1];
    EXPECT_EQ(picks(60)["gw2"], 0);
    gws_["gw2"]->signal(SIGCONT);
    ASSERT_TRUE(wait_state("gw2", "up")) << disp_->log();
    EXPECT_GT(picks(90)["gw2"], 5);
}

}  // namespace
