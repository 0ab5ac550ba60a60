// Secret files the gateway holds must be private: a world-readable token secret (anyone on the
// host could mint tokens for any user) stops start-up with an error that names the file, its mode
// and the fix; on reload the running configuration stays, and /metrics says the files on disk
// would fail the next restart.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <tuple>

#include "../support/process.hpp"
#include "ops_chromium.hpp"  // shell_quote

namespace {

using namespace imgate::test;
using namespace std::chrono_literals;

// One gateway on port 0 everywhere with a token secret, an admin token and a cluster secret.
void write_gateway(const temp_dir& d) {
    write_secret_file(d.file("token.secret"), "ops-secrets-test-token-secret-0123\n");
    write_secret_file(d.file("admin.token"), "ops-secrets-test-admin-token-0123\n");
    write_secret_file(d.file("cluster.secret"), "ops-secrets-test-cluster-secret-0123\n");
    write_file(d.file("fleet.yaml"),
               "cluster: {secret_file: cluster.secret}\ngateways:\n  - id: gw1\n"
               "    client: 127.0.0.1:0\n    admin: 127.0.0.1:0\n    rpc: 127.0.0.1:0\n");
    write_file(d.file("gateway.yaml"),
               "fleet: fleet.yaml\nworkers: 1\nauth:\n  secret_files: [token.secret]\n"
               "admin:\n  token_file: admin.token\nlimits:\n  send_rate: 50\n");
}

std::string metric_line(const std::string& body, const std::string& name) {
    auto at = body.find("\n" + name + " ");
    if (at == std::string::npos) return "";
    auto end = body.find('\n', at + 1);
    return body.substr(at + 1, end - at - 1);
}

TEST(OpsSecrets, GatewayRefusesAWorldReadableTokenSecretAtStartUp) {
    temp_dir d;
    write_gateway(d);
    ::chmod(d.file("token.secret").c_str(), 0644);
    daemon_process gw("gw1", binary_path("imgate-gateway"),
                      {"--config", d.file("gateway.yaml"), "--id", "gw1"}, d);
    EXPECT_FALSE(gw.wait_ready()) << gw.log();
    ASSERT_TRUE(gw.wait_exit().has_value()) << "still running with a 0644 token secret";
    EXPECT_NE(gw.exit_code().value_or(0), 0);
    auto log = gw.log();
    auto path = d.file("token.secret");
    EXPECT_NE(log.find(path + ": secret file (mode 0644) is readable by every user"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("fix: chmod 0640 " + path + "; chown root:imgate " + path),
              std::string::npos)
        << log;

    // --check-config (ExecReload='s first step) says the same.
    auto [rc, out] =
        run_command("timeout 30 " + shell_quote(binary_path("imgate-gateway")) + " --config " +
                    shell_quote(d.file("gateway.yaml")) + " --id gw1 --check-config");
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("mode 0644"), std::string::npos) << out;
}

TEST(OpsSecrets, GroupWritableClusterSecretAndUnsafeAdminTokenAreRefusedToo) {
    for (auto [file, mode, why] : {std::tuple{"cluster.secret", 0660, "is writable by its group"},
                                   std::tuple{"admin.token", 0602, "is writable by every user"}}) {
        temp_dir d;
        write_gateway(d);
        ::chmod(d.file(file).c_str(), mode);
        auto [rc, out] =
            run_command("timeout 30 " + shell_quote(binary_path("imgate-gateway")) + " --config " +
                        shell_quote(d.file("gateway.yaml")) + " --id gw1 --check-config");
        EXPECT_NE(rc, 0) << file << ": " << out;
        EXPECT_NE(out.find(d.file(file)), std::string::npos) << out;
        EXPECT_NE(out.find(why), std::string::npos) << out;
    }
}

TEST(OpsSecrets, ReloadKeepsTheRunningConfigAndMetricsFlagTheFileOnDisk) {
    temp_dir d;
    write_gateway(d);
    daemon_process gw("gw1", binary_path("imgate-gateway"),
                      {"--config", d.file("gateway.yaml"), "--id", "gw1"}, d);
    ASSERT_TRUE(gw.wait_ready()) << gw.log();
    auto admin = gw.addr("admin");
    auto m0 = http_get(admin, "/metrics").body;
    EXPECT_EQ(metric_line(m0, "imgate_config_file_valid"), "imgate_config_file_valid 1") << m0;

    ::chmod(d.file("token.secret").c_str(), 0644);
    // Without any reload: the next scrape re-checks the changed file.
    auto m1 = http_get(admin, "/metrics").body;
    EXPECT_EQ(metric_line(m1, "imgate_config_file_valid"), "imgate_config_file_valid 0") << m1;

    gw.signal(SIGHUP);
    ASSERT_TRUE(eventually([&] {
        return http_get(admin, "/metrics")
                   .body.find("imgate_gateway_reloads_total{result=\"failed\"} 1") !=
               std::string::npos;
    })) << gw.log();
    EXPECT_NE(gw.log().find("readable by every user"), std::string::npos) << gw.log();
    EXPECT_TRUE(gw.running());
    EXPECT_EQ(http_get(admin, "/status").status, 200);

    // Fixed, and a real change: the reload is applied and logs what changed.
    ::chmod(d.file("token.secret").c_str(), 0600);
    write_file(d.file("gateway.yaml"),
               "fleet: fleet.yaml\nworkers: 1\nauth:\n  secret_files: [token.secret]\n"
               "admin:\n  token_file: admin.token\nlimits:\n  send_rate: 100\n");
    gw.signal(SIGHUP);
    ASSERT_TRUE(eventually([&] {
        return gw.log().find("reload: changed: limits.send_rate 50 -> 100") != std::string::npos;
    })) << gw.log();
    auto m2 = http_get(admin, "/metrics").body;
    EXPECT_EQ(metric_line(m2, "imgate_config_file_valid"), "imgate_config_file_valid 1") << m2;
    EXPECT_EQ(gw.log().find("ops-secrets-test-"), std::string::npos) << "a secret was logged";
}

}  // namespace
