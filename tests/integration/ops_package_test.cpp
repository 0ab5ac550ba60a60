// `cpack -G DEB` on this build tree yields a Debian package with the layout, conffiles,
// maintainer scripts and runtime dependencies the operations guide promises, and the binaries in
// it run. (Installing it with dpkg needs root and changes the machine; that was done by hand,
// see the issue report.)
#include <gtest/gtest.h>

#include <filesystem>

#include "../support/process.hpp"
#include "ops_chromium.hpp"  // find_in_path, shell_quote

namespace {

using namespace imgate::test;
namespace fs = std::filesystem;

class OpsPackage : public ::testing::Test {
  protected:
    void SetUp() override {
        for (auto tool : {"cpack", "dpkg-deb", "dpkg-shlibdeps"})
            if (find_in_path(tool).empty()) GTEST_SKIP() << tool << " not installed (dpkg-dev)";
        std::string config = std::string(IMGATE_BINARY_DIR) + "/CPackConfig.cmake";
        if (!fs::exists(config)) GTEST_SKIP() << "no CPackConfig.cmake in the build tree";
        auto [rc, out] = run_command("cd " + shell_quote(dir_.path().string()) +
                                     " && timeout 120 cpack -G DEB --config " +
                                     shell_quote(config) + " -B " + shell_quote(dir_.file("out")));
        ASSERT_EQ(rc, 0) << out;
        for (auto& e : fs::directory_iterator(dir_.file("out")))
            if (e.path().extension() == ".deb") deb_ = e.path().string();
        ASSERT_FALSE(deb_.empty()) << out;
    }
    std::string dpkg_deb(const std::string& args) {
        auto [rc, out] = run_command("dpkg-deb " + args + " " + shell_quote(deb_));
        EXPECT_EQ(rc, 0) << out;
        return out;
    }
    temp_dir dir_;
    std::string deb_;
};

TEST_F(OpsPackage, DebHasTheDocumentedLayoutDependenciesAndRunnableBinaries) {
    std::string files = dpkg_deb("-c");
    for (auto f :
         {"./usr/bin/imgate-dispatcher", "./usr/bin/imgate-gateway", "./usr/bin/imgate",
          "./usr/lib/systemd/system/imgate-dispatcher.service",
          "./usr/lib/systemd/system/imgate-gateway@.service", "./usr/lib/sysusers.d/imgate.conf",
          "./etc/imgate/fleet.yaml", "./etc/imgate/dispatcher.yaml", "./etc/imgate/gateway.yaml",
          "./usr/share/doc/imgate/operations.md"})
        EXPECT_NE(files.find(std::string(f) + "\n"), std::string::npos) << f << "\n" << files;
    // Secrets are generated per host by postinst, never shipped.
    EXPECT_EQ(files.find(".secret"), std::string::npos) << files;
    EXPECT_EQ(files.find("admin.token"), std::string::npos) << files;

    auto [rc, dep] = run_command("dpkg-deb -f " + shell_quote(deb_) + " Depends");
    ASSERT_EQ(rc, 0) << dep;
    // dpkg-shlibdeps computed the shared-library dependencies from the binaries.
    for (auto lib : {"libc6", "libstdc++6", "libssl3", "libyaml-cpp", "libspdlog", "libsystemd0"})
        EXPECT_NE(dep.find(lib), std::string::npos) << lib << " missing from Depends: " << dep;

    temp_dir ctl;
    auto [crc, cout] =
        run_command("dpkg-deb -e " + shell_quote(deb_) + " " + shell_quote(ctl.file("DEBIAN")));
    ASSERT_EQ(crc, 0) << cout;
    std::string conffiles = read_file(ctl.file("DEBIAN/conffiles"));
    for (auto f :
         {"/etc/imgate/fleet.yaml", "/etc/imgate/dispatcher.yaml", "/etc/imgate/gateway.yaml"})
        EXPECT_NE(conffiles.find(std::string(f) + "\n"), std::string::npos) << conffiles;
    for (auto s : {"postinst", "prerm", "postrm"}) {
        auto p = ctl.file(std::string("DEBIAN/") + s);
        EXPECT_EQ(::access(p.c_str(), X_OK), 0) << s << " missing or not executable";
    }
    EXPECT_NE(read_file(ctl.file("DEBIAN/postinst")).find("systemd-sysusers"), std::string::npos);

    // The packaged (stripped) binaries run. One test, so cpack runs once.
    temp_dir root;
    auto [xrc, xout] =
        run_command("dpkg-deb -x " + shell_quote(deb_) + " " + shell_quote(root.path().string()));
    ASSERT_EQ(xrc, 0) << xout;
    for (auto b : {"imgate-dispatcher", "imgate-gateway", "imgate"}) {
        auto bin = root.file(std::string("usr/bin/") + b);
        auto [vrc, v] = run_command("timeout 10 " + shell_quote(bin) + " --version");
        EXPECT_EQ(vrc, 0) << b << ": " << v;
        EXPECT_NE(v.find(IMGATE_VERSION), std::string::npos) << b << ": " << v;
    }
}

}  // namespace
