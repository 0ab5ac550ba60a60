// config/local/run-fleet.sh (what `make run` starts), run for real against the built binaries on
// a copy of config/local with fresh loopback ports: a gateway killed with SIGKILL is reported
// while the rest keeps running and the dispatcher routes around it, `run-fleet.sh restart`
// brings it back, and one Ctrl-C (SIGINT to the script's process group, as a terminal sends it)
// or one SIGTERM to the script stops every member gracefully, each with exactly one signal.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>

#include "../support/local_fleet.hpp"
#include "../support/redis_server.hpp"  // IMGATE_REQUIRE_REDIS
#include "../support/test_client.hpp"
#include "ops_chromium.hpp"  // shell_quote

namespace {

using namespace imgate::test;
namespace proto = imgate::proto;
namespace fs = std::filesystem;

const std::vector<std::string> kMembers{"gw1", "gw2", "gw3", "dispatcher"};
// DIRECTORY=redis adds the fleet's own redis-server.
const std::vector<std::string> kRedisMembers{"redis", "gw1", "gw2", "gw3", "dispatcher"};

// /proc/PID/stat of a live process: {state, process group}; nullopt if there is none.
std::optional<std::pair<char, pid_t>> proc_stat(pid_t pid) {
    std::string s = read_file("/proc/" + std::to_string(pid) + "/stat");
    auto close = s.rfind(')');
    if (close == std::string::npos || close + 2 >= s.size()) return std::nullopt;
    std::istringstream rest(s.substr(close + 2));
    char state = 0;
    pid_t ppid = 0, pgrp = 0;
    if (!(rest >> state >> ppid >> pgrp)) return std::nullopt;
    return std::make_pair(state, pgrp);
}

// Running, i.e. neither gone nor a zombie waiting for its parent.
bool alive(pid_t pid) {
    auto st = proc_stat(pid);
    return st && st->first != 'Z';
}

// Live processes in process group `pgrp`.
std::vector<pid_t> group_members(pid_t pgrp) {
    std::vector<pid_t> out;
    std::error_code ec;
    for (auto& e : fs::directory_iterator("/proc", ec)) {
        auto name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        pid_t pid = std::stoi(name);
        auto st = proc_stat(pid);
        if (st && st->first != 'Z' && st->second == pgrp) out.push_back(pid);
    }
    return out;
}

size_t count(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

// The gateway ids a few GET /get-tcp-ip answers name (picked and alternates); "error" for an
// answer that is not a 200 with an id.
std::set<std::string> handed_out(const std::string& pub, int uids = 8) {
    std::set<std::string> ids;
    for (int i = 0; i < uids; ++i) {
        auto r = http_get(pub, "/get-tcp-ip?uid=u" + std::to_string(i), 1000ms);
        auto j = r.json();
        if (r.status != 200 || !j.is_object() || !j.contains("id")) {
            ids.insert("error");
            continue;
        }
        ids.insert(j["id"].get<std::string>());
        for (auto& a : j.value("alternates", nlohmann::json::array()))
            ids.insert(a.value("id", std::string("error")));
    }
    return ids;
}

// run-fleet.sh in the foreground, in its own process group like a shell job, with its output in
// a file. Its state directory and config are the test's. The destructor SIGKILLs the script's
// process group and every member pid it ever saw that still runs, so a failing test leaves
// nothing behind; if the test process dies, the script gets SIGTERM (PR_SET_PDEATHSIG).
class fleet_script {
  public:
    explicit fleet_script(const local_fleet& f, const std::string& directory = "announced")
        : run_(f.dir().file("run")), out_(f.dir().file("run-fleet.out")) {
        std::string script = source_path("config/local/run-fleet.sh");
        std::string config = f.dir().path().string();
        pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            ::setpgid(0, 0);
            ::signal(SIGINT, SIG_DFL);  // as a shell starts a job; an ignored SIGINT stays ignored
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (::getppid() != parent) ::_exit(127);
            child_output_to(out_.c_str(), O_APPEND);
            ::setenv("IMGATE_FLEET_CONFIG", config.c_str(), 1);
            ::setenv("IMGATE_FLEET_RUN", run_.c_str(), 1);
            ::setenv("BUILD_DIR", IMGATE_BINARY_DIR, 1);
            ::setenv("IMGATE_FLEET_DIRECTORY", directory.c_str(), 1);
            ::unsetenv("NOTIFY_SOCKET");
            ::execl(script.c_str(), script.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::setpgid(pid_, pid_);  // also here: no race with a signal sent right after fork
    }
    ~fleet_script() {
        if (running()) {
            ::kill(-pid_, SIGKILL);
            int st;
            ::waitpid(pid_, &st, 0);
        }
        for (auto& m : kRedisMembers) member_pid(m);  // note the current ones too
        for (pid_t p : seen_) {
            auto cmd = read_file("/proc/" + std::to_string(p) + "/cmdline");
            bool ours = cmd.find("imgate-") != std::string::npos ||
                        cmd.find("redis-server") != std::string::npos;
            if (alive(p) && ours) ::kill(p, SIGKILL);
        }
        for (pid_t p : group_members(pid_)) ::kill(p, SIGKILL);
    }
    fleet_script(const fleet_script&) = delete;
    fleet_script& operator=(const fleet_script&) = delete;

    pid_t pid() const { return pid_; }
    std::string output() const { return read_file(out_); }
    std::string file(const std::string& name) const { return run_ + "/" + name; }
    std::string log(const std::string& member) const { return read_file(file(member + ".log")); }

    bool running() {
        if (exited_) return false;
        int st = 0;
        if (::waitpid(pid_, &st, WNOHANG) == pid_) {
            exited_ = true;
            status_ = st;
            return false;
        }
        return true;
    }
    // The raw wait status, or nullopt if it still runs after `timeout`.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
        if (!eventually([&] { return !running(); }, timeout, 10ms)) return std::nullopt;
        return status_;
    }

    // The member's daemon pid from RUN/M.pid (0 if none); remembered for the clean-up.
    pid_t member_pid(const std::string& m) {
        std::string s = read_file(file(m + ".pid"));
        pid_t p = s.empty() ? 0 : static_cast<pid_t>(std::atol(s.c_str()));
        if (p > 0) seen_.insert(p);
        return p;
    }

    // `run-fleet.sh ARGS` from "another terminal": only the state directory is passed.
    std::pair<int, std::string> command(const std::string& args) const {
        return run_command("IMGATE_FLEET_RUN=" + shell_quote(run_) + " timeout 60 " +
                           shell_quote(source_path("config/local/run-fleet.sh")) + " " + args +
                           " </dev/null");
    }

  private:
    std::string run_, out_;
    pid_t pid_ = -1;
    bool exited_ = false;
    int status_ = 0;
    std::set<pid_t> seen_;
};

class OpsRunFleet : public ::testing::Test {
  protected:
    // Starts the script and waits for its start-up tips; fills pid_ and pub_.
    void start() {
        script_ = std::make_unique<fleet_script>(fleet_);
        ASSERT_TRUE(eventually(
            [&] {
                return script_->output().find("imgate local fleet is running") !=
                           std::string::npos ||
                       !script_->running();
            },
            30000ms))
            << script_->output();
        ASSERT_TRUE(script_->running()) << script_->output();
        for (auto& m : kMembers) {
            EXPECT_TRUE(fs::exists(script_->file(m + ".ready"))) << m;
            pid_[m] = script_->member_pid(m);
            ASSERT_GT(pid_[m], 0) << m << "\n" << script_->output();
            EXPECT_TRUE(alive(pid_[m])) << m;
        }
        auto ready =
            nlohmann::json::parse(read_file(script_->file("dispatcher.ready")), nullptr, false);
        ASSERT_TRUE(ready.is_object());
        pub_ = ready.value("public", "");
        // The tips name the real addresses and how to kill and restart one gateway.
        auto out = script_->output();
        EXPECT_NE(out.find("curl -s 'http://" + pub_ + "/get-tcp-ip?uid=alice'"), std::string::npos)
            << out;
        EXPECT_NE(out.find("admin + dashboard http://" + ready.value("admin", "") + "/"),
                  std::string::npos);
        EXPECT_NE(out.find("kill -9 $(cat " + script_->file("gw2.pid") + ")"), std::string::npos);
        EXPECT_NE(out.find("run-fleet.sh restart gw2"), std::string::npos);
    }

    // After the script ended: it exited 0, every member's daemon and every process of the
    // script's group are gone, and each member logged exactly one graceful stop on SIGTERM.
    void expect_all_stopped_gracefully(std::optional<int> st) {
        ASSERT_TRUE(st.has_value()) << "run-fleet.sh still runs 30 s after the stop signal\n"
                                    << script_->output();
        EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << *st << "\n" << script_->output();
        auto out = script_->output();
        for (auto& [m, p] : pid_) {
            EXPECT_TRUE(eventually([&] { return !alive(p); }, 5000ms)) << m << " pid " << p;
            EXPECT_NE(out.find("run-fleet: " + m + " stopped (status 0)"), std::string::npos)
                << m << "\n"
                << out;
            auto log = script_->log(m);
            EXPECT_EQ(count(log, "stopping gracefully"), 1u) << m << ":\n" << log;
            EXPECT_EQ(count(log, "SIGTERM: stopping gracefully"), 1u) << m << ":\n" << log;
            EXPECT_EQ(count(log, "second stop signal"), 0u) << m << ":\n" << log;
            EXPECT_NE(log.find("] stopped"), std::string::npos) << m << ":\n" << log;
        }
        EXPECT_NE(out.find("run-fleet: fleet stopped"), std::string::npos) << out;
        // The members' logs of the shutdown are still shown: the signal did not end the tail.
        auto stopping = out.find("run-fleet: stopping the fleet");
        ASSERT_NE(stopping, std::string::npos) << out;
        EXPECT_EQ(count(out.substr(stopping), "SIGTERM: stopping gracefully"), pid_.size())
            << out.substr(stopping);
        EXPECT_TRUE(eventually([&] { return group_members(script_->pid()).empty(); }, 5000ms))
            << "left in the script's process group: " << group_members(script_->pid()).size();
        for (auto& m : kMembers) EXPECT_FALSE(fs::exists(script_->file(m + ".pid"))) << m;
        EXPECT_FALSE(fs::exists(script_->file("fleet.pid")));
    }

    static local_fleet::options three_gateways() {
        local_fleet::options o;
        o.ids = {"gw1", "gw2", "gw3"};
        return o;
    }

    local_fleet fleet_{three_gateways()};
    std::unique_ptr<fleet_script> script_;
    std::map<std::string, pid_t> pid_;
    std::string pub_;
};

TEST_F(OpsRunFleet, KilledGatewayIsRoutedAroundAndRestartedThenCtrlCStopsEveryMember) {
    ASSERT_NO_FATAL_FAILURE(start());
    ASSERT_TRUE(eventually([&] { return handed_out(pub_).count("gw2") == 1; }, 10000ms));

    pid_t old = pid_["gw2"];
    ASSERT_EQ(::kill(old, SIGKILL), 0);
    std::string line =
        "run-fleet: gw2 (pid " + std::to_string(old) + ") exited (killed by SIGKILL)";
    ASSERT_TRUE(
        eventually([&] { return script_->output().find(line) != std::string::npos; }, 10000ms))
        << script_->output();
    auto out = script_->output();
    EXPECT_NE(out.find("run-fleet.sh restart gw2", out.find(line)), std::string::npos) << out;
    EXPECT_TRUE(script_->running());
    for (auto& m : {"gw1", "gw3", "dispatcher"}) EXPECT_TRUE(alive(pid_[m])) << m;

    // The dispatcher stops handing gw2 out, also as an alternate; the others still answer.
    std::set<std::string> ids;
    EXPECT_TRUE(eventually(
        [&] {
            ids = handed_out(pub_);
            return !ids.count("gw2") && !ids.count("error");
        },
        10000ms));
    EXPECT_EQ(ids, (std::set<std::string>{"gw1", "gw3"}));

    auto [src, status] = script_->command("status");
    EXPECT_EQ(src, 0) << status;
    EXPECT_NE(status.find("gw2        not running (pid " + std::to_string(old) +
                          " exited: killed by SIGKILL)"),
              std::string::npos)
        << status;
    EXPECT_NE(status.find("gw1        running  pid " + std::to_string(pid_["gw1"])),
              std::string::npos)
        << status;

    auto [rrc, restart] = script_->command("restart gw2");
    ASSERT_EQ(rrc, 0) << restart << "\n" << script_->log("gw2");
    pid_["gw2"] = script_->member_pid("gw2");
    ASSERT_GT(pid_["gw2"], 0);
    EXPECT_NE(pid_["gw2"], old);
    EXPECT_TRUE(alive(pid_["gw2"]));
    EXPECT_NE(restart.find("run-fleet: gw2 is running again (pid " + std::to_string(pid_["gw2"]) +
                           "); its log: " + script_->file("gw2.log")),
              std::string::npos)
        << restart;
    EXPECT_TRUE(eventually([&] { return handed_out(pub_).count("gw2") == 1; }, 15000ms));
    EXPECT_TRUE(eventually(
        [&] {
            return script_->output().find("run-fleet: gw2 is running again (pid " +
                                          std::to_string(pid_["gw2"]) + ")") != std::string::npos;
        },
        5000ms))
        << script_->output();

    // Ctrl-C in the terminal: SIGINT to the foreground process group, i.e. the script's.
    ASSERT_EQ(::kill(-script_->pid(), SIGINT), 0);
    expect_all_stopped_gracefully(script_->wait_exit(30000ms));
}

TEST_F(OpsRunFleet, StopOneMemberThenSigtermToTheScriptStopsTheRest) {
    ASSERT_NO_FATAL_FAILURE(start());

    auto [rc, stop] = script_->command("stop gw3");
    EXPECT_EQ(rc, 0) << stop;
    EXPECT_NE(stop.find("run-fleet: gw3 stopped (status 0)"), std::string::npos) << stop;
    EXPECT_TRUE(eventually([&] { return !alive(pid_["gw3"]); }, 5000ms));
    std::string line =
        "run-fleet: gw3 (pid " + std::to_string(pid_["gw3"]) + ") stopped on request (status 0)";
    EXPECT_TRUE(
        eventually([&] { return script_->output().find(line) != std::string::npos; }, 10000ms))
        << script_->output();
    auto gw3_log = script_->log("gw3");
    EXPECT_EQ(count(gw3_log, "SIGTERM: stopping gracefully"), 1u) << gw3_log;
    EXPECT_TRUE(script_->running());
    for (auto& m : {"gw1", "gw2", "dispatcher"}) EXPECT_TRUE(alive(pid_[m])) << m;

    // A SIGTERM to the script alone (not its group) stops the three that still run.
    ASSERT_EQ(::kill(script_->pid(), SIGTERM), 0);
    auto st = script_->wait_exit(30000ms);
    ASSERT_TRUE(st.has_value()) << script_->output();
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << *st << "\n" << script_->output();
    auto out = script_->output();
    for (auto& m : {"gw1", "gw2", "dispatcher"}) {
        EXPECT_TRUE(eventually([&] { return !alive(pid_[m]); }, 5000ms)) << m;
        EXPECT_NE(out.find(std::string("run-fleet: ") + m + " stopped (status 0)"),
                  std::string::npos)
            << out;
    }
    for (auto& m : kMembers) {
        auto log = script_->log(m);
        EXPECT_EQ(count(log, "SIGTERM: stopping gracefully"), 1u) << m << ":\n" << log;
        EXPECT_EQ(count(log, "second stop signal"), 0u) << m << ":\n" << log;
    }
    EXPECT_TRUE(eventually([&] { return group_members(script_->pid()).empty(); }, 5000ms));

    // With no fleet running, status says so and restart refuses instead of starting a stray.
    auto [src, status] = script_->command("status");
    EXPECT_EQ(src, 3) << status;
    auto [rrc, restart] = script_->command("restart gw1");
    EXPECT_EQ(rrc, 1) << restart;
    EXPECT_NE(restart.find("no local fleet is running"), std::string::npos) << restart;
    EXPECT_FALSE(fs::exists(script_->file("gw1.pid")));
}

// make run DIRECTORY=redis: a fifth member, the fleet's own redis-server on a unix socket, and
// gateways in redis mode with events: a message crosses gateways through a Redis lookup, the
// user's location and the events are in Redis as the printed tips say, and one Ctrl-C stops all
// five, Redis included.
TEST_F(OpsRunFleet, RedisModeStartsItsRedisRoutesThroughItAndCtrlCStopsAllFive) {
    IMGATE_REQUIRE_REDIS();
    script_ = std::make_unique<fleet_script>(fleet_, "redis");
    ASSERT_TRUE(eventually(
        [&] {
            return script_->output().find("imgate local fleet is running") != std::string::npos ||
                   !script_->running();
        },
        30000ms))
        << script_->output();
    ASSERT_TRUE(script_->running()) << script_->output();
    for (auto& m : kRedisMembers) {
        pid_[m] = script_->member_pid(m);
        ASSERT_GT(pid_[m], 0) << m << "\n" << script_->output();
    }
    std::string sock = script_->file("redis.sock");
    auto out = script_->output();
    EXPECT_NE(out.find("redis-cli -s " + sock + " hgetall imgate:u:bob"), std::string::npos) << out;
    EXPECT_NE(out.find("Ctrl-C stops all 5 processes"), std::string::npos) << out;
    auto [src, status] = script_->command("status");
    EXPECT_EQ(src, 0) << status;
    EXPECT_NE(status.find("redis      running  pid " + std::to_string(pid_["redis"])),
              std::string::npos)
        << status;

    auto cli = [&](const std::string& args) {
        return run_command("redis-cli -s " + shell_quote(sock) + " " + args).second;
    };
    auto client_of = [&](const std::string& gw) {
        auto j = nlohmann::json::parse(read_file(script_->file(gw + ".ready")), nullptr, false);
        return j.is_object() ? j.value("client", "") : std::string();
    };
    std::string secret = read_file(fleet_.dir().file("token.secret"));
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    const std::string bob = "bob@example.com", zoe = "zoë@example.com";

    test_client b, z;
    ASSERT_TRUE(b.connect(client_of("gw2")));
    ASSERT_TRUE(b.login(make_token(secret, bob, "phone")));
    // gw2 wrote bob's location (its field, "<epoch> <sessions>") to the fleet's Redis.
    EXPECT_TRUE(eventually(
        [&] {
            return cli("hgetall " + shell_quote("imgate:u:" + bob)).find("gw2\n") !=
                   std::string::npos;
        },
        5000ms))
        << cli("keys '*'");
    ASSERT_TRUE(z.connect(client_of("gw1")));
    ASSERT_TRUE(z.login(make_token(secret, zoe, "laptop")));
    ASSERT_TRUE(z.send(proto::send_msg{proto::target_kind::user, bob, 7, "grüße über redis"}));
    auto r = z.read<proto::send_result_msg>();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    auto d = b.read<proto::deliver_msg>();
    ASSERT_TRUE(d);
    EXPECT_EQ(d->from_user, zoe);
    EXPECT_EQ(d->payload, "grüße über redis");
    // The upstream events hold both logins and the message, as docs/events.md describes.
    std::string events;
    EXPECT_TRUE(eventually(
        [&] {
            events = cli("xrange imgate:events - +");
            return events.find("grüße über redis") != std::string::npos;
        },
        5000ms))
        << events;
    EXPECT_NE(events.find(bob), std::string::npos) << events;
    EXPECT_NE(events.find("login"), std::string::npos) << events;
    b.close();
    z.close();

    ASSERT_EQ(::kill(-script_->pid(), SIGINT), 0);
    auto st = script_->wait_exit(30000ms);
    ASSERT_TRUE(st.has_value()) << script_->output();
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << *st << "\n" << script_->output();
    out = script_->output();
    for (auto& m : kRedisMembers) {
        EXPECT_TRUE(eventually([&] { return !alive(pid_[m]); }, 5000ms)) << m;
        EXPECT_NE(out.find("run-fleet: " + m + " stopped (status 0)"), std::string::npos)
            << m << "\n"
            << out;
    }
    EXPECT_TRUE(eventually([&] { return group_members(script_->pid()).empty(); }, 5000ms));
}

}  // namespace
