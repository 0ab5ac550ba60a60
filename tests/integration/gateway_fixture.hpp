#pragma once
// Starts one real imgate-gateway in a temp dir (single-node fleet, every port 0) for the gateway
// integration tests; extra YAML for limits/timeouts comes from the test.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "../support/process.hpp"
#include "../support/test_client.hpp"

namespace imgate::test {

inline const std::string gw_token_secret = "gateway-test-secret-0123456789";
inline const std::string gw_old_secret = "gateway-old-secret-9876543210";
inline const std::string gw_admin_token = "admin-token-for-gateway-tests";

// Writes the config files of a one-gateway fleet into dir and returns gateway.yaml's path.
inline std::string write_gateway_config(const temp_dir& dir, const std::string& limits_yaml,
                                        const std::string& timeouts_yaml,
                                        const std::string& extra_yaml = "") {
    write_secret_file(dir.file("token.secret"), gw_token_secret + "\n");
    write_secret_file(dir.file("old.secret"), gw_old_secret + "\n");
    write_secret_file(dir.file("admin.token"), gw_admin_token + "\n");
    write_file(dir.file("fleet.yaml"),
               "gateways:\n"
               "  - id: gwt\n"
               "    client: 127.0.0.1:0\n"
               "    admin: 127.0.0.1:0\n"
               "    rpc: 127.0.0.1:0\n");
    std::string y =
        "fleet: fleet.yaml\n"
        "workers: 2\n"
        "auth:\n"
        "  secret_files: [token.secret, old.secret]\n"
        "admin:\n"
        "  token_file: admin.token\n"
        "limits:\n" +
        (limits_yaml.empty() ? "  max_connections: 1000\n" : limits_yaml) + "timeouts:\n" +
        (timeouts_yaml.empty() ? "  login_timeout: 5s\n" : timeouts_yaml) +
        "log:\n  level: debug\n" + extra_yaml;
    write_file(dir.file("gateway.yaml"), y);
    return dir.file("gateway.yaml");
}

// One running gateway; killed and reaped on destruction.
struct gateway_under_test {
    temp_dir dir;
    std::string config;
    std::unique_ptr<daemon_process> proc;

    explicit gateway_under_test(const std::string& limits_yaml = "",
                                const std::string& timeouts_yaml = "",
                                const std::string& extra_yaml = "") {
        config = write_gateway_config(dir, limits_yaml, timeouts_yaml, extra_yaml);
        proc = std::make_unique<daemon_process>(
            "gwt", binary_path("imgate-gateway"),
            std::vector<std::string>{"--config", config, "--id", "gwt"}, dir);
    }
    bool ready() { return proc->wait_ready(); }
    std::string client_addr() const { return proc->addr("client"); }
    std::string admin_addr() const { return proc->addr("admin"); }

    // A connected client; logged in as user/device when user is not empty.
    std::unique_ptr<test::test_client> client(const std::string& user = "",
                                              const std::string& device = "") {
        auto c = std::make_unique<test::test_client>();
        if (!c->connect(client_addr())) return nullptr;
        if (user.empty()) return c;
        if (!c->login(test::make_token(gw_token_secret, user, device))) return nullptr;
        return c;
    }

    nlohmann::json status() { return http_get(admin_addr(), "/status").json(); }
    http_result admin_post(const std::string& path, const std::string& body,
                           const std::string& token = gw_admin_token) {
        std::vector<std::pair<std::string, std::string>> h{{"Content-Type", "application/json"}};
        if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
        return http_request(admin_addr(), boost::beast::http::verb::post, path, body, h);
    }
    // Value of the first metric line starting with `series` (name plus labels), or -1.
    double metric(const std::string& series) {
        auto body = http_get(admin_addr(), "/metrics").body;
        std::istringstream in(body);
        std::string line;
        while (std::getline(in, line))
            if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
        return -1;
    }
};

}  // namespace imgate::test
