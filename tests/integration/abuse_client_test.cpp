// Abuse of the client listener by one stranger or one logged-in session (issue 12), against real
// imgate-gateway processes on loopback: partial frames held open before LOGIN (memory bound and
// the login deadline), headers over the pre-login limit, a LOGIN whose token is exactly the
// longest allowed, and JOIN/LEAVE and PING floods (rate limits, metrics, the flood close, and
// what reaches a peer gateway). Every flood is bounded in count and time.
//
// IMGATE_TEST_GATEWAY_WRAPPER="/path/to/script" runs each gateway as `script <binary> args...`
// (the fixture's gateway_wrapper): a script that drops its first argument and execs another
// build's imgate-gateway is how these tests were checked to fail against the code before them.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "abuse_support.hpp"
#include "common/jwt.hpp"
#include "fault_fixture.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace imgate::test::fault;
using namespace imgate::test::abuse;
using namespace std::chrono_literals;
namespace proto = imgate::proto;

namespace {

// Defaults of gateway.yaml (docs/configuration.md): the tests run with them unless they say so.
constexpr uint32_t default_max_token_bytes = 8192;
constexpr uint32_t default_prelogin_body = default_max_token_bytes + 2;  // str16 token
constexpr int default_room_burst = 64;
constexpr double default_room_rate = 10;
constexpr int default_ping_burst = 20;
constexpr double default_ping_rate = 5;
constexpr int default_flood_refusals = 100;

fleet::options with_wrapper(const std::string& gateway_yaml = "", int gateways = 1,
                            bool cluster = false) {
    fleet::options o;
    o.gateways = gateways;
    o.cluster = cluster;
    o.gateway_yaml = gateway_yaml;
    if (const char* w = std::getenv("IMGATE_TEST_GATEWAY_WRAPPER")) o.gateway_wrapper = w;
    return o;
}

// A valid HS256 token for `user` of exactly `len` bytes: the claims carry a padding claim the
// gateway ignores. Empty if no layout reaches that length.
std::string token_of_length(size_t len, const std::string& user) {
    int64_t now = jwt::now_seconds();
    // base64url lengths skip some values; the header variants shift the total by 2 or 18.
    for (std::string hdr : {R"({"alg":"HS256","typ":"JWT"})", R"({"alg":"HS256", "typ":"JWT"})",
                            R"({"alg":"HS256"})"}) {
        std::string h = jwt::base64url_encode(hdr);
        size_t start = len > 400 ? (len - 400) * 3 / 4 : 0;
        for (size_t pad = start; pad < len; ++pad) {
            nlohmann::json claims = {{"sub", user},
                                     {"dev", "phone"},
                                     {"exp", now + 3600},
                                     {"pad", std::string(pad, 'p')}};
            std::string input = h + "." + jwt::base64url_encode(claims.dump());
            size_t total = input.size() + 1 + 43;  // the 32-byte signature in base64url
            if (total > len) break;
            if (total == len)
                return input + "." + jwt::base64url_encode(jwt::hmac_sha256(token_secret, input));
        }
    }
    return {};
}

// What one flooding session saw: answers counted by kind, and whether and when it was closed.
struct flood_outcome {
    size_t frames_sent = 0;
    int ok = 0;                // ROOM_RESULT 0, or PONG
    int rate_limited = 0;      // answers rate_limited with the request's corr
    bool flood_error = false;  // ERROR rate_limited, corr 0: the flood close
    bool closed = false;
    double seconds = 0;  // from the first flood frame to the close (or the end of the attempt)
};

// Sends `unit` (one or more whole frames) over and over, reading as it goes, until the gateway
// closes the connection, max_frames frames went out, or 10 s passed.
flood_outcome flood(raw_conn& c, const std::string& unit, size_t frames_per_unit,
                    size_t max_frames) {
    flood_outcome o;
    std::string batch;
    while (batch.size() < 64 * 1024) batch += unit;
    size_t frames_per_batch = batch.size() / unit.size() * frames_per_unit;
    auto started = std::chrono::steady_clock::now();
    while (o.frames_sent < max_frames && std::chrono::steady_clock::now() - started < 10s) {
        if (!c.send(batch, 200ms)) break;  // the gateway closed, or stopped reading for a while
        o.frames_sent += frames_per_batch;
        c.pump();
        if (c.is_closed() || !errors(c).empty()) break;
    }
    o.closed = c.wait_closed(5s);
    o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    for (auto& f : c.frames()) {
        if (f.op == uint8_t(proto::op::pong)) ++o.ok;
        if (auto r = proto::decode<proto::room_result_msg>(f)) {
            if (r->status == proto::code::ok) ++o.ok;
            if (r->status == proto::code::rate_limited) ++o.rate_limited;
        }
        if (auto e = proto::decode<proto::error_msg>(f)) {
            if (e->status == proto::code::rate_limited && f.corr != 0) ++o.rate_limited;
            if (e->status == proto::code::rate_limited && f.corr == 0) o.flood_error = true;
        }
    }
    return o;
}

}  // namespace

// (a) A thousand strangers each send a header declaring the largest body allowed before LOGIN
// and then most of that body, and never finish it. The gateway holds at most that much per
// connection (RSS grows by less than 16 MiB in all), and closes each at its login deadline.
TEST(AbuseClient, PreLoginPartialFramesAtTheLimitStayBoundedAndCloseAtTheLoginDeadline) {
    ASSERT_TRUE(raise_fd_limit(4096)) << "need 4096 descriptors for 1000 connections";
    fleet f(
        with_wrapper("limits: {max_connections: 3000}\n"
                     "timeouts: {login_timeout: 2s}\n"));
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    pid_t pid = f.gw("gw1").pid();
    long rss_before = status_kb(pid, "VmRSS");
    ASSERT_GT(rss_before, 0);

    constexpr int n = 1000;
    const uint32_t body = default_prelogin_body;
    const std::string partial = header(body) + std::string(body - 200, 't');
    std::vector<raw_conn> conns(n);
    for (auto& c : conns) {
        ASSERT_TRUE(c.connect(f.client_addr("gw1")));
        ASSERT_TRUE(c.send(partial));
    }
    int closed = 0, timed_out = 0;
    auto deadline = std::chrono::steady_clock::now() + 15s;
    for (auto& c : conns) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (c.wait_closed(std::max(left, 1ms))) ++closed;
        if (c.error_code() == proto::code::login_timeout) ++timed_out;
    }
    // VmHWM: the peak, whenever it was reached while the partial frames were held.
    long peak = status_kb(pid, "VmHWM");
    EXPECT_EQ(closed, n);
    EXPECT_EQ(timed_out, n) << "each must be closed by the login deadline, not before";
    if (rss_is_meaningful)
        EXPECT_LT(peak - rss_before, 16 * 1024)
            << "RSS grew from " << rss_before << " KiB to a peak of " << peak << " KiB";
    EXPECT_GE(f.gw_metric("gw1", R"(imgate_gateway_logins_total{result="login_timeout")"), n);
    auto ok = f.client("gw1", "zoë@example.com");
    ASSERT_TRUE(ok);
    EXPECT_TRUE(ping_ok(*ok, 1));
}

// (a, the old attack) The same thousand strangers declare max_frame_bytes (64 KiB, what the
// gateway used to accept before LOGIN) and send most of it: each header is refused at once with
// frame_too_large naming the pre-login limit, before any of its body is buffered.
TEST(AbuseClient, PreLoginHeadersOfMaxFrameBytesAreRefusedBeforeBuffering) {
    ASSERT_TRUE(raise_fd_limit(4096)) << "need 4096 descriptors for 1000 connections";
    fleet f(
        with_wrapper("limits: {max_connections: 3000}\n"
                     "timeouts: {login_timeout: 30s}\n"));
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    pid_t pid = f.gw("gw1").pid();
    long rss_before = status_kb(pid, "VmRSS");
    ASSERT_GT(rss_before, 0);

    constexpr int n = 1000;
    const std::string hdr = header(default_max_frame_body);
    const std::string most(default_max_frame_body - 4096, 'x');
    std::vector<raw_conn> conns(n);
    for (auto& c : conns) {
        ASSERT_TRUE(c.connect(f.client_addr("gw1")));
        ASSERT_TRUE(c.send(hdr));
        c.send(most, 100ms);  // may fail: the gateway closes as soon as it read the header
    }
    int closed = 0, refused = 0;
    auto deadline = std::chrono::steady_clock::now() + 15s;  // half the login timeout
    for (auto& c : conns) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (c.wait_closed(std::max(left, 1ms))) ++closed;
        auto e = errors(c);
        if (!e.empty() && e[0].first == 0 && e[0].second.status == proto::code::frame_too_large &&
            e[0].second.message.find("before login") != std::string::npos)
            ++refused;
    }
    long peak = status_kb(pid, "VmHWM");
    EXPECT_EQ(closed, n);
    EXPECT_EQ(refused, n);
    if (rss_is_meaningful)
        EXPECT_LT(peak - rss_before, 16 * 1024)
            << "RSS grew from " << rss_before << " KiB to a peak of " << peak << " KiB";
    EXPECT_GE(f.gw_metric("gw1", R"(imgate_gateway_logins_total{result="frame_too_large")"), n);
    EXPECT_GE(f.gw_metric("gw1", R"(imgate_gateway_errors_total{code="frame_too_large")"), n);
}

// (b) One byte over the pre-login limit: answered at once (long before the login deadline) with
// the error naming the limit, then closed. After LOGIN the limit is max_frame_bytes, also for a
// frame pipelined behind the LOGIN in the same write.
TEST(AbuseClient, HeaderOverThePreLoginLimitIsRefusedAtOnceAndTheLimitRisesAtLogin) {
    fleet f(with_wrapper("timeouts: {login_timeout: 30s}\n"));
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    raw_conn c;
    ASSERT_TRUE(c.connect(f.client_addr("gw1")));
    ASSERT_TRUE(c.send(header(default_prelogin_body + 1)));
    ASSERT_TRUE(c.wait_closed(10s)) << "not closed at once (the login timeout is 30 s)";
    auto e = errors(c);
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0].first, 0u);
    EXPECT_EQ(e[0].second.status, proto::code::frame_too_large);
    EXPECT_NE(e[0].second.message.find("before login"), std::string::npos) << e[0].second.message;
    EXPECT_NE(e[0].second.message.find(std::to_string(default_prelogin_body)), std::string::npos)
        << e[0].second.message;
    EXPECT_EQ(f.gw_metric("gw1", R"(imgate_gateway_logins_total{result="frame_too_large")"), 1);

    // LOGIN and a 20 KB SEND to an offline user in one write: the SEND is over the pre-login
    // limit but arrives after a successful LOGIN, so it is routed.
    raw_conn d;
    ASSERT_TRUE(d.connect(f.client_addr("gw1")));
    ASSERT_TRUE(d.send(proto::encode(proto::login_msg{token("王伟", "phone")}, 1) +
                       proto::encode(proto::send_msg{proto::target_kind::user, "nobody@example.com",
                                                     5, std::string(20000, 'p')},
                                     2)));
    ASSERT_TRUE(wait_until(d, [](raw_conn& r) { return has_op(r, proto::op::send_result); }))
        << "frames: " << d.frames().size();
    for (auto& fr : d.frames())
        if (auto r = proto::decode<proto::send_result_msg>(fr)) {
            EXPECT_EQ(fr.corr, 2u);
            EXPECT_EQ(r->status, proto::code::offline);
        }
    EXPECT_TRUE(errors(d).empty());
}

// (c) The limit is not off by one: a real signed token of exactly max_token_bytes logs in; one
// byte more is refused with frame_too_large.
TEST(AbuseClient, LoginWithATokenOfExactlyMaxTokenBytesWorks) {
    fleet f(with_wrapper());
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    std::string exact = token_of_length(default_max_token_bytes, "zoë@example.com");
    ASSERT_EQ(exact.size(), default_max_token_bytes);
    std::string over = token_of_length(default_max_token_bytes + 1, "zoë@example.com");
    ASSERT_EQ(over.size(), default_max_token_bytes + 1);

    test::test_client ok;
    ASSERT_TRUE(ok.connect(f.client_addr("gw1")));
    auto r = ok.login(exact);
    ASSERT_TRUE(r) << (ok.last_error() ? ok.last_error()->message : "no answer");
    EXPECT_EQ(r->user, "zoë@example.com");
    EXPECT_TRUE(ping_ok(ok, 2));

    test::test_client big;
    ASSERT_TRUE(big.connect(f.client_addr("gw1")));
    EXPECT_FALSE(big.login(over));
    ASSERT_TRUE(big.last_error());
    EXPECT_EQ(big.last_error()->status, proto::code::frame_too_large);
    EXPECT_TRUE(big.wait_closed());
}

// (d) One logged-in session floods JOIN/LEAVE of a room nobody else on its gateway is in (each
// admitted op toggles the gateway's interest: one ROOM_INTEREST to the peer). It gets its burst,
// then ROOM_RESULT rate_limited (counted per op), then ERROR rate_limited and the close; the peer
// gateway is sent at most burst + rate × time toggles, and keeps serving.
TEST(AbuseClient, JoinLeaveFloodIsRateLimitedThenClosedAndThePeerSeesABoundedNumberOfToggles) {
    fleet f(with_wrapper("", 2, true));
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    ASSERT_TRUE(f.mesh_up()) << f.gw("gw1").log();
    auto watcher = f.client("gw2", "carol@example.com");
    ASSERT_TRUE(watcher);

    raw_conn c = logged_in_raw(f.client_addr("gw1"), "mallory@example.com");
    ASSERT_FALSE(c.is_closed());
    const std::string room = "flood-Zoë-房间";
    std::string unit =
        proto::encode(proto::join_msg{room}, 7) + proto::encode(proto::leave_msg{room}, 8);
    double cpu_peer0 = f.gw("gw2").cpu_seconds();
    auto o = flood(c, unit, 2, 200000);

    EXPECT_TRUE(o.closed);
    EXPECT_TRUE(o.flood_error);
    // Every admitted op answered ok is one toggle sent to gw2 (the room has no other member).
    EXPECT_GE(o.ok, default_room_burst);
    EXPECT_LE(o.ok, default_room_burst + int(default_room_rate * o.seconds) + 1)
        << "in " << o.seconds << " s";
    EXPECT_EQ(o.rate_limited, default_flood_refusals);
    EXPECT_LT(size_t(o.ok + o.rate_limited), o.frames_sent);
    double join = f.gw_metric("gw1", R"(imgate_gateway_rate_limited_total{op="join")");
    double leave = f.gw_metric("gw1", R"(imgate_gateway_rate_limited_total{op="leave")");
    EXPECT_EQ(join + leave, default_flood_refusals);
    EXPECT_GT(join, 0);
    EXPECT_GT(leave, 0);
    EXPECT_EQ(f.gw_metric("gw1", "imgate_gateway_flood_closes_total"), 1);
    // The peer: serving, and its directory back to no room once the flooder is gone.
    EXPECT_TRUE(ping_ok(*watcher, 3));
    EXPECT_TRUE(eventually([&] { return f.gw_metric("gw2", "imgate_rpc_directory_rooms") == 0; }));
    std::printf(
        "join/leave flood: %zu frames sent, %d admitted, %d refused in %.2f s; peer gw2 "
        "used %.3f s CPU\n",
        o.frames_sent, o.ok, o.rate_limited, o.seconds, f.gw("gw2").cpu_seconds() - cpu_peer0);
}

// (e) A PING flood: its burst is answered by PONG, then ERROR rate_limited with each PING's
// corr, counted; past flood_refusals the session is closed; another session is unaffected.
TEST(AbuseClient, PingFloodIsRateLimitedThenClosed) {
    fleet f(with_wrapper());
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    auto other = f.client("gw1", "alice@example.com");
    ASSERT_TRUE(other);
    raw_conn c = logged_in_raw(f.client_addr("gw1"), "mallory@example.com");
    ASSERT_FALSE(c.is_closed());
    auto o = flood(c, proto::encode(proto::ping_msg{}, 9), 1, 200000);

    EXPECT_TRUE(o.closed);
    EXPECT_TRUE(o.flood_error);
    EXPECT_GE(o.ok, default_ping_burst);
    EXPECT_LE(o.ok, default_ping_burst + int(default_ping_rate * o.seconds) + 1);
    EXPECT_EQ(o.rate_limited, default_flood_refusals);
    EXPECT_EQ(f.gw_metric("gw1", R"(imgate_gateway_rate_limited_total{op="ping")"),
              default_flood_refusals);
    EXPECT_EQ(f.gw_metric("gw1", "imgate_gateway_flood_closes_total"), 1);
    EXPECT_TRUE(ping_ok(*other, 4));
}

// (f) limits.flood_penalty: after a flood close the flooder's user id may not log in on this
// gateway until the penalty ends (ERROR rate_limited naming the flood and when to retry, counted
// as logins_total{result="flood_penalty"}); another user logs in meanwhile; afterwards the
// flooder logs in again. Before the penalty existed the flooder logged in again at once.
TEST(AbuseClient, FloodCloseKeepsTheUserOutForTheFloodPenalty) {
    fleet f(with_wrapper("limits: {flood_penalty: 2s}\n"));
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    raw_conn c = logged_in_raw(f.client_addr("gw1"), "mallory@example.com");
    ASSERT_FALSE(c.is_closed());
    auto o = flood(c, proto::encode(proto::ping_msg{}, 9), 1, 200000);
    ASSERT_TRUE(o.closed);
    ASSERT_TRUE(o.flood_error);

    test::test_client again;
    ASSERT_TRUE(again.connect(f.client_addr("gw1")));
    EXPECT_FALSE(again.login(token("mallory@example.com", "tablet")));
    ASSERT_TRUE(again.last_error());
    EXPECT_EQ(again.last_error()->status, proto::code::rate_limited);
    EXPECT_NE(again.last_error()->message.find("closed for flooding"), std::string::npos)
        << again.last_error()->message;
    EXPECT_NE(again.last_error()->message.find("retry in"), std::string::npos)
        << again.last_error()->message;
    EXPECT_TRUE(again.wait_closed());
    EXPECT_EQ(f.gw_metric("gw1", R"(imgate_gateway_logins_total{result="flood_penalty")"), 1);

    auto other = f.client("gw1", "alice@example.com");
    ASSERT_TRUE(other);
    EXPECT_TRUE(ping_ok(*other, 4));

    // Retried every 100 ms until the 2 s penalty is over, within a bounded deadline; every
    // refusal before that is the penalty's.
    int refusals = 0;
    bool back = eventually(
        [&] {
            test::test_client retry;
            if (!retry.connect(f.client_addr("gw1"))) return false;
            if (retry.login(token("mallory@example.com", "tablet"))) return true;
            if (retry.last_error() && retry.last_error()->status == proto::code::rate_limited)
                ++refusals;
            return false;
        },
        10s, 100ms);
    EXPECT_EQ(double(refusals + 1),
              f.gw_metric("gw1", R"(imgate_gateway_logins_total{result="flood_penalty")"));
    EXPECT_TRUE(back) << "the penalty did not end";
}

// (g) Failed logins are summarised: N bad-signature LOGINs from loopback make one warning per
// interval with their count by result and the source address, not a line per failure.
TEST(AbuseClient, FailedLoginsAreLoggedAsOneSummaryPerInterval) {
    fleet f(with_wrapper("limits: {login_failure_summary: 2s}\n"));
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    constexpr int n = 40;
    const std::string forged = test::make_token("not-the-secret-0123456789", "eve@example.com");
    for (int i = 0; i < n; ++i) {
        test::test_client c;
        ASSERT_TRUE(c.connect(f.client_addr("gw1")));
        ASSERT_FALSE(c.login(forged));
        ASSERT_TRUE(c.last_error());
        ASSERT_EQ(c.last_error()->status, proto::code::auth_failed);
    }
    // The summary lines' counts add up to n (a line covers one interval; the logins may straddle
    // two of them).
    auto summed = [&](int* lines) {
        std::istringstream in(f.gw("gw1").log());
        std::string line;
        int total = 0;
        *lines = 0;
        while (std::getline(in, line)) {
            auto at = line.find("login failures in the last 2 s: ");
            if (at == std::string::npos) continue;
            ++*lines;
            total += std::atoi(line.c_str() + at + std::strlen("login failures in the last 2 s: "));
            EXPECT_NE(line.find("auth_failed"), std::string::npos) << line;
            EXPECT_NE(line.find("top sources: 127.0.0.1 ("), std::string::npos) << line;
        }
        return total;
    };
    int lines = 0;
    EXPECT_TRUE(eventually([&] { return summed(&lines) == n; }, 10s)) << f.gw("gw1").log();
    EXPECT_GE(lines, 1);
    EXPECT_LE(lines, 2);
    EXPECT_EQ(f.gw_metric("gw1", R"(imgate_gateway_logins_total{result="auth_failed")"), n);
}
