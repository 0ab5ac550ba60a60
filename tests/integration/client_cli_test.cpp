// The `imgate` tool against a real fleet (2 gateways + dispatcher on free loopback ports), driven
// exactly as a user would: listen, send, push, token, load; fail-over after a gateway dies or
// drains; a replaced session exits without fighting.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "../support/local_fleet.hpp"
#include "../support/process.hpp"
#include "../support/tool_process.hpp"

namespace {

using namespace imgate::test;
using json = nlohmann::json;

class ClientCli : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string why;
        ASSERT_TRUE(fleet_.start(&why)) << why;
        disp_ = &fleet_.dispatcher();
        url_ = "http://" + disp_->addr("public");
        // Both gateways in service before the first client asks.
        ASSERT_TRUE(eventually(
            [&] {
                auto s = http_get(disp_->addr("admin"), "/status").json();
                if (!s.is_object()) return false;
                int up = 0;
                for (auto& g : s["gateways"]) up += g["state"] == "up";
                return up == 2;
            },
            5000ms))
            << disp_->log();
    }

    std::vector<std::string> with_auth(std::vector<std::string> a) {
        a.push_back("--secret-file");
        a.push_back(dir_.file("token.secret"));
        return a;
    }

    std::pair<int, std::string> run(const std::string& args) {
        return run_command(binary_path("imgate") + " " + args + " 2>&1");
    }

    std::unique_ptr<tool_process> listen(const std::string& name, std::vector<std::string> extra) {
        std::vector<std::string> a{"listen", "--dispatcher", url_, "--json"};
        a.insert(a.end(), extra.begin(), extra.end());
        auto p = std::make_unique<tool_process>(dir_, name, with_auth(a));
        EXPECT_TRUE(eventually([&] { return p->connections() >= 1; }, 5000ms)) << p->err();
        return p;
    }

    std::string send_args(const std::string& rest) {
        return "send --dispatcher " + url_ + " --secret-file " + dir_.file("token.secret") + " " +
               rest;
    }

    local_fleet fleet_{
        {.ids = {"gw1", "gw2"},
         .poll = "{interval: 100ms, timeout: 80ms, rise: 1, fall: 1, slow_start: 0ms}",
         .gateway_edits = {{"reconnect_after: 1s", "reconnect_after: 100ms"}}}};
    const temp_dir& dir_ = fleet_.dir();
    std::map<std::string, std::unique_ptr<daemon_process>>& gws_ = fleet_.gateways();
    daemon_process* disp_ = nullptr;
    std::string url_;
};

TEST_F(ClientCli, ListenReceivesAcksAndTheSenderGetsAReceipt) {
    auto bob = listen("bob", {"--user", "bob", "--count", "2", "--timeout", "15s"});
    auto [rc, out] = run(send_args("--user alice --to bob --wait-receipt 5s --json 'hello bob'"));
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("\"status\":\"delivered\""), std::string::npos) << out;
    EXPECT_NE(out.find("\"type\":\"receipt\""), std::string::npos) << out;
    EXPECT_NE(out.find("\"user\":\"bob\""), std::string::npos) << out;
    auto [rc2, out2] = run(send_args("--user alice --to bob --text second"));
    EXPECT_EQ(rc2, 0) << out2;
    EXPECT_NE(out2.find("delivered: user bob, reached 1 session"), std::string::npos) << out2;
    ASSERT_EQ(bob->wait(), 0) << bob->err();
    auto lines = bob->json_lines();
    ASSERT_EQ(lines.size(), 2u) << bob->out();
    EXPECT_EQ(lines[0]["type"], "deliver");
    EXPECT_EQ(lines[0]["from"], "alice");
    EXPECT_EQ(lines[0]["text"], "hello bob");
    EXPECT_GT(lines[0]["server_msg_id"].get<uint64_t>(), 0u);
    EXPECT_EQ(lines[1]["text"], "second");
}

TEST_F(ClientCli, OfflineAndAuthErrorsHaveTheirExitCodes) {
    auto [rc, out] = run(send_args("--user alice --to nobody-here hi"));
    EXPECT_EQ(rc, 2) << out;
    EXPECT_NE(out.find("offline"), std::string::npos) << out;
    // A token signed with another secret: the ERROR frame's code and message are shown.
    write_secret_file(dir_.file("wrong.secret"), "not-the-gateway-secret-0123456789");
    auto [trc, token] = run("token --secret-file " + dir_.file("wrong.secret") + " --user alice");
    ASSERT_EQ(trc, 0);
    token.erase(token.find_last_not_of("\n") + 1);
    auto [rc2, out2] = run("send --dispatcher " + url_ + " --token " + token + " --to bob hi");
    EXPECT_EQ(rc2, 1) << out2;
    EXPECT_NE(out2.find("auth_failed"), std::string::npos) << out2;
    // Nothing listens on the given gateway: the error names the address.
    auto port = free_port();
    auto [rc3, out3] = run("send --gateway 127.0.0.1:" + std::to_string(port) + " --secret-file " +
                           dir_.file("token.secret") + " --user alice --to bob hi");
    EXPECT_EQ(rc3, 1);
    EXPECT_NE(out3.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << out3;
}

TEST_F(ClientCli, RoomAndPushReachTheListener) {
    auto carol =
        listen("carol", {"--user", "carol", "--room", "lobby", "--count", "2", "--timeout", "15s"});
    ASSERT_TRUE(eventually([&] {
        return carol->err().find("room lobby: ok") != std::string::npos;
    })) << carol->err();
    auto [rc, out] = run(send_args("--user alice --room lobby 'hi room'"));
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("delivered: room lobby, reached 1"), std::string::npos) << out;
    auto admin = gws_["gw2"]->addr("admin");  // push through either gateway reaches carol
    auto [prc, pout] = run("push --admin " + admin + " --admin-token-file " +
                           dir_.file("admin.token") + " --user carol 'from backend'");
    EXPECT_EQ(prc, 0) << pout;
    ASSERT_EQ(carol->wait(), 0) << carol->err();
    auto lines = carol->json_lines();
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["type"], "deliver");
    EXPECT_EQ(lines[0]["room"], "lobby");
    EXPECT_EQ(lines[1]["type"], "push");
    EXPECT_EQ(lines[1]["text"], "from backend");
}

TEST_F(ClientCli, ListenerReconnectsAfterItsGatewayDies) {
    auto dave = listen("dave", {"--user", "dave", "--count", "1", "--timeout", "18s"});
    auto first = dave->gateway();
    ASSERT_TRUE(first == "gw1" || first == "gw2") << dave->err();
    gws_[first]->signal(SIGKILL);
    ASSERT_TRUE(gws_[first]->wait_exit().has_value());
    ASSERT_TRUE(eventually([&] { return dave->connections() >= 2; }, 10000ms)) << dave->err();
    EXPECT_NE(dave->gateway(), first) << dave->err();
    auto [rc, out] = run(send_args("--user alice --to dave 'still there?'"));
    EXPECT_EQ(rc, 0) << out;
    ASSERT_EQ(dave->wait(), 0) << dave->err();
    EXPECT_EQ(dave->json_lines().at(0)["text"], "still there?");
}

TEST_F(ClientCli, DrainRedirectsTheListenerToAnotherGateway) {
    auto erin = listen("erin", {"--user", "erin", "--count", "1", "--timeout", "15s"});
    auto first = erin->gateway();
    auto admin_token = read_file(dir_.file("admin.token"));
    admin_token.erase(admin_token.find_last_not_of(" \n") + 1);
    auto r = http_request(gws_.at(first)->addr("admin"), boost::beast::http::verb::post, "/drain",
                          "", {{"Authorization", "Bearer " + admin_token}});
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_TRUE(eventually([&] { return erin->connections() >= 2; }, 10000ms)) << erin->err();
    EXPECT_NE(erin->err().find("redirected"), std::string::npos) << erin->err();
    EXPECT_NE(erin->gateway(), first);
    auto [rc, out] = run(send_args("--user alice --to erin moved"));
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(erin->wait(), 0) << erin->err();
}

TEST_F(ClientCli, ReplacedSessionExitsWithoutFighting) {
    auto gw = gws_["gw1"]->addr("client");
    auto a = std::make_unique<tool_process>(
        dir_, "a", with_auth({"listen", "--gateway", gw, "--user", "fay", "--device", "phone"}));
    ASSERT_TRUE(eventually([&] { return a->connections() == 1; }, 5000ms)) << a->err();
    auto b =
        std::make_unique<tool_process>(dir_, "b",
                                       with_auth({"listen", "--gateway", gw, "--user", "fay",
                                                  "--device", "phone", "--timeout", "1500ms"}));
    auto code = a->wait(5000ms);
    ASSERT_TRUE(code.has_value()) << a->err();
    EXPECT_EQ(*code, 3);
    EXPECT_NE(a->err().find("replaced"), std::string::npos) << a->err();
    EXPECT_EQ(a->connections(), 1);  // it did not reconnect
    EXPECT_EQ(b->wait(), 0) << b->err();
}

TEST_F(ClientCli, LoadAccountsForEverySend) {
    auto gws = gws_["gw1"]->addr("client") + "," + gws_["gw2"]->addr("client");
    auto [rc, out] = run("load --gateways " + gws + " --secret-file " + dir_.file("token.secret") +
                         " --clients 20 --rooms 2 --rate 100 --duration 1s --json -q");
    ASSERT_EQ(rc, 0) << out;
    auto j = json::parse(out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << out;
    EXPECT_EQ(j["connected"], 20);
    uint64_t results = 0;
    for (auto& [k, v] : j["results"].items()) results += v.get<uint64_t>();
    EXPECT_GT(j["sends"].get<uint64_t>(), 50u);
    EXPECT_EQ(results + j["missing"].get<uint64_t>() + j["not_queued"].get<uint64_t>(),
              j["sends"].get<uint64_t>());
    EXPECT_EQ(j["missing"], 0);
    EXPECT_GT(j["deliveries"].get<uint64_t>(), 0u);
    EXPECT_GT(j["latency_us"]["send_to_result"]["count"].get<uint64_t>(), 0u);
}

TEST_F(ClientCli, LoadRefusesNonLoopbackTargetsAndOverLimits) {
    auto [rc, out] =
        run("load --gateways 10.1.2.3:9001 --secret-file " + dir_.file("token.secret"));
    EXPECT_EQ(rc, 1);
    EXPECT_NE(out.find("loopback"), std::string::npos) << out;
    auto [rc2, out2] = run("load --dispatcher " + url_ + " --clients 20001 --secret-file " +
                           dir_.file("token.secret"));
    EXPECT_EQ(rc2, 1);
    EXPECT_NE(out2.find("--clients"), std::string::npos) << out2;
}

TEST_F(ClientCli, GetGatewayAndTokenAndVersion) {
    auto [rc, out] = run("get-gateway --dispatcher " + url_ + " --user alice");
    ASSERT_EQ(rc, 0) << out;
    auto j = json::parse(out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << out;
    EXPECT_TRUE(j["id"] == "gw1" || j["id"] == "gw2");
    EXPECT_EQ(j["alternates"].size(), 1u);
    auto [rc2, out2] = run("get-gateway --dispatcher " + url_ + " --exclude gw1,gw2");
    EXPECT_EQ(rc2, 1) << out2;
    EXPECT_NE(out2.find("no_gateway_available"), std::string::npos) << out2;
    auto [rc3, out3] = run("--version");
    EXPECT_EQ(rc3, 0);
    EXPECT_NE(out3.find("imgate "), std::string::npos);
    for (auto* sub : {"token", "get-gateway", "listen", "send", "push", "chat", "load"}) {
        auto [hrc, hout] = run(std::string(sub) + " --help");
        EXPECT_EQ(hrc, 0) << sub;
        EXPECT_NE(hout.find("Usage"), std::string::npos) << sub;
    }
}

}  // namespace
