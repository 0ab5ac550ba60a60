// The gateway's client transports (docs/protocol.md, "Transports"), tested as a client written
// from the docs would: the same frames over tcp, inside TLS, and one frame per binary WebSocket
// message over ws and wss; across two real gateways, with certificates made at test time.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "../support/process.hpp"
#include "../support/test_certs.hpp"
#include "../support/test_client.hpp"
#include "../support/transport_client.hpp"
#include "common/jwt.hpp"

namespace imgate::test {
namespace {

const std::string secret = "transport-test-token-secret-0123456789";
const std::string cluster_secret = "transport-test-cluster-secret-0123456789";

std::string token_for(const std::string& user, const std::string& device = "phone") {
    return make_token(secret, user, device);
}

// Two gateways (gw1, gw2) serving every transport on free loopback ports, meshed; the TLS
// certificate files are copies the test may rotate.
class transports_fleet {
  public:
    // gateway_extra: whole sections appended to gateway.yaml; tls_extra: lines of its tls block.
    explicit transports_fleet(const std::string& gateway_extra = "", int gateways = 2,
                              const std::string& tls_extra = "") {
        write_secret_file(dir_.file("token.secret"), secret + "\n");
        write_secret_file(dir_.file("cluster.secret"), cluster_secret + "\n");
        install_cert(test_certs());
        std::string y = "cluster:\n  secret_file: cluster.secret\ngateways:\n";
        for (int i = 1; i <= gateways; ++i) {
            std::string id = "gw" + std::to_string(i);
            ids_.push_back(id);
            y += "  - id: " + id + "\n";
            for (const char* key : {"client", "tls", "ws", "wss", "admin", "rpc"})
                y +=
                    std::string("    ") + key + ": 127.0.0.1:" + std::to_string(free_port()) + "\n";
        }
        write_file(dir_.file("fleet.yaml"), y);
        write_file(dir_.file("gateway.yaml"),
                   "fleet: fleet.yaml\nworkers: 2\nauth:\n  secret_files: [token.secret]\n"
                   "log:\n  level: info\n"
                   "tls:\n  cert_file: server.crt\n  key_file: server.key\n" +
                       tls_extra + gateway_extra);
    }

    // Copies a certificate set into place (the files the gateways read).
    void install_cert(const cert_set& c) {
        namespace fs = std::filesystem;
        fs::copy_file(c.server_crt, dir_.file("server.crt"), fs::copy_options::overwrite_existing);
        fs::copy_file(c.server_key, dir_.file("server.key"), fs::copy_options::overwrite_existing);
        fs::permissions(dir_.file("server.key"), fs::perms::owner_read | fs::perms::owner_write);
    }

    bool start() {
        for (auto& id : ids_) {
            gws_[id] = std::make_unique<daemon_process>(
                id, binary_path("imgate-gateway"),
                std::vector<std::string>{"--config", dir_.file("gateway.yaml"), "--id", id}, dir_);
            if (!gws_[id]->wait_ready()) {
                ADD_FAILURE() << id << " did not start:\n" << gws_[id]->log();
                return false;
            }
        }
        if (ids_.size() < 2) return true;
        return eventually(
            [&] {
                for (auto& id : ids_)
                    if (metric(id, "imgate_rpc_links_up") != double(ids_.size() - 1)) return false;
                return true;
            },
            10s);
    }

    // Waits until gateway id's directory lists n users on its peers: a user who just logged in
    // elsewhere is announced asynchronously, and until then "offline" is the true answer there.
    bool knows_remote_users(const std::string& id, double n) {
        return eventually([&] { return metric(id, "imgate_rpc_directory_user_locations") >= n; },
                          10s);
    }

    std::string addr(const std::string& id, transport t) { return gws_.at(id)->addr(to_string(t)); }
    daemon_process& gw(const std::string& id) { return *gws_.at(id); }
    const temp_dir& dir() const { return dir_; }
    double metric(const std::string& id, const std::string& series) {
        auto body = http_get(gws_.at(id)->addr("admin"), "/metrics").body;
        std::istringstream in(body);
        std::string line;
        while (std::getline(in, line))
            if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
        return -1;
    }

    // A client logged in as user over t to gateway id, trusting the main test CA.
    std::unique_ptr<transport_client> login(const std::string& id, transport t,
                                            const std::string& user,
                                            const std::string& ca = test_certs().ca_crt) {
        auto c = std::make_unique<transport_client>();
        if (!c->connect(t, addr(id, t), ca)) {
            ADD_FAILURE() << to_string(t) << " connect to " << id << ": " << c->error();
            return nullptr;
        }
        auto r = c->login(token_for(user));
        if (!r) {
            ADD_FAILURE() << to_string(t) << " login of " << user << " failed";
            return nullptr;
        }
        EXPECT_EQ(r->user, user);
        EXPECT_EQ(r->gateway_id, id);
        return c;
    }

  private:
    temp_dir dir_;
    std::vector<std::string> ids_;
    std::map<std::string, std::unique_ptr<daemon_process>> gws_;
};

// A 1:1 message from one client to another: SEND_RESULT ok with reached 1, and the DELIVER
// carries the exact payload and sender.
void expect_delivered(transport_client& from, const std::string& from_user, transport_client& to,
                      const std::string& to_user, const std::string& payload, uint64_t cmid) {
    ASSERT_TRUE(from.send(proto::send_msg{proto::target_kind::user, to_user, cmid, payload}, 7))
        << from.error();
    auto r = from.read<proto::send_result_msg>(5s);
    ASSERT_TRUE(r) << "no SEND_RESULT; closed: " << from.closed() << ", last other frame op: "
                   << (from.last_skipped() ? int(from.last_skipped()->op) : -1);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(r->reached, 1u);
    auto d = to.read<proto::deliver_msg>(5s);
    ASSERT_TRUE(d) << "no DELIVER";
    EXPECT_EQ(d->payload, payload);
    EXPECT_EQ(d->from_user, from_user);
    EXPECT_EQ(d->server_msg_id, r->server_msg_id);
}

TEST(GatewayTransports, EveryTransportPairDeliversAcrossTwoGateways) {
    transports_fleet f;
    ASSERT_TRUE(f.start());
    const transport all[] = {transport::tcp, transport::tls, transport::ws, transport::wss};
    std::map<transport, std::string> names{{transport::tcp, "amélie.tcp@example.com"},
                                           {transport::tls, "bjørn.tls@example.com"},
                                           {transport::ws, "chloé.ws@example.com"},
                                           {transport::wss, "dmitri.wss@example.com"}};
    // Senders on gw1, receivers on gw2, one of each transport: every pair crosses the mesh.
    std::map<transport, std::unique_ptr<transport_client>> on1, on2;
    for (auto t : all) {
        on1[t] = f.login("gw1", t, "s." + names[t]);
        on2[t] = f.login("gw2", t, "r." + names[t]);
        ASSERT_TRUE(on1[t] && on2[t]);
    }
    ASSERT_TRUE(f.knows_remote_users("gw1", 4));
    uint64_t cmid = 1;
    for (auto a : all)
        for (auto b : all) {
            SCOPED_TRACE(std::string(to_string(a)) + " -> " + to_string(b));
            std::string payload = std::string("Grüße über ") + to_string(a) + "→" + to_string(b) +
                                  ", 世界 #" + std::to_string(cmid);
            expect_delivered(*on1[a], "s." + names[a], *on2[b], "r." + names[b], payload, cmid++);
        }
    // One frame per WebSocket message in the other direction too: each DELIVER and SEND_RESULT
    // a ws client read came as its own message.
    EXPECT_GE(on2[transport::ws]->messages(), 5u);
}

TEST(GatewayTransports, LargeFramesCrossTlsAndWssIntact) {
    transports_fleet f("limits:\n  max_payload_bytes: 60000\n");
    ASSERT_TRUE(f.start());
    auto a = f.login("gw1", transport::tls, "große.daten@example.com");
    auto b = f.login("gw2", transport::wss, "empfänger@example.com");
    ASSERT_TRUE(a && b);
    ASSERT_TRUE(f.knows_remote_users("gw1", 1) && f.knows_remote_users("gw2", 1));
    std::string payload;
    for (int i = 0; payload.size() < 50000; ++i) payload += "€" + std::to_string(i) + ",";
    expect_delivered(*a, "große.daten@example.com", *b, "empfänger@example.com", payload, 99);
    if (::testing::Test::HasFailure()) std::cerr << f.gw("gw1").log() << f.gw("gw2").log();
    expect_delivered(*b, "empfänger@example.com", *a, "große.daten@example.com", payload + "!",
                     100);
}

TEST(GatewayTransports, WebSocketMessageMustBeExactlyOneFrame) {
    transports_fleet f("", 1);
    ASSERT_TRUE(f.start());
    for (auto t : {transport::ws, transport::wss}) {
        SCOPED_TRACE(to_string(t));
        // Two frames in one message.
        {
            transport_client c;
            ASSERT_TRUE(c.connect(t, f.addr("gw1", t), test_certs().ca_crt)) << c.error();
            auto two = proto::encode(proto::ping_msg{}, 1) + proto::encode(proto::ping_msg{}, 2);
            ASSERT_TRUE(c.send_raw(two));
            auto e = c.read<proto::error_msg>();
            ASSERT_TRUE(e);
            EXPECT_EQ(e->status, proto::code::bad_frame);
            EXPECT_NE(e->message.find("exactly one frame"), std::string::npos) << e->message;
            EXPECT_TRUE(c.wait_closed(5s));
        }
        // Half a frame.
        {
            transport_client c;
            ASSERT_TRUE(c.connect(t, f.addr("gw1", t), test_certs().ca_crt)) << c.error();
            auto login = proto::encode(proto::login_msg{token_for("halb@example.com")}, 3);
            ASSERT_TRUE(c.send_raw(std::string_view(login).substr(0, login.size() - 5)));
            auto e = c.read<proto::error_msg>();
            ASSERT_TRUE(e);
            EXPECT_EQ(e->status, proto::code::bad_frame);
            EXPECT_TRUE(c.wait_closed(5s));
        }
        // A text message.
        {
            transport_client c;
            ASSERT_TRUE(c.connect(t, f.addr("gw1", t), test_certs().ca_crt)) << c.error();
            ASSERT_TRUE(c.send_text("{\"op\":\"login\"}"));
            auto e = c.read<proto::error_msg>();
            ASSERT_TRUE(e);
            EXPECT_EQ(e->status, proto::code::bad_frame);
            EXPECT_NE(e->message.find("binary"), std::string::npos) << e->message;
            EXPECT_TRUE(c.wait_closed(5s));
        }
    }
    EXPECT_GE(f.metric("gw1", "imgate_gateway_logins_total{result=\"bad_frame\"}"), 6);
}

TEST(GatewayTransports, WebSocketMessageOverThePreLoginLimitIsRefusedUnread) {
    transports_fleet f("limits:\n  max_token_bytes: 1024\n", 1);
    ASSERT_TRUE(f.start());
    transport_client c;
    ASSERT_TRUE(c.connect(transport::ws, f.addr("gw1", transport::ws))) << c.error();
    // A LOGIN far over max_token_bytes + 2: the WebSocket layer refuses the message (close 1009)
    // before buffering it; the connection ends.
    std::string big(200000, 'x');
    c.send_raw(proto::encode(proto::login_msg{big}, 1));
    EXPECT_TRUE(c.wait_closed(5s));
    // The frame decoder never saw it: the refusal happened in the WebSocket layer.
    EXPECT_EQ(f.metric("gw1", R"(imgate_gateway_logins_total{result="frame_too_large"})"), 0);
}

TEST(GatewayTransports, PlaintextOnTheTlsPortIsClosed) {
    transports_fleet f("", 1, "  handshake_timeout: 1s\n");
    ASSERT_TRUE(f.start());
    // A client that says nothing is closed by the handshake deadline.
    test_client silent;
    ASSERT_TRUE(silent.connect(f.addr("gw1", transport::tls)));
    EXPECT_TRUE(silent.wait_closed(5s));
    // The count follows the close (the handshake coroutine ends after the socket is closed).
    EXPECT_TRUE(eventually(
        [&] {
            return f.metric(
                       "gw1",
                       R"(imgate_gateway_handshakes_total{result="timeout",transport="tls"})") == 1;
        },
        5s));
    // A client speaking the plain protocol is closed as soon as its bytes fail the handshake.
    test_client plain;
    ASSERT_TRUE(plain.connect(f.addr("gw1", transport::tls)));
    ASSERT_TRUE(plain.send(proto::login_msg{token_for("klartext@example.com")}, 1));
    EXPECT_TRUE(plain.wait_closed(5s));
    // Closed by the failed handshake, not by the deadline (that would count as a timeout).
    EXPECT_TRUE(eventually(
        [&] {
            return f.metric(
                       "gw1",
                       R"(imgate_gateway_handshakes_total{result="failed",transport="tls"})") == 1;
        },
        5s));
    // A plain HTTP client on the ws port gets 426 and a close; the same on wss fails TLS.
    auto r = http_get(f.addr("gw1", transport::ws), "/");
    EXPECT_EQ(r.status, 426);
    EXPECT_TRUE(eventually(
        [&] {
            return f.metric(
                       "gw1",
                       R"(imgate_gateway_handshakes_total{result="not_websocket",transport="ws"})") ==
                   1;
        },
        5s));
}

TEST(GatewayTransports, ClientTrustingAnotherCaIsRefused) {
    transports_fleet f("", 1);
    ASSERT_TRUE(f.start());
    for (auto t : {transport::tls, transport::wss}) {
        transport_client c;
        EXPECT_FALSE(c.connect(t, f.addr("gw1", t), test_certs("other").ca_crt));
        EXPECT_NE(c.error().find("certificate verify failed"), std::string::npos) << c.error();
    }
}

TEST(GatewayTransports, HandshakesInFlightAreBounded) {
    transports_fleet f("", 1, "  max_handshakes: 2\n");
    ASSERT_TRUE(f.start());
    // Two connections that never start TLS hold both handshake slots.
    test_client a, b;
    ASSERT_TRUE(a.connect(f.addr("gw1", transport::tls)));
    ASSERT_TRUE(b.connect(f.addr("gw1", transport::tls)));
    test_client third;
    ASSERT_TRUE(third.connect(f.addr("gw1", transport::tls)));
    EXPECT_TRUE(third.wait_closed(3s)) << "the third handshake was not refused";
    EXPECT_TRUE(eventually(
        [&] {
            return f.metric("gw1",
                            R"(imgate_gateway_handshakes_total{result="busy",transport="tls"})") ==
                   1;
        },
        5s));
    // Freeing the slots lets a real client in.
    a.close();
    b.close();
    EXPECT_TRUE(eventually(
        [&] {
            transport_client c;
            return c.connect(transport::tls, f.addr("gw1", transport::tls), test_certs().ca_crt) &&
                   c.login(token_for("wieder.da@example.com"));
        },
        5s));
}

TEST(GatewayTransports, CertificateReloadKeepsSessionsAndServesTheNewOne) {
    transports_fleet f;
    ASSERT_TRUE(f.start());
    auto a = f.login("gw1", transport::tls, "vorher.tls@example.com");
    auto b = f.login("gw2", transport::wss, "vorher.wss@example.com");
    ASSERT_TRUE(a && b);
    auto old_fp = a->peer_fingerprint();
    ASSERT_FALSE(old_fp.empty());

    // Rotate gw1's files to a certificate of another CA and reload.
    const auto& rotated = test_certs("rotated");
    f.install_cert(rotated);
    double ok_before = f.metric("gw1", R"(imgate_gateway_reloads_total{result="ok"})");
    f.gw("gw1").signal(SIGHUP);
    ASSERT_TRUE(eventually(
        [&] { return f.metric("gw1", R"(imgate_gateway_reloads_total{result="ok"})") > ok_before; },
        5s));
    // The live sessions keep working both ways.
    expect_delivered(*a, "vorher.tls@example.com", *b, "vorher.wss@example.com", "nach dem Reload",
                     1);
    expect_delivered(*b, "vorher.wss@example.com", *a, "vorher.tls@example.com", "ja, 还在", 2);
    // New handshakes get the new certificate: trusted by the new CA only.
    auto fresh = f.login("gw1", transport::tls, "nachher@example.com", rotated.ca_crt);
    ASSERT_TRUE(fresh);
    EXPECT_NE(fresh->peer_fingerprint(), old_fp);
    transport_client stale;
    EXPECT_FALSE(stale.connect(transport::tls, f.addr("gw1", transport::tls), test_certs().ca_crt));
    EXPECT_TRUE(f.gw("gw1").log().find("reload: tls certificate") != std::string::npos);

    // A broken certificate file on reload keeps the running one, with an error line.
    write_file(f.dir().file("server.crt"), "-----BEGIN CERTIFICATE-----\nnot a cert\n");
    double failed_before = f.metric("gw1", R"(imgate_gateway_reloads_total{result="failed"})");
    f.gw("gw1").signal(SIGHUP);
    ASSERT_TRUE(eventually(
        [&] {
            return f.metric("gw1", R"(imgate_gateway_reloads_total{result="failed"})") >
                   failed_before;
        },
        5s));
    EXPECT_NE(f.gw("gw1").log().find("cert_file"), std::string::npos);
    auto still = f.login("gw1", transport::tls, "immer.noch@example.com", rotated.ca_crt);
    EXPECT_TRUE(still);
    expect_delivered(*a, "vorher.tls@example.com", *fresh, "nachher@example.com", "läuft", 3);
}

TEST(GatewayTransports, OpensslSClientCompletesAVerifiedHandshake) {
    transports_fleet f("", 1);
    ASSERT_TRUE(f.start());
    auto out = f.dir().file("s_client.out");
    std::string cmd = "timeout 10 openssl s_client -connect " + f.addr("gw1", transport::tls) +
                      " -CAfile " + test_certs().ca_crt +
                      " -verify_return_error -verify_ip 127.0.0.1 </dev/null >" + out + " 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << read_file(out);
    auto text = read_file(out);
    EXPECT_NE(text.find("Verify return code: 0 (ok)"), std::string::npos) << text;
    // TLS 1.1 is not offered.
    cmd = "timeout 10 openssl s_client -connect " + f.addr("gw1", transport::tls) +
          " -tls1_1 </dev/null >" + out + " 2>&1";
    EXPECT_NE(std::system(cmd.c_str()), 0) << read_file(out);
}

TEST(GatewayTransports, GatewayWithoutACertificateForTlsRefusesToStart) {
    temp_dir dir;
    write_secret_file(dir.file("token.secret"), secret + "\n");
    write_file(dir.file("fleet.yaml"),
               "gateways:\n  - {id: gw1, tls: 127.0.0.1:0, admin: "
               "127.0.0.1:0, rpc: 127.0.0.1:0}\n");
    write_file(dir.file("gateway.yaml"),
               "fleet: fleet.yaml\nauth:\n  secret_files: [token.secret]\n");
    auto out = dir.file("check.out");
    std::string cmd = binary_path("imgate-gateway") + " --config " + dir.file("gateway.yaml") +
                      " --id gw1 --check-config >" + out + " 2>&1";
    EXPECT_NE(std::system(cmd.c_str()), 0);
    EXPECT_NE(read_file(out).find("set tls.cert_file and tls.key_file"), std::string::npos)
        << read_file(out);
}

}  // namespace
}  // namespace imgate::test
