// Strangers on the gateway's admin and RPC listeners (issue 12): what an unauthenticated
// connection can make the gateway hold in memory, how fast it is closed, and how many log lines a
// flood of refusals writes. Real gateways on loopback; RSS from /proc/PID/status.
//
// To check that these tests catch the old behaviour, point them at other binaries:
//   IMGATE_ABUSE_GATEWAY=/path/to/imgate-gateway build/tests/imgate_integration_tests \
//       --gtest_filter='AbuseListeners.*'
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "fault_fixture.hpp"

namespace {

using namespace imgate;
using namespace imgate::test;
using namespace imgate::test::fault;
using namespace std::chrono_literals;
namespace http = boost::beast::http;

// Runs the gateway named by IMGATE_ABUSE_GATEWAY instead of the one built here, through a
// wrapper script (the fleet runs `<wrapper> <built binary> args...`; exec keeps the pid).
std::string gateway_wrapper(const temp_dir& dir) {
    const char* other = std::getenv("IMGATE_ABUSE_GATEWAY");
    if (!other || !*other) return "";
    std::string path = dir.file("other-gateway.sh");
    write_file(path, std::string("#!/bin/sh\nshift\nexec '") + other + "' \"$@\"\n");
    fs::permissions(path, fs::perms::owner_all);
    return path;
}

// Largest RSS seen while `sample` is called, relative to a baseline.
struct rss_watch {
    pid_t pid;
    long base_kb;
    long peak_kb;
    explicit rss_watch(pid_t p) : pid(p), base_kb(rss_kb(p)), peak_kb(base_kb) {}
    void sample() { peak_kb = std::max(peak_kb, rss_kb(pid)); }
    double grew_mib() const { return double(peak_kb - base_kb) / 1024.0; }
};

std::string rpc_header(uint32_t len, uint8_t op) {
    return frame_header(len, rpc_protocol_version, op);
}

// (a) 300 connections without the admin token, each declaring a 1 MiB body and sending part of
// it: every one is answered 401 on its header and closed at once, and the gateway does not buffer
// the bodies. Then the same with GET /status, which takes no body: 413. (d) An authorized /push
// with a body and the dispatcher's admin API still work.
TEST(AbuseListeners, AdminRefusesUnauthenticatedBodiesBeforeReadingThem) {
    temp_dir scratch;
    fleet f({.gateways = 1, .dispatcher = true, .gateway_wrapper = gateway_wrapper(scratch)});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    const std::string admin = f.admin_addr("gw1");
    // Warm up the paths measured below so first-use allocations are in the baseline.
    for (int i = 0; i < 5; ++i) ASSERT_EQ(http_get(admin, "/status").status, 200);
    ASSERT_EQ(
        http_request(admin, http::verb::post, "/push", "{}", {{"Authorization", "Bearer wrong"}})
            .status,
        401);
    constexpr int conns = 300;
    const std::string part(128 * 1024, 'b');
    struct probe {
        const char* name;
        std::string header;
        const char* status_line;
    };
    std::vector<probe> probes = {
        {"POST /push",
         "POST /push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-token\r\n"
         "Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n",
         "HTTP/1.1 401 Unauthorized\r\n"},
        {"GET /status", "GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n",
         "HTTP/1.1 413 Payload Too Large\r\n"},
    };
    pid_t pid = f.gw("gw1").pid();
    for (auto& p : probes) {
        rss_watch rss(pid);
        std::vector<raw_conn> cs(conns);
        auto t0 = std::chrono::steady_clock::now();
        for (auto& c : cs) {
            ASSERT_TRUE(c.connect(admin)) << p.name;
            ASSERT_TRUE(c.send(p.header)) << p.name;
            // The server may close before taking it all: a failed send is expected then.
            c.send(part, 200ms);
        }
        rss.sample();
        int answered = 0, closed = 0;
        for (auto& c : cs) {
            // Promptly: the admin read deadline (5 s) is far, only a refusal closes it sooner.
            if (c.wait_closed(3s)) ++closed;
            if (c.received().rfind(p.status_line, 0) == 0) ++answered;
            rss.sample();
        }
        auto took = std::chrono::steady_clock::now() - t0;
        EXPECT_EQ(closed, conns) << p.name;
        EXPECT_EQ(answered, conns) << p.name << ": " << cs[0].received();
        EXPECT_LT(rss.grew_mib(), 8.0) << p.name << ": RSS grew " << rss.grew_mib() << " MiB";
        std::cout << "[ measure  ] " << p.name << ": " << conns << " connections, RSS +"
                  << rss.grew_mib() << " MiB, all answered in "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
    }
    EXPECT_EQ(f.gw_metric("gw1",
                          "imgate_http_rejected_total{reason=\"unauthorized\","
                          "server=\"admin\"}"),
              conns + 1.0);
    EXPECT_EQ(f.gw_metric("gw1",
                          "imgate_http_rejected_total{reason=\"unexpected_body\","
                          "server=\"admin\"}"),
              double(conns));
    // (d) The authorized API still works: /push with a body, /drain without one is not tested
    // here (it would drain the gateway the dispatcher checks below).
    auto push =
        http_request(admin, http::verb::post, "/push", R"({"user":"nobody","payload":"hi"})",
                     {{"Authorization", "Bearer " + admin_token}});
    EXPECT_EQ(push.status, 200) << push.body;
    EXPECT_EQ(push.json().value("status", ""), "offline") << push.body;
    EXPECT_EQ(http_get(admin, "/status").status, 200);
    auto disp = http_get(f.disp_admin(), "/status");
    EXPECT_EQ(disp.status, 200);
    EXPECT_EQ(http_get(f.public_addr(), "/get-tcp-ip?uid=u1").status, 200);
}

// (b) 64 connections on the RPC port that have not done the handshake, each declaring a 1 MiB
// frame and sending part of it: closed on the header (a handshake frame is at most a few dozen
// bytes) without buffering the part; connections that stay within the handshake frame size but
// never finish are closed at the handshake deadline. RSS stays put, during and after.
TEST(AbuseListeners, RpcRefusesLargeFramesBeforeTheHandshake) {
    temp_dir scratch;
    fleet f({.gateways = 2,
             .cluster = true,
             .gateway_yaml = "cluster_rpc: {connect_timeout: 3s, ping_interval: 500ms,\n"
                             "  peer_timeout: 5s, max_handshakes: 1000}\n",
             .gateway_wrapper = gateway_wrapper(scratch)});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    ASSERT_TRUE(f.mesh_up()) << f.gw("gw1").log();
    pid_t pid = f.gw("gw1").pid();
    const std::string rpc = f.rpc_addr("gw1");
    // Warm-up: one refused connection of each kind.
    {
        raw_conn w;
        ASSERT_TRUE(w.connect(rpc));
        w.send(rpc_hello_from("gw9"));
        ASSERT_TRUE(w.wait_closed(5s));
    }
    rss_watch rss(pid);
    constexpr int conns = 64;
    const std::string big = rpc_header(1 << 20, 0x01) + std::string(256 * 1024, 'x');
    std::vector<raw_conn> cs(conns);
    auto t0 = std::chrono::steady_clock::now();
    for (auto& c : cs) {
        ASSERT_TRUE(c.connect(rpc));
        c.send(big, 200ms);  // may fail part-way once the gateway has closed
    }
    rss.sample();
    int closed = 0;
    for (auto& c : cs) {
        if (c.wait_closed(2s)) ++closed;
        rss.sample();
    }
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(closed, conns) << "oversized frame headers must close before the 3 s deadline";
    // Within the handshake size but never completed: closed by the deadline, not before.
    std::vector<raw_conn> slow(8);
    for (auto& c : slow) {
        ASSERT_TRUE(c.connect(rpc));
        ASSERT_TRUE(c.send(rpc_header(60, 0x01) + std::string(30, 'y')));
    }
    int slow_closed = 0;
    for (auto& c : slow)
        if (c.wait_closed(6s)) ++slow_closed;
    EXPECT_EQ(slow_closed, 8);
    rss.sample();
    long after_kb = rss_kb(pid);
    EXPECT_LT(rss.grew_mib(), 4.0) << "RSS grew " << rss.grew_mib() << " MiB";
    EXPECT_LT(double(after_kb - rss.base_kb) / 1024.0, 4.0) << "held after the closes";
    std::cout << "[ measure  ] " << conns << " pre-handshake 1 MiB frames: RSS peak +"
              << rss.grew_mib() << " MiB, after +" << double(after_kb - rss.base_kb) / 1024.0
              << " MiB, closed in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
    EXPECT_GE(f.gw_metric("gw1",
                          "imgate_rpc_auth_failures_total{direction=\"inbound\","
                          "reason=\"bad_frame\"}"),
              double(conns));
    EXPECT_GE(f.gw_metric("gw1",
                          "imgate_rpc_auth_failures_total{direction=\"inbound\","
                          "reason=\"timeout\"}"),
              8.0);
    // The authenticated link still carries messages.
    EXPECT_EQ(f.gw_metric("gw1", "imgate_rpc_links_up"), 1);
    auto alice = f.client("gw1", "alice");
    auto bob = f.client("gw2", "bob");
    ASSERT_TRUE(alice && bob);
    std::string payload(30 * 1024, 'p');
    ASSERT_TRUE(eventually(
        [&] {
            static uint64_t id = 0;
            if (!alice->send(proto::send_msg{proto::target_kind::user, "bob", ++id, payload}))
                return false;
            auto r = alice->read<proto::send_result_msg>(2s);
            return r && r->status == proto::code::ok && r->reached == 1;
        },
        5s));
}

// (c) A flood of refused handshakes (an id that is not a fleet member) writes a few warning
// lines a second, not one per refusal, and says how many it left out; the metric counts them all.
TEST(AbuseListeners, RefusedHandshakeFloodWritesAFewLogLinesPerSecond) {
    temp_dir scratch;
    fleet f({.gateways = 2,
             .cluster = true,
             .gateway_yaml = "cluster_rpc: {connect_timeout: 2s, max_handshakes: 1000}\n",
             .gateway_wrapper = gateway_wrapper(scratch)});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    ASSERT_TRUE(f.mesh_up()) << f.gw("gw1").log();
    const std::string rpc = f.rpc_addr("gw1");
    const std::string needle = "refused inbound link";
    auto lines_with = [&](const std::string& s) {
        std::string log = f.gw("gw1").log();
        size_t n = 0;
        for (auto p = log.find(s); p != std::string::npos; p = log.find(s, p + 1)) ++n;
        return n;
    };
    size_t before = lines_with(needle);
    const std::string hello = rpc_hello_from("gw9");
    auto refuse_one = [&] {
        raw_conn c;
        if (!c.connect(rpc)) return false;
        c.send(hello);
        return c.wait_closed(2s);
    };
    constexpr int attempts = 2000;
    int refused = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < attempts && std::chrono::steady_clock::now() - t0 < 30s; ++i)
        if (refuse_one()) ++refused;
    double flood_secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(refused, attempts);
    const std::string series =
        "imgate_rpc_auth_failures_total{direction=\"inbound\",reason=\"unknown_peer\"}";
    EXPECT_TRUE(eventually([&] { return f.gw_metric("gw1", series) >= attempts; }, 3s))
        << f.gw_metric("gw1", series);
    // The next line the throttle lets through says how many it left out: keep refusing (a few
    // a second, bounded) until one does.
    EXPECT_TRUE(eventually(
        [&] {
            refuse_one();
            return lines_with("suppressed)") > 0;
        },
        5s, 100ms));
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    size_t lines = lines_with(needle) - before;
    // A burst of 5, then 2 a second (common/log_throttle.hpp), with room for a loaded machine.
    EXPECT_LE(lines, size_t(10 + 3 * secs)) << lines << " lines in " << secs << " s";
    EXPECT_GE(lines, 1u);
    std::cout << "[ measure  ] " << attempts << " refused handshakes in " << flood_secs << " s; "
              << lines << " warning lines in " << secs << " s\n";
}

}  // namespace
