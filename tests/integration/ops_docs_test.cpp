// The operations guide, the alert rules and the Grafana dashboard only name metrics the daemons
// really register, and every PromQL expression in them parses (promtool, when installed).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "../support/process.hpp"
#include "ops_chromium.hpp"  // find_in_path, shell_quote

namespace {

using namespace imgate::test;
namespace fs = std::filesystem;
using json = nlohmann::json;

// Every metric family name registered in the sources: string literals "imgate_...".
std::set<std::string> registered_metrics() {
    std::set<std::string> out;
    std::regex lit(R"re("(imgate_[a-z][a-z0-9_]*)")re");
    for (auto& e : fs::recursive_directory_iterator(source_path("src"))) {
        if (!e.is_regular_file() || e.path().extension() != ".cpp") continue;
        std::string text = read_file(e.path().string());
        for (std::sregex_iterator it(text.begin(), text.end(), lit), end; it != end; ++it)
            out.insert((*it)[1].str());
    }
    return out;
}

std::set<std::string> referenced_metrics(const std::string& text) {
    std::set<std::string> out;
    std::regex name(R"(imgate_[a-z][a-z0-9_]*)");
    for (std::sregex_iterator it(text.begin(), text.end(), name), end; it != end; ++it)
        out.insert(it->str());
    return out;
}

bool known(const std::set<std::string>& reg, const std::string& name) {
    if (reg.count(name)) return true;
    for (std::string suffix : {"_bucket", "_sum", "_count"})
        if (name.size() > suffix.size() && name.ends_with(suffix) &&
            reg.count(name.substr(0, name.size() - suffix.size())))
            return true;
    return false;
}

std::vector<std::string> grafana_exprs(const json& j) {
    std::vector<std::string> out;
    for (auto& p : j.at("panels"))
        if (p.contains("targets"))
            for (auto& t : p["targets"]) out.push_back(t.at("expr").get<std::string>());
    return out;
}

TEST(OpsDocs, OnlyRealMetricNamesAreReferenced) {
    auto reg = registered_metrics();
    ASSERT_GT(reg.size(), 20u) << "no metric registrations found under src/";
    size_t checked = 0;
    for (auto doc :
         {"docs/operations.md", "docs/grafana-dashboard.json", "docs/prometheus-alerts.yml"}) {
        std::string text = read_file(source_path(doc));
        ASSERT_FALSE(text.empty()) << doc;
        auto refs = referenced_metrics(text);
        EXPECT_GE(refs.size(), 10u) << doc << " references almost no metrics";
        for (auto& r : refs) {
            EXPECT_TRUE(known(reg, r)) << doc << " names " << r << ", which no daemon registers";
            ++checked;
        }
    }
    EXPECT_GT(checked, 30u);
}

TEST(OpsDocs, GrafanaDashboardIsImportable) {
    auto j = json::parse(read_file(source_path("docs/grafana-dashboard.json")), nullptr, false);
    ASSERT_TRUE(j.is_object()) << "docs/grafana-dashboard.json is not valid JSON";
    EXPECT_EQ(j.value("uid", ""), "imgate-fleet");
    EXPECT_FALSE(j.value("title", "").empty());
    ASSERT_TRUE(j["panels"].is_array());
    auto exprs = grafana_exprs(j);
    EXPECT_GE(exprs.size(), 20u);
    std::set<int> ids;
    for (auto& p : j["panels"]) {
        EXPECT_TRUE(ids.insert(p.at("id").get<int>()).second) << "duplicate panel id";
        auto& g = p.at("gridPos");
        EXPECT_LE(g.at("x").get<int>() + g.at("w").get<int>(), 24) << p.value("title", "");
    }
}

TEST(OpsDocs, PromqlParsesWithPromtool) {
    std::string promtool = find_in_path("promtool");
    if (promtool.empty()) GTEST_SKIP() << "promtool not installed (package prometheus)";
    auto [rc, out] = run_command("timeout 60 " + shell_quote(promtool) + " check rules " +
                                 shell_quote(source_path("docs/prometheus-alerts.yml")));
    EXPECT_EQ(rc, 0) << out;

    // Each dashboard query becomes a recording rule so promtool parses it ($gateway → .*).
    auto j = json::parse(read_file(source_path("docs/grafana-dashboard.json")));
    json rules = json::array();
    int n = 0;
    for (auto e : grafana_exprs(j)) {
        for (auto at = e.find("$gateway"); at != std::string::npos; at = e.find("$gateway"))
            e.replace(at, 8, ".*");
        rules.push_back({{"record", "imgate:panel_" + std::to_string(++n)}, {"expr", e}});
    }
    temp_dir dir;
    // JSON is valid YAML, which is what promtool reads.
    write_file(dir.file("panels.yml"),
               json{{"groups", json::array({{{"name", "panels"}, {"rules", rules}}})}}.dump(1));
    auto [rc2, out2] = run_command("timeout 60 " + shell_quote(promtool) + " check rules " +
                                   shell_quote(dir.file("panels.yml")));
    EXPECT_EQ(rc2, 0) << out2;
}

std::set<std::string> matches(const std::string& text, const std::string& re) {
    std::set<std::string> out;
    std::regex r(re);
    for (std::sregex_iterator it(text.begin(), text.end(), r), end; it != end; ++it)
        out.insert((*it)[1].str());
    return out;
}

// Every alert rule has promtool unit tests (docs/prometheus-alerts.test.yml) with series that make
// it fire and moments where it must not, and they pass. Catches rules that can never fire, such
// as a ratio whose numerator is count() of an empty vector.
TEST(OpsDocs, AlertRulesUnitTests) {
    std::string rules = read_file(source_path("docs/prometheus-alerts.yml"));
    std::string tests = read_file(source_path("docs/prometheus-alerts.test.yml"));
    ASSERT_FALSE(tests.empty()) << "docs/prometheus-alerts.test.yml is missing";
    auto alerts = matches(rules, R"(- alert:\s*([A-Za-z0-9_]+))");
    auto tested = matches(tests, R"(alertname:\s*([A-Za-z0-9_]+))");
    auto firing = matches(tests, R"(alertname:\s*([A-Za-z0-9_]+)\s*\n\s*exp_alerts:\s*\n)");
    ASSERT_GE(alerts.size(), 20u);
    for (auto& a : alerts) {
        EXPECT_TRUE(tested.count(a)) << a << " has no test in docs/prometheus-alerts.test.yml";
        EXPECT_TRUE(firing.count(a)) << a << " has no test where it fires";
    }
    for (auto& t : tested) EXPECT_TRUE(alerts.count(t)) << "test of unknown alert " << t;

    std::string promtool = find_in_path("promtool");
    if (promtool.empty())
        GTEST_SKIP() << "promtool not installed (package prometheus, installed by make deps-test): "
                        "alert rule unit tests NOT run";
    // rule_files in the test file are resolved relative to the test file.
    auto [rc, out] = run_command("timeout 120 " + shell_quote(promtool) + " test rules " +
                                 shell_quote(source_path("docs/prometheus-alerts.test.yml")));
    EXPECT_EQ(rc, 0) << out;
}

// The numbers of a default cell: "1 MiB" -> 1048576, "10 s" and "10s" -> 10, "1000/s / 5000" ->
// 1000 5000.
std::vector<double> default_numbers(const std::string& cell) {
    std::vector<double> out;
    std::regex num(R"(([0-9]+(\.[0-9]+)?)\s*(MiB|KiB)?)");
    for (std::sregex_iterator it(cell.begin(), cell.end(), num), end; it != end; ++it) {
        double v = std::stod((*it)[1].str());
        if ((*it)[3] == "MiB") v *= 1024 * 1024;
        if ((*it)[3] == "KiB") v *= 1024;
        out.push_back(v);
    }
    return out;
}

// "| `key` ... | default |" rows of a markdown table: first backquoted key -> default cell
// (column default_col, 0-based after the leading '|').
std::map<std::string, std::string> table_defaults(const std::string& text, size_t default_col) {
    std::map<std::string, std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("| `", 0) != 0) continue;
        std::vector<std::string> cells;
        size_t at = 2;  // after "| "
        for (size_t bar; (bar = line.find(" | ", at)) != std::string::npos; at = bar + 3)
            cells.push_back(line.substr(at, bar - at));
        if (cells.size() <= default_col) continue;
        auto tick = cells[0].find('`', 1);
        out.emplace(cells[0].substr(1, tick == std::string::npos ? 0 : tick - 1),
                    cells[default_col]);
    }
    return out;
}

// security.md's limits table repeats defaults from configuration.md; both must say what the code
// says (issue 19: max_pending_acks said 1000000 in one and 200000 in the other and the code).
TEST(OpsDocs, SecurityAndConfigurationDefaultsAgreeWithTheCode) {
    auto sec = table_defaults(read_file(source_path("docs/security.md")), 1);
    auto conf = table_defaults(read_file(source_path("docs/configuration.md")), 2);
    std::string code = read_file(source_path("src/gateway/gateway_config.hpp"));
    size_t compared = 0, against_code = 0;
    for (auto& [key, value] : sec) {
        if (!key.starts_with("limits.") && !key.starts_with("timeouts.")) continue;
        auto c = conf.find(key);
        ASSERT_NE(c, conf.end()) << key << " is in security.md but not in configuration.md";
        EXPECT_EQ(default_numbers(value), default_numbers(c->second))
            << key << ": security.md says \"" << value << "\", configuration.md says \""
            << c->second << "\"";
        ++compared;
        // A plain integer default in gateway_config.hpp ("max_pending_acks = 200000;").
        std::smatch m;
        std::string field = key.substr(key.find('.') + 1);
        if (std::regex_search(code, m, std::regex("\\b" + field + " = ([0-9]+);"))) {
            auto nums = default_numbers(value);
            ASSERT_FALSE(nums.empty()) << key;
            EXPECT_EQ(nums[0], std::stod(m[1].str()))
                << key << ": docs say " << value << ", gateway_config.hpp says " << m[1];
            ++against_code;
        }
    }
    EXPECT_GE(compared, 12u);
    EXPECT_GE(against_code, 5u);
}

}  // namespace
