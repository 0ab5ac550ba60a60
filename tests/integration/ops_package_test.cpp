// `cpack -G DEB` on this build tree yields a Debian package with the layout, conffiles,
// maintainer scripts and runtime dependencies the operations guide promises, and the binaries in
// it run. (Installing it with dpkg needs root and changes the machine; that was done by hand,
// see the issue report.)
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>

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
    // Secrets are never shipped (nor generated: see below).
    EXPECT_EQ(files.find(".secret"), std::string::npos) << files;
    EXPECT_EQ(files.find("admin.token"), std::string::npos) << files;

    // Every guide the README links to and every file operations.md says is under
    // /usr/share/doc/imgate is in the package (issue 19: several were not).
    std::set<std::string> docs{"README.md"};
    std::string readme = read_file(source_path("README.md"));
    std::regex link(R"(\]\(docs/([A-Za-z0-9_.-]+)\))");
    for (std::sregex_iterator it(readme.begin(), readme.end(), link), end; it != end; ++it)
        docs.insert((*it)[1].str());
    std::string ops = read_file(source_path("docs/operations.md"));
    auto row = ops.find("| `/usr/share/doc/imgate/` |");
    ASSERT_NE(row, std::string::npos) << "operations.md no longer lists the shipped docs";
    std::string line = ops.substr(row, ops.find('\n', row) - row);
    std::regex named(R"(`([A-Za-z0-9_.-]+\.(md|yml|json))`)");
    for (std::sregex_iterator it(line.begin(), line.end(), named), end; it != end; ++it)
        docs.insert((*it)[1].str());
    EXPECT_GE(docs.size(), 10u);
    for (auto& d : docs)
        EXPECT_NE(files.find("./usr/share/doc/imgate/" + d + "\n"), std::string::npos)
            << d << " is promised by the README or operations.md but not in the package";
    // The units' Documentation= points into the package.
    EXPECT_NE(files.find("./usr/share/doc/imgate/operations.md\n"), std::string::npos);

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
    std::string postinst = read_file(ctl.file("DEBIAN/postinst"));
    EXPECT_NE(postinst.find("systemd-sysusers"), std::string::npos);
    // No secret is generated per host (each gateway would get a different one, and dispatcher
    // hosts one they never read); existing ones are tightened, never loosened.
    EXPECT_EQ(postinst.find("urandom"), std::string::npos) << postinst;
    EXPECT_NE(postinst.find("chmod g-w,o-rwx"), std::string::npos) << postinst;

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
