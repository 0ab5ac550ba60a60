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
#include <sys/resource.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/jwt.hpp"
#include "fault_fixture.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace imgate::test::fault;
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

// The descriptor limit raised to its hard limit, so a thousand sockets fit in this process and
// in the gateways it starts afterwards (they inherit it).
bool raise_fd_limit(rlim_t want) {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return false;
    if (r.rlim_cur >= want) return true;
    r.rlim_cur = std::min(r.rlim_max, std::max(want, r.rlim_cur));
    ::setrlimit(RLIMIT_NOFILE, &r);
    return r.rlim_cur >= want;
}

// A field of /proc/PID/status in KiB (VmRSS, VmHWM), or -1.
long status_kb(pid_t pid, const std::string& field) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
    return -1;
}

// A client frame header (12 bytes) declaring a body of `len` bytes.
std::string header(uint32_t len, proto::op o = proto::op::login, uint32_t corr = 1) {
    std::string h;
    byte_writer w(h);
    w.u32(len);
    w.u8(client_protocol_version);
    w.u8(uint8_t(o));
    w.u16(0);
    w.u32(corr);
    return h;
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

// Reads on c until pred(c) holds, the peer closes, or timeout passes.
template <class Pred>
bool wait_until(raw_conn& c, Pred pred, std::chrono::milliseconds timeout = 3000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        c.pump();
        if (pred(c)) return true;
        if (c.is_closed()) return pred(c);
        auto left = deadline - std::chrono::steady_clock::now();
        if (left <= 0ms) return false;
        pollfd p{c.fd(), POLLIN, 0};
        ::poll(&p, 1, int(std::chrono::duration_cast<std::chrono::milliseconds>(left).count()) + 1);
    }
}

bool has_op(const raw_conn& c, proto::op o) {
    for (auto& f : c.frames())
        if (f.op == uint8_t(o)) return true;
    return false;
}

// The ERRORs received so far.
std::vector<std::pair<uint32_t, proto::error_msg>> errors(const raw_conn& c) {
    std::vector<std::pair<uint32_t, proto::error_msg>> out;
    for (auto& f : c.frames())
        if (auto e = proto::decode<proto::error_msg>(f)) out.emplace_back(f.corr, *e);
    return out;
}

// A raw connection logged in as user (LOGIN_RESULT received), or one that is not open.
raw_conn logged_in_raw(const std::string& addr, const std::string& user) {
    raw_conn c;
    if (!c.connect(addr)) return c;
    c.send(proto::encode(proto::login_msg{token(user, "phone")}, 1));
    if (!wait_until(c, [](raw_conn& r) { return has_op(r, proto::op::login_result); })) c.close();
    return c;
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

// Not a test: the numbers for docs/benchmarks.md. Run with --gtest_also_run_disabled_tests
// --gtest_filter='AbuseMeasure.*' (and IMGATE_TEST_GATEWAY_WRAPPER for another build).
TEST(AbuseMeasure, DISABLED_PreLoginRssAndFloodCpu) {
    ASSERT_TRUE(raise_fd_limit(4096));
    const uint32_t declared = std::getenv("IMGATE_MEASURE_DECLARED")
                                  ? uint32_t(std::atoi(getenv("IMGATE_MEASURE_DECLARED")))
                                  : default_prelogin_body;
    {
        fleet f(
            with_wrapper("limits: {max_connections: 3000}\n"
                         "timeouts: {login_timeout: 30s}\n"));
        ASSERT_TRUE(f.start());
        pid_t pid = f.gw("gw1").pid();
        long before = status_kb(pid, "VmRSS");
        std::vector<raw_conn> conns(1000);
        std::string partial =
            header(declared) + std::string(declared > 200 ? declared - 200 : 0, 't');
        for (auto& c : conns) {
            ASSERT_TRUE(c.connect(f.client_addr("gw1")));
            c.send(header(declared), 100ms);
            c.send(partial.substr(12), 100ms);
        }
        // Held (or refused) by now: a PING round trip on a fresh session after all of them.
        auto probe = f.client("gw1", "probe");
        ASSERT_TRUE(probe && ping_ok(*probe, 1));
        long after = status_kb(pid, "VmRSS");
        int closed = 0;
        for (auto& c : conns)
            if (c.is_closed()) ++closed;
        std::printf(
            "1000 pre-login partial frames declaring %u bytes: VmRSS %ld -> %ld KiB "
            "(+%ld KiB, %.2f KiB per connection), %d already closed\n",
            declared, before, after, after - before, double(after - before) / 1000.0, closed);
    }
    {
        // One session floods for 5 s; its gateway's CPU over those 5 s.
        fleet f(with_wrapper());
        ASSERT_TRUE(f.start());
        raw_conn c = logged_in_raw(f.client_addr("gw1"), "mallory@example.com");
        auto& gw = f.gw("gw1");
        std::string unit =
            proto::encode(proto::join_msg{"r"}, 7) + proto::encode(proto::leave_msg{"r"}, 8);
        std::string batch;
        while (batch.size() < 64 * 1024) batch += unit;
        double cpu0 = gw.cpu_seconds();
        auto t0 = std::chrono::steady_clock::now();
        size_t batches = 0;
        auto closed_at = t0;
        while (std::chrono::steady_clock::now() - t0 < 5s) {
            if (!c.is_closed()) {
                if (c.send(batch, 50ms)) ++batches;
                c.pump();
                if (c.is_closed()) closed_at = std::chrono::steady_clock::now();
            } else {
                std::this_thread::sleep_for(50ms);  // the measuring interval runs on
            }
        }
        double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        double cpu = gw.cpu_seconds() - cpu0;
        std::printf(
            "one session's join/leave flood, 5 s: %zu x 64 KiB written, %s; gateway CPU "
            "%.3f s = %.1f%% of a core\n",
            batches,
            c.is_closed()
                ? ("closed after " +
                   std::to_string(std::chrono::duration<double>(closed_at - t0).count()) + " s")
                      .c_str()
                : "never closed",
            cpu, 100 * cpu / wall);
    }
    {
        fleet f(with_wrapper());
        ASSERT_TRUE(f.start());
        std::optional<raw_conn> c;
        c.emplace(logged_in_raw(f.client_addr("gw1"), "mallory@example.com"));
        auto& gw = f.gw("gw1");
        std::string unit =
            proto::encode(proto::join_msg{"r"}, 7) + proto::encode(proto::leave_msg{"r"}, 8);
        std::string batch;
        while (batch.size() < 64 * 1024) batch += unit;
        double cpu0 = gw.cpu_seconds();
        auto t0 = std::chrono::steady_clock::now();
        size_t sent = 0;
        while (std::chrono::steady_clock::now() - t0 < 5s) {
            if (!c->is_closed() && c->send(batch, 50ms)) sent += batch.size() / unit.size() * 2;
            c->pump();
            if (c->is_closed()) {
                // Flood close: reconnect and go on, as a flooder would.
                c.reset();
                c.emplace(logged_in_raw(f.client_addr("gw1"), "mallory@example.com"));
            }
        }
        double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        double cpu = gw.cpu_seconds() - cpu0;
        std::printf(
            "join/leave flood for %.1f s (reconnecting after each flood close): %zu frames "
            "sent, %g flood closes; gateway CPU %.3f s = %.1f%% of a core\n",
            wall, sent, f.gw_metric("gw1", "imgate_gateway_flood_closes_total"), cpu,
            100 * cpu / wall);
    }
}
