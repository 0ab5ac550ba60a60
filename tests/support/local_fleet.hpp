#pragma once
// A copy of the config/local fleet for integration tests: the dev secrets, development
// certificates, config/local's gateway.yaml (one worker, plus edits), a fleet.yaml of N gateways on
// fresh loopback ports with the cluster secret, and a dispatcher.yaml with the test's poll
// settings. Owns the processes.
#include <map>
#include <memory>
#include <regex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "process.hpp"

namespace imgate::test {

class local_fleet {
  public:
    struct options {
        std::vector<std::string> ids{"gw1", "gw2"};
        std::string poll = "{interval: 100ms, timeout: 80ms, rise: 2, fall: 2, slow_start: 0ms}";
        // Regex replacements applied to config/local/gateway.yaml, after "workers: 0" -> 1.
        std::vector<std::pair<std::string, std::string>> gateway_edits;
        // Appended to dispatcher.yaml (e.g. an https: block on certs/, which exist next to it).
        std::string dispatcher_extra;
    };

    explicit local_fleet(options o) : opt_(std::move(o)) {
        for (auto* f : {"token.secret", "admin.token", "cluster.secret"})
            write_secret_file(dir_.file(f),
                              read_file(source_path(std::string("config/local/") + f)));
        // config/local/gateway.yaml's tls block names certs/server.{crt,key} next to it: make
        // them in the copy with the script `make run` uses (the repo's own are git-ignored and
        // may not exist).
        auto [rc, out] = run_command(source_path("config/local/dev-certs.sh") + " '" +
                                     dir_.file("certs") + "' 2>&1");
        if (rc != 0) throw std::runtime_error("dev-certs.sh failed: " + out);
        auto gw_yaml = read_file(source_path("config/local/gateway.yaml"));
        gw_yaml = std::regex_replace(gw_yaml, std::regex("workers: 0"), "workers: 1");
        for (auto& [from, to] : opt_.gateway_edits)
            gw_yaml = std::regex_replace(gw_yaml, std::regex(from), to);
        write_file(dir_.file("gateway.yaml"), gw_yaml);
        std::string fleet = "cluster:\n  secret_file: cluster.secret\ngateways:\n";
        for (auto& id : opt_.ids) {
            fleet += "  - id: " + id + "\n";
            fleet += "    client: 127.0.0.1:" + std::to_string(free_port()) + "\n";
            fleet += "    admin: 127.0.0.1:" + std::to_string(free_port()) + "\n";
            fleet += "    rpc: 127.0.0.1:" + std::to_string(free_port()) + "\n";
        }
        write_file(dir_.file("fleet.yaml"), fleet);
        write_file(dir_.file("dispatcher.yaml"),
                   "fleet: fleet.yaml\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"
                   "poll: " +
                       opt_.poll + "\nlog: {level: info}\n" + opt_.dispatcher_extra);
    }

    // Starts every gateway, then the dispatcher; false (with the log in *why) if one does not
    // get ready.
    bool start(std::string* why = nullptr) {
        for (auto& id : opt_.ids)
            gws_[id] = std::make_unique<daemon_process>(
                id, binary_path("imgate-gateway"),
                std::vector<std::string>{"--config", dir_.file("gateway.yaml"), "--id", id}, dir_);
        for (auto& [id, p] : gws_)
            if (!p->wait_ready()) {
                if (why) *why = p->log();
                return false;
            }
        disp_ = std::make_unique<daemon_process>(
            "dispatcher", binary_path("imgate-dispatcher"),
            std::vector<std::string>{"--config", dir_.file("dispatcher.yaml")}, dir_);
        if (!disp_->wait_ready()) {
            if (why) *why = disp_->log();
            return false;
        }
        return true;
    }

    const temp_dir& dir() const { return dir_; }
    daemon_process& gw(const std::string& id) { return *gws_.at(id); }
    std::map<std::string, std::unique_ptr<daemon_process>>& gateways() { return gws_; }
    daemon_process& dispatcher() { return *disp_; }

  private:
    options opt_;
    temp_dir dir_;
    std::map<std::string, std::unique_ptr<daemon_process>> gws_;
    std::unique_ptr<daemon_process> disp_;
};

}  // namespace imgate::test
