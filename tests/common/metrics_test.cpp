#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "common/metrics.hpp"

using namespace imgate;

TEST(Metrics, RendersPrometheusText) {
    metrics_registry r;
    r.get_counter("imgate_test_total", "A test counter", {{"kind", "a\"b"}}).inc(3);
    r.get_gauge("imgate_test_gauge", "A gauge").set(2.5);
    auto& h = r.get_histogram("imgate_test_seconds", "A histogram", {0.1, 1});
    h.observe(0.05);
    h.observe(0.5);
    h.observe(5);
    r.gauge_fn("imgate_test_fn", "Computed", {}, [] { return 7.0; });
    auto text = r.render();
    EXPECT_NE(text.find("imgate_test_total{kind=\"a\\\"b\"} 3\n"), std::string::npos) << text;
    EXPECT_NE(text.find("imgate_test_gauge 2.5\n"), std::string::npos);
    EXPECT_NE(text.find("imgate_test_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos);
    EXPECT_NE(text.find("imgate_test_seconds_bucket{le=\"1\"} 2\n"), std::string::npos);
    EXPECT_NE(text.find("imgate_test_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
    EXPECT_NE(text.find("imgate_test_seconds_count 3\n"), std::string::npos);
    EXPECT_NE(text.find("imgate_test_fn 7\n"), std::string::npos);
}

TEST(Metrics, SameNameAndLabelsIsTheSameSeries) {
    metrics_registry r;
    auto& a = r.get_counter("x_total", "x", {{"a", "1"}, {"b", "2"}});
    auto& b = r.get_counter("x_total", "x", {{"b", "2"}, {"a", "1"}});
    EXPECT_EQ(&a, &b);
    r.remove_series("x_total", "a", "1");
    EXPECT_EQ(r.render().find("x_total{"), std::string::npos);
}

TEST(Metrics, PromtoolAcceptsOutput) {
    if (std::system("command -v promtool >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "promtool not installed (make deps installs the prometheus package)";
    metrics_registry r;
    r.get_counter("imgate_a_total", "A", {{"x", "1"}}).inc();
    r.get_gauge("imgate_queue_depth", "B").set(1);
    r.get_histogram("imgate_c_seconds", "C", metrics_registry::latency_buckets_seconds())
        .observe(0.2);
    auto path = testing::TempDir() + "/metrics.txt";
    std::ofstream(path) << r.render();
    EXPECT_EQ(std::system(("promtool check metrics < " + path).c_str()), 0);
}
