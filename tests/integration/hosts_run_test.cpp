// config/hosts/run-hosts.sh (`make run-hosts`) itself: it brings up 2 dispatchers and 4 gateways
// in 6 namespaces, and removes everything it made on `down`, on Ctrl-C, and when re-run after a
// crash. Skipped, with the reason, where namespaces cannot be made.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "../support/tool_process.hpp"
#include "hosts_fixture.hpp"

using namespace std::chrono_literals;
using namespace imgate::test;
using hosts::fleet;

namespace {

// Names (namespaces, links) of this fleet still present on the machine.
std::vector<std::string> leftovers(const fleet& f) {
    std::vector<std::string> out;
    for (auto cmd : {"ip netns list", "ip -o link show"}) {
        auto [rc, text] = run_command(cmd);
        std::istringstream in(text);
        std::string line;
        while (std::getline(in, line))
            if (line.find(f.prefix() + "-") != std::string::npos) out.push_back(line);
    }
    return out;
}

// The daemons' pids, from their ready files.
std::vector<pid_t> member_pids(const fleet& f) {
    std::vector<pid_t> out;
    for (auto m : {"d1", "d2", "gw1", "gw2", "gw3", "gw4"}) {
        auto j = nlohmann::json::parse(read_file(f.run_dir() + "/" + m + ".ready"), nullptr, false);
        if (j.is_object() && j.contains("pid")) out.push_back(j["pid"].get<pid_t>());
    }
    return out;
}

// True once none of the pids runs. A daemon the script left detached is reparented to init,
// so it may linger a moment as a zombie (state Z) after it exited: that counts as gone.
bool all_gone(const std::vector<pid_t>& pids) {
    return eventually(
        [&] {
            for (auto p : pids) {
                if (::kill(p, 0) != 0) continue;
                auto stat = read_file("/proc/" + std::to_string(p) + "/stat");
                auto close = stat.rfind(')');
                if (close == std::string::npos || stat.size() < close + 3 || stat[close + 2] != 'Z')
                    return false;
            }
            return true;
        },
        5s);
}

}  // namespace

TEST(HostsRun, UpBringsSixHostsOnTheirOwnAddressesAndDownRemovesEverything) {
    IMGATE_REQUIRE_HOSTS();
    fleet f;
    ASSERT_TRUE(f.up()) << f.last_output();
    auto pids = member_pids(f);
    ASSERT_EQ(pids.size(), 6u) << f.last_output();
    EXPECT_NE(f.last_output().find("http://" + f.public_addr("d2")), std::string::npos)
        << f.last_output();

    // Each member runs in its own namespace and listens on its own address only.
    auto [rc, ns] = run_command("ip netns list");
    for (auto m : {"d1", "d2", "gw1", "gw2", "gw3", "gw4"})
        EXPECT_NE(ns.find(f.prefix() + "-" + m), std::string::npos) << m << "\n" << ns;
    auto [src, ss] = run_command("ip netns exec " + f.prefix() + "-gw3 ss -Hltn");
    EXPECT_NE(ss.find(f.client_addr("gw3")), std::string::npos) << ss;
    EXPECT_EQ(ss.find(f.client_addr("gw1")), std::string::npos) << ss;

    // Both dispatchers hand out every gateway, reached from the host over the bridge.
    ASSERT_TRUE(f.settled()) << f.log("d1");
    for (auto d : {"d1", "d2"}) {
        auto a = http_get(f.public_addr(d), "/get-tcp-ip?uid=alice%40example.com");
        ASSERT_EQ(a.status, 200) << a.body;
        EXPECT_EQ(a.json().value("port", 0), 9000);
    }
    auto [st_rc, status] = f.run("status");
    EXPECT_EQ(st_rc, 0) << status;
    EXPECT_EQ(std::count(status.begin(), status.end(), '\n') >= 7, true) << status;
    EXPECT_EQ(status.find("not running"), std::string::npos) << status;

    auto [down_rc, down] = f.run("down");
    EXPECT_EQ(down_rc, 0) << down;
    EXPECT_TRUE(leftovers(f).empty()) << leftovers(f).front();
    EXPECT_TRUE(all_gone(pids));
    EXPECT_FALSE(std::filesystem::exists(f.run_dir()));
    auto [again_rc, again] = f.run("status");
    EXPECT_EQ(again_rc, 3) << again;
}

TEST(HostsRun, ReRunAfterACrashRemovesWhatTheEarlierRunLeft) {
    IMGATE_REQUIRE_HOSTS();
    fleet f;
    ASSERT_TRUE(f.up()) << f.last_output();
    auto first = member_pids(f);
    ASSERT_EQ(first.size(), 6u);
    // The first run's script is gone (detached), its members and namespaces are not: what a
    // crashed or SIGKILLed run leaves. A new run cleans it up and starts afresh.
    auto [rc, out] = f.run("up --detach");
    ASSERT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("removing what an earlier run left"), std::string::npos) << out;
    EXPECT_TRUE(all_gone(first));
    auto second = member_pids(f);
    EXPECT_EQ(second.size(), 6u);
    EXPECT_TRUE(f.settled()) << f.log("d1");
}

TEST(HostsRun, CtrlCInTheForegroundStopsEveryMemberAndRemovesTheNetwork) {
    IMGATE_REQUIRE_HOSTS();
    fleet f;
    f.use_subnet("10.78." + std::to_string(::getpid() % 200 + 20));
    temp_dir d;
    std::string log = d.file("run-hosts.out");
    pid_t script = ::fork();
    ASSERT_GE(script, 0);
    if (script == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        child_output_to(log.c_str());
        std::string cmd = "exec env " + f.env() + hosts::script_path() + " up";
        ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
        ::_exit(127);
    }
    // Ready once it has printed the fleet and the Ctrl-C line; the pids come from the ready files.
    bool ready = eventually(
        [&] { return read_file(log).find("Ctrl-C stops the fleet") != std::string::npos; }, 30s,
        50ms);
    auto pids = member_pids(f);
    if (!ready || pids.size() != 6u) {
        ::kill(script, SIGKILL);
        ::waitpid(script, nullptr, 0);
        f.run("down");
        FAIL() << read_file(log);
    }
    ::kill(script, SIGINT);
    int status = 0;
    bool exited =
        eventually([&] { return ::waitpid(script, &status, WNOHANG) == script; }, 30s, 20ms);
    ASSERT_TRUE(exited) << read_file(log);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_file(log);
    EXPECT_TRUE(leftovers(f).empty()) << read_file(log);
    EXPECT_TRUE(all_gone(pids));
    EXPECT_FALSE(std::filesystem::exists(f.run_dir()));
}

// `imgate load` across the bridge: refused without --allow-target, then a bounded run through
// both dispatchers to the four gateway hosts in which every send gets its result.
TEST(HostsRun, LoadThroughBothDispatchersAcrossTheBridge) {
    IMGATE_REQUIRE_HOSTS();
    fleet f;
    ASSERT_TRUE(f.up()) << f.last_output();
    ASSERT_TRUE(f.settled()) << f.log("d1");
    temp_dir dir;
    std::string both = f.dispatcher_urls();
    std::string secret = f.token_secret_file();
    std::vector<std::string> args = {
        "load",    "--dispatcher", both,     "--secret-file", secret,       "--clients", "200",
        "--rooms", "10",           "--rate", "200",           "--duration", "3s",        "--json"};
    tool_process refused(dir, "refused", args);
    EXPECT_EQ(refused.wait(20s), 1);
    EXPECT_NE(refused.err().find("--allow-target"), std::string::npos) << refused.err();

    args.push_back("--allow-target");
    args.push_back(f.subnet() + ".0/24");
    tool_process load(dir, "load", args);
    auto rc = load.wait(60s);
    ASSERT_TRUE(rc) << load.err();
    ASSERT_EQ(*rc, 0) << load.out() << load.err();
    auto report = nlohmann::json::parse(load.out(), nullptr, false);
    ASSERT_TRUE(report.is_object()) << load.out();
    EXPECT_EQ(report["connected"], 200);
    EXPECT_EQ(report["missing"], 0);
    EXPECT_GT(report["sends"].get<int>(), 0);
    // Both dispatchers handed out gateways, and every gateway host got clients.
    for (auto d : {"d1", "d2"}) {
        uint64_t picks = 0;
        for (auto gw : fleet::gateways) picks += f.view(d, gw).value("picks", uint64_t{0});
        EXPECT_GT(picks, 0u) << d;
    }
    for (auto gw : fleet::gateways)
        EXPECT_GT(f.gw_metric(gw, "imgate_gateway_logins_total{result=\"ok\""), 0) << gw;
}
