// The real imgate-dispatcher with `https:` (issue 13): the public routes over HTTPS next to the
// plain listener, ?transport= answers (curl trusting the test CA asks for wss), the ready file and
// --check-config naming the HTTPS address, and SIGHUP certificate rotation under a live keep-alive
// connection, including a broken certificate that must leave the old one serving.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../support/loopback_http.hpp"
#include "../support/process.hpp"
#include "../support/test_certs.hpp"
#include "../support/tls_client.hpp"
#include "common/http_server.hpp"

namespace {

using namespace imgate;
using namespace imgate::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

class DispatcherHttps : public ::testing::Test {
  protected:
    void SetUp() override {
        // The dispatcher reads copies, so a test can rotate or break them in place.
        install_certs(test_certs("dispatcher-https"));
        // gw1 serves tcp and wss, gw2 tcp only: nobody serves tls.
        write_file(dir_.file("fleet.yaml"),
                   "gateways:\n"
                   "  - {id: gw1, client: 127.0.0.1:19001, wss: 127.0.0.1:19443, admin: " +
                       gw1_.admin() +
                       ", rpc: 127.0.0.1:19101}\n"
                       "  - {id: gw2, client: 127.0.0.1:19002, admin: " +
                       gw2_.admin() + ", rpc: 127.0.0.1:19102}\n");
        write_file(dir_.file("dispatcher.yaml"), R"(id: https-disp
fleet: fleet.yaml
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
https:
  listen: 127.0.0.1:0
  cert_file: server.crt
  key_file: server.key
  handshake_timeout: 2s
poll: {interval: 50ms, timeout: 40ms, rise: 1, fall: 2, slow_start: 0ms}
alternates: 2
log: {level: info}
)");
        disp_ = std::make_unique<daemon_process>(
            "dispatcher", binary_path("imgate-dispatcher"),
            std::vector<std::string>{"--config", dir_.file("dispatcher.yaml")}, dir_);
        ASSERT_TRUE(disp_->wait_ready()) << disp_->log();
        pub_ = disp_->addr("public");
        admin_ = disp_->addr("admin");
        https_ = disp_->addr("https");
        ASSERT_FALSE(https_.empty()) << disp_->ready().dump();
        ASSERT_TRUE(eventually([&] {
            return http_get(admin_, "/healthz").json().value("available_gateways", 0) == 2;
        })) << disp_->log();
    }

    void install_certs(const cert_set& c) {
        fs::copy_file(c.server_crt, dir_.file("server.crt"), fs::copy_options::overwrite_existing);
        write_secret_file(dir_.file("server.key"), read_file(c.server_key));
    }

    json status() { return http_get(admin_, "/status").json(); }

    // Sum of the series of `name` whose labels contain every fragment, or -1 when none.
    double metric(const std::string& name, const std::vector<std::string>& fragments) {
        std::istringstream in(http_get(admin_, "/metrics").body);
        double sum = -1;
        for (std::string line; std::getline(in, line);) {
            if (line.rfind(name + "{", 0) != 0) continue;
            bool all = true;
            for (auto& f : fragments) all = all && line.find(f) != std::string::npos;
            if (!all) continue;
            sum = (sum < 0 ? 0 : sum) + std::stod(line.substr(line.rfind(' ') + 1));
        }
        return sum;
    }

    // curl, trusting only ca; returns {exit code, "<status>\n<body>"}.
    std::pair<int, std::string> curl(const std::string& ca, const std::string& url) {
        return run_command("curl -sS --max-time 5 --cacert " + ca + " -w '\\n%{http_code}' '" +
                           url + "'");
    }

    temp_dir dir_;
    status_only_gateway gw1_{"gw1"}, gw2_{"gw2"};
    std::unique_ptr<daemon_process> disp_;
    std::string pub_, admin_, https_;
};

TEST_F(DispatcherHttps, CurlTrustingTheCaGetsAWssGatewayOverHttps) {
    auto port = split_hostport(https_).second;
    ASSERT_NE(port, 0);
    auto [rc, out] = curl(test_certs("dispatcher-https").ca_crt,
                          "https://127.0.0.1:" + std::to_string(port) +
                              "/get-tcp-ip?uid=alice%40example.com&transport=wss");
    ASSERT_EQ(rc, 0) << out << disp_->log();
    auto nl = out.rfind('\n');
    EXPECT_EQ(out.substr(nl + 1), "200") << out;
    auto j = json::parse(out.substr(0, nl), nullptr, false);
    ASSERT_TRUE(j.is_object()) << out;
    // Only gw1 serves wss: it is the pick, with no alternate, at its wss address.
    EXPECT_EQ(j["id"], "gw1");
    EXPECT_EQ(j["host"], "127.0.0.1");
    EXPECT_EQ(j["port"], 19443);
    EXPECT_EQ(j["transport"], "wss");
    EXPECT_EQ(j["url"], "wss://127.0.0.1:19443/");
    EXPECT_TRUE(j["alternates"].empty()) << out;

    // The same routes over HTTPS as on the plain listener.
    tls_client c(test_certs("dispatcher-https").ca_crt);
    ASSERT_TRUE(c.connect(https_)) << c.error().message();
    EXPECT_EQ(c.get("/livez").status, 200);
    EXPECT_EQ(c.get("/healthz").status, 200);
    auto tcp = c.get("/get-tcp-ip?uid=bob%40example.com");
    ASSERT_EQ(tcp.status, 200) << tcp.body;
    EXPECT_EQ(tcp.json()["transport"], "tcp");
    EXPECT_EQ(tcp.json()["alternates"].size(), 1u);  // both serve tcp
    EXPECT_FALSE(tcp.json().contains("url"));
    // Nobody serves tls: the no-gateway 503, with Retry-After.
    auto none = c.get("/get-tcp-ip?uid=carol%40example.com&transport=tls");
    EXPECT_EQ(none.status, 503) << none.body;
    EXPECT_EQ(none.json()["error"], "no_gateway_available");
    EXPECT_FALSE(none.headers["Retry-After"].empty());
    auto bad = c.get("/get-tcp-ip?uid=dave%40example.com&transport=quic");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(bad.json()["error"], "bad_transport");
    // The plain listener still answers, the same way.
    auto plain = http_get(pub_, "/get-tcp-ip?uid=erin%40example.com&transport=wss");
    ASSERT_EQ(plain.status, 200) << plain.body;
    EXPECT_EQ(plain.json()["url"], "wss://127.0.0.1:19443/");

    EXPECT_GE(metric("imgate_http_tls_handshakes_total", {"server=\"https\"", "result=\"ok\""}), 2);
    EXPECT_EQ(metric("imgate_dispatcher_bad_requests_total", {"reason=\"bad_transport\""}), 1);
    EXPECT_GE(metric("imgate_http_requests_total", {"server=\"https\"", "code=\"503\""}), 1);
    // /status lists the HTTPS listener and each gateway's transports.
    auto s = status();
    EXPECT_EQ(s["https"]["listen"], https_);
    EXPECT_EQ(s["https"]["sha256"].get<std::string>().size(), 64u);
    for (auto& g : s["gateways"])
        if (g["id"] == "gw1")
            EXPECT_EQ(g["transports"],
                      (json{{"tcp", "127.0.0.1:19001"}, {"wss", "127.0.0.1:19443"}}));
    // The start-up line names the HTTPS address.
    EXPECT_NE(disp_->log().find("https " + https_), std::string::npos) << disp_->log();
}

TEST_F(DispatcherHttps, PlainHttpOnTheHttpsPortIsClosedAndCounted) {
    auto r = http_get(https_, "/livez", 2000ms);
    EXPECT_EQ(r.status, 0) << "a plain request on the HTTPS port was answered: " << r.body;
    EXPECT_TRUE(eventually([&] {
        return metric("imgate_http_tls_handshakes_total",
                      {"server=\"https\"", "result=\"failed\""}) == 1;
    }));
}

TEST_F(DispatcherHttps, SighupRotatesTheCertificateForNewConnectionsOnly) {
    const auto& first = test_certs("dispatcher-https");
    const auto& second = test_certs("dispatcher-https-rotated");
    tls_client live(first.ca_crt);
    ASSERT_TRUE(live.connect(https_)) << live.error().message();
    ASSERT_EQ(live.get("/livez").status, 200);
    auto first_fp = live.peer_fingerprint();
    EXPECT_EQ(status()["https"]["sha256"], first_fp);

    // Rotation: replace the files, SIGHUP.
    install_certs(second);
    disp_->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] {
        return disp_->log().find("https: certificate reloaded") != std::string::npos;
    })) << disp_->log();
    auto second_fp = status()["https"]["sha256"].get<std::string>();
    EXPECT_NE(second_fp, first_fp);

    // The keep-alive connection opened before keeps working.
    auto again = live.get("/get-tcp-ip?uid=alice%40example.com");
    EXPECT_EQ(again.status, 200) << live.error().message();
    // A new handshake shows the new certificate.
    tls_client fresh(second.ca_crt);
    ASSERT_TRUE(fresh.connect(https_)) << fresh.error().message();
    EXPECT_EQ(fresh.peer_fingerprint(), second_fp);

    // A broken certificate file: the reload is refused as a whole, the old certificate serves.
    write_file(dir_.file("server.crt"), "-----BEGIN CERTIFICATE-----\nnot base64\n");
    disp_->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] {
        return disp_->log().find(
                   "https: certificate reload failed, keeping the running "
                   "certificate") != std::string::npos;
    })) << disp_->log();
    EXPECT_NE(disp_->log().find("reload refused, keeping the running configuration: https: "
                                "cert_file " +
                                dir_.file("server.crt")),
              std::string::npos)
        << disp_->log();
    auto s = status();
    EXPECT_FALSE(s["last_reload"]["ok"].get<bool>());
    EXPECT_EQ(s["https"]["sha256"], second_fp);
    EXPECT_EQ(s["reload_failures"], 1);
    tls_client after(second.ca_crt);
    ASSERT_TRUE(after.connect(https_)) << after.error().message();
    EXPECT_EQ(after.peer_fingerprint(), second_fp);
    EXPECT_EQ(after.get("/healthz").status, 200);
    EXPECT_TRUE(disp_->running());
    auto [rc, out] =
        curl(second.ca_crt, "https://127.0.0.1:" + std::to_string(split_hostport(https_).second) +
                                "/get-tcp-ip?transport=wss");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("\"url\":\"wss://127.0.0.1:19443/\""), std::string::npos) << out;
}

TEST(DispatcherHttpsCli, CheckConfigLoadsTheCertificate) {
    temp_dir dir;
    const auto& c = test_certs("dispatcher-https-check");
    write_file(dir.file("fleet.yaml"),
               "gateways:\n  - {id: gw1, client: 127.0.0.1:1, admin: 127.0.0.1:2, rpc: "
               "127.0.0.1:3}\n");
    write_file(dir.file("ok.yaml"),
               "fleet: fleet.yaml\nhttps: {listen: 127.0.0.1:8443, cert_file: " + c.server_crt +
                   ", key_file: " + c.server_key + "}\n");
    write_file(dir.file("bad.yaml"),
               "fleet: fleet.yaml\nhttps: {listen: 127.0.0.1:8443, cert_file: " + c.server_crt +
                   ", key_file: " + test_certs("other").server_key + "}\n");
    auto bin = binary_path("imgate-dispatcher");
    auto [rc, out] = run_command(bin + " --check-config --config " + dir.file("ok.yaml"));
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("https 127.0.0.1:8443 with"), std::string::npos) << out;
    auto [rc2, out2] = run_command(bin + " --check-config --config " + dir.file("bad.yaml"));
    EXPECT_EQ(rc2, 1) << out2;
    EXPECT_NE(out2.find("does not match"), std::string::npos) << out2;
}

}  // namespace
