// Fault and abuse tests against a real imgate-gateway on loopback: slowloris, frames declaring
// 4 GiB, connection floods (also with a low descriptor limit), bad first frames and tokens, a
// slow consumer, and SIGHUP with a broken file under load. Each test bounds its load in count and
// time and asserts an outcome: the close and its error code, a metric, an RSS bound, other
// clients still served.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <thread>

#include "fault_fixture.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace imgate::test::fault;
using namespace std::chrono_literals;
namespace proto = imgate::proto;

namespace {

// A LOGIN frame header (12 bytes) declaring a body of `len` bytes.
std::string header(uint32_t len, uint8_t op = uint8_t(proto::op::login),
                   uint8_t version = client_protocol_version) {
    return frame_header(len, version, op, 1);
}

}  // namespace

// Hundreds of connections trickle a LOGIN one byte at a time: each is closed with login_timeout
// at its deadline (counted), while a logged-in client's pings are answered throughout.
TEST(FaultGateway, SlowlorisClosedAtLoginDeadlineOthersServed) {
    fleet f({.gateway_yaml = "limits: {max_connections: 1000}\n"
                             "timeouts: {login_timeout: 1s}\n"});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    auto good = f.client("gw1", "alice");
    ASSERT_TRUE(good);
    std::string login = proto::encode(proto::login_msg{token("slow")});

    constexpr int n = 200;
    std::vector<raw_conn> slow(n);
    for (auto& c : slow) ASSERT_TRUE(c.connect(f.client_addr("gw1")));
    auto started = std::chrono::steady_clock::now();
    // Trickle one byte per open connection every 100 ms (the whole LOGIN would take ~20 s),
    // pinging the good client each round, until every slow connection is closed or 8 s pass.
    ASSERT_GT(login.size(), 100u);
    size_t sent = 0;
    uint32_t corr = 1;
    int pings_ok = 0, open = n;
    while (open > 0 && std::chrono::steady_clock::now() - started < 8s) {
        open = 0;
        for (auto& c : slow)
            if (!c.is_closed()) {
                ++open;
                c.send(login.substr(sent, 1), 100ms);
            }
        ++sent;
        if (ping_ok(*good, corr++)) ++pings_ok;
        std::this_thread::sleep_for(100ms);  // the trickle rate itself, not a synchronisation
    }
    auto took = std::chrono::steady_clock::now() - started;
    int closed = 0, with_code = 0;
    for (auto& c : slow) {
        if (c.wait_closed(1s)) ++closed;
        if (c.error_code() == proto::code::login_timeout) ++with_code;
    }
    EXPECT_EQ(closed, n);
    EXPECT_EQ(with_code, n);
    // Closed at the 1 s login deadline, long before the trickled LOGIN could have completed.
    EXPECT_LT(took, 8s);
    EXPECT_LT(sent, login.size() - 1);
    EXPECT_EQ(pings_ok, int(corr - 1));
    EXPECT_TRUE(ping_ok(*good, 9999));
    EXPECT_GE(f.gw_metric("gw1", "imgate_gateway_logins_total{result=\"login_timeout\""), n);
}

// Frame headers declaring a 4 GiB body, before and after login, on 300 sockets: every one is
// answered with frame_too_large and closed, nothing of that size is allocated (RSS bound), and
// the gateway keeps serving.
TEST(FaultGateway, FourGiBFramesRejectedWithoutAllocation) {
    fleet f({.gateway_yaml = "limits: {max_connections: 2000}\n"});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    pid_t pid = f.gw("gw1").pid();
    long rss_before = rss_kb(pid);
    ASSERT_GT(rss_before, 0);

    constexpr int n = 300;
    std::vector<raw_conn> conns(n);
    for (int i = 0; i < n; ++i) {
        ASSERT_TRUE(conns[i].connect(f.client_addr("gw1")));
        if (i % 2 == 1) {
            // Log in first: the limit must hold for authenticated sessions too.
            conns[i].send(proto::encode(proto::login_msg{token("big" + std::to_string(i))}));
        }
    }
    for (int i = 0; i < n; ++i)
        conns[i].send(header(0xffffffffu, uint8_t(i % 2 ? proto::op::send : proto::op::login)) +
                      std::string(1000, 'x'));
    int closed = 0, too_large = 0;
    long rss_peak = 0;
    for (auto& c : conns) {
        if (c.wait_closed(3s)) ++closed;
        for (auto& fr : c.frames())
            if (auto e = proto::decode<proto::error_msg>(fr))
                if (e->status == proto::code::frame_too_large) ++too_large;
        rss_peak = std::max(rss_peak, rss_kb(pid));
    }
    EXPECT_EQ(closed, n);
    EXPECT_EQ(too_large, n);
    // 300 × 4 GiB would be 1.2 TiB; allow 64 MiB for buffers and allocator slack.
    EXPECT_LT(rss_peak - rss_before, 64 * 1024) << "RSS grew from " << rss_before << " KiB";
    EXPECT_GE(f.gw_metric("gw1", "imgate_gateway_errors_total{code=\"frame_too_large\""), n);
    auto c = f.client("gw1", "after");
    ASSERT_TRUE(c);
    EXPECT_TRUE(ping_ok(*c, 1));
}

// A flood past max_connections: the excess is refused at once with server_busy (counted), the
// sessions already in keep working, and new clients get in again once the flood is gone.
TEST(FaultGateway, ConnectionFloodPastMaxRefusedExistingUnaffected) {
    fleet f({.gateway_yaml = "limits: {max_connections: 50}\n"});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    std::vector<std::unique_ptr<imgate::test::test_client>> sessions;
    for (int i = 0; i < 10; ++i) {
        sessions.push_back(f.client("gw1", "user" + std::to_string(i)));
        ASSERT_TRUE(sessions.back());
    }
    // Fill up to the limit with idle connections, then 300 more.
    std::vector<raw_conn> fill(40), flood(300);
    for (auto& c : fill) ASSERT_TRUE(c.connect(f.client_addr("gw1")));
    ASSERT_TRUE(eventually([&] { return f.gw_metric("gw1", "imgate_gateway_connections") == 50; }));
    auto started = std::chrono::steady_clock::now();
    for (auto& c : flood) ASSERT_TRUE(c.connect(f.client_addr("gw1")));
    int busy = 0;
    for (auto& c : flood)
        if (c.wait_closed(3s) && c.error_code() == proto::code::server_busy) ++busy;
    EXPECT_EQ(busy, 300);
    EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
    EXPECT_GE(f.gw_metric("gw1", "imgate_gateway_rejected_total{reason=\"server_busy\""), 300);
    for (size_t i = 0; i < sessions.size(); ++i)
        EXPECT_TRUE(ping_ok(*sessions[i], uint32_t(i + 1)));
    for (auto& c : fill) c.close();
    EXPECT_TRUE(eventually([&] {
        auto c = f.client("gw1", "late");
        return c && ping_ok(*c, 1);
    }));
}

// The same flood with the gateway limited to 96 descriptors. The gateway caps its client
// connections at what the descriptor limit leaves after its reserve (64 + 2 per fleet gateway,
// plus 8 lingering busy refusals: 96 - 74 = 22), so it never reaches EMFILE: every connection past
// the cap is answered ERROR server_busy + REDIRECT busy and closed at once (a client never waits in
// the kernel's queue until it times out), the admin API keeps answering, the sessions it has keep
// working, and it accepts again once connections close. Before the cap, accept hit EMFILE and the
// flood waited.
TEST(FaultGateway, DescriptorLimitCapsConnectionsWithBusyAndKeepsAdmin) {
    fleet f({.gateway_yaml = "limits: {max_connections: 10000}\n"
                             "timeouts: {login_timeout: 30s}\n",
             .gateway_wrapper = "/usr/bin/prlimit --nofile=96:96"});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    auto& gw = f.gw("gw1");
    auto status = http_get(f.admin_addr("gw1"), "/status").json();
    EXPECT_EQ(status.value("fd_limit", 0), 96);
    EXPECT_EQ(status.value("max_connections", 0), 22);
    EXPECT_EQ(status.value("max_connections_configured", 0), 10000);
    EXPECT_NE(gw.log().find("limits.max_connections 10000 is more than the descriptor limit"),
              std::string::npos)
        << gw.log();
    EXPECT_EQ(f.gw_metric("gw1", "imgate_gateway_max_connections"), 22);
    std::vector<std::unique_ptr<imgate::test::test_client>> sessions;
    for (int i = 0; i < 5; ++i) {
        sessions.push_back(f.client("gw1", "user" + std::to_string(i) + "@example.com"));
        ASSERT_TRUE(sessions.back());
    }
    std::vector<raw_conn> flood(200);
    int connected = 0;
    for (auto& c : flood)
        if (c.connect(f.client_addr("gw1"))) ++connected;
    ASSERT_EQ(connected, 200);
    // 17 more fit under the cap (they wait for a LOGIN); the other 183 are refused at accept.
    // Wait for the refusals as a whole (the open ones would hit login_timeout if each were
    // waited for in turn), then judge every connection.
    auto closed_count = [&] {
        int n = 0;
        for (auto& c : flood)
            if (c.is_closed()) ++n;
        return n;
    };
    EXPECT_TRUE(eventually([&] { return closed_count() >= 183; }, 10s)) << closed_count();
    int busy = 0, open = 0, other = 0;
    for (auto& c : flood) {
        if (!c.is_closed()) {
            ++open;
            continue;
        }
        auto fr = c.frames();
        bool redirect_busy = fr.size() == 2 && fr[1].op == uint8_t(proto::op::redirect) &&
                             fr[1].body.find("busy") != std::string::npos;
        if (c.error_code() == proto::code::server_busy && redirect_busy) {
            ++busy;
        } else {
            ++other;
            ADD_FAILURE() << "connection " << (&c - flood.data()) << ": " << fr.size()
                          << " frames, " << c.received().size() << " bytes before the close";
        }
    }
    EXPECT_EQ(open, 17);
    EXPECT_EQ(busy, 183);
    EXPECT_EQ(other, 0);
    EXPECT_EQ(http_get(f.admin_addr("gw1"), "/status").status, 200) << "admin API unreachable";
    for (size_t i = 0; i < sessions.size(); ++i)
        EXPECT_TRUE(ping_ok(*sessions[i], uint32_t(i + 1)));
    EXPECT_EQ(gw.log().find("backing off"), std::string::npos) << "accept hit EMFILE";
    EXPECT_TRUE(gw.running());
    for (auto& c : flood) c.close();
    EXPECT_TRUE(eventually(
        [&] {
            auto c = f.client("gw1", "recovered@example.com");
            return c && ping_ok(*c, 1);
        },
        10s));
}

// Bad first frames and bad tokens, 50 of each kind: each is answered with its error code and
// closed, the login failures are counted, and a good session is unaffected throughout.
TEST(FaultGateway, BadFirstFramesAndForgedTokensClosedWithCodes) {
    fleet f({.gateway_yaml = "limits: {max_connections: 1000}\n"});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    auto good = f.client("gw1", "alice");
    ASSERT_TRUE(good);
    int64_t now = jwt::now_seconds();
    auto b64 = [](const std::string& s) { return jwt::base64url_encode(s); };
    std::string claims = R"({"sub":"root","exp":)" + std::to_string(now + 3600) + "}";
    std::string hs_input = b64(R"({"alg":"HS256"})") + "." + b64(claims);
    struct kind {
        std::string name;
        std::string bytes;
        proto::code want;
    };
    std::vector<kind> kinds{
        {"ping first", proto::encode(proto::ping_msg{}), proto::code::login_required},
        {"send first", proto::encode(proto::send_msg{proto::target_kind::user, "bob", 1, "hi"}),
         proto::code::login_required},
        {"http request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", proto::code::unsupported_version},
        {"malformed login", header(3) + "abc", proto::code::bad_frame},
        {"forged", proto::encode(proto::login_msg{imgate::test::make_token("guessed", "root")}),
         proto::code::auth_failed},
        {"expired",
         proto::encode(
             proto::login_msg{jwt::sign(jwt::claims{"root", "", now - 5}, token_secret, now - 60)}),
         proto::code::token_expired},
        {"alg none",
         proto::encode(proto::login_msg{b64(R"({"alg":"none"})") + "." + b64(claims) + "."}),
         proto::code::auth_failed},
        {"HS256 header, empty signature", proto::encode(proto::login_msg{hs_input + "."}),
         proto::code::auth_failed},
        {"signature of another token",
         proto::encode(proto::login_msg{hs_input + "." +
                                        token("someone").substr(token("someone").rfind('.') + 1)}),
         proto::code::auth_failed},
    };
    double failed_before = f.gw_metric("gw1", "imgate_gateway_logins_total");
    constexpr int per_kind = 50;
    for (auto& k : kinds) {
        std::vector<raw_conn> conns(per_kind);
        for (auto& c : conns) {
            ASSERT_TRUE(c.connect(f.client_addr("gw1")));
            c.send(k.bytes);
        }
        int ok = 0;
        for (auto& c : conns)
            if (c.wait_closed(3s) && c.error_code() == k.want) ++ok;
        EXPECT_EQ(ok, per_kind) << k.name;
        EXPECT_TRUE(ping_ok(*good, 1)) << k.name;
    }
    // Every refused login attempt is counted under some non-ok result (http: not a login).
    double counted = f.gw_metric("gw1", "imgate_gateway_logins_total") - failed_before;
    EXPECT_GE(counted, per_kind * (double(kinds.size()) - 1));
    EXPECT_GE(f.gw_metric("gw1", "imgate_gateway_logins_total{result=\"auth_failed\""),
              4 * per_kind);
    EXPECT_GE(f.gw_metric("gw1", "imgate_gateway_logins_total{result=\"token_expired\""), per_kind);
    EXPECT_GE(f.gw_metric("gw1", "imgate_gateway_logins_total{result=\"login_required\""),
              2 * per_kind);
}

// A receiver that stops reading (tiny receive buffer) while a sender floods it: the receiver is
// closed once its queue passes max_outbound_bytes (counted as slow consumer), every send gets a
// result, and an unrelated pair of clients keeps round-tripping pings within a second each.
TEST(FaultGateway, SlowConsumerClosedAtQueueBoundOthersKeepLatency) {
    fleet f({.gateway_yaml = "limits: {max_connections: 100, max_outbound_bytes: 262144,\n"
                             "  send_rate: 100000, send_burst: 100000}\n"
                             "timeouts: {write_timeout: 30s}\n"});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    raw_conn slow;
    ASSERT_TRUE(slow.connect(f.client_addr("gw1"), 4096));
    ASSERT_TRUE(slow.send(proto::encode(proto::login_msg{token("sloth")})));
    auto sender = f.client("gw1", "sender");
    auto other = f.client("gw1", "other");
    ASSERT_TRUE(sender && other);
    ASSERT_TRUE(eventually([&] {
        slow.pump();
        return !slow.frames().empty();
    })) << "no LOGIN_RESULT for the slow consumer";

    std::string payload(16 * 1024, 'p');
    int results = 0, pings = 0, probes = 0;
    auto started = std::chrono::steady_clock::now();
    // Up to 2000 sends (32 MiB) or 10 s, stopping once the slow consumer is closed.
    for (uint64_t i = 1; i <= 2000 && std::chrono::steady_clock::now() - started < 10s; ++i) {
        ASSERT_TRUE(sender->send(proto::send_msg{proto::target_kind::user, "sloth", i, payload}));
        if (sender->read<proto::send_result_msg>(2s)) ++results;
        if (i % 50 == 0) {
            ++probes;
            if (ping_ok(*other, uint32_t(i), 1000ms)) ++pings;
            if (f.gw_metric("gw1", "imgate_gateway_slow_consumer_total") >= 1) break;
        }
    }
    EXPECT_GE(f.gw_metric("gw1", "imgate_gateway_slow_consumer_total"), 1);
    EXPECT_EQ(pings, probes);
    EXPECT_GT(results, 0);
    // The server closed it (the kernel buffer holds what was queued before; drain to see EOF).
    EXPECT_TRUE(slow.wait_closed(5s));
    // After the close, sends to the vanished user report offline rather than failing.
    ASSERT_TRUE(sender->send(proto::send_msg{proto::target_kind::user, "sloth", 99999, "x"}));
    auto r = sender->read<proto::send_result_msg>(2s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::offline);
}

// SIGHUP with a broken gateway.yaml while clients send and ping: no request fails, the reload
// failure is counted, and the old limits stay in force (a payload over the old limit is still
// refused even though the broken file would have raised it).
TEST(FaultGateway, SighupWithInvalidYamlUnderLoadKeepsOldConfig) {
    // Every request is followed by a PING round trip: far over the default PING rate.
    std::string limits =
        "limits: {max_connections: 100, max_payload_bytes: 1000,\n"
        "  send_rate: 100000, send_burst: 100000, ping_rate: 100000, ping_burst: 100000}\n";
    fleet f({.gateway_yaml = limits});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    constexpr int workers = 4;
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, failed{0};
    std::vector<std::thread> load;
    for (int w = 0; w < workers; ++w) {
        load.emplace_back([&, w] {
            auto c = f.client("gw1", "load" + std::to_string(w));
            if (!c) {
                failed++;
                return;
            }
            for (uint64_t i = 1; i <= 20000 && !stop; ++i) {
                bool good =
                    c->send(proto::send_msg{proto::target_kind::user,
                                            "load" + std::to_string((w + 1) % workers), i, "m"}) &&
                    c->read<proto::send_result_msg>(2s).has_value() && ping_ok(*c, uint32_t(i));
                (good ? ok : failed)++;
            }
        });
    }
    ASSERT_TRUE(eventually([&] { return ok.load() > 100; }));
    double failures_before = f.gw_metric("gw1", "imgate_gateway_reloads_total{result=\"failed\"");
    // Broken: a syntax error after a raised payload limit.
    f.write_gateway_yaml(
        "limits: {max_connections: 100, max_payload_bytes: 60000,\n"
        "  send_rate: 100000, send_burst: 100000\n  oops: [\n");
    f.gw("gw1").signal(SIGHUP);
    EXPECT_TRUE(eventually([&] {
        return f.gw_metric("gw1", "imgate_gateway_reloads_total{result=\"failed\"") >
               std::max(0.0, failures_before);
    })) << f.gw("gw1").log();
    int at_reload = ok.load();
    ASSERT_TRUE(eventually([&] { return ok.load() > at_reload + 200; }));
    stop = true;
    for (auto& t : load) t.join();
    EXPECT_EQ(failed.load(), 0);
    EXPECT_TRUE(f.gw("gw1").running());
    auto c = f.client("gw1", "probe");
    ASSERT_TRUE(c);
    ASSERT_TRUE(
        c->send(proto::send_msg{proto::target_kind::user, "load0", 1, std::string(2000, 'x')}));
    auto r = c->read<proto::send_result_msg>(2s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::payload_too_large);
}

// 100 LOGINs as fast as possible from 127.0.0.1 against limits.login_rate 5/s, burst 20: the
// excess is refused with rate_limited and closed (counted), at most burst + rate × elapsed get
// in, and a client from another address (127.0.0.2) logs in meanwhile.
TEST(FaultGateway, LoginFloodFromOneAddressRateLimited) {
    fleet f({.gateway_yaml = "limits: {max_connections: 1000, login_rate: 5, login_burst: 20}\n"});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    constexpr int n = 100;
    auto started = std::chrono::steady_clock::now();
    std::vector<raw_conn> conns(n);
    for (int i = 0; i < n; ++i) {
        ASSERT_TRUE(conns[i].connect(f.client_addr("gw1")));
        conns[i].send(proto::encode(proto::login_msg{token("flood" + std::to_string(i))}));
    }
    int logged_in = 0, limited = 0;
    for (auto& c : conns) {
        ASSERT_TRUE(eventually(
            [&] {
                c.pump();
                return !c.frames().empty() || c.is_closed();
            },
            3000ms));
        auto fr = c.frames();
        ASSERT_FALSE(fr.empty());
        if (fr[0].op == uint8_t(proto::op::login_result)) ++logged_in;
        if (c.error_code() == proto::code::rate_limited && c.wait_closed(3s)) ++limited;
    }
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    EXPECT_EQ(logged_in + limited, n);
    EXPECT_GE(logged_in, 20);
    EXPECT_LE(logged_in, 20 + int(5 * elapsed) + 1);
    EXPECT_GE(limited, n - 20 - int(5 * elapsed) - 1);
    EXPECT_GE(f.gw_metric("gw1", "imgate_gateway_logins_total{result=\"rate_limited\""), limited);
    // Another source address has its own bucket.
    raw_conn other;
    ASSERT_TRUE(other.connect(f.client_addr("gw1"), 0, "127.0.0.2"));
    other.send(proto::encode(proto::login_msg{token("neighbour")}));
    ASSERT_TRUE(eventually([&] {
        other.pump();
        return !other.frames().empty();
    }));
    EXPECT_EQ(other.frames()[0].op, uint8_t(proto::op::login_result));
}
