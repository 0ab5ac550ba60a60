// imgate-dispatcher against real imgate-gateway processes: a gateway killed with SIGKILL stops
// being handed out; a SIGSTOPped one is marked down and readmitted after SIGCONT.
#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "../support/local_fleet.hpp"
#include "../support/process.hpp"

namespace {

using namespace imgate::test;
using json = nlohmann::json;

class DispatcherRealGateways : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string why;
        ASSERT_TRUE(fleet_.start(&why)) << why;
        disp_ = &fleet_.dispatcher();
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

    local_fleet fleet_{{.ids = {"gw1", "gw2", "gw3"}}};
    std::map<std::string, std::unique_ptr<daemon_process>>& gws_ = fleet_.gateways();
    daemon_process* disp_ = nullptr;
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
    // Readmitted once it is up and back in the mesh: its peers dropped their links to it while
    // it was stopped, and a gateway cut off from the working mesh is degraded, not handed out.
    ASSERT_TRUE(eventually(
        [&] {
            auto g = http_get(admin_, "/status").json()["gateways"][1];
            return g["state"] == "up" && g["links_up"].is_number() &&
                   g["links_up"] == g["peers_expected"];
        },
        15000ms))
        << http_get(admin_, "/status").body << disp_->log();
    EXPECT_GT(picks(90)["gw2"], 5);
}

}  // namespace
