// The production examples installed to /etc/imgate are valid for the real binaries, and
// `--check-config` (the first ExecReload= step of the units) rejects a broken file.
#include <gtest/gtest.h>

#include <filesystem>

#include "../support/process.hpp"
#include "common/config.hpp"
#include "ops_chromium.hpp"  // shell_quote

namespace {

using namespace imgate;
using namespace imgate::test;

// /etc/imgate as an operator sets it up: the three example files from the .deb plus the shared
// secrets installed by hand (operations.md), private to the service user as the gateway requires.
void install_etc(const temp_dir& dir) {
    for (auto f : {"fleet.yaml", "dispatcher.yaml", "gateway.yaml"})
        write_file(dir.file(f), read_file(source_path(std::string("config/etc/") + f)));
    for (auto f : {"cluster.secret", "token.secret", "admin.token"})
        write_secret_file(dir.file(f), "generated-by-postinst-" + std::string(f) + "-0123456789\n");
}

std::pair<int, std::string> check(const std::vector<std::string>& args) {
    std::string cmd;
    for (auto& a : args) cmd += shell_quote(a) + " ";
    return run_command("timeout 30 " + cmd + "--check-config");
}

TEST(OpsConfig, EtcExamplesPassCheckConfig) {
    temp_dir etc;
    install_etc(etc);
    auto [rc, out] =
        check({binary_path("imgate-dispatcher"), "--config", etc.file("dispatcher.yaml")});
    EXPECT_EQ(rc, 0) << out;
    auto fleet = load_fleet(etc.file("fleet.yaml"));
    ASSERT_GE(fleet.gateways.size(), 2u);
    for (auto& g : fleet.gateways) {
        auto [grc, gout] = check(
            {binary_path("imgate-gateway"), "--config", etc.file("gateway.yaml"), "--id", g.id});
        EXPECT_EQ(grc, 0) << g.id << ": " << gout;
    }
}

TEST(OpsConfig, CheckConfigRejectsABrokenFile) {
    temp_dir etc;
    install_etc(etc);
    // A typo an admin could make while editing weights.
    std::string fleet = read_file(etc.file("fleet.yaml"));
    auto at = fleet.find("weight:");
    ASSERT_NE(at, std::string::npos);
    fleet.replace(at, 7, "wieght:");
    write_file(etc.file("fleet.yaml"), fleet);
    auto [rc, out] =
        check({binary_path("imgate-dispatcher"), "--config", etc.file("dispatcher.yaml")});
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("wieght"), std::string::npos) << out;
    auto [grc, gout] =
        check({binary_path("imgate-gateway"), "--config", etc.file("gateway.yaml"), "--id",
               load_fleet(source_path("config/etc/fleet.yaml")).gateways[0].id});
    EXPECT_NE(grc, 0) << gout;
}

TEST(OpsConfig, GatewayCheckConfigNeedsReadableSecrets) {
    // The unit runs as user imgate; postinst makes the secrets root:imgate 0640. A gateway that
    // cannot read its token secret must fail the check, not start without authentication.
    temp_dir etc;
    install_etc(etc);
    std::filesystem::remove(etc.file("token.secret"));
    auto [rc, out] = check({binary_path("imgate-gateway"), "--config", etc.file("gateway.yaml"),
                            "--id", load_fleet(etc.file("fleet.yaml")).gateways[0].id});
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("token.secret"), std::string::npos) << out;
}

TEST(OpsConfig, MaintainerScriptsAreValidShell) {
    for (auto f : {"postinst", "prerm", "postrm"}) {
        std::string path = source_path(std::string("config/debian/") + f);
        EXPECT_EQ(::access(path.c_str(), X_OK), 0) << path << " must be executable";
        auto [rc, out] = run_command("sh -n " + shell_quote(path));
        EXPECT_EQ(rc, 0) << f << ": " << out;
    }
}

}  // namespace

// Issue 11: max_payload_bytes could be configured up to 16 MiB while an RPC frame stops at 1 MiB,
// so a large message to a user on another gateway failed every time. Such a file is refused.
TEST(OpsConfig, GatewayRefusesAPayloadLimitThatCannotCrossToAPeer) {
    temp_dir etc;
    install_etc(etc);
    std::string yaml = read_file(etc.file("gateway.yaml"));
    for (auto [key, value] : {std::pair<std::string, std::string>{"max_frame_bytes:", "4194304"},
                              {"max_payload_bytes:", "2097152"}}) {
        auto at = yaml.find(key);
        ASSERT_NE(at, std::string::npos) << key;
        auto end = yaml.find_first_of("#\n", at);
        yaml.replace(at, end - at, key + " " + value + " ");
    }
    write_file(etc.file("gateway.yaml"), yaml);
    auto id = load_fleet(etc.file("fleet.yaml")).gateways[0].id;
    auto [rc, out] =
        check({binary_path("imgate-gateway"), "--config", etc.file("gateway.yaml"), "--id", id});
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("max_payload_bytes"), std::string::npos) << out;
    EXPECT_NE(out.find("1044480"), std::string::npos) << out;
}
