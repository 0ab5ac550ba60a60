#pragma once
// A fleet for the issue-19 tests (degraded gateways, readiness, the dispatcher's runtime admin
// API): local_fleet's files, but every process started by the test when it wants, a gateway
// config per gateway when one must differ, and extra dispatcher.yaml keys.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "../support/local_fleet.hpp"
#include "../support/process.hpp"

namespace imgate::test {

struct truth_fleet {
    local_fleet files;
    std::map<std::string, std::unique_ptr<daemon_process>> gws;
    std::unique_ptr<daemon_process> disp;
    std::string pub, admin;

    explicit truth_fleet(std::vector<std::string> ids, const std::string& dispatcher_extra = "")
        : files(options_for(std::move(ids))) {
        if (!dispatcher_extra.empty()) {
            auto path = files.dir().file("dispatcher.yaml");
            write_file(path, read_file(path) + dispatcher_extra);
        }
    }

    static local_fleet::options options_for(std::vector<std::string> ids) {
        local_fleet::options o;
        o.ids = std::move(ids);
        return o;
    }

    // A copy of gateway.yaml with regex edits, for one gateway that must differ.
    std::string gateway_config_variant(const std::string& name, const std::string& from,
                                       const std::string& to) {
        auto y = read_file(files.dir().file("gateway.yaml"));
        y = std::regex_replace(y, std::regex(from), to);
        write_file(files.dir().file(name), y);
        return files.dir().file(name);
    }

    bool start_gateway(const std::string& id, const std::string& config = "") {
        gws[id] = std::make_unique<daemon_process>(
            id, binary_path("imgate-gateway"),
            std::vector<std::string>{
                "--config", config.empty() ? files.dir().file("gateway.yaml") : config, "--id", id},
            files.dir());
        return gws[id]->wait_ready();
    }
    bool start_dispatcher() {
        disp = std::make_unique<daemon_process>(
            "dispatcher", binary_path("imgate-dispatcher"),
            std::vector<std::string>{"--config", files.dir().file("dispatcher.yaml")}, files.dir());
        if (!disp->wait_ready()) return false;
        pub = disp->addr("public");
        admin = disp->addr("admin");
        return true;
    }

    nlohmann::json status() { return http_get(admin, "/status").json(); }
    nlohmann::json gateway(const std::string& id) {
        auto s = status();
        if (s.is_object())
            for (auto& g : s["gateways"])
                if (g["id"] == id) return g;
        return nullptr;
    }
    std::string state_of(const std::string& id) {
        auto g = gateway(id);
        return g.is_object() ? g.value("state", "?") : "?";
    }
    bool wait_state(const std::string& id, const std::string& st,
                    std::chrono::milliseconds timeout = 8000ms) {
        return eventually([&] { return state_of(id) == st; }, timeout, 10ms);
    }
    // Who /get-tcp-ip hands out over n calls ("503" for no gateway).
    std::map<std::string, int> picks(int n) {
        std::map<std::string, int> c;
        for (int i = 0; i < n; ++i) {
            auto r = http_get(pub, "/get-tcp-ip?uid=u" + std::to_string(i));
            c[r.status == 200 ? r.json()["id"].get<std::string>() : std::to_string(r.status)]++;
        }
        return c;
    }
    // Value of the dispatcher metric series (name plus labels), or -1.
    double metric(const std::string& series) {
        std::istringstream in(http_get(admin, "/metrics").body);
        std::string line;
        while (std::getline(in, line))
            if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
        return -1;
    }
    http_result admin_post(const std::string& target, const std::string& token) {
        std::vector<std::pair<std::string, std::string>> h;
        if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
        return http_request(admin, boost::beast::http::verb::post, target, "", h);
    }
    std::string admin_token() {
        auto t = read_file(files.dir().file("admin.token"));
        while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
        return t;
    }
};

}  // namespace imgate::test
