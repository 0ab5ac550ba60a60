// Issue 14 (reconnect storms), gateway admission against the real binary: the gateway-wide LOGIN
// bucket (limits.gateway_login_rate/burst), the REDIRECT rate_limited / busy that follows every
// rate or server_busy refusal, and the spread of those hints. The frames are read byte by byte
// as a client written from docs/protocol.md would read them (stranger_client.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <iostream>
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

constexpr uint16_t code_rate_limited = 30;  // docs/protocol.md, "Status and error codes"
constexpr uint16_t code_server_busy = 32;

// What one LOGIN attempt got, as docs/protocol.md says to read it.
struct attempt {
    bool logged_in = false;
    bool refused = false;    // ERROR rate_limited with the LOGIN's corr, REDIRECT, close
    uint32_t hint_ms = 0;    // the REDIRECT's reconnect_after_ms
    std::string unexpected;  // anything else, for the failure message
};

// Reads the answer to a LOGIN sent with `corr`: LOGIN_RESULT (kept open), or the refusal of
// section 3 to the byte: ERROR rate_limited (the LOGIN's corr) + REDIRECT (corr 0, host "",
// port 0, reason rate_limited), then the close with nothing after it.
attempt read_answer(w::stranger& s, uint32_t corr) {
    attempt a;
    auto f = s.next(5s);
    if (!f) {
        a.unexpected = "no answer";
        return a;
    }
    if (f->op == w::op::login_result && f->corr == corr) {
        a.logged_in = true;
        return a;
    }
    const std::string msg = "too many logins on this gateway; retry later";
    if (f->bytes != w::frame(w::op::error, corr, w::u16(code_rate_limited) + w::str16(msg))) {
        a.unexpected = "first frame op " + std::to_string(f->op) + " corr " +
                       std::to_string(f->corr) + " body " + f->body;
        return a;
    }
    auto r = s.next(5s);
    if (!r || r->op != w::op::redirect || r->corr != 0 || r->body.size() < 4) {
        a.unexpected = "no REDIRECT after the ERROR";
        return a;
    }
    a.hint_ms = w::be32(r->body, 0);
    if (r->bytes !=
        w::frame(w::op::redirect, 0,
                 w::u32(a.hint_ms) + w::str16("") + w::u16(0) + w::str16("rate_limited"))) {
        a.unexpected = "REDIRECT body differs";
        return a;
    }
    if (!s.closed_after_last_frame(5s)) {
        a.unexpected = "not closed after the REDIRECT";
        return a;
    }
    a.refused = true;
    return a;
}

std::string user_id(int i) {
    return "stürm-" + std::to_string(i) + "@example.org";
}

}  // namespace

// (1) A burst of LOGINs from one process (one address, whose own bucket is far above the burst)
// against gateway_login_rate 20/s, burst 10: the gateway-wide bucket refuses the excess, each
// refusal is ERROR rate_limited + REDIRECT rate_limited with a hint in [retry_after,
// retry_after + jitter], the hints differ, and every refused client that comes back after its
// hint eventually logs in.
TEST(GatewayAdmission, GatewayWideLoginRateRefusesWithSpreadRedirectHints) {
    gateway_under_test gw(
        "  max_connections: 1000\n"
        "  login_rate: 100000\n"
        "  login_burst: 100000\n"
        "  gateway_login_rate: 20\n"
        "  gateway_login_burst: 10\n"
        "  login_retry_after: 1s\n"
        "  login_retry_jitter: 1s\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    constexpr int n = 120;
    std::vector<std::unique_ptr<w::stranger>> conns;
    for (int i = 0; i < n; ++i) {
        conns.push_back(std::make_unique<w::stranger>());
        ASSERT_TRUE(conns.back()->connect(gw.client_addr()));
    }
    auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i)
        ASSERT_TRUE(conns[i]->send(w::frame(w::op::login, uint32_t(1000 + i),
                                            w::str16(make_token(gw_token_secret, user_id(i))))));
    struct pending {
        int client;
        std::chrono::steady_clock::time_point due;
    };
    std::vector<pending> retry;
    std::vector<uint32_t> hints;
    int ok = 0;
    for (int i = 0; i < n; ++i) {
        auto a = read_answer(*conns[i], uint32_t(1000 + i));
        ASSERT_TRUE(a.logged_in || a.refused) << "client " << i << ": " << a.unexpected;
        if (a.logged_in) {
            ++ok;
            continue;
        }
        EXPECT_GE(a.hint_ms, 1000u);
        EXPECT_LE(a.hint_ms, 2000u);
        hints.push_back(a.hint_ms);
        retry.push_back(
            {i, std::chrono::steady_clock::now() + std::chrono::milliseconds(a.hint_ms)});
    }
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    // At most burst + rate x elapsed got in; every other one was refused with a hint.
    EXPECT_GE(ok, 10);
    EXPECT_LE(ok, 10 + int(20 * elapsed) + 1);
    // A starved test machine may stretch the burst over more refills; the refusals must remain
    // plenty for the spread check below.
    ASSERT_GE(hints.size(), 20u) << "elapsed " << elapsed << " s, " << ok << " logged in";
    EXPECT_GT(std::set<uint32_t>(hints.begin(), hints.end()).size(), hints.size() / 2)
        << "hints are not spread";
    EXPECT_EQ(gw.metric(R"(imgate_gateway_logins_total{result="rate_limited_gateway"})"),
              double(hints.size()));
    EXPECT_EQ(gw.metric(R"(imgate_gateway_logins_total{result="rate_limited"})"), 0);
    EXPECT_EQ(gw.metric(R"(imgate_gateway_retry_hints_total{reason="rate_limited"})"),
              double(hints.size()));

    // The refused clients come back after their hints (never earlier), each on a new connection,
    // until every one is in. Bounded: at 20/s the backlog clears in a few rounds.
    auto deadline = std::chrono::steady_clock::now() + 60s;
    std::vector<std::unique_ptr<w::stranger>> in;
    uint32_t corr = 5000;
    int dropped = 0;
    while (!retry.empty() && std::chrono::steady_clock::now() < deadline) {
        auto it = std::min_element(retry.begin(), retry.end(),
                                   [](auto& a, auto& b) { return a.due < b.due; });
        std::this_thread::sleep_until(it->due);  // the client's wait, not a synchronisation
        auto s = std::make_unique<w::stranger>();
        ASSERT_TRUE(s->connect(gw.client_addr()));
        ++corr;
        ASSERT_TRUE(s->send(w::frame(w::op::login, corr,
                                     w::str16(make_token(gw_token_secret, user_id(it->client))))));
        auto a = read_answer(*s, corr);
        if (a.unexpected == "no answer") {
            // The connection closed before any byte came back. Seen now and then on this loopback
            // under parallel test load in this retry phase only (never in the burst above, whose
            // every frame is checked); a real client retries such a connection like any other
            // failed attempt. Counted and reported, retried after a short pause.
            ++dropped;
            it->due = std::chrono::steady_clock::now() + 100ms;
            continue;
        }
        ASSERT_TRUE(a.logged_in || a.refused) << a.unexpected;
        if (a.logged_in) {
            in.push_back(std::move(s));
            retry.erase(it);
        } else {
            EXPECT_GE(a.hint_ms, 1000u);
            EXPECT_LE(a.hint_ms, 2000u);
            it->due = std::chrono::steady_clock::now() + std::chrono::milliseconds(a.hint_ms);
        }
    }
    EXPECT_TRUE(retry.empty()) << retry.size() << " clients never got in";
    EXPECT_LE(dropped, 3) << "retry connections closed without an answer";
    if (dropped > 0)
        std::cout << "[ note ] " << dropped << " retry connection(s) closed unanswered\n";
    EXPECT_EQ(in.size(), hints.size());
    EXPECT_TRUE(eventually([&] { return gw.status().value("sessions", 0) == n; }));
}

// The per-address bucket is asked first: an address over its own rate is refused as
// rate_limited (with its REDIRECT) and takes no gateway-wide token, so another address still
// gets in while the gateway-wide bucket is small.
TEST(GatewayAdmission, PerAddressRefusalComesFirstAndCostsNoGatewayToken) {
    gateway_under_test gw(
        "  max_connections: 1000\n"
        "  login_rate: 0.01\n"
        "  login_burst: 2\n"
        "  gateway_login_rate: 0.01\n"
        "  gateway_login_burst: 3\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    int ok = 0, limited = 0;
    for (int i = 0; i < 30; ++i) {
        raw_conn c;
        ASSERT_TRUE(c.connect(gw.client_addr()));
        c.send(proto::encode(proto::login_msg{make_token(gw_token_secret, user_id(i))}, 7));
        // Logged in (kept open) or refused (closed after its frames).
        ASSERT_TRUE(eventually([&] {
            c.pump();
            auto fr = c.frames();
            return (!fr.empty() && fr[0].op == uint8_t(proto::op::login_result)) || c.is_closed();
        }));
        auto fr = c.frames();
        ASSERT_FALSE(fr.empty());
        if (fr[0].op == uint8_t(proto::op::login_result)) {
            ++ok;
            continue;
        }
        ASSERT_EQ(fr.size(), 2u);
        EXPECT_EQ(c.error_code(), proto::code::rate_limited);
        auto rd = proto::decode<proto::redirect_msg>(fr[1]);
        ASSERT_TRUE(rd);
        EXPECT_EQ(rd->reason, "rate_limited");
        EXPECT_GE(rd->reconnect_after_ms, 1000u);  // the defaults: 1s + [0, 1s]
        EXPECT_LE(rd->reconnect_after_ms, 2000u);
        ++limited;
    }
    EXPECT_EQ(ok, 2);
    EXPECT_EQ(limited, 28);
    EXPECT_EQ(gw.metric(R"(imgate_gateway_logins_total{result="rate_limited"})"), 28);
    EXPECT_EQ(gw.metric(R"(imgate_gateway_logins_total{result="rate_limited_gateway"})"), 0);
    // The gateway-wide bucket still holds its third token: another address gets in.
    raw_conn other;
    ASSERT_TRUE(other.connect(gw.client_addr(), 0, "127.0.0.2"));
    other.send(proto::encode(proto::login_msg{make_token(gw_token_secret, "nachbar")}, 8));
    ASSERT_TRUE(eventually([&] {
        other.pump();
        return !other.frames().empty();
    }));
    EXPECT_EQ(other.frames()[0].op, uint8_t(proto::op::login_result));
    // And a third address finds the gateway-wide bucket empty.
    raw_conn third;
    ASSERT_TRUE(third.connect(gw.client_addr(), 0, "127.0.0.3"));
    third.send(proto::encode(proto::login_msg{make_token(gw_token_secret, "dritter")}, 9));
    ASSERT_TRUE(third.wait_closed(5s));
    EXPECT_EQ(third.error_code(), proto::code::rate_limited);
    EXPECT_EQ(gw.metric(R"(imgate_gateway_logins_total{result="rate_limited_gateway"})"), 1);
}

// A gateway at max_connections answers ERROR server_busy (corr 0) and then REDIRECT busy with a
// hint in [login_retry_after, + login_retry_jitter], byte-exact, then closes.
TEST(GatewayAdmission, ServerBusyIsFollowedByRedirectBusy) {
    gateway_under_test gw(
        "  max_connections: 1\n"
        "  login_retry_after: 3s\n"
        "  login_retry_jitter: 500ms\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto first = gw.client("erste");
    ASSERT_TRUE(first);
    std::set<uint32_t> hints;
    for (int i = 0; i < 12; ++i) {
        w::stranger s;
        ASSERT_TRUE(s.connect(gw.client_addr()));
        auto e = s.next(5s);
        ASSERT_TRUE(e);
        EXPECT_EQ(e->bytes, w::frame(w::op::error, 0,
                                     w::u16(code_server_busy) + w::str16("gateway is full")));
        auto r = s.next(5s);
        ASSERT_TRUE(r);
        ASSERT_GE(r->body.size(), 4u);
        uint32_t hint = w::be32(r->body, 0);
        EXPECT_GE(hint, 3000u);
        EXPECT_LE(hint, 3500u);
        hints.insert(hint);
        EXPECT_EQ(r->bytes, w::frame(w::op::redirect, 0,
                                     w::u32(hint) + w::str16("") + w::u16(0) + w::str16("busy")));
        EXPECT_TRUE(s.closed_after_last_frame(5s));
    }
    EXPECT_GT(hints.size(), 1u);
    EXPECT_EQ(gw.metric(R"(imgate_gateway_retry_hints_total{reason="busy"})"), 12);
}
