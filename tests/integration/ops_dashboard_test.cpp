// The fleet dashboard rendered by a real browser (headless Chromium): the page must fetch
// /status, draw every gateway, survive /status failures and never interpret data as HTML.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "../support/loopback_http.hpp"
#include "../support/process.hpp"
#include "common/config.hpp"
#include "common/http_server.hpp"
#include "common/metrics.hpp"
#include "ops_chromium.hpp"

namespace {

using namespace imgate;
using namespace imgate::test;
using json = nlohmann::json;

std::string random_id(const std::string& prefix) {
    static std::mt19937_64 rng{std::random_device{}()};
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
    return prefix + buf;
}

// Serves the dashboard page and a scripted /status on 127.0.0.1 from its own io thread.
class fake_dispatcher {
  public:
    explicit fake_dispatcher(std::string page) : page_(std::move(page)) {
        auto& server = http_.server();
        server.route(http::verb::get, "/", http_sync_handler([this](const http_request_ctx&) {
                         return http_response::text(page_, "text/html; charset=utf-8");
                     }));
        server.route(http::verb::get, "/status", http_sync_handler([this](const http_request_ctx&) {
                         int n = ++status_calls_;
                         if (n <= fail_first_.load())
                             return http_response::error(http::status::service_unavailable,
                                                         "unavailable", "scripted failure");
                         std::lock_guard lk(mu_);
                         return http_response::json(http::status::ok, status_.dump());
                     }));
        http_.start();
    }
    void set_status(json j) {
        std::lock_guard lk(mu_);
        status_ = std::move(j);
    }
    void fail_first(int n) { fail_first_ = n; }
    int status_calls() const { return status_calls_.load(); }
    std::string url() const { return "http://" + http_.addr() + "/"; }

  private:
    std::string page_;
    std::mutex mu_;
    json status_ = json::object();
    std::atomic<int> fail_first_{0};
    std::atomic<int> status_calls_{0};
    // Last: destroyed (stopped and joined) before the state its handlers use.
    loopback_http http_{[] {
        http_server_options o;
        o.name = "ops-test";
        return o;
    }()};
};

json gateway(const std::string& id, const std::string& state, int weight, int eff,
             const std::string& reason) {
    return {{"id", id},
            {"state", state},
            {"weight", weight},
            {"effective_weight", eff},
            {"connections", 1234},
            {"max_connections", 100000},
            {"admin", "127.0.0.1:9101"},
            {"client", "127.0.0.1:9001"},
            {"pull_latency_ms", 1.5},
            {"last_error", state == "down" ? "connect: Connection refused" : ""},
            {"picks", 10},
            {"picks_per_s", 2.5},
            {"region", "local"},
            {"labels", {{"zone", "a"}}},
            {"reason", reason},
            {"state_since_ms", 65000}};
}

std::string dashboard_page() {
    return read_file(source_path("src/dispatcher/dashboard.html"));
}

// The <tr> element of one gateway in the dumped DOM (empty when absent).
std::string row_of(const std::string& dom, const std::string& id) {
    auto at = dom.find("data-gateway-id=\"" + id + "\"");
    if (at == std::string::npos) return "";
    auto begin = dom.rfind("<tr", at);
    auto end = dom.find("</tr>", at);
    return dom.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// The opening tag and text of the element with this id (the page's script holds the same
// strings, so assertions look at elements, never at the whole document).
std::string element(const std::string& dom, const std::string& id) {
    auto at = dom.find("id=\"" + id + "\"");
    if (at == std::string::npos) return "";
    auto begin = dom.rfind('<', at);
    auto end = dom.find('<', dom.find('>', at));
    return dom.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

bool shown(const std::string& dom, const std::string& banner_id) {
    return element(dom, banner_id).find("show") != std::string::npos;
}

class OpsDashboard : public ::testing::Test {
  protected:
    void SetUp() override {
        if (auto why = chromium_unusable(chromium_, dir_)) GTEST_SKIP() << *why;
        ASSERT_FALSE(dashboard_page().empty()) << "src/dispatcher/dashboard.html missing";
    }
    temp_dir dir_;
    std::string chromium_;
};

TEST_F(OpsDashboard, RendersEveryGatewayWithStateWeightAndReason) {
    fake_dispatcher d(dashboard_page());
    // Random ids: they can only be in the DOM if the page's script fetched and drew /status.
    std::vector<std::pair<std::string, std::string>> gws = {
        {random_id("gw-up-"), "up"},          {random_id("gw-slow-"), "up"},
        {random_id("gw-drain-"), "draining"}, {random_id("gw-over-"), "overloaded"},
        {random_id("gw-down-"), "down"},      {random_id("gw-off-"), "disabled"}};
    std::string slow_reason = random_id("slow start ");
    json list = json::array();
    list.push_back(gateway(gws[0].first, "up", 100, 100, "full weight"));
    list.push_back(gateway(gws[1].first, "up", 100, 37, slow_reason));
    list.push_back(gateway(gws[2].first, "draining", 100, 0, "draining"));
    list.push_back(gateway(gws[3].first, "overloaded", 50, 0, "overloaded"));
    list.push_back(gateway(gws[4].first, "down", 100, 0, "down since 17:00:01"));
    list.push_back(gateway(gws[5].first, "disabled", 0, 0, "weight 0"));
    d.set_status({{"gateways", list},
                  {"version", "9.8.7"},
                  {"uptime_s", 3600},
                  {"config_file", "/etc/imgate/dispatcher.yaml"},
                  {"poll_interval_ms", 500},
                  {"last_reload", {{"ok", true}, {"message", "applied"}}}});

    auto r = run_chromium(chromium_, dir_, d.url());
    ASSERT_FALSE(r.dom.empty()) << "no DOM from chromium (exit " << r.exit_code << ")\n"
                                << r.stderr_text;
    EXPECT_GE(d.status_calls(), 1);
    EXPECT_NE(r.dom.find("data-rendered=\"6\""), std::string::npos) << r.dom;
    for (auto& [id, state] : gws) {
        auto row = row_of(r.dom, id);
        ASSERT_FALSE(row.empty()) << "gateway " << id << " missing from the rendered page\n"
                                  << r.dom;
        EXPECT_NE(row.find("state-" + state), std::string::npos) << row;
        EXPECT_NE(row.find(">" + id + "<"), std::string::npos) << "id not shown as text: " << row;
    }
    // Static → effective weight with its reason, and the load bar for the slow-starting one.
    auto slow = row_of(r.dom, gws[1].first);
    EXPECT_NE(slow.find(">100<"), std::string::npos) << slow;
    EXPECT_NE(slow.find(">37<"), std::string::npos) << slow;
    EXPECT_NE(slow.find(slow_reason), std::string::npos) << slow;
    EXPECT_NE(row_of(r.dom, gws[4].first).find("connect: Connection refused"), std::string::npos);
    EXPECT_NE(r.dom.find("<b>9.8.7</b>"), std::string::npos) << "dispatcher version not shown";
    // No failure banner when /status answers.
    EXPECT_FALSE(shown(r.dom, "banner")) << element(r.dom, "banner");
    EXPECT_FALSE(shown(r.dom, "reload-banner")) << element(r.dom, "reload-banner");
    EXPECT_NE(element(r.dom, "live-text").find(">live"), std::string::npos);
}

TEST_F(OpsDashboard, ShowsAnErrorWhileStatusFailsAndRecoversOnItsOwn) {
    fake_dispatcher down(dashboard_page());
    down.fail_first(1000000);
    auto r = run_chromium(chromium_, dir_, down.url(), 3000);
    ASSERT_FALSE(r.dom.empty()) << r.stderr_text;
    EXPECT_TRUE(shown(r.dom, "banner")) << r.dom;
    EXPECT_NE(element(r.dom, "banner").find("Cannot read /status (HTTP 503)"), std::string::npos)
        << element(r.dom, "banner");
    EXPECT_NE(element(r.dom, "live-text").find(">offline"), std::string::npos);
    // It keeps retrying instead of giving up after the first failure.
    EXPECT_GE(down.status_calls(), 2);

    // The first two polls fail, later ones succeed: the page refreshes itself and recovers.
    fake_dispatcher flaky(dashboard_page());
    std::string id = random_id("gw-late-");
    flaky.set_status({{"gateways", json::array({gateway(id, "up", 10, 10, "full weight")})}});
    flaky.fail_first(2);
    auto r2 = run_chromium(chromium_, dir_, flaky.url(), 6000);
    EXPECT_GE(flaky.status_calls(), 3);
    EXPECT_FALSE(row_of(r2.dom, id).empty()) << r2.dom;
    EXPECT_FALSE(shown(r2.dom, "banner")) << element(r2.dom, "banner");
    EXPECT_NE(element(r2.dom, "live-text").find(">live"), std::string::npos);
}

TEST_F(OpsDashboard, TreatsStatusFieldsAsTextNeverAsHtml) {
    fake_dispatcher d(dashboard_page());
    std::string evil = "<img src=x id=injected onerror=\"document.title='pwned'\">";
    json g = gateway(evil, "up", 1, 1, "<b id=bold-reason>r</b>");
    g["labels"] = {{"k", "<script id=injected-script>1</script>"}};
    // Missing and ill-typed fields must not break the rest of the page.
    json partial = {{"id", random_id("gw-partial-")}, {"state", 42}, {"weight", "x"}};
    d.set_status({{"gateways", json::array({g, partial})}, {"last_reload", "failed: bad file"}});
    auto r = run_chromium(chromium_, dir_, d.url());
    ASSERT_FALSE(r.dom.empty()) << r.stderr_text;
    EXPECT_NE(r.dom.find("data-rendered=\"2\""), std::string::npos) << r.dom;
    EXPECT_EQ(r.dom.find("id=\"injected\""), std::string::npos) << r.dom;
    EXPECT_EQ(r.dom.find("id=\"bold-reason\""), std::string::npos);
    EXPECT_EQ(r.dom.find("id=\"injected-script\""), std::string::npos);
    EXPECT_NE(r.dom.find("<title>imgate fleet</title>"), std::string::npos) << "title hijacked";
    EXPECT_NE(r.dom.find("&lt;img src=x id=injected"), std::string::npos);
    EXPECT_FALSE(row_of(r.dom, partial["id"].get<std::string>()).empty());
    EXPECT_TRUE(shown(r.dom, "reload-banner"));
    EXPECT_NE(element(r.dom, "reload-banner").find("failed: bad file"), std::string::npos)
        << element(r.dom, "reload-banner");
}

// The real thing: the local fleet of config/local (same ids, weights, regions and labels; every
// port 0 so tests can run in parallel), the real imgate-dispatcher serving its embedded page at
// admin GET /, and a browser that must show every gateway after the page's scripts ran.
TEST_F(OpsDashboard, RealDispatcherShowsTheLocalFleet) {
    namespace fs = std::filesystem;
    auto local = load_fleet(source_path("config/local/fleet.yaml"));
    ASSERT_GE(local.gateways.size(), 2u);
    const std::string admin_token = "ops-dashboard-test-admin-token";
    std::vector<std::unique_ptr<temp_dir>> dirs;
    std::vector<std::unique_ptr<daemon_process>> gws;
    YAML::Node fleet;
    for (auto& g : local.gateways) {
        // Each gateway gets a one-entry fleet with port 0 and reports what it bound.
        auto& d = *dirs.emplace_back(std::make_unique<temp_dir>());
        write_secret_file(d.file("token.secret"), "ops-dashboard-test-token-secret\n");
        write_secret_file(d.file("admin.token"), admin_token + "\n");
        write_file(d.file("fleet.yaml"), "gateways:\n  - id: " + g.id +
                                             "\n    client: 127.0.0.1:0\n"
                                             "    admin: 127.0.0.1:0\n    rpc: 127.0.0.1:0\n");
        write_file(d.file("gateway.yaml"),
                   "fleet: fleet.yaml\nworkers: 1\nauth:\n  secret_files: [token.secret]\n"
                   "admin:\n  token_file: admin.token\nlimits:\n  max_connections: 1000\n");
        auto& p = *gws.emplace_back(std::make_unique<daemon_process>(
            g.id, binary_path("imgate-gateway"),
            std::vector<std::string>{"--config", d.file("gateway.yaml"), "--id", g.id}, d));
        ASSERT_TRUE(p.wait_ready()) << p.log();
        YAML::Node e;
        e["id"] = g.id;
        e["client"] = p.addr("client");
        e["admin"] = p.addr("admin");
        e["rpc"] = p.addr("rpc");
        e["weight"] = g.weight;
        e["region"] = g.region;
        for (auto& [k, v] : g.labels) e["labels"][k] = v;
        fleet["gateways"].push_back(e);
    }
    temp_dir ddir;
    write_file(ddir.file("fleet.yaml"), YAML::Dump(fleet) + "\n");
    // config/local/dispatcher.yaml as shipped, but on port 0 and pointed at the fleet above.
    YAML::Node dcfg = YAML::LoadFile(source_path("config/local/dispatcher.yaml"));
    dcfg["fleet"] = "fleet.yaml";
    dcfg["listen"] = "127.0.0.1:0";
    dcfg["admin_listen"] = "127.0.0.1:0";
    write_file(ddir.file("dispatcher.yaml"), YAML::Dump(dcfg) + "\n");
    // It names admin.token (runtime overrides) next to itself, as config/local does.
    write_secret_file(ddir.file("admin.token"), read_file(source_path("config/local/admin.token")));
    daemon_process disp("dispatcher", binary_path("imgate-dispatcher"),
                        {"--config", ddir.file("dispatcher.yaml")}, ddir);
    ASSERT_TRUE(disp.wait_ready()) << disp.log();
    std::string admin = disp.addr("admin");

    // The page is served from the binary, byte for byte the file in the source tree.
    auto page = http_get(admin, "/");
    ASSERT_EQ(page.status, 200);
    EXPECT_EQ(page.body, dashboard_page());
    EXPECT_NE(page.headers["Content-Type"].find("text/html"), std::string::npos);

    // Drain the last gateway so the page has a non-trivial state to show.
    const auto& drained = local.gateways.back().id;
    auto dr = http_request(gws.back()->addr("admin"), http::verb::post, "/drain", "",
                           {{"Authorization", "Bearer " + admin_token}});
    ASSERT_EQ(dr.status, 200) << dr.body;
    ASSERT_TRUE(eventually(
        [&] {
            auto st = http_get(admin, "/status").json();
            if (!st.is_object() || !st["gateways"].is_array()) return false;
            size_t up = 0, draining = 0;
            for (auto& g : st["gateways"]) {
                if (g.value("state", "") == "up") ++up;
                if (g.value("id", "") == drained && g.value("state", "") == "draining") ++draining;
            }
            return up == local.gateways.size() - 1 && draining == 1;
        },
        10000ms, 50ms))
        << http_get(admin, "/status").body;

    auto r = run_chromium(chromium_, dir_, "http://" + admin + "/", 3000);
    ASSERT_FALSE(r.dom.empty()) << r.stderr_text;
    EXPECT_NE(r.dom.find("data-rendered=\"" + std::to_string(local.gateways.size()) + "\""),
              std::string::npos)
        << r.dom;
    for (auto& g : local.gateways) {
        auto row = row_of(r.dom, g.id);
        ASSERT_FALSE(row.empty()) << g.id << " missing from the dashboard\n" << r.dom;
        EXPECT_NE(row.find(g.id == drained ? "state-draining" : "state-up"), std::string::npos)
            << row;
        EXPECT_NE(row.find(">" + std::to_string(g.weight) + "<"), std::string::npos) << row;
    }
    EXPECT_FALSE(shown(r.dom, "banner")) << element(r.dom, "banner");
}

}  // namespace
