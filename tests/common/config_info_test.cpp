// The configuration metrics and the reload diff: what a reload logs, what /metrics says about the
// files on disk, and that no secret value ever reaches a log line.
#include "common/config_info.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "common/config.hpp"

using namespace imgate;
namespace fs = std::filesystem;

namespace {

struct tmp_dir {
    fs::path path;
    tmp_dir() {
        path = fs::temp_directory_path() /
               ("imgate_config_info_test_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~tmp_dir() { fs::remove_all(path); }
    std::string write(const std::string& name, const std::string& text, mode_t mode = 0640) {
        auto p = (path / name).string();
        std::ofstream(p, std::ios::trunc) << text;
        ::chmod(p.c_str(), mode);
        return p;
    }
};

bool has_line(const std::vector<std::string>& lines, const std::string& l) {
    for (auto& x : lines)
        if (x == l) return true;
    return false;
}

std::string joined(const std::vector<std::string>& lines) {
    std::string s;
    for (auto& l : lines) s += l + "\n";
    return s;
}

// The same strictness as a daemon's --check-config, in miniature: YAML that parses, a `limits`
// map, and a secret file that is readable and private.
config_files check_files(const std::string& main, const std::string& fleet,
                         const std::string& secret) {
    auto root = load_yaml_file(main);
    if (!root["limits"] || !root["limits"].IsMap()) throw config_error(main + ": limits missing");
    load_yaml_file(fleet);
    read_protected_secret_file(secret);
    return {main, fleet, {secret}};
}

}  // namespace

TEST(ConfigDiff, FlattensMapsSequencesAndIds) {
    auto flat = flatten_yaml(YAML::Load(
        "limits: {send_rate: 50}\nauth: {secret_files: [a, b]}\n"
        "gateways: [{id: gw1, weight: 100}, {id: gw2, weight: 50}]\nempty: {}\nnone: ~\n"));
    EXPECT_EQ(flat.at("limits.send_rate"), "50");
    EXPECT_EQ(flat.at("auth.secret_files[1]"), "b");
    EXPECT_EQ(flat.at("gateways[gw2].weight"), "50");
    EXPECT_EQ(flat.at("empty"), "{}");
    EXPECT_EQ(flat.at("none"), "~");
}

TEST(ConfigDiff, ChangedAddedRemovedOneLineEach) {
    auto before =
        flatten_yaml(YAML::Load("limits: {send_rate: 50, login_rate: 10}\n"
                                "gateways: [{id: gw1, weight: 100}]\n"));
    auto after =
        flatten_yaml(YAML::Load("limits: {send_rate: 100, max_rooms: 8}\n"
                                "gateways: [{id: gw0, weight: 5}, {id: gw1, weight: 100}]\n"));
    auto lines = config_diff(before, after);
    EXPECT_TRUE(has_line(lines, "changed: limits.send_rate 50 -> 100")) << joined(lines);
    EXPECT_TRUE(has_line(lines, "added: limits.max_rooms = 8")) << joined(lines);
    EXPECT_TRUE(has_line(lines, "removed: limits.login_rate (was 10)")) << joined(lines);
    // A gateway inserted before gw1 is one addition, not a renumbering of gw1.
    EXPECT_TRUE(has_line(lines, "added: gateways[gw0].weight = 5")) << joined(lines);
    EXPECT_EQ(lines.size(), 5u) << joined(lines);  // + gateways[gw0].id
    EXPECT_TRUE(config_diff(before, before).empty());
}

TEST(ConfigDiff, CappedWithACount) {
    flat_config a, b;
    for (int i = 0; i < 50; ++i) b["k" + std::to_string(100 + i)] = "v";
    auto lines = config_diff(a, b, 10);
    ASSERT_EQ(lines.size(), 10u);
    EXPECT_EQ(lines.back(), "... and 41 more changes");
}

TEST(ConfigDiff, NeverPrintsSecretValues) {
    auto before = flatten_yaml(YAML::Load("auth: {token: sekrit-one, token_file: /a}\n"));
    auto after = flatten_yaml(YAML::Load("auth: {token: sekrit-two, token_file: /b}\n"));
    before["secret file /etc/imgate/token.secret"] = "a1b2c3d4";
    after["secret file /etc/imgate/token.secret"] = "e5f6a7b8";
    auto text = joined(config_diff(before, after));
    EXPECT_EQ(text.find("sekrit"), std::string::npos) << text;
    EXPECT_NE(text.find("changed: auth.token (hidden) -> (hidden)"), std::string::npos) << text;
    EXPECT_NE(text.find("changed: auth.token_file /a -> /b"), std::string::npos) << text;
    EXPECT_NE(
        text.find(
            "changed: secret file /etc/imgate/token.secret (fingerprint a1b2c3d4 -> e5f6a7b8)"),
        std::string::npos)
        << text;
}

TEST(ConfigSnapshot, HashCoversMainAndFleetButNotSecrets) {
    tmp_dir d;
    auto main = d.write("main.yaml", "limits: {send_rate: 50}\n");
    auto fleet = d.write("fleet.yaml", "gateways: [{id: gw1}]\n");
    auto secret = d.write("s.secret", "0123456789abcdef0123\n");
    auto h1 = snapshot_of({main, fleet, {secret}}).hash;
    EXPECT_EQ(h1.size(), 12u);
    EXPECT_EQ(
        h1, sha256_hex(std::string("limits: {send_rate: 50}\n") + '\0' + "gateways: [{id: gw1}]\n")
                .substr(0, 12));
    d.write("s.secret", "another-secret-0123456789\n");
    auto s2 = snapshot_of({main, fleet, {secret}});
    EXPECT_EQ(s2.hash, h1);
    EXPECT_EQ(s2.flat.at("secret file " + secret),
              sha256_hex("another-secret-0123456789").substr(0, 8));
    d.write("fleet.yaml", "gateways: [{id: gw2}]\n");
    EXPECT_NE(snapshot_of({main, fleet, {secret}}).hash, h1);
}

TEST(ConfigInfo, MetricsAtStartAndFileValidityFollowsTheDisk) {
    tmp_dir d;
    auto main = d.write("main.yaml", "limits: {send_rate: 50}\n");
    auto fleet = d.write("fleet.yaml", "gateways: [{id: gw1}]\n");
    auto secret = d.write("s.secret", "0123456789abcdef0123\n", 0600);
    metrics_registry m;
    config_info ci(m, {main, fleet, {secret}}, [=] { return check_files(main, fleet, secret); });
    EXPECT_EQ(config_info::current(), &ci);
    auto text = m.render();
    EXPECT_NE(text.find("imgate_config_info{hash=\"" + ci.hash() + "\"} 1"), std::string::npos)
        << text;
    EXPECT_NE(text.find("imgate_config_file_valid 1"), std::string::npos) << text;
    EXPECT_NE(text.find("imgate_config_loaded_timestamp_seconds "), std::string::npos);
    auto build = text.find("\nimgate_build_info{");
    ASSERT_NE(build, std::string::npos) << text;
    auto build_line = text.substr(build + 1, text.find('\n', build + 1) - build - 1);
    EXPECT_NE(build_line.find("version=\"" IMGATE_VERSION "\""), std::string::npos) << build_line;
    EXPECT_NE(build_line.find("compiler=\""), std::string::npos) << build_line;
    EXPECT_TRUE(build_line.ends_with("} 1")) << build_line;
    EXPECT_NE(text.find("process_start_time_seconds "), std::string::npos);
    EXPECT_GT(ci.loaded_at_seconds(), 1.6e9);

    // A bad file lands on disk (systemctl reload's pre-check would refuse it): 0 at the next
    // scrape, 1 again once fixed.
    d.write("main.yaml", "limits: [oops\n");
    EXPECT_NE(m.render().find("imgate_config_file_valid 0"), std::string::npos);
    EXPECT_FALSE(ci.status_json().at("file_valid").get<bool>());
    d.write("main.yaml", "limits: {send_rate: 60}\n");
    EXPECT_TRUE(ci.file_valid());
    // A secret made world-readable fails the check too (chmod only changes ctime).
    ::chmod(secret.c_str(), 0644);
    EXPECT_FALSE(ci.file_valid());
    ::chmod(secret.c_str(), 0600);
    EXPECT_TRUE(ci.file_valid());
}

TEST(ConfigInfo, ReloadedLogsChangesAndRelabelsTheHash) {
    tmp_dir d;
    auto main = d.write("main.yaml", "limits: {send_rate: 50}\n");
    auto fleet = d.write("fleet.yaml", "gateways: [{id: gw1, weight: 100}]\n");
    auto secret = d.write("s.secret", "0123456789abcdef0123\n", 0600);
    metrics_registry m;
    config_info ci(m, {main, fleet, {secret}}, [=] { return check_files(main, fleet, secret); });
    auto old_hash = ci.hash();
    d.write("main.yaml", "limits: {send_rate: 100}\n");
    d.write("fleet.yaml", "gateways: [{id: gw1, weight: 50}]\n");
    d.write("s.secret", "rotated-secret-0123456789\n", 0600);
    auto lines = ci.reloaded();
    EXPECT_TRUE(has_line(lines, "changed: limits.send_rate 50 -> 100")) << joined(lines);
    EXPECT_TRUE(has_line(lines, "changed: fleet.gateways[gw1].weight 100 -> 50")) << joined(lines);
    EXPECT_TRUE(has_line(lines, "changed: secret file " + secret + " (fingerprint " +
                                    sha256_hex("0123456789abcdef0123").substr(0, 8) + " -> " +
                                    sha256_hex("rotated-secret-0123456789").substr(0, 8) + ")"))
        << joined(lines);
    EXPECT_EQ(lines.size(), 3u) << joined(lines);
    auto text = m.render();
    EXPECT_NE(ci.hash(), old_hash);
    EXPECT_EQ(text.find(old_hash), std::string::npos) << text;
    EXPECT_NE(text.find("imgate_config_info{hash=\"" + ci.hash() + "\"} 1"), std::string::npos);
    EXPECT_TRUE(ci.reloaded().empty());
}
