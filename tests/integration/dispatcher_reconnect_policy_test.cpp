// The real imgate-dispatcher's reconnect policy (issue 14, docs/protocol.md section 1): the
// "reconnect" object of every 200 /get-tcp-ip answer on the plain and the HTTPS listener, taken
// from dispatcher.yaml and changed by SIGHUP; the 503 no_gateway_available retry hint spread per
// answer (retry_after_ms in the body, Retry-After = ceil(ms / 1000)); a broken `reconnect:` refused
// at start-up and at reload with file:line.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "../support/loopback_http.hpp"
#include "../support/process.hpp"
#include "../support/raw_conn.hpp"
#include "../support/test_certs.hpp"
#include "../support/tls_client.hpp"
#include "common/http_server.hpp"

namespace {

using namespace imgate;
using namespace imgate::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

class DispatcherReconnectPolicy : public ::testing::Test {
  protected:
    void SetUp() override {
        const auto& c = test_certs("dispatcher-reconnect");
        fs::copy_file(c.server_crt, dir_.file("server.crt"), fs::copy_options::overwrite_existing);
        write_secret_file(dir_.file("server.key"), read_file(c.server_key));
        write_file(dir_.file("fleet.yaml"),
                   "gateways:\n  - {id: gw1, client: 127.0.0.1:19001, "
                   "admin: " +
                       gw1_.admin() + ", rpc: 127.0.0.1:19101}\n");
    }

    // dispatcher.yaml with the given poll interval and `reconnect:` block ("" for none).
    void write_config(const std::string& poll_interval, const std::string& reconnect) {
        write_file(dir_.file("dispatcher.yaml"), R"(id: reconnect-disp
fleet: fleet.yaml
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
https: {listen: 127.0.0.1:0, cert_file: server.crt, key_file: server.key}
poll: {interval: )" + poll_interval + R"(, timeout: 40ms, rise: 1, fall: 2, slow_start: 0ms}
log: {level: info}
)" + reconnect);
    }

    void start() {
        disp_ = std::make_unique<daemon_process>(
            "dispatcher", binary_path("imgate-dispatcher"),
            std::vector<std::string>{"--config", dir_.file("dispatcher.yaml")}, dir_);
        ASSERT_TRUE(disp_->wait_ready()) << disp_->log();
        pub_ = disp_->addr("public");
        admin_ = disp_->addr("admin");
        https_ = disp_->addr("https");
        ASSERT_TRUE(eventually([&] {
            return http_get(admin_, "/healthz").json().value("available_gateways", 0) == 1;
        })) << disp_->log();
    }

    json status() { return http_get(admin_, "/status").json(); }

    // SIGHUP, then waits until the dispatcher counted it (applied or refused).
    void reload() {
        auto before = status();
        auto done = before["reloads"].get<int>() + before["reload_failures"].get<int>();
        disp_->signal(SIGHUP);
        ASSERT_TRUE(eventually([&] {
            auto s = status();
            return s.is_object() &&
                   s["reloads"].get<int>() + s["reload_failures"].get<int>() == done + 1;
        })) << disp_->log();
    }

    std::unique_ptr<tls_client> https_client() {
        auto c = std::make_unique<tls_client>(test_certs("dispatcher-reconnect").ca_crt);
        EXPECT_TRUE(c->connect(https_)) << c->error().message();
        return c;
    }

    temp_dir dir_;
    status_only_gateway gw1_{"gw1"};
    std::unique_ptr<daemon_process> disp_;
    std::string pub_, admin_, https_;
};

// The 503 answers of n requests excluding the only gateway: (retry_after_ms, Retry-After).
template <class Get>
std::vector<std::pair<int64_t, std::string>> refusals(int n, Get&& get) {
    std::vector<std::pair<int64_t, std::string>> out;
    for (int i = 0; i < n; ++i) {
        auto r = get("/get-tcp-ip?uid=storm" + std::to_string(i) + "%40example.com&exclude=gw1");
        EXPECT_EQ(r.status, 503) << r.body;
        auto j = r.json();
        EXPECT_EQ(j.value("error", ""), "no_gateway_available") << r.body;
        EXPECT_EQ(j.size(), 2u) << r.body;  // error and retry_after_ms, nothing else
        out.emplace_back(j.value("retry_after_ms", int64_t(-1)), r.headers["Retry-After"]);
    }
    return out;
}

TEST_F(DispatcherReconnectPolicy, EveryAnswerCarriesTheConfiguredPolicyOnBothListeners) {
    write_config("50ms", "reconnect: {base: 750ms, max: 45s, jitter: 2500ms}\n");
    start();
    const std::string expected = R"("reconnect":{"base_ms":750,"jitter_ms":2500,"max_ms":45000})";
    for (int i = 0; i < 20; ++i) {
        auto r = http_get(pub_, "/get-tcp-ip?uid=%C3%A9lodie%40example.com");
        ASSERT_EQ(r.status, 200) << r.body;
        EXPECT_NE(r.body.find(expected), std::string::npos) << r.body;
        EXPECT_EQ(r.json()["reconnect"],
                  (json{{"base_ms", 750}, {"jitter_ms", 2500}, {"max_ms", 45000}}));
    }
    auto tls = https_client();
    for (const char* via : {"tcp", "wss"}) {
        // gw1 serves no wss: that one is a 503, with no policy object but a spread hint.
        auto r = tls->get(std::string("/get-tcp-ip?uid=bob%40example.com&transport=") + via);
        if (std::string(via) == "tcp") {
            ASSERT_EQ(r.status, 200) << r.body;
            EXPECT_NE(r.body.find(expected), std::string::npos) << r.body;
        } else {
            ASSERT_EQ(r.status, 503) << r.body;
            EXPECT_FALSE(r.json().contains("reconnect")) << r.body;
            auto ms = r.json().value("retry_after_ms", int64_t(-1));
            EXPECT_GE(ms, 1000);
            EXPECT_LE(ms, 3500);
        }
    }
    EXPECT_EQ(status()["reconnect"],
              (json{{"base_ms", 750}, {"jitter_ms", 2500}, {"max_ms", 45000}}));

    // SIGHUP applies a new policy to the answers given after it.
    write_config("50ms", "reconnect:\n  base: 2s\n  max: 1m\n  jitter: 0ms\n");
    reload();
    auto r = http_get(pub_, "/get-tcp-ip?uid=carol%40example.com");
    ASSERT_EQ(r.status, 200);
    EXPECT_NE(r.body.find(R"("reconnect":{"base_ms":2000,"jitter_ms":0,"max_ms":60000})"),
              std::string::npos)
        << r.body;
    auto t = tls->get("/get-tcp-ip?uid=carol%40example.com");
    EXPECT_EQ(t.json()["reconnect"], r.json()["reconnect"]) << t.body;

    // A broken block is refused with file:line; the running policy stays.
    write_config("50ms", "reconnect:\n  base: 2s\n  max: 1s\n");
    reload();
    auto s = status();
    EXPECT_FALSE(s["last_reload"]["ok"].get<bool>());
    auto err = s["last_reload"]["error"].get<std::string>();
    EXPECT_NE(err.find("dispatcher.yaml:10:3: reconnect.max: must be at least reconnect.base"),
              std::string::npos)
        << err;
    r = http_get(pub_, "/get-tcp-ip?uid=dave%40example.com");
    EXPECT_EQ(r.json()["reconnect"],
              (json{{"base_ms", 2000}, {"jitter_ms", 0}, {"max_ms", 60000}}));
}

// With `threads: 2` each thread keeps its own copy of the runtime settings: a reload must reach
// the connections of both. Sixteen keep-alive connections spread over the two listening sockets
// (all on one would be a 2^-15 event), each asked before and after the SIGHUP.
TEST_F(DispatcherReconnectPolicy, SighupReachesTheConnectionsOfEveryThread) {
    write_config("50ms", "threads: 2\nreconnect:\n  base: 1s\n  max: 1m\n  jitter: 0ms\n");
    start();
    std::vector<raw_conn> conns(16);
    auto ask = [&](raw_conn& c, const std::string& want) {
        size_t before = c.received().size();
        EXPECT_TRUE(c.send("GET /get-tcp-ip?uid=frank%40example.com HTTP/1.1\r\nHost: d\r\n\r\n"));
        EXPECT_TRUE(eventually(
            [&] {
                c.pump();
                return c.received().find(want, before) != std::string::npos;
            },
            std::chrono::milliseconds(3000), std::chrono::milliseconds(1)))
            << c.received().substr(before);
    };
    const std::string old_policy = R"("reconnect":{"base_ms":1000,"jitter_ms":0,"max_ms":60000})";
    const std::string new_policy = R"("reconnect":{"base_ms":3000,"jitter_ms":0,"max_ms":60000})";
    for (auto& c : conns) {
        ASSERT_TRUE(c.connect(pub_));
        ask(c, old_policy);
    }
    write_config("50ms", "threads: 2\nreconnect:\n  base: 3s\n  max: 1m\n  jitter: 0ms\n");
    reload();
    ASSERT_TRUE(status()["last_reload"]["ok"].get<bool>()) << status()["last_reload"];
    for (auto& c : conns) ask(c, new_policy);
}

TEST_F(DispatcherReconnectPolicy, TheDefaultPolicyWhenTheBlockIsAbsent) {
    write_config("50ms", "");
    start();
    auto r = http_get(pub_, "/get-tcp-ip?uid=erin%40example.com");
    ASSERT_EQ(r.status, 200);
    EXPECT_NE(r.body.find(R"("reconnect":{"base_ms":500,"jitter_ms":1000,"max_ms":30000})"),
              std::string::npos)
        << r.body;
}

TEST_F(DispatcherReconnectPolicy, NoGatewayAnswersAreSpreadPerAnswer) {
    // Base: the 50 ms poll interval rounded up to 1 s; jitter 3 s.
    write_config("50ms", "reconnect: {jitter: 3s}\n");
    start();
    auto plain = refusals(150, [&](const std::string& t) { return http_get(pub_, t); });
    auto tls = https_client();
    auto over_tls = refusals(50, [&](const std::string& t) { return tls->get(t); });
    plain.insert(plain.end(), over_tls.begin(), over_tls.end());
    std::set<int64_t> distinct;
    std::set<std::string> headers;
    for (auto& [ms, header] : plain) {
        EXPECT_GE(ms, 1000);
        EXPECT_LE(ms, 4000);
        EXPECT_EQ(header, std::to_string((ms + 999) / 1000)) << ms;
        distinct.insert(ms);
        headers.insert(header);
    }
    // 200 draws over 3001 values: nearly all distinct, and the header takes several values.
    EXPECT_GT(distinct.size(), 150u);
    EXPECT_GE(headers.size(), 3u);
    auto m = http_get(admin_, "/metrics").body;
    EXPECT_NE(m.find("imgate_dispatcher_no_gateway_total 200"), std::string::npos);

    // Reload: a 2.5 s poll interval makes the base 3 s; jitter 0 makes every hint exactly that.
    write_config("2500ms", "reconnect: {jitter: 0s}\n");
    reload();
    for (auto& [ms, header] :
         refusals(20, [&](const std::string& t) { return http_get(pub_, t); })) {
        EXPECT_EQ(ms, 3000);
        EXPECT_EQ(header, "3");
    }
}

TEST_F(DispatcherReconnectPolicy, ABrokenBlockStopsStartUpNamingFileAndLine) {
    write_config("50ms", "reconnect:\n  base: 0ms\n");
    auto [rc, out] = run_command("timeout 30 " + binary_path("imgate-dispatcher") + " --config " +
                                 dir_.file("dispatcher.yaml") + " --check-config 2>&1");
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("dispatcher.yaml:9:3: reconnect.base: must be positive"), std::string::npos)
        << out;
}

}  // namespace
