// Secure transports end to end (issue 13): two real gateways serving tcp, tls, ws and wss, a real
// dispatcher, and the `imgate` binary as a user runs it. Messages cross gateways and transports
// with real-app ids (e-mail addresses) and non-ASCII text; certificate refusals give one clear
// line; a plaintext client on the TLS port is closed by the handshake deadline; openssl verifies
// the chain; a certificate rotation plus SIGHUP keeps live sessions and changes what new clients
// must trust.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>

#include "../support/process.hpp"
#include "../support/test_certs.hpp"
#include "../support/test_client.hpp"
#include "../support/tool_process.hpp"
#include "fault_fixture.hpp"

namespace {

using namespace imgate::test;
using json = nlohmann::json;

// Shell-quotes one argument for run_command.
std::string q(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

const char* alice = "alice.liddell@example.com";
const char* bob = "bob.o'brien@example.org";  // an apostrophe: quoting must hold
const char* text_de = "Grüße aus Köln — 你好, мир 👋";

// Ports of one gateway, per transport.
struct gw_ports {
    uint16_t client = 0, admin = 0, rpc = 0, tls = 0, ws = 0, wss = 0;
    uint16_t port(const std::string& t) const {
        return t == "tls" ? tls : t == "ws" ? ws : t == "wss" ? wss : client;
    }
};

// The fleet of this file: gw1 and gw2 serving every transport with one certificate (copied from
// test_certs("main") into the test's directory, so the rotation test rewrites only its own), and
// a dispatcher pulling both.
class Transports : public ::testing::Test {
  protected:
    void SetUp() override {
        auto& main = test_certs("main");
        cert_ = dir_.file("server.crt");
        key_ = dir_.file("server.key");
        write_file(cert_, read_file(main.server_crt));
        write_secret_file(key_, read_file(main.server_key));
        ca_ = main.ca_crt;
        for (auto* f : {"token.secret", "admin.token", "cluster.secret"})
            write_secret_file(dir_.file(f),
                              read_file(source_path(std::string("config/local/") + f)));
        auto gw_yaml = read_file(source_path("config/local/gateway.yaml"));
        gw_yaml = std::regex_replace(gw_yaml, std::regex("workers: 0"), "workers: 1");
        // Our own tls block replaces config/local's (if it has one): these certificates, and a
        // short handshake deadline so the plaintext-on-TLS test is quick.
        gw_yaml =
            std::regex_replace(gw_yaml, std::regex("\ntls:[^\n]*\n(?:[ \t]+[^\n]*\n)*"), "\n");
        gw_yaml += "tls:\n  cert_file: " + cert_ + "\n  key_file: " + key_ +
                   "\n  handshake_timeout: 1s\n  max_handshakes: 100\n";
        write_file(dir_.file("gateway.yaml"), gw_yaml);
        std::string fleet = "cluster:\n  secret_file: cluster.secret\ngateways:\n";
        for (auto id : {"gw1", "gw2"}) {
            gw_ports p{free_port(), free_port(), free_port(),
                       free_port(), free_port(), free_port()};
            ports_[id] = p;
            auto at = [](uint16_t port) { return "127.0.0.1:" + std::to_string(port) + "\n"; };
            fleet += std::string("  - id: ") + id + "\n";
            fleet += "    client: " + at(p.client);
            fleet += "    admin: " + at(p.admin);
            fleet += "    rpc: " + at(p.rpc);
            fleet += "    tls: " + at(p.tls);
            fleet += "    ws: " + at(p.ws);
            fleet += "    wss: " + at(p.wss);
        }
        write_file(dir_.file("fleet.yaml"), fleet);
        write_file(dir_.file("dispatcher.yaml"),
                   "fleet: fleet.yaml\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"
                   "poll: {interval: 100ms, timeout: 80ms, rise: 1, fall: 1, slow_start: 0ms}\n"
                   "log: {level: info}\n");
        for (auto id : {"gw1", "gw2"}) {
            gws_[id] = std::make_unique<daemon_process>(
                id, binary_path("imgate-gateway"),
                std::vector<std::string>{"--config", dir_.file("gateway.yaml"), "--id", id}, dir_);
        }
        for (auto& [id, g] : gws_) ASSERT_TRUE(g->wait_ready()) << g->log();
        // Cross-gateway delivery needs the RPC mesh: each gateway linked to the other.
        ASSERT_TRUE(eventually(
            [&] {
                for (auto& [id, p] : ports_)
                    if (fault::metric("127.0.0.1:" + std::to_string(p.admin),
                                      "imgate_rpc_links_up") != 1.0)
                        return false;
                return true;
            },
            10000ms))
            << gws_["gw1"]->log() << gws_["gw2"]->log();
    }

    std::string addr(const std::string& id, const std::string& t) {
        return "127.0.0.1:" + std::to_string(ports_.at(id).port(t));
    }
    // The transport flag of `t` ("" for tcp).
    static std::vector<std::string> flags(const std::string& t, const std::string& ca) {
        std::vector<std::string> f;
        if (t != "tcp") f.push_back("--" + t);
        if (!ca.empty()) f.insert(f.end(), {"--ca", ca});
        return f;
    }

    // `imgate listen` on gateway `id` over `t`, connected before it returns.
    std::unique_ptr<tool_process> listen(const std::string& name, const std::string& id,
                                         const std::string& t, const std::string& user, int count) {
        std::vector<std::string> a{
            "listen",    "--gateway", addr(id, t),     "--json",
            "--user",    user,        "--count",       std::to_string(count),
            "--timeout", "20s",       "--secret-file", dir_.file("token.secret")};
        for (auto& f : flags(t, ca_)) a.push_back(f);
        auto p = std::make_unique<tool_process>(dir_, name, a);
        EXPECT_TRUE(eventually([&] { return p->connected(); }, 10000ms)) << p->err();
        return p;
    }

    // `imgate send` through gateway `id` over `t` (trusting `ca`); {exit code, output}.
    std::pair<int, std::string> send(const std::string& id, const std::string& t,
                                     const std::string& from, const std::string& to,
                                     const std::string& text, const std::string& ca,
                                     const std::string& extra = "") {
        std::string cmd = binary_path("imgate") + " send --gateway " + addr(id, t);
        for (auto& f : flags(t, ca)) cmd += " " + q(f);
        cmd += " --secret-file " + q(dir_.file("token.secret")) + " --user " + q(from) + " --to " +
               q(to) + " --timeout 10s " + extra + " " + q(text);
        return run_command(cmd);
    }

    // One message from `from_t` on gw1 to a listener on gw2 over `to_t`.
    void cross(const std::string& from_t, const std::string& to_t) {
        auto l = listen("listen-" + to_t, "gw2", to_t, alice, 1);
        auto [rc, out] = send("gw1", from_t, bob, alice, text_de, ca_, "--wait-receipt 5s --json");
        EXPECT_EQ(rc, 0) << out;
        EXPECT_NE(out.find("\"type\":\"receipt\""), std::string::npos) << out;
        ASSERT_EQ(l->wait(), 0) << l->err();
        auto lines = l->json_lines();
        ASSERT_EQ(lines.size(), 1u) << l->out();
        EXPECT_EQ(lines[0]["from"], bob);
        EXPECT_EQ(lines[0]["text"], text_de);
        if (to_t != "tcp") EXPECT_NE(l->err().find("over " + to_t), std::string::npos) << l->err();
    }

    temp_dir dir_;
    std::string cert_, key_, ca_;
    std::map<std::string, gw_ports> ports_;
    std::map<std::string, std::unique_ptr<daemon_process>> gws_;
};

TEST_F(Transports, TlsSenderToTlsReceiverOnAnotherGateway) {
    cross("tls", "tls");
}

TEST_F(Transports, WssSenderToTcpReceiverOnAnotherGateway) {
    cross("wss", "tcp");
}

TEST_F(Transports, TlsSenderToWssReceiverOnAnotherGateway) {
    cross("tls", "wss");
}

TEST_F(Transports, WsSenderToTlsReceiverOnAnotherGateway) {
    cross("ws", "tls");
}

TEST_F(Transports, ClientTrustingAnotherCaIsRefusedClearly) {
    auto& other = test_certs("other");
    for (auto t : {"tls", "wss"}) {
        auto [rc, out] = send("gw1", t, bob, alice, "never sent", other.ca_crt);
        EXPECT_EQ(rc, 1) << out;
        EXPECT_NE(out.find("TLS certificate of " + addr("gw1", t) + " was not trusted"),
                  std::string::npos)
            << out;
        EXPECT_NE(out.find(other.ca_crt), std::string::npos) << out;
        // Fatal for the only gateway: one refusal, no retry loop.
        auto first = out.find("was not trusted");
        EXPECT_EQ(out.find("was not trusted", first + 1), std::string::npos) << out;
    }
}

TEST_F(Transports, PlaintextClientOnTheTlsPortIsClosedByTheHandshakeDeadline) {
    test_client c;
    ASSERT_TRUE(c.connect(addr("gw1", "tls")));
    auto t0 = std::chrono::steady_clock::now();
    // A plaintext client waits for the server to speak; the gateway's 1 s handshake deadline
    // ends it. Awaited (bounded), not slept for.
    ASSERT_TRUE(c.wait_closed(8000ms));
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, 800ms);
    EXPECT_LT(took, 6000ms);
}

TEST_F(Transports, OpensslVerifiesTheChain) {
    for (auto t : {"tls", "wss"}) {
        auto [rc, out] = run_command("timeout 10 openssl s_client -connect " + addr("gw1", t) +
                                     " -CAfile " + q(ca_) + " -verify_return_error </dev/null");
        EXPECT_NE(out.find("Verify return code: 0"), std::string::npos) << out;
    }
}

TEST_F(Transports, CertificateReloadKeepsLiveSessions) {
    // A live TLS session on gw1, trusting only the old CA.
    auto l = listen("listen-before", "gw1", "tls", alice, 2);
    auto [rc, out] = send("gw2", "tcp", bob, alice, "before the rotation", "", "--wait-receipt 5s");
    ASSERT_EQ(rc, 0) << out;
    // Rotate the files to a certificate of another CA, then SIGHUP.
    auto& rotated = test_certs("rotated");
    write_file(cert_, read_file(rotated.server_crt));
    write_secret_file(key_, read_file(rotated.server_key));
    gws_["gw1"]->signal(SIGHUP);
    // A new client trusting only the new CA gets in once the reload is done (awaited, bounded).
    std::string last;
    ASSERT_TRUE(eventually(
        [&] {
            auto r = send("gw1", "tls", bob, "nobody.here@example.com", "probe", rotated.ca_crt);
            last = r.second;
            return r.first == 2;  // connected and logged in; the recipient is offline
        },
        10000ms, 200ms))
        << last << gws_["gw1"]->log();
    // One trusting only the old CA is refused.
    auto [orc, oout] = send("gw1", "tls", bob, alice, "old trust", ca_);
    EXPECT_EQ(orc, 1) << oout;
    EXPECT_NE(oout.find("was not trusted"), std::string::npos) << oout;
    // The session opened before the reload still exchanges messages: it receives, and its ack
    // (written on the old TLS session) comes back as the sender's receipt.
    auto [rc2, out2] =
        send("gw2", "tcp", bob, alice, "after the rotation ✓", "", "--wait-receipt 5s --json");
    EXPECT_EQ(rc2, 0) << out2;
    EXPECT_NE(out2.find("\"type\":\"receipt\""), std::string::npos) << out2;
    ASSERT_EQ(l->wait(), 0) << l->err();
    auto lines = l->json_lines();
    ASSERT_EQ(lines.size(), 2u) << l->out();
    EXPECT_EQ(lines[1]["text"], "after the rotation ✓");
    EXPECT_EQ(l->err().find("reconnecting"), std::string::npos) << l->err();
}

TEST_F(Transports, ImgateListenWssAndSendTlsThroughTheDispatcher) {
    auto disp = std::make_unique<daemon_process>(
        "dispatcher", binary_path("imgate-dispatcher"),
        std::vector<std::string>{"--config", dir_.file("dispatcher.yaml")}, dir_);
    ASSERT_TRUE(disp->wait_ready()) << disp->log();
    std::string url = "http://" + disp->addr("public");
    ASSERT_TRUE(eventually(
        [&] {
            auto s = http_get(disp->addr("admin"), "/status").json();
            if (!s.is_object()) return false;
            int up = 0;
            for (auto& g : s["gateways"]) up += g["state"] == "up";
            return up == 2;
        },
        5000ms))
        << disp->log();
    auto [grc, gout] = run_command(binary_path("imgate") + " get-gateway --transport wss --user " +
                                   q(alice) + " --dispatcher " + url);
    ASSERT_EQ(grc, 0) << gout;
    auto answer = json::parse(gout.substr(0, gout.find('\n')), nullptr, false);
    EXPECT_EQ(answer["transport"], "wss") << gout;
    EXPECT_EQ(answer["url"].get<std::string>().rfind("wss://127.0.0.1:", 0), 0u) << gout;
    auto l = std::make_unique<tool_process>(
        dir_, "listen-disp",
        std::vector<std::string>{"listen", "--wss", "--ca", ca_, "--dispatcher", url, "-u", alice,
                                 "-n", "1", "--json", "--timeout", "20s", "--secret-file",
                                 dir_.file("token.secret")});
    ASSERT_TRUE(eventually([&] { return l->connected(); }, 10000ms)) << l->err();
    EXPECT_NE(l->err().find("over wss"), std::string::npos) << l->err();
    auto [rc, out] =
        run_command(binary_path("imgate") + " send --tls --ca " + q(ca_) + " --dispatcher " + url +
                    " --secret-file " + q(dir_.file("token.secret")) + " -u " + q(bob) + " --to " +
                    q(alice) + " " + q(text_de));
    EXPECT_EQ(rc, 0) << out;
    ASSERT_EQ(l->wait(), 0) << l->err();
    auto lines = l->json_lines();
    ASSERT_EQ(lines.size(), 1u) << l->out();
    EXPECT_EQ(lines[0]["text"], text_de);
}

TEST_F(Transports, CliFlagsAreExclusiveAndInsecureWarns) {
    auto [rc, out] = run_command(binary_path("imgate") + " listen --tls --wss -u " + q(alice));
    EXPECT_NE(rc, 0);
    EXPECT_NE(out.find("excludes"), std::string::npos) << out;
    // --insecure: connects without verification, and says so on stderr.
    auto [irc, iout] =
        run_command(binary_path("imgate") + " send --tls --insecure --gateway " +
                    addr("gw1", "tls") + " --secret-file " + q(dir_.file("token.secret")) + " -u " +
                    q(bob) + " --to nobody@example.com hi");
    EXPECT_EQ(irc, 2) << iout;  // offline: it connected and sent
    EXPECT_NE(iout.find("warning: --insecure"), std::string::npos) << iout;
}

TEST_F(Transports, LoadDrivesTlsAndWssAndKeepsTheLoopbackGuard) {
    for (auto t : {"tls", "wss"}) {
        auto [rc, out] =
            run_command(binary_path("imgate") + " load -q --" + t + " --ca " + q(ca_) +
                        " --gateways " + addr("gw1", t) + "," + addr("gw2", t) +
                        " --clients 20 --rooms 2 --rate 100 --duration 1s --secret-file " +
                        q(dir_.file("token.secret")));
        EXPECT_EQ(rc, 0) << t << ": " << out;
        EXPECT_NE(out.find("connected 20, failed 0"), std::string::npos) << out;
        EXPECT_NE(out.find("missing 0"), std::string::npos) << out;
    }
    auto [grc, gout] =
        run_command(binary_path("imgate") + " load --wss --gateways 10.0.0.1:9443 --secret-file " +
                    q(dir_.file("token.secret")));
    EXPECT_EQ(grc, 1);
    EXPECT_NE(gout.find("only targets loopback"), std::string::npos) << gout;
}

}  // namespace
