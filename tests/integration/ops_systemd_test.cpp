// The shipped systemd units: `systemd-analyze verify` is clean, `systemd-analyze security
// --offline=yes` rates each unit 2.0 or lower, and the reload/watchdog contract is in place.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "../support/process.hpp"
#include "ops_chromium.hpp"  // find_in_path, shell_quote

namespace {

using namespace imgate::test;

struct unit_case {
    std::string file;       // under config/systemd/
    std::string binary;     // the /usr/bin name ExecStart= runs
    std::string verify_as;  // the unit name to verify (a template is verified as an instance)
};

// Keeps gtest/ctest test names readable instead of a byte dump of the struct.
void PrintTo(const unit_case& u, std::ostream* os) {
    *os << u.file;
}

const unit_case kUnits[] = {
    {"imgate-dispatcher.service", "imgate-dispatcher", "imgate-dispatcher.service"},
    {"imgate-gateway@.service", "imgate-gateway", "imgate-gateway@gw1.service"},
};

std::string unit_text(const unit_case& u) {
    return read_file(source_path("config/systemd/" + u.file));
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
        s.replace(at, from.size(), to);
    return s;
}

std::vector<std::string> values_of(const std::string& text, const std::string& key) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key + "=", 0) == 0) out.push_back(line.substr(key.size() + 1));
    return out;
}

class OpsSystemd : public ::testing::TestWithParam<unit_case> {
  protected:
    void SetUp() override {
        analyze_ = find_in_path("systemd-analyze");
        if (analyze_.empty()) GTEST_SKIP() << "systemd-analyze not installed (package systemd)";
    }
    std::string analyze_;
    temp_dir dir_;
};

// verify loads the unit like systemd would and fails when ExecStart= does not exist. The shipped
// unit runs /usr/bin/imgate-*, which exists only once the .deb is installed, so the test verifies
// a copy whose /usr/bin/imgate-* paths point at the binaries of this build tree. Nothing else is
// changed: every other directive is checked exactly as shipped.
TEST_P(OpsSystemd, VerifyIsClean) {
    const auto& u = GetParam();
    std::string text = unit_text(u);
    ASSERT_FALSE(text.empty());
    std::string built = binary_path(u.binary);
    ASSERT_EQ(::access(built.c_str(), X_OK), 0) << built << " not built";
    std::string copy = replace_all(text, "/usr/bin/" + u.binary, built);
    ASSERT_NE(copy, text) << "ExecStart= does not run /usr/bin/" << u.binary;
    std::string path = dir_.file(u.verify_as);
    write_file(path, copy);
    auto [rc, out] =
        run_command("timeout 60 " + shell_quote(analyze_) + " verify " + shell_quote(path));
    EXPECT_EQ(rc, 0) << out;
    // Warnings (unknown keys, bad values) do not change the exit code: any line naming our unit
    // is a finding.
    EXPECT_EQ(out.find("imgate"), std::string::npos) << out;
}

TEST_P(OpsSystemd, VerifyRejectsAMissingBinary) {
    // The check above is only meaningful if verify really looks at ExecStart=.
    std::string copy = replace_all(unit_text(GetParam()), "/usr/bin/" + GetParam().binary,
                                   dir_.file("no-such-binary"));
    std::string path = dir_.file(GetParam().verify_as);
    write_file(path, copy);
    auto [rc, out] =
        run_command("timeout 60 " + shell_quote(analyze_) + " verify " + shell_quote(path));
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("no-such-binary"), std::string::npos) << out;
}

TEST_P(OpsSystemd, SecurityExposureAtMostTwo) {
    const auto& u = GetParam();
    std::string path = dir_.file(u.verify_as);
    write_file(path, unit_text(u));  // exactly as shipped
    auto [rc, out] =
        run_command("timeout 60 " + shell_quote(analyze_) +
                    " security --no-pager --offline=yes --threshold=20 " + shell_quote(path));
    std::smatch m;
    ASSERT_TRUE(
        std::regex_search(out, m, std::regex(R"(Overall exposure level for \S+: ([0-9.]+))")))
        << out;
    double score = std::stod(m[1].str());
    EXPECT_LE(score, 2.0) << out;
    EXPECT_EQ(rc, 0) << "systemd-analyze --threshold=20 failed:\n" << out;
}

TEST_P(OpsSystemd, NotifyWatchdogAndValidatedReload) {
    std::string t = unit_text(GetParam());
    EXPECT_EQ(values_of(t, "Type"), std::vector<std::string>{"notify"});
    EXPECT_EQ(values_of(t, "NotifyAccess"), std::vector<std::string>{"main"});
    ASSERT_EQ(values_of(t, "WatchdogSec").size(), 1u);
    EXPECT_EQ(values_of(t, "Restart"), std::vector<std::string>{"on-failure"});
    auto nofile = values_of(t, "LimitNOFILE");
    ASSERT_EQ(nofile.size(), 1u);
    EXPECT_GE(std::stoll(nofile[0]), 65536);
    // Reload = validate, then SIGHUP: a bad file fails `systemctl reload` before the daemon sees
    // it (ExecReload= commands run in order and stop at the first failure).
    auto reload = values_of(t, "ExecReload");
    ASSERT_EQ(reload.size(), 2u);
    EXPECT_NE(reload[0].find("/usr/bin/" + GetParam().binary), std::string::npos);
    EXPECT_NE(reload[0].find("--check-config"), std::string::npos);
    EXPECT_EQ(reload[1], "/bin/kill -HUP $MAINPID");
    // The validation uses the same config (and gateway id) as the running daemon.
    auto start = values_of(t, "ExecStart");
    ASSERT_EQ(start.size(), 1u);
    EXPECT_EQ(reload[0], start[0] + " --check-config");
    EXPECT_EQ(values_of(t, "User"), std::vector<std::string>{"imgate"});
    EXPECT_EQ(values_of(t, "CapabilityBoundingSet"), std::vector<std::string>{""});
}

INSTANTIATE_TEST_SUITE_P(Units, OpsSystemd, ::testing::ValuesIn(kUnits), [](const auto& info) {
    return info.param.binary == "imgate-gateway" ? std::string("gateway")
                                                 : std::string("dispatcher");
});

}  // namespace
