// Every series an alert of docs/prometheus-alerts.yml selects exists from start-up, before its
// first event: increase() and rate() need a sample before the event to see it, so a counter born
// with its first increment hides exactly the first failure. The rules are read from the file, so
// a new alert is covered without touching this test.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "../support/local_fleet.hpp"

namespace {

using namespace imgate::test;

// The PromQL of every `expr:` in the rules file, folded (`expr: >`) blocks included.
std::vector<std::string> alert_exprs(const std::string& yaml) {
    std::vector<std::string> out;
    std::istringstream in(yaml);
    std::string line;
    std::optional<size_t> block_indent;  // inside a folded expr deeper than this
    while (std::getline(in, line)) {
        size_t indent = line.find_first_not_of(' ');
        if (block_indent) {
            if (indent != std::string::npos && indent > *block_indent) {
                out.back() += " " + line.substr(indent);
                continue;
            }
            block_indent.reset();
        }
        if (indent == std::string::npos) continue;
        std::string_view rest = std::string_view(line).substr(indent);
        if (rest.rfind("- ", 0) == 0) {  // "- expr: ..." would be a list item
            rest.remove_prefix(2);
            indent += 2;
        }
        if (rest.rfind("expr:", 0) != 0) continue;
        std::string value(rest.substr(5));
        value.erase(0, value.find_first_not_of(' '));
        if (value == ">" || value == "|" || value == ">-" || value == "|-") {
            block_indent = indent;
            out.emplace_back();
        } else {
            out.push_back(value);
        }
    }
    return out;
}

using label_values = std::vector<std::pair<std::string, std::string>>;

struct selector {
    std::string name;
    label_values must_have;  // every series checked must carry all of these
    label_values each_of;    // and for each of these, one series must carry it too
    std::string text;
};

// The imgate_* selectors of one expression. Label matchers become requirements when they name
// values the daemons export: `=` matchers, and `=~` matchers that are a plain alternation
// of names (a|b: each alternative must exist); any other regex only requires the name. `job` and
// `instance` come from Prometheus, not from us.
std::vector<selector> selectors(const std::string& expr) {
    std::vector<selector> out;
    std::regex sel(R"((imgate_[a-z0-9_]+)(\{([^}]*)\})?)");
    std::regex matcher(R"re(\s*([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*,?)re");
    std::regex plain_alternation(R"([A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*)");
    for (std::sregex_iterator it(expr.begin(), expr.end(), sel), end; it != end; ++it) {
        selector s{(*it)[1].str(), {}, {}, it->str()};
        std::string labels = (*it)[3].str();
        for (std::sregex_iterator m(labels.begin(), labels.end(), matcher); m != end; ++m) {
            std::string key = (*m)[1], op = (*m)[2], value = (*m)[3];
            if (key == "job" || key == "instance") continue;
            if (op == "=") s.must_have.emplace_back(key, value);
            if (op == "=~" && std::regex_match(value, plain_alternation)) {
                std::istringstream alts(value);
                std::string a;
                while (std::getline(alts, a, '|')) s.each_of.emplace_back(key, a);
            }
        }
        out.push_back(std::move(s));
    }
    return out;
}

// Exposition lines by metric name (the part before '{' or ' '), comments skipped.
std::multimap<std::string, std::string> series_by_name(const std::string& exposition) {
    std::multimap<std::string, std::string> out;
    std::istringstream in(exposition);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        auto cut = line.find_first_of("{ ");
        out.emplace(line.substr(0, cut), line);
    }
    return out;
}

bool has_series(const std::multimap<std::string, std::string>& all, const std::string& name,
                const label_values& labels) {
    auto [from, to] = all.equal_range(name);
    for (auto it = from; it != to; ++it) {
        bool ok = true;
        for (auto& [k, v] : labels)
            if (it->second.find(k + "=\"" + v + "\"") == std::string::npos) ok = false;
        if (ok) return true;
    }
    return false;
}

// Empty when every series the selector needs exists, else what is missing.
std::string missing(const std::multimap<std::string, std::string>& all, const selector& s) {
    if (s.each_of.empty()) return has_series(all, s.name, s.must_have) ? "" : s.text;
    std::string out;
    for (auto& one : s.each_of) {
        auto labels = s.must_have;
        labels.push_back(one);
        if (!has_series(all, s.name, labels))
            out += s.name + " with " + one.first + "=\"" + one.second + "\" ";
    }
    return out;
}

TEST(MetricsAtZero, EverySeriesAnAlertSelectsExistsRightAfterStartUp) {
    auto exprs = alert_exprs(read_file(source_path("docs/prometheus-alerts.yml")));
    ASSERT_GE(exprs.size(), 15u) << "the rules file parsed into almost no expressions";

    // Two gateways, so the RPC mesh (and its failure counters) exists, and a dispatcher with
    // both public listeners (the get-tcp-ip alerts select server="public" and "https").
    local_fleet::options o;
    o.dispatcher_extra =
        "https: {listen: 127.0.0.1:0, cert_file: certs/server.crt, key_file: certs/server.key}\n";
    local_fleet fleet(o);
    std::string why;
    ASSERT_TRUE(fleet.start(&why)) << why;
    // One scrape each, before anything happened: no client, no push, no failure.
    std::multimap<std::string, std::string> all;
    for (auto* proc : {&fleet.gw("gw1"), &fleet.gw("gw2"), &fleet.dispatcher()}) {
        auto m = http_get(proc->addr("admin"), "/metrics");
        ASSERT_EQ(m.status, 200) << proc->name();
        all.merge(series_by_name(m.body));
    }

    size_t checked = 0;
    for (auto& e : exprs) {
        for (auto& s : selectors(e)) {
            ++checked;
            EXPECT_EQ(missing(all, s), "") << "in alert expression: " << e;
        }
    }
    EXPECT_GE(checked, 20u);
}

// What configuration and build each daemon runs, from start-up: the series the config and restart
// alerts select (process_start_time_seconds has no imgate_ prefix, so the test above misses it),
// and the same hash in /status as in the metric's label.
TEST(MetricsAtZero, ConfigAndBuildSeriesOnBothDaemons) {
    local_fleet fleet(local_fleet::options{});
    std::string why;
    ASSERT_TRUE(fleet.start(&why)) << why;
    for (auto* proc : {&fleet.gw("gw1"), &fleet.dispatcher()}) {
        auto m = http_get(proc->addr("admin"), "/metrics");
        ASSERT_EQ(m.status, 200) << proc->name();
        auto all = series_by_name(m.body);
        for (auto* name : {"process_start_time_seconds", "imgate_config_loaded_timestamp_seconds",
                           "imgate_build_info", "imgate_config_info"})
            EXPECT_EQ(all.count(name), 1u) << proc->name() << " " << name << "\n" << m.body;
        EXPECT_TRUE(has_series(all, "imgate_build_info", {{"version", IMGATE_VERSION}}))
            << proc->name();
        ASSERT_EQ(all.count("imgate_config_file_valid"), 1u) << proc->name();
        EXPECT_EQ(all.find("imgate_config_file_valid")->second, "imgate_config_file_valid 1");

        auto st = http_get(proc->addr("admin"), "/status");
        ASSERT_EQ(st.status, 200) << proc->name();
        auto j = st.json();
        ASSERT_TRUE(j.contains("config")) << proc->name() << " " << st.body;
        auto hash = j["config"].value("hash", std::string());
        EXPECT_EQ(hash.size(), 12u) << st.body;
        EXPECT_TRUE(has_series(all, "imgate_config_info", {{"hash", hash}}))
            << proc->name() << ": /status hash " << hash << " is not the metric's";
        EXPECT_TRUE(j["config"].value("file_valid", false)) << st.body;
        EXPECT_GT(j["config"].value("loaded_at_s", 0.0), 1.6e9) << st.body;
    }
}

// The parser above is what makes the test honest: it must find the selectors and their labels.
TEST(MetricsAtZero, SelectorParserReadsLabelsAndAlternations) {
    auto exprs = alert_exprs(
        "groups:\n  - rules:\n      - alert: A\n        expr: >\n          sum(rate(imgate_x_total"
        "{job=\"j\",result=~\"a|b\"}[5m]))\n          / imgate_y{reason=\"r\"} > 0\n"
        "        for: 5m\n      - alert: B\n        expr: imgate_z_total{code=~\"5..\"} > 1\n");
    ASSERT_EQ(exprs.size(), 2u);
    auto s = selectors(exprs[0]);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0].name, "imgate_x_total");
    EXPECT_TRUE(s[0].must_have.empty());
    EXPECT_EQ(s[0].each_of, (label_values{{"result", "a"}, {"result", "b"}}));
    EXPECT_EQ(s[1].must_have, (label_values{{"reason", "r"}}));
    auto z = selectors(exprs[1]);
    ASSERT_EQ(z.size(), 1u);
    EXPECT_TRUE(z[0].must_have.empty());  // a real regex: only the name is required
    EXPECT_TRUE(z[0].each_of.empty());
    // Both alternatives must exist, each on a series of its own.
    std::multimap<std::string, std::string> all{
        {"imgate_x_total", "imgate_x_total{result=\"a\"} 0"}};
    EXPECT_NE(missing(all, s[0]), "");
    all.emplace("imgate_x_total", "imgate_x_total{result=\"b\"} 0");
    EXPECT_EQ(missing(all, s[0]), "");
}

}  // namespace
