// The shared HTTP server with TLS on (the dispatcher's HTTPS listener): requests and keep-alive
// over TLS, a client of another CA and plain HTTP refused at the handshake, the handshake
// deadline and bound, close_notify on a server-side close, and a certificate reload that only
// new handshakes see. Loopback only, port 0, certificates from config/local/dev-certs.sh.
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <memory>

#include "../support/loopback_http.hpp"
#include "../support/raw_conn.hpp"
#include "../support/test_certs.hpp"
#include "../support/tls_client.hpp"
#include "common/http_server.hpp"
#include "common/tls.hpp"

namespace {

using namespace imgate;
using namespace std::chrono_literals;
using imgate::test::raw_conn;
using imgate::test::tls_client;

tls_settings settings_of(const test::cert_set& c, std::chrono::milliseconds handshake_timeout = 5s,
                         uint32_t max_handshakes = 100) {
    tls_settings s;
    s.cert_file = c.server_crt;
    s.key_file = c.server_key;
    s.handshake_timeout = handshake_timeout;
    s.max_handshakes = max_handshakes;
    return s;
}

// One TLS server on 127.0.0.1:0 with a /whoami route echoing the query.
struct tls_fixture {
    std::shared_ptr<tls_context_holder> certs;
    test::loopback_http http{[] {
        http_server_options o;
        o.name = "tls";
        o.read_timeout = 2s;
        return o;
    }()};
    std::string addr;

    explicit tls_fixture(const tls_settings& s) : certs(std::make_shared<tls_context_holder>(s)) {
        http.server().route(http::verb::get, "/whoami",
                            http_sync_handler([](const http_request_ctx& c) {
                                return http_response::json(
                                    http::status::ok, "{\"q\":\"" + std::string(c.query) + "\"}");
                            }));
        http.server().enable_tls(certs);
        http.start();
        addr = http.addr();
    }
    uint64_t handshakes(const std::string& result) {
        return http.metrics()
            .get_counter("imgate_http_tls_handshakes_total", "",
                         {{"server", "tls"}, {"result", result}})
            .value();
    }
};

TEST(HttpsServer, ServesKeepAliveRequestsToAClientTrustingItsCa) {
    const auto& ca = test::test_certs();
    tls_fixture f(settings_of(ca));
    tls_client c(ca.ca_crt);
    ASSERT_TRUE(c.connect(f.addr)) << c.error().message();
    for (const char* q : {"uid=alice%40example.com", "uid=bob%40example.com"}) {
        auto r = c.get(std::string("/whoami?") + q);
        ASSERT_EQ(r.status, 200) << c.error().message();
        EXPECT_EQ(r.json()["q"], q);
    }
    EXPECT_EQ(c.peer_fingerprint(), f.certs->info().fingerprint);
    EXPECT_EQ(f.handshakes("ok"), 1u);  // two requests, one handshake: kept alive
    // The expiry metric is the certificate's not_after as a timestamp (dev-certs.sh: 825 days).
    double now = static_cast<double>(std::time(nullptr));
    EXPECT_GT(not_after_unix(f.certs->info()), now + 800.0 * 86400);
    EXPECT_LT(not_after_unix(f.certs->info()), now + 826.0 * 86400);
    EXPECT_NE(f.http.metrics().render().find("imgate_http_tls_certificate_not_after_seconds"),
              std::string::npos);
    EXPECT_EQ(f.http.server().handshakes_in_flight(), 0u);
    // The routing and refusals are the plain server's.
    EXPECT_EQ(c.get("/nope").status, 404);
}

TEST(HttpsServer, AClientTrustingAnotherCaFailsTheHandshake) {
    tls_fixture f(settings_of(test::test_certs()));
    tls_client c(test::test_certs("other").ca_crt);
    EXPECT_FALSE(c.connect(f.addr));
    EXPECT_TRUE(c.error()) << "handshake succeeded against an untrusted certificate";
    // The client's alert ends the server's side of the handshake: counted as failed.
    EXPECT_TRUE(test::eventually([&] { return f.handshakes("failed") == 1; }, 3000ms));
    EXPECT_EQ(f.handshakes("ok"), 0u);
}

TEST(HttpsServer, PlainHttpOnTheTlsPortIsClosedWithoutAnAnswer) {
    tls_fixture f(settings_of(test::test_certs()));
    raw_conn c;
    ASSERT_TRUE(c.connect(f.addr));
    ASSERT_TRUE(c.send("GET /whoami?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(c.wait_closed(3000ms)) << "the server kept a plain-HTTP connection open";
    // Closed by the failed handshake, well before the 5 s handshake deadline.
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2000ms);
    EXPECT_EQ(c.received().find("200 OK"), std::string::npos) << c.received();
    EXPECT_TRUE(test::eventually([&] { return f.handshakes("failed") == 1; }, 3000ms));
}

TEST(HttpsServer, AClientThatSendsNothingIsClosedAtTheHandshakeDeadline) {
    tls_fixture f(settings_of(test::test_certs(), 300ms));
    raw_conn c;
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(c.connect(f.addr));
    ASSERT_TRUE(c.wait_closed(5000ms)) << "the silent connection was never closed";
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, 250ms);   // not before the deadline
    EXPECT_LT(took, 2000ms);  // and not much after it (sweep: an eighth of the deadline)
    EXPECT_EQ(f.handshakes("timeout"), 1u);  // counted before the close
    EXPECT_EQ(f.handshakes("failed"), 0u);
    EXPECT_TRUE(test::eventually([&] { return f.http.server().handshakes_in_flight() == 0; }));
    EXPECT_TRUE(test::eventually([&] { return f.http.server().connections() == 0; }));
}

TEST(HttpsServer, HandshakesPastTheBoundAreClosedAtOnceAndCounted) {
    tls_fixture f(settings_of(test::test_certs(), 10s, 2));
    raw_conn silent1, silent2, third;
    ASSERT_TRUE(silent1.connect(f.addr));
    ASSERT_TRUE(silent2.connect(f.addr));
    ASSERT_TRUE(test::eventually([&] { return f.http.server().handshakes_in_flight() == 2; }));
    ASSERT_TRUE(third.connect(f.addr));
    ASSERT_TRUE(third.wait_closed(2000ms)) << "a handshake past max_handshakes was admitted";
    EXPECT_EQ(f.handshakes("refused"), 1u);
    // A real client is refused too while both are held...
    tls_client refused(test::test_certs().ca_crt);
    EXPECT_FALSE(refused.connect(f.addr));
    EXPECT_TRUE(test::eventually([&] { return f.handshakes("refused") == 2; }));
    // ...and served once they are gone.
    silent1.close();
    silent2.close();
    ASSERT_TRUE(test::eventually([&] { return f.http.server().handshakes_in_flight() == 0; }));
    tls_client ok(test::test_certs().ca_crt);
    ASSERT_TRUE(ok.connect(f.addr)) << ok.error().message();
    EXPECT_EQ(ok.get("/whoami?n=1").status, 200);
}

TEST(HttpsServer, ConnectionCloseEndsWithCloseNotify) {
    tls_fixture f(settings_of(test::test_certs()));
    tls_client c(test::test_certs().ca_crt);
    ASSERT_TRUE(c.connect(f.addr)) << c.error().message();
    auto r = c.get("/whoami?bye=1", true);
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["Connection"], "close");
    EXPECT_TRUE(c.await_close_notify()) << c.error().message();
}

TEST(HttpsServer, ReloadedCertificateServesNewHandshakesOnly) {
    const auto& first = test::test_certs();
    const auto& second = test::test_certs("rotated");
    tls_fixture f(settings_of(first));
    auto first_fp = f.certs->info().fingerprint;

    tls_client old_conn(first.ca_crt);
    ASSERT_TRUE(old_conn.connect(f.addr));
    ASSERT_EQ(old_conn.get("/whoami?n=1").status, 200);

    std::string error;
    ASSERT_TRUE(f.certs->reload(settings_of(second), error)) << error;
    auto second_fp = f.certs->info().fingerprint;
    ASSERT_NE(second_fp, first_fp);

    // The open connection keeps working on the old session.
    EXPECT_EQ(old_conn.get("/whoami?n=2").status, 200) << old_conn.error().message();
    EXPECT_EQ(old_conn.peer_fingerprint(), first_fp);
    // A new handshake sees the new certificate (a client of the old CA no longer trusts it).
    tls_client fresh(second.ca_crt);
    ASSERT_TRUE(fresh.connect(f.addr)) << fresh.error().message();
    EXPECT_EQ(fresh.peer_fingerprint(), second_fp);
    tls_client stale(first.ca_crt);
    EXPECT_FALSE(stale.connect(f.addr));

    // A broken file keeps the running certificate.
    auto broken = settings_of(second);
    broken.cert_file = second.dir + "/does-not-exist.crt";
    EXPECT_FALSE(f.certs->reload(broken, error));
    tls_client after(second.ca_crt);
    ASSERT_TRUE(after.connect(f.addr)) << after.error().message();
    EXPECT_EQ(after.peer_fingerprint(), second_fp);
    EXPECT_EQ(after.get("/whoami?n=3").status, 200);
}

TEST(HttpsServer, PlainServersRegisterNoTlsSeries) {
    test::loopback_http plain;
    plain.start();
    EXPECT_EQ(plain.metrics().render().find("imgate_http_tls_"), std::string::npos);
}

}  // namespace
