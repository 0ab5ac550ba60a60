#pragma once
// The fleet of hosts of the multi-host tests (hosts_*_test.cpp): 2 dispatchers and 4 gateways,
// each in its own network namespace with its own address, made, faulted and removed by
// config/hosts/run-hosts.sh, the same script `make run-hosts` runs. Every test gets its own
// name prefix and /24, so two can run at once; a test killed half way is cleaned up by the next
// one (namespaces whose owning test process is gone are removed before a new fleet starts).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>

#include "../support/process.hpp"
#include "../support/test_client.hpp"
#include "fault_fixture.hpp"

namespace imgate::test::hosts {

using namespace std::chrono_literals;

inline std::string script_path() {
    return source_path("config/hosts/run-hosts.sh");
}

inline std::string relay_path() {
#ifdef IMGATE_BINARY_DIR
    return std::string(IMGATE_BINARY_DIR) + "/tests/imgate-delay-relay";
#else
    return "./imgate-delay-relay";
#endif
}

// Why this machine cannot host the fleet ("" when it can): namespaces need root and iproute2,
// and the kernel must allow them (a container may refuse).
inline std::string unavailable_reason() {
    if (::geteuid() != 0) return "needs root to create network namespaces (ip netns)";
    auto [rc, out] = run_command("command -v ip");
    if (rc != 0) return "ip (iproute2) is not installed";
    std::string probe = "imgate-probe-" + std::to_string(::getpid());
    auto [add_rc, add_out] = run_command("ip netns add " + probe);
    run_command("ip netns del " + probe);
    if (add_rc != 0) return "the kernel refuses network namespaces here: " + add_out;
    return "";
}

#define IMGATE_REQUIRE_HOSTS()                                                    \
    do {                                                                          \
        if (auto why = ::imgate::test::hosts::unavailable_reason(); !why.empty()) \
            GTEST_SKIP() << "multi-host test skipped: " << why;                   \
    } while (0)

// Removes fleets of hosts that earlier test processes left behind (crashed, SIGKILLed): their
// namespaces are named it<pid>-..., and the pid no longer runs.
inline void remove_orphans() {
    auto [rc, out] = run_command("ip netns list");
    std::set<std::string> gone;
    std::regex re("^it([0-9]+)-");
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
        std::smatch m;
        if (!std::regex_search(line, m, re)) continue;
        pid_t pid = std::stoi(m[1]);
        if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) gone.insert(m[1]);
    }
    for (auto& pid : gone)
        run_command("IMGATE_HOSTS_PREFIX=it" + pid + " IMGATE_HOSTS_RUN=/nonexistent-imgate-run " +
                    script_path() + " down");
}

// A gateway.yaml for the tests: short RPC timings so a silent peer is caught in ~2 s.
inline std::string test_gateway_yaml(const std::string& extra_cluster_rpc = "") {
    return "fleet: fleet.yaml\nworkers: 1\n"
           "auth:\n  secret_files: [token.secret]\n"
           "admin:\n  token_file: admin.token\n"
           "timeouts:\n  shutdown_grace: 2s\n"
           "cluster_rpc:\n  call_timeout: 1s\n  connect_timeout: 500ms\n"
           "  ping_interval: 500ms\n  peer_timeout: 1500ms\n"
           "  backoff_min: 100ms\n  backoff_max: 500ms\n" +
           extra_cluster_rpc + "log:\n  level: info\n";
}

// A dispatcher.yaml template (@ID@, @ADDR@ filled in by the script per dispatcher).
inline std::string test_dispatcher_yaml(const std::string& extra = "") {
    return "id: @ID@\nfleet: fleet.yaml\nlisten: @ADDR@:8080\nadmin_listen: @ADDR@:8081\n"
           "threads: 1\n"
           "poll: {interval: 300ms, timeout: 200ms, fast_interval: 100ms, jitter: 0.1, rise: 2, "
           "fall: 2, slow_start: 0ms}\n"
           "regions: {default: default}\n"
           "admin:\n  token_file: dispatcher-admin.token\n" +
           extra;
}

// What a fleet of hosts runs (outside the class: GCC cannot default-construct a nested struct
// with member initializers in the enclosing class's own default argument).
struct fleet_options {
    std::string gateway_yaml = test_gateway_yaml();
    std::string dispatcher_yaml = test_dispatcher_yaml();
    std::string weights = "100 100 50 50";
    std::string delayable;  // gateways started behind a delay relay, e.g. "gw4"
};

class fleet {
  public:
    using options = fleet_options;

    explicit fleet(options o = {})
        : opt_(std::move(o)), prefix_("it" + std::to_string(::getpid())) {
        std::filesystem::create_directories(dir_.file("templates"));
        write_file(dir_.file("templates/gateway.yaml"), opt_.gateway_yaml);
        write_file(dir_.file("templates/dispatcher.yaml"), opt_.dispatcher_yaml);
    }
    ~fleet() {
        if (started_) run("down");
    }
    fleet(const fleet&) = delete;
    fleet& operator=(const fleet&) = delete;

    // Builds the namespaces and starts every member; false with the script's output in
    // last_output(). Picks a free /24 of 10.78.0.0/16 (the script refuses one in use).
    bool up(const std::string& mode = "up --detach") {
        remove_orphans();
        int first = ::getpid() % 200 + 20;
        for (int i = 0; i < 20; ++i) {
            subnet_ = "10.78." + std::to_string(first + i);
            started_ = true;
            auto [rc, out] = run(mode);
            last_output_ = out;
            if (rc == 0) return true;
            if (rc != 5) return false;  // 5: that /24 is in use here, try the next
        }
        return false;
    }

    // config/hosts/run-hosts.sh ARGS with this fleet's environment: {exit code, output}.
    std::pair<int, std::string> run(const std::string& args) {
        return run_command(env() + script_path() + " " + args);
    }
    // The environment assignments (a shell prefix) that make the script act on this fleet.
    std::string env() const {
        return "IMGATE_HOSTS_PREFIX=" + prefix_ + " IMGATE_HOSTS_SUBNET=" + subnet_ +
               " IMGATE_HOSTS_RUN=" + run_dir() + " IMGATE_HOSTS_CONFIG=" + dir_.file("templates") +
               " IMGATE_HOSTS_BIN=" +
               std::filesystem::path(binary_path("imgate-gateway")).parent_path().string() +
               " IMGATE_HOSTS_RELAY=" + relay_path() + " IMGATE_HOSTS_WEIGHTS='" + opt_.weights +
               "' IMGATE_HOSTS_DELAYABLE='" + opt_.delayable + "' ";
    }
    // Runs a fault command and fails the test if the script refuses it.
    void fault(const std::string& args) {
        auto [rc, out] = run(args);
        ASSERT_EQ(rc, 0) << "run-hosts.sh " << args << ": " << out;
    }

    // Picks the subnet without starting anything (for a test that runs the script itself).
    void use_subnet(const std::string& s) {
        subnet_ = s;
        started_ = true;
    }
    std::string run_dir() const { return dir_.file("run"); }
    const std::string& last_output() const { return last_output_; }
    const std::string& prefix() const { return prefix_; }
    const std::string& subnet() const { return subnet_; }  // first three octets

    std::string addr(const std::string& member) const {
        if (member == "d1") return subnet_ + ".11";
        if (member == "d2") return subnet_ + ".12";
        if (member == "host") return subnet_ + ".1";
        return subnet_ + ".2" + member.substr(2);  // gwN
    }
    std::string client_addr(const std::string& gw) const { return addr(gw) + ":9000"; }
    std::string admin_addr(const std::string& gw) const { return addr(gw) + ":9100"; }
    std::string public_addr(const std::string& d) const { return addr(d) + ":8080"; }
    std::string disp_admin(const std::string& d) const { return addr(d) + ":8081"; }
    std::string dispatcher_url(const std::string& d) const { return "http://" + public_addr(d); }
    // Both dispatchers, as the reference client takes them (--dispatcher URL,URL).
    std::string dispatcher_urls() const {
        return dispatcher_url("d1") + "," + dispatcher_url("d2");
    }
    // The fleet's client-token secret (the script makes a fresh one per run).
    std::string token_secret_file() const { return run_dir() + "/config/token.secret"; }

    // Dispatcher d's view of gateway gw (its /status entry), or null when d does not answer.
    nlohmann::json view(const std::string& d, const std::string& gw) {
        auto s = http_get(disp_admin(d), "/status", 1000ms).json();
        if (s.is_object() && s.contains("gateways"))
            for (auto& g : s["gateways"])
                if (g.value("id", "") == gw) return g;
        return nullptr;
    }
    std::string state(const std::string& d, const std::string& gw) {
        auto v = view(d, gw);
        return v.is_object() ? v.value("state", "") : "";
    }
    // Waits until both dispatchers see every gateway up and every gateway has its 3 links.
    bool settled(std::chrono::milliseconds timeout = 15s) {
        return eventually(
            [&] {
                for (auto d : {"d1", "d2"})
                    for (auto gw : gateways)
                        if (state(d, gw) != "up") return false;
                for (auto gw : gateways)
                    if (gw_metric(gw, "imgate_rpc_links_up") != 3) return false;
                return true;
            },
            timeout, 50ms);
    }

    double gw_metric(const std::string& gw, const std::string& series) {
        return fault::metric_sum(http_get(admin_addr(gw), "/metrics", 1000ms).body, series);
    }

    std::string token(const std::string& user, const std::string& device = "phone") const {
        return make_token(read_file(token_secret_file()), user, device);
    }
    std::unique_ptr<test_client> client(const std::string& gw, const std::string& user,
                                        const std::string& device = "phone") {
        auto c = std::make_unique<test_client>();
        if (!c->connect(client_addr(gw))) return nullptr;
        if (!c->login(token(user, device))) return nullptr;
        return c;
    }
    std::string log(const std::string& member) const {
        return read_file(run_dir() + "/" + member + ".log");
    }

    static constexpr const char* gateways[] = {"gw1", "gw2", "gw3", "gw4"};

  private:
    options opt_;
    temp_dir dir_;
    std::string prefix_;
    std::string subnet_;
    std::string last_output_;
    bool started_ = false;
};

}  // namespace imgate::test::hosts
