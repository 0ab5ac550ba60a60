// Issue 14 (reconnect storms), the gateway's POST /rebalance and the spread reconnect hints of
// drain and shutdown (drain.reconnect_jitter), against the real binary. Clients are written from
// docs/protocol.md (stranger_client.hpp); each REDIRECT is checked to the byte.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../support/process.hpp"
#include "../support/test_client.hpp"
#include "gateway_fixture.hpp"
#include "stranger_client.hpp"

using namespace imgate;
using namespace imgate::test;
namespace w = imgate::test::wire;
using namespace std::chrono_literals;

namespace {

using steady = std::chrono::steady_clock;

// One logged-in client and what the gateway told it to do.
struct member {
    std::unique_ptr<w::stranger> conn;
    bool redirected = false;
    uint32_t hint_ms = 0;
    std::string reason;
    steady::time_point at{};
    std::string unexpected;
};

std::vector<member> log_in(gateway_under_test& gw, int n, const std::string& prefix) {
    std::vector<member> out;
    for (int i = 0; i < n; ++i) {
        member m;
        m.conn = std::make_unique<w::stranger>();
        if (!m.conn->connect(gw.client_addr())) break;
        auto user = prefix + "-" + std::to_string(i) + "@exämple.org";
        if (!m.conn->send(w::frame(w::op::login, uint32_t(i + 1),
                                   w::str16(make_token(gw_token_secret, user, "tablet")))))
            break;
        auto f = m.conn->next(5s);
        if (!f || f->op != w::op::login_result) break;
        out.push_back(std::move(m));
    }
    return out;
}

// Reads what arrived on every client not yet redirected (no waiting per client); a REDIRECT must
// be the only frame, byte-exact with an empty host and port 0, then the close.
int poll_redirects(std::vector<member>& ms) {
    int fresh = 0;
    for (auto& m : ms) {
        if (m.redirected) continue;
        auto f = m.conn->next(1ms);
        if (!f) continue;
        if (f->op != w::op::redirect || f->corr != 0 || f->body.size() < 4) {
            m.unexpected = "op " + std::to_string(f->op);
            continue;
        }
        m.hint_ms = w::be32(f->body, 0);
        for (std::string reason : {"rebalance", "drain"})
            if (f->bytes ==
                w::frame(w::op::redirect, 0,
                         w::u32(m.hint_ms) + w::str16("") + w::u16(0) + w::str16(reason)))
                m.reason = reason;
        if (m.reason.empty()) m.unexpected = "REDIRECT body differs";
        m.redirected = true;
        m.at = steady::now();
        ++fresh;
    }
    return fresh;
}

int count_redirected(const std::vector<member>& ms) {
    int n = 0;
    for (auto& m : ms) n += m.redirected;
    return n;
}

// Polls until `want` clients were redirected or the deadline passes.
bool await_redirects(std::vector<member>& ms, int want, std::chrono::milliseconds timeout) {
    auto deadline = steady::now() + timeout;
    while (count_redirected(ms) < want && steady::now() < deadline) {
        if (poll_redirects(ms) == 0) std::this_thread::sleep_for(5ms);  // a poll interval
    }
    return count_redirected(ms) >= want;
}

nlohmann::json rebalance_status(gateway_under_test& gw) {
    return gw.status().value("rebalance", nlohmann::json::object());
}

}  // namespace

// (2) N sessions, target T: exactly N - T sessions get REDIRECT rebalance (hint in
// [reconnect_after, reconnect_after + reconnect_jitter], spread), at about `rate` per second
// (never faster), and the count stays at T.
TEST(GatewayRebalance, MovesExactlyTheExcessAtTheRate) {
    gateway_under_test gw("", "", "drain:\n  reconnect_after: 500ms\n  reconnect_jitter: 2s\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    constexpr int n = 20, target = 12, rate = 10;
    auto ms = log_in(gw, n, "rb");
    ASSERT_EQ(ms.size(), size_t(n));
    auto st0 = rebalance_status(gw);
    EXPECT_EQ(st0, (nlohmann::json{{"active", false}, {"target", 0}, {"moved", 0}}));

    auto started = steady::now();
    auto r = gw.admin_post("/rebalance", R"({"target":12,"rate":10,"max":100})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json(), (nlohmann::json{{"sessions", n}, {"target", target}, {"to_move", 8}}));
    EXPECT_EQ(rebalance_status(gw).value("target", 0), target);
    ASSERT_TRUE(await_redirects(ms, n - target, 20s));
    steady::time_point last{};
    std::set<uint32_t> hints;
    for (auto& m : ms) {
        EXPECT_EQ(m.unexpected, "");
        if (!m.redirected) continue;
        EXPECT_EQ(m.reason, "rebalance");
        EXPECT_GE(m.hint_ms, 500u);
        EXPECT_LE(m.hint_ms, 2500u);
        hints.insert(m.hint_ms);
        last = std::max(last, m.at);
        EXPECT_TRUE(m.conn->closed_after_last_frame(5s));
    }
    EXPECT_GT(hints.size(), 1u) << "rebalance hints are not spread";
    // 8 sessions at 10/s: the 8th cannot go before 7 intervals have passed (less one 20 ms
    // tick of the loop's budget).
    double elapsed = std::chrono::duration<double>(last - started).count();
    EXPECT_GE(elapsed, double(n - target - 1) / rate - 0.03);

    ASSERT_TRUE(eventually([&] { return !rebalance_status(gw).value("active", true); }));
    EXPECT_EQ(rebalance_status(gw),
              (nlohmann::json{{"active", false}, {"target", target}, {"moved", n - target}}));
    EXPECT_TRUE(eventually([&] { return gw.status().value("sessions", -1) == target; }));
    // Nobody else is moved: every remaining session still answers a PING.
    poll_redirects(ms);
    EXPECT_EQ(count_redirected(ms), n - target);
    uint32_t corr = 100;
    for (auto& m : ms) {
        if (m.redirected) continue;
        ASSERT_TRUE(m.conn->send(w::frame(w::op::ping, ++corr, "")));
        auto f = m.conn->next(3s);
        ASSERT_TRUE(f);
        EXPECT_EQ(f->bytes, w::frame(w::op::pong, corr, ""));
    }
    EXPECT_EQ(gw.metric("imgate_gateway_rebalance_requests_total"), 1);
    EXPECT_EQ(gw.metric("imgate_gateway_rebalance_redirects_total"), n - target);
    EXPECT_EQ(gw.metric("imgate_gateway_redirects_total"), 0);  // drain's, not rebalance's
}

// A second call replaces the first (its target, rate and max from then on; its count restarts);
// `max` caps one call; the admin token is required; bad bodies are 400; while draining 409.
TEST(GatewayRebalance, SecondCallReplacesMaxCapsAuthAndErrors) {
    gateway_under_test gw("", "", "drain:\n  reconnect_after: 1s\n  reconnect_jitter: 1s\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    constexpr int n = 20;
    auto ms = log_in(gw, n, "zwei");
    ASSERT_EQ(ms.size(), size_t(n));

    // Authentication exactly like /drain.
    auto drain_no_token = gw.admin_post("/drain", "", "");
    auto no_token = gw.admin_post("/rebalance", R"({"target":0,"rate":1,"max":1})", "");
    EXPECT_EQ(no_token.status, drain_no_token.status);
    EXPECT_EQ(no_token.status, 401);
    EXPECT_EQ(gw.admin_post("/rebalance", R"({"target":0,"rate":1,"max":1})", "wrong").status, 401);
    for (const char* bad :
         {"", "[]", "not json", R"({"target":1,"rate":1})", R"({"target":1,"max":1})",
          R"({"rate":1,"max":1})", R"({"target":-1,"rate":1,"max":1})",
          R"({"target":1.5,"rate":1,"max":1})", R"({"target":"1","rate":1,"max":1})",
          R"({"target":1,"rate":0,"max":1})", R"({"target":1,"rate":-2,"max":1})",
          R"({"target":1,"rate":"fast","max":1})", R"({"target":1,"rate":1,"max":0})",
          R"({"target":1,"rate":1,"max":1,"extra":true})"}) {
        auto r = gw.admin_post("/rebalance", bad);
        EXPECT_EQ(r.status, 400) << bad << ": " << r.body;
        EXPECT_EQ(r.json().value("error", ""), "bad_request") << bad;
    }
    EXPECT_EQ(count_redirected(ms), 0);
    EXPECT_EQ(gw.metric("imgate_gateway_rebalance_requests_total"), 0);

    // A slow first call (2/s towards 0), replaced once it moved one session.
    ASSERT_EQ(gw.admin_post("/rebalance", R"({"target":0,"rate":2,"max":100})").status, 200);
    ASSERT_TRUE(await_redirects(ms, 1, 10s));
    auto second = gw.admin_post("/rebalance", R"({"target":15,"rate":200,"max":100})");
    ASSERT_EQ(second.status, 200) << second.body;
    int sessions = second.json().value("sessions", -1);
    int moved_before = n - sessions;  // by the first call, up to the replacement
    EXPECT_GE(moved_before, 1);
    EXPECT_EQ(second.json().value("to_move", -1), sessions - 15);
    ASSERT_TRUE(eventually([&] { return !rebalance_status(gw).value("active", true); }));
    EXPECT_EQ(rebalance_status(gw),
              (nlohmann::json{{"active", false}, {"target", 15}, {"moved", sessions - 15}}));
    ASSERT_TRUE(await_redirects(ms, n - 15, 5s));
    EXPECT_TRUE(eventually([&] { return gw.status().value("sessions", -1) == 15; }));
    poll_redirects(ms);
    EXPECT_EQ(count_redirected(ms), n - 15);  // the first call's target 0 no longer applies

    // max caps one call: target 0 but max 2 moves exactly 2.
    auto third = gw.admin_post("/rebalance", R"({"target":0,"rate":500,"max":2})");
    ASSERT_EQ(third.status, 200) << third.body;
    EXPECT_EQ(third.json(), (nlohmann::json{{"sessions", 15}, {"target", 0}, {"to_move", 2}}));
    ASSERT_TRUE(eventually([&] { return !rebalance_status(gw).value("active", true); }));
    ASSERT_TRUE(await_redirects(ms, n - 13, 5s));
    EXPECT_TRUE(eventually([&] { return gw.status().value("sessions", -1) == 13; }));
    poll_redirects(ms);
    EXPECT_EQ(count_redirected(ms), n - 13);
    for (auto& m : ms) EXPECT_EQ(m.unexpected, "");
    EXPECT_EQ(gw.metric("imgate_gateway_rebalance_requests_total"), 3);
    EXPECT_EQ(gw.metric("imgate_gateway_rebalance_redirects_total"), n - 13);

    // A drain ends a running rebalance; while draining a rebalance is refused with 409.
    ASSERT_EQ(gw.admin_post("/rebalance", R"({"target":0,"rate":0.5,"max":100})").status, 200);
    ASSERT_EQ(gw.admin_post("/drain", "").status, 200);
    EXPECT_FALSE(rebalance_status(gw).value("active", true));
    auto refused = gw.admin_post("/rebalance", R"({"target":0,"rate":1,"max":1})");
    EXPECT_EQ(refused.status, 409) << refused.body;
    EXPECT_EQ(refused.json().value("error", ""), "draining");
    // The drain moves everyone left, with reason drain.
    ASSERT_TRUE(await_redirects(ms, n, 10s));
    int drained = 0;
    for (auto& m : ms) drained += m.reason == "drain";
    EXPECT_GE(drained, 12);
}

// Sessions logged in less than 10 s ago are left alone while older ones remain.
TEST(GatewayRebalance, YoungSessionsGoLast) {
    gateway_under_test gw;
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto old_ones = log_in(gw, 3, "alt");
    ASSERT_EQ(old_ones.size(), 3u);
    // Real time is the subject here: the old sessions must be older than the 10 s rule.
    std::this_thread::sleep_for(10500ms);
    auto young = log_in(gw, 3, "jung");
    ASSERT_EQ(young.size(), 3u);
    auto r = gw.admin_post("/rebalance", R"({"target":2,"rate":1000,"max":100})");
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_TRUE(await_redirects(old_ones, 3, 5s));  // all old ones first ...
    ASSERT_TRUE(eventually([&] { return !rebalance_status(gw).value("active", true); }));
    ASSERT_TRUE(await_redirects(young, 1, 5s));  // ... then one young one to reach the target
    poll_redirects(young);
    EXPECT_EQ(count_redirected(young), 1);
    EXPECT_TRUE(eventually([&] { return gw.status().value("sessions", -1) == 2; }));
}

// (3) Drain and SIGTERM hints are drawn per session within [reconnect_after, reconnect_after +
// reconnect_jitter].
TEST(GatewayRebalance, DrainAndShutdownHintsAreSpread) {
    {
        gateway_under_test gw("", "",
                              "drain:\n  rate: 1000\n  reconnect_after: 700ms\n"
                              "  reconnect_jitter: 1500ms\n");
        ASSERT_TRUE(gw.ready()) << gw.proc->log();
        constexpr int n = 30;
        auto ms = log_in(gw, n, "drän");
        ASSERT_EQ(ms.size(), size_t(n));
        ASSERT_EQ(gw.admin_post("/drain", "").status, 200);
        ASSERT_TRUE(await_redirects(ms, n, 10s));
        std::set<uint32_t> hints;
        for (auto& m : ms) {
            EXPECT_EQ(m.unexpected, "");
            EXPECT_EQ(m.reason, "drain");
            EXPECT_GE(m.hint_ms, 700u);
            EXPECT_LE(m.hint_ms, 2200u);
            hints.insert(m.hint_ms);
        }
        EXPECT_GT(hints.size(), size_t(n / 2)) << "drain hints are not spread";
        EXPECT_EQ(gw.metric("imgate_gateway_redirects_total"), n);
    }
    {
        gateway_under_test gw("", "  shutdown_grace: 3s\n",
                              "drain:\n  reconnect_after: 2s\n  reconnect_jitter: 1s\n");
        ASSERT_TRUE(gw.ready()) << gw.proc->log();
        constexpr int n = 12;
        auto ms = log_in(gw, n, "ende");
        ASSERT_EQ(ms.size(), size_t(n));
        gw.proc->signal(SIGTERM);
        std::set<uint32_t> hints;
        for (auto& m : ms) {
            auto f = m.conn->next(5s);
            ASSERT_TRUE(f);
            ASSERT_EQ(f->op, w::op::kick);
            ASSERT_GE(f->body.size(), 5u);
            EXPECT_EQ(uint8_t(f->body[0]), 2);  // KICK reason shutdown
            uint32_t hint = w::be32(f->body, 1);
            EXPECT_GE(hint, 2000u);
            EXPECT_LE(hint, 3000u);
            hints.insert(hint);
        }
        EXPECT_GT(hints.size(), 1u) << "shutdown hints are not spread";
        ASSERT_TRUE(gw.proc->wait_exit(10s)) << gw.proc->log();
    }
}
