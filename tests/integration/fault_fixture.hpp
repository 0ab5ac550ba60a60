#pragma once
// Shared pieces of the fault and abuse tests (tests/integration/fault_*_test.cpp): raw loopback
// sockets for floods (hundreds of them, without an io_context each), process RSS, Prometheus
// sample lookup, and a small fleet of real gateways plus a real dispatcher on fixed free ports.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "../support/process.hpp"
#include "../support/raw_conn.hpp"
#include "../support/test_client.hpp"
#include "common/frame.hpp"
#include "common/protocol.hpp"

namespace imgate::test::fault {

using namespace std::chrono_literals;

// Resident set size of a process in KiB (VmRSS), or -1.
inline long rss_kb(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

// Sum of the samples in a Prometheus text body for `series`: a metric name, optionally with
// label matchers as in `x_total{code="a",server="b"` (closing brace optional, any label order;
// the sample may carry further labels). -1 when no sample matches.
inline double metric_sum(const std::string& body, const std::string& series) {
    auto brace = series.find('{');
    std::string name = series.substr(0, brace);
    std::vector<std::string> want;
    if (brace != std::string::npos) {
        std::string rest = series.substr(brace + 1);
        if (!rest.empty() && rest.back() == '}') rest.pop_back();
        size_t pos = 0;
        while (pos < rest.size()) {
            auto end = rest.find("\",", pos);
            if (end == std::string::npos) {
                want.push_back(rest.substr(pos));
                break;
            }
            want.push_back(rest.substr(pos, end + 1 - pos));
            pos = end + 2;
        }
    }
    std::istringstream in(body);
    std::string line;
    double sum = 0;
    bool found = false;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#' || line.rfind(name, 0) != 0) continue;
        char next = line.size() > name.size() ? line[name.size()] : ' ';
        if (next != ' ' && next != '{') continue;
        auto sp = line.rfind(' ');
        std::string labels = line.substr(name.size(), sp - name.size());
        bool all = true;
        for (auto& w : want)
            if (labels.find(w) == std::string::npos) all = false;
        if (!all) continue;
        sum += std::stod(line.substr(sp + 1));
        found = true;
    }
    return found ? sum : -1;
}

inline double metric(const std::string& admin_addr, const std::string& series) {
    return metric_sum(http_get(admin_addr, "/metrics").body, series);
}

inline const std::string token_secret = "fault-test-token-secret-0123456789";
inline const std::string cluster_secret = "fault-test-cluster-secret-0123456789";
inline const std::string admin_token = "fault-test-admin-token";

inline std::string token(const std::string& user, const std::string& device = "d1") {
    return test::make_token(token_secret, user, device);
}

// N real gateways (ids gw1..gwN) and optionally a real dispatcher pulling them, every address a
// fixed free loopback port so the dispatcher can hand them out. gateway_yaml_extra is appended to
// each gateway.yaml (limits:, timeouts:, ... sections), dispatcher_extra to dispatcher.yaml.
class fleet {
  public:
    struct options {
        int gateways = 1;
        bool dispatcher = false;
        bool cluster = false;         // cluster secret and RPC mesh
        std::string gateway_yaml;     // full sections appended to gateway.yaml
        std::string dispatcher_yaml;  // full sections appended to dispatcher.yaml
        std::string gateway_wrapper;  // e.g. "prlimit --nofile=128:128" (split on spaces)
        std::string gateway_binary;   // empty: this build's imgate-gateway (bench: another build's)
        std::vector<uint32_t> weights;  // fleet weight of gw1, gw2, ...; 100 where not given
    };

    explicit fleet(options o) : opt_(std::move(o)) {
        write_secret_file(dir_.file("token.secret"), token_secret + "\n");
        write_secret_file(dir_.file("cluster.secret"), cluster_secret + "\n");
        write_secret_file(dir_.file("admin.token"), admin_token + "\n");
        std::string y = opt_.cluster ? "cluster:\n  secret_file: cluster.secret\n" : "";
        y += "gateways:\n";
        for (int i = 1; i <= opt_.gateways; ++i) {
            std::string id = "gw" + std::to_string(i);
            ids_.push_back(id);
            auto addr = [] { return "127.0.0.1:" + std::to_string(free_port()); };
            client_[id] = addr();
            admin_[id] = addr();
            rpc_[id] = addr();
            y += "  - id: " + id + "\n    client: " + client_[id] + "\n    admin: " + admin_[id] +
                 "\n    rpc: " + rpc_[id] + "\n    weight: " +
                 std::to_string(size_t(i) <= opt_.weights.size() ? opt_.weights[i - 1] : 100) +
                 "\n    region: local\n";
        }
        write_file(dir_.file("fleet.yaml"), y);
        write_gateway_yaml(opt_.gateway_yaml);
        write_file(dir_.file("dispatcher.yaml"),
                   "id: fault-disp\nfleet: fleet.yaml\nlisten: 127.0.0.1:0\n"
                   "admin_listen: 127.0.0.1:0\n"
                   "poll: {interval: 100ms, timeout: 80ms, rise: 1, fall: 2, slow_start: 0ms}\n"
                   "regions: {default: local}\n" +
                       opt_.dispatcher_yaml);
    }

    void write_gateway_yaml(const std::string& extra) {
        write_file(dir_.file("gateway.yaml"),
                   "fleet: fleet.yaml\nworkers: 2\n"
                   "auth:\n  secret_files: [token.secret]\n"
                   "admin:\n  token_file: admin.token\n"
                   "log:\n  level: info\n" +
                       extra);
    }

    bool start_gateway(const std::string& id) {
        std::vector<std::string> args;
        std::string bin =
            opt_.gateway_binary.empty() ? binary_path("imgate-gateway") : opt_.gateway_binary;
        if (!opt_.gateway_wrapper.empty()) {
            std::istringstream w(opt_.gateway_wrapper);
            std::string part, first;
            w >> first;
            while (w >> part) args.push_back(part);
            args.push_back(bin);
            bin = first;
        }
        for (auto& a : {"--config", "", "--id", ""}) args.push_back(a);
        args[args.size() - 3] = dir_.file("gateway.yaml");
        args[args.size() - 1] = id;
        gws_[id] = std::make_unique<daemon_process>(id, bin, args, dir_);
        return gws_[id]->wait_ready();
    }
    bool start() {
        for (auto& id : ids_)
            if (!start_gateway(id)) return false;
        if (opt_.dispatcher) {
            disp_ = std::make_unique<daemon_process>(
                "dispatcher", binary_path("imgate-dispatcher"),
                std::vector<std::string>{"--config", dir_.file("dispatcher.yaml")}, dir_);
            if (!disp_->wait_ready()) return false;
            // Every gateway handed out before the test starts.
            return eventually([&] { return up_count() == ids_.size(); }, 10s);
        }
        return true;
    }

    // Gateways the dispatcher currently reports as up.
    size_t up_count() {
        auto s = http_get(disp_->addr("admin"), "/status").json();
        size_t n = 0;
        if (s.is_object() && s.contains("gateways"))
            for (auto& g : s["gateways"])
                if (g.value("state", "") == "up") ++n;
        return n;
    }

    daemon_process& gw(const std::string& id) { return *gws_.at(id); }
    daemon_process& dispatcher() { return *disp_; }
    std::string client_addr(const std::string& id) { return gws_.at(id)->addr("client"); }
    std::string admin_addr(const std::string& id) { return gws_.at(id)->addr("admin"); }
    std::string rpc_addr(const std::string& id) const { return rpc_.at(id); }
    std::string public_addr() { return disp_->addr("public"); }
    std::string disp_admin() { return disp_->addr("admin"); }
    double gw_metric(const std::string& id, const std::string& series) {
        return metric(admin_addr(id), series);
    }
    const temp_dir& dir() const { return dir_; }
    const std::vector<std::string>& ids() const { return ids_; }

    // Waits until every gateway has an authenticated outbound link to every other one.
    bool mesh_up(std::chrono::milliseconds timeout = 10s) {
        return eventually(
            [&] {
                for (auto& id : ids_)
                    if (gw_metric(id, "imgate_rpc_links_up") != double(ids_.size() - 1))
                        return false;
                return true;
            },
            timeout);
    }

    std::unique_ptr<test::test_client> client(const std::string& id, const std::string& user,
                                              const std::string& device = "d1") {
        auto c = std::make_unique<test::test_client>();
        if (!c->connect(client_addr(id))) return nullptr;
        if (!c->login(token(user, device))) return nullptr;
        return c;
    }

  private:
    options opt_;
    temp_dir dir_;
    std::vector<std::string> ids_;
    std::map<std::string, std::string> client_, admin_, rpc_;
    std::map<std::string, std::unique_ptr<daemon_process>> gws_;
    std::unique_ptr<daemon_process> disp_;
};

// A PING/PONG round trip on a logged-in client within timeout.
inline bool ping_ok(test::test_client& c, uint32_t corr,
                    std::chrono::milliseconds timeout = 2000ms) {
    if (!c.send(proto::ping_msg{}, corr)) return false;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        auto f = c.read_frame(std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now()));
        if (!f) return false;
        if (f->op == uint8_t(proto::op::pong) && f->corr == corr) return true;
    }
    return false;
}

}  // namespace imgate::test::fault
