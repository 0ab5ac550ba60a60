#include "client/session.hpp"

#include <gtest/gtest.h>

#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "client/connector.hpp"
#include "common/awaitable.hpp"
#include "common/http_server.hpp"
#include "common/metrics.hpp"
#include "fake_gateway.hpp"

using namespace imgate::client;
using imgate::use_tuple;
using imgate::test::fake_gateway;
namespace proto = imgate::proto;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// Runs body on io until it finishes; fails the test if it doesn't within `limit`.
template <class F>
void run_coro(asio::io_context& io, F&& body, std::chrono::milliseconds limit = 5000ms) {
    bool done = false;
    std::exception_ptr err;
    asio::co_spawn(io, body(), [&](std::exception_ptr e) {
        done = true;
        err = e;
        io.stop();
    });
    io.run_for(limit);
    ASSERT_TRUE(done) << "test coroutine did not finish in time";
    if (err) std::rethrow_exception(err);
}

// Waits (bounded) until pred holds, polling on the io_context so the fake keeps serving.
template <class P>
asio::awaitable<bool> until(P pred, std::chrono::milliseconds limit = 2000ms) {
    auto end = std::chrono::steady_clock::now() + limit;
    asio::steady_timer t(co_await asio::this_coro::executor);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end) co_return false;
        t.expires_after(2ms);
        co_await t.async_wait(use_tuple);
    }
    co_return true;
}

session_options fast() {
    session_options o;
    o.connect_timeout = 1000ms;
    o.login_timeout = 1000ms;
    o.read_grace = 100ms;
    return o;
}

}  // namespace

TEST(ClientSession, LoginDeliverAckAndKick) {
    asio::io_context io;
    fake_gateway gw(io);
    std::vector<proto::deliver_msg> got;
    session_end end;
    login_outcome lo;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), fast());
        auto ec = co_await s->connect("127.0.0.1", gw.port());
        EXPECT_FALSE(ec) << ec.message();
        lo = co_await s->login("good");
        session_events ev;
        ev.on_deliver = [&](const proto::deliver_msg& m) { got.push_back(m); };
        auto self = s;
        auto waiter = [&gw, self]() -> asio::awaitable<void> {
            co_await until([&] { return gw.logged_in; });
            proto::deliver_msg d;
            d.server_msg_id = 42;
            d.from_user = "alice";
            d.payload = "hello";
            gw.send(d);
            co_await until([&] { return !gw.acks.empty(); });
            gw.send(proto::kick_msg{proto::kick_reason::replaced, 0, "new login"});
        };
        imgate::spawn(io, waiter(), "test waiter");
        end = co_await s->run(std::move(ev));
    });
    ASSERT_TRUE(lo.ok) << lo.detail;
    EXPECT_EQ(lo.result.gateway_id, "fake1");
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].payload, "hello");
    EXPECT_EQ(gw.acks, std::vector<uint64_t>{42});
    EXPECT_EQ(end.reason, end_reason::kicked);
    ASSERT_TRUE(end.kick);
    EXPECT_EQ(end.kick->reason, proto::kick_reason::replaced);
    EXPECT_NE(end.describe().find("replaced"), std::string::npos);
}

TEST(ClientSession, AuthFailureCarriesCodeAndMessage) {
    asio::io_context io;
    fake_gateway gw(io);
    login_outcome lo;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), fast());
        co_await s->connect("127.0.0.1", gw.port());
        lo = co_await s->login("bad");
        EXPECT_FALSE(s->is_open());
    });
    EXPECT_FALSE(lo.ok);
    ASSERT_TRUE(lo.error);
    EXPECT_EQ(lo.error->status, proto::code::auth_failed);
    EXPECT_NE(lo.detail.find("auth_failed"), std::string::npos);
    EXPECT_NE(lo.detail.find("bad_signature"), std::string::npos);
}

TEST(ClientSession, ConnectRefusedNamesTheAddress) {
    asio::io_context io;
    uint16_t port;
    {
        // A port that was just free: nothing listens there now.
        asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
        port = a.local_endpoint().port();
    }
    std::string detail;
    boost::system::error_code ec;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), fast());
        ec = co_await s->connect("127.0.0.1", port, &detail);
    });
    EXPECT_TRUE(ec);
    EXPECT_NE(detail.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << detail;
}

TEST(ClientSession, LoginTimeoutWhenTheGatewayIsSilent) {
    asio::io_context io;
    fake_gateway gw(io);
    gw.answer_login = false;
    login_outcome lo;
    auto opts = fast();
    opts.login_timeout = 150ms;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), opts);
        co_await s->connect("127.0.0.1", gw.port());
        lo = co_await s->login("good");
    });
    EXPECT_FALSE(lo.ok);
    EXPECT_EQ(lo.ec, asio::error::timed_out);
    EXPECT_EQ(gw.logins, 1);
}

TEST(ClientSession, SendResultAndReceiptReachCallbacks) {
    asio::io_context io;
    fake_gateway gw(io);
    std::vector<proto::send_result_msg> results;
    std::vector<proto::receipt_msg> receipts;
    std::vector<proto::room_result_msg> rooms;
    session_end end;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), fast());
        co_await s->connect("127.0.0.1", gw.port());
        auto lo = co_await s->login("good");
        EXPECT_TRUE(lo.ok);
        // Queued before run(): written as soon as the writer starts.
        EXPECT_TRUE(s->join("r1"));
        EXPECT_TRUE(s->send(proto::target_kind::user, "bob", "hi", 7));
        session_events ev;
        ev.on_send_result = [&](const proto::send_result_msg& m) { results.push_back(m); };
        ev.on_room_result = [&](const proto::room_result_msg& m) { rooms.push_back(m); };
        ev.on_receipt = [&, sp = s.get()](const proto::receipt_msg& m) {
            receipts.push_back(m);
            sp->close_after_flush();
        };
        end = co_await s->run(std::move(ev));
        EXPECT_FALSE(s->send(proto::target_kind::user, "bob", "late", 8));
    });
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].client_msg_id, 7u);
    EXPECT_EQ(results[0].status, proto::code::ok);
    ASSERT_EQ(receipts.size(), 1u);
    EXPECT_EQ(receipts[0].server_msg_id, 1007u);
    ASSERT_EQ(rooms.size(), 1u);
    EXPECT_EQ(rooms[0].room, "r1");
    ASSERT_EQ(gw.sends.size(), 1u);
    EXPECT_EQ(gw.sends[0].target, "bob");
    EXPECT_EQ(gw.sends[0].payload, "hi");
    EXPECT_EQ(end.reason, end_reason::local);
}

TEST(ClientSession, HeartbeatsThenReadTimeoutWhenPongsStop) {
    asio::io_context io;
    fake_gateway gw(io);
    gw.heartbeat_ms = 30;
    session_end end;
    int pings_when_silenced = 0;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), fast());
        co_await s->connect("127.0.0.1", gw.port());
        co_await s->login("good");
        auto silencer = [&]() -> asio::awaitable<void> {
            co_await until([&] { return gw.pings >= 3; });
            pings_when_silenced = gw.pings;
            gw.answer_pings = false;
        };
        imgate::spawn(io, silencer(), "silencer");
        end = co_await s->run({});
    });
    EXPECT_GE(pings_when_silenced, 3);
    EXPECT_EQ(end.reason, end_reason::read_timeout);
}

TEST(ClientSession, RedirectIsReportedWithTarget) {
    asio::io_context io;
    fake_gateway gw(io);
    session_end end;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), fast());
        co_await s->connect("127.0.0.1", gw.port());
        co_await s->login("good");
        gw.send(proto::redirect_msg{250, "127.0.0.1", 9002, "drain"});
        end = co_await s->run({});
    });
    EXPECT_EQ(end.reason, end_reason::redirected);
    ASSERT_TRUE(end.redirect);
    EXPECT_EQ(end.redirect->port, 9002);
    EXPECT_EQ(end.redirect->reconnect_after_ms, 250u);
}

TEST(ClientSession, UnknownOpIsSkippedButClientOnlyOpIsAProtocolError) {
    asio::io_context io;
    fake_gateway gw(io);
    session_end end;
    uint64_t unknown = 0;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), fast());
        co_await s->connect("127.0.0.1", gw.port());
        co_await s->login("good");
        std::string frames;
        imgate::append_frame(frames, imgate::client_protocol_version, 0x66, 0, "x");
        gw.write(frames);
        gw.send(proto::join_msg{"r"});  // a client-to-server op coming from the server
        end = co_await s->run({});
        unknown = s->unknown_ops();
    });
    EXPECT_EQ(unknown, 1u);
    EXPECT_EQ(end.reason, end_reason::protocol_error);
    EXPECT_NE(end.detail.find("join"), std::string::npos) << end.detail;
}

TEST(ClientSession, MalformedBodyIsAProtocolError) {
    asio::io_context io;
    fake_gateway gw(io);
    session_end end;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), fast());
        co_await s->connect("127.0.0.1", gw.port());
        co_await s->login("good");
        std::string bad;
        imgate::append_frame(bad, imgate::client_protocol_version,
                             static_cast<uint8_t>(proto::op::deliver), 0, "short");
        gw.write(bad);
        end = co_await s->run({});
    });
    EXPECT_EQ(end.reason, end_reason::protocol_error);
    EXPECT_NE(end.detail.find("malformed deliver"), std::string::npos) << end.detail;
}

TEST(ClientSession, GatewayCloseIsEof) {
    asio::io_context io;
    fake_gateway gw(io);
    session_end end;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), fast());
        co_await s->connect("127.0.0.1", gw.port());
        co_await s->login("good");
        gw.drop();
        end = co_await s->run({});
    });
    EXPECT_TRUE(end.reason == end_reason::eof || end.reason == end_reason::io_error)
        << to_string(end.reason);
}

TEST(ClientSession, BoundedQueueRefusesPastTheLimit) {
    asio::io_context io;
    fake_gateway gw(io);
    auto opts = fast();
    opts.max_queue_bytes = 1000;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), opts);
        co_await s->connect("127.0.0.1", gw.port());
        co_await s->login("good");
        // Not running yet: nothing drains the queue.
        int accepted = 0;
        for (int i = 0; i < 100; ++i)
            if (s->send(proto::target_kind::user, "bob", std::string(100, 'x'), i)) ++accepted;
        EXPECT_GT(accepted, 0);
        EXPECT_LT(accepted, 10);
        EXPECT_LE(s->queued_bytes(), 1000u);
        s->close();
    });
}

// A dispatcher stand-in: answers GET /get-tcp-ip from a script and records the queries.
// The server's metrics must outlive the io_context: its accept loop (and so the server) is only
// destroyed when the io_context is, after the test's locals.
imgate::metrics_registry& test_metrics() {
    static imgate::metrics_registry m;
    return m;
}

struct fake_dispatcher {
    std::shared_ptr<imgate::http_server> srv;
    std::vector<std::string> queries;
    std::vector<std::string> answers;                          // one per call; the last repeats
    std::vector<std::chrono::steady_clock::time_point> times;  // of each query

    explicit fake_dispatcher(asio::io_context& io) {
        srv = std::make_shared<imgate::http_server>(io, imgate::http_server_options{},
                                                    test_metrics());
        imgate::http_sync_handler h = [this](const imgate::http_request_ctx& ctx) {
            queries.emplace_back(ctx.query);
            times.push_back(std::chrono::steady_clock::now());
            auto& body = answers[std::min(queries.size(), answers.size()) - 1];
            if (body.rfind("503:", 0) == 0) {
                // A spread 503: the body's retry_after_ms, Retry-After in whole seconds.
                auto r = imgate::http_response::json(
                    boost::beast::http::status::service_unavailable, body.substr(4));
                r.headers.emplace_back("Retry-After", "2");
                return r;
            }
            if (body.rfind("400:", 0) == 0)
                return imgate::http_response::error(boost::beast::http::status::bad_request,
                                                    body.substr(4));
            if (body.empty()) {
                auto r = imgate::http_response::error(
                    boost::beast::http::status::service_unavailable, "no_gateway_available");
                r.headers.emplace_back("Retry-After", "1");
                return r;
            }
            return imgate::http_response::json(boost::beast::http::status::ok, body);
        };
        srv->route(boost::beast::http::verb::get, "/get-tcp-ip", h);
        srv->listen({"127.0.0.1", 0});
    }
    http_url url() const { return {"127.0.0.1", srv->local_endpoint().port(), "", false}; }
};

std::string answer(const std::string& id, uint16_t port,
                   std::vector<std::pair<std::string, uint16_t>> alts = {},
                   nlohmann::json reconnect = nullptr) {
    nlohmann::json j = {{"id", id}, {"host", "127.0.0.1"}, {"port", port}};
    j["alternates"] = nlohmann::json::array();
    for (auto& [i, p] : alts)
        j["alternates"].push_back({{"id", i}, {"host", "127.0.0.1"}, {"port", p}});
    if (!reconnect.is_null()) j["reconnect"] = reconnect;
    return j.dump();
}

nlohmann::json policy(int base, int jitter, int max) {
    return {{"base_ms", base}, {"jitter_ms", jitter}, {"max_ms", max}};
}

long ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count());
}

uint16_t dead_port(asio::io_context& io) {
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
}

TEST(Connector, FailsOverToAnAlternateWithoutAskingAgain) {
    asio::io_context io;
    fake_gateway gw(io, "gwok");
    fake_dispatcher disp(io);
    disp.answers = {answer("gwdead", dead_port(io), {{"gwok", gw.port()}})};
    connect_result r;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {disp.url()};
        connector c(io.get_executor(), t, fast(), 1);
        r = co_await c.connect("alice", "good", std::chrono::steady_clock::now() + 3s);
        if (r.session) r.session->close();
        disp.srv->stop();
    });
    ASSERT_TRUE(r.session) << r.error;
    EXPECT_EQ(r.gateway.id, "gwok");
    EXPECT_EQ(r.attempts, 2u);
    ASSERT_EQ(disp.queries.size(), 1u);
    EXPECT_EQ(disp.queries[0], "uid=alice");
}

TEST(Connector, AsksAgainExcludingFailedGateways) {
    asio::io_context io;
    fake_gateway gw(io, "gw3");
    fake_dispatcher disp(io);
    disp.answers = {answer("gw1", dead_port(io), {{"gw2", dead_port(io)}}),
                    answer("gw3", gw.port())};
    connect_result r;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {disp.url()};
        connector c(io.get_executor(), t, fast(), 1);
        r = co_await c.connect("alice", "good", std::chrono::steady_clock::now() + 3s);
        if (r.session) r.session->close();
        disp.srv->stop();
    });
    ASSERT_TRUE(r.session) << r.error;
    EXPECT_EQ(r.gateway.id, "gw3");
    ASSERT_EQ(disp.queries.size(), 2u);
    EXPECT_EQ(disp.queries[1], "uid=alice&exclude=gw1%2Cgw2");
    // No policy in the answer: the defaults (500 ms + uniform [0, 1000 ms]) pace the re-ask.
    auto gap = ms_between(disp.times[0], disp.times[1]);
    EXPECT_GE(gap, 500);
    EXPECT_LE(gap, 1500 + 300);
}

TEST(Connector, TheAnswersPolicyPacesFailedRounds) {
    asio::io_context io;
    fake_dispatcher disp(io);
    // Nothing listens anywhere: every round fails; base 100, no jitter, cap 250.
    disp.answers = {answer("gw1", dead_port(io), {}, policy(100, 0, 250))};
    connect_result r;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {disp.url()};
        connector c(io.get_executor(), t, fast(), 1);
        r = co_await c.connect("alice", "good", std::chrono::steady_clock::now() + 1200ms);
        EXPECT_EQ(c.schedule().policy().base, 100ms);
        disp.srv->stop();
    });
    EXPECT_FALSE(r.session);
    // Waits 100, 200, 250, 250 ...: at least four asks in 1.2 s, each gap >= its step.
    ASSERT_GE(disp.queries.size(), 4u);
    EXPECT_GE(ms_between(disp.times[0], disp.times[1]), 100);
    EXPECT_GE(ms_between(disp.times[1], disp.times[2]), 200);
    EXPECT_GE(ms_between(disp.times[2], disp.times[3]), 250);
    EXPECT_LT(ms_between(disp.times[0], disp.times[1]), 100 + 150);
    EXPECT_LT(ms_between(disp.times[2], disp.times[3]), 250 + 150);
}

TEST(Connector, ExcludeOnceAsksWithoutTheLostGatewayOnTheFirstRoundOnly) {
    asio::io_context io;
    fake_gateway gw(io, "gw2");
    fake_dispatcher disp(io);
    disp.answers = {answer("gw2", gw.port())};
    connect_result r1, r2;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {disp.url()};
        connector c(io.get_executor(), t, fast(), 1);
        c.exclude_once("gw1");
        r1 =
            co_await c.connect("élodie@example.org", "good", std::chrono::steady_clock::now() + 2s);
        if (r1.session) r1.session->close();
        r2 =
            co_await c.connect("élodie@example.org", "good", std::chrono::steady_clock::now() + 2s);
        if (r2.session) r2.session->close();
        disp.srv->stop();
    });
    ASSERT_TRUE(r1.session) << r1.error;
    ASSERT_TRUE(r2.session) << r2.error;
    ASSERT_EQ(disp.queries.size(), 2u);
    EXPECT_EQ(disp.queries[0], "uid=%C3%A9lodie%40example.org&exclude=gw1");
    EXPECT_EQ(disp.queries[1], "uid=%C3%A9lodie%40example.org");
}

TEST(Connector, SpreadRetryAfterMsOfA503IsWaitedExactly) {
    asio::io_context io;
    fake_gateway gw(io, "gw1");
    fake_dispatcher disp(io);
    disp.answers = {R"(503:{"error":"no_gateway_available","retry_after_ms":250})",
                    answer("gw1", gw.port())};
    connect_result r;
    std::vector<std::string> causes;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {disp.url()};
        connector c(io.get_executor(), t, fast(), 1);
        c.on_attempt_failed = [&](const std::string& g, const char* cause) {
            causes.push_back(g + "/" + cause);
        };
        r = co_await c.connect("alice", "good", std::chrono::steady_clock::now() + 4s);
        if (r.session) r.session->close();
        disp.srv->stop();
    });
    ASSERT_TRUE(r.session) << r.error;
    ASSERT_EQ(disp.queries.size(), 2u);
    // Not Retry-After's 2 s, and not the hint plus the default policy's 500 ms + jitter.
    auto gap = ms_between(disp.times[0], disp.times[1]);
    EXPECT_GE(gap, 250);
    EXPECT_LT(gap, 250 + 200);
    EXPECT_EQ(causes, std::vector<std::string>{"/http_503"});
}

TEST(Connector, RateRefusalFailsOverAndItsRedirectHintPacesTheNextRound) {
    asio::io_context io;
    fake_gateway limited(io, "gw1"), busy(io, "gw2"), ok(io, "gw3");
    limited.refuse_login = proto::code::rate_limited;
    limited.refuse_redirect = proto::redirect_msg{300, "", 0, "rate_limited"};
    busy.refuse_login = proto::code::server_busy;  // a gateway from before the hints
    fake_dispatcher disp(io);
    // The policy alone would wait 5 s: a shorter gap proves the hint was used.
    disp.answers = {answer("gw1", limited.port(), {{"gw2", busy.port()}}, policy(5000, 0, 5000)),
                    answer("gw3", ok.port())};
    connect_result r;
    std::vector<std::string> causes;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {disp.url()};
        connector c(io.get_executor(), t, fast(), 1);
        c.on_attempt_failed = [&](const std::string& g, const char* cause) {
            causes.push_back(g + "/" + cause);
        };
        r = co_await c.connect("alice", "good", std::chrono::steady_clock::now() + 4s);
        if (r.session) r.session->close();
        disp.srv->stop();
    });
    ASSERT_TRUE(r.session) << r.error;
    EXPECT_EQ(r.gateway.id, "gw3");
    EXPECT_EQ(r.attempts, 3u);
    EXPECT_EQ(limited.logins, 1);
    EXPECT_EQ(busy.logins, 1);
    EXPECT_EQ(causes, (std::vector<std::string>{"gw1/rate_limited", "gw2/server_busy"}));
    ASSERT_EQ(disp.queries.size(), 2u);
    EXPECT_EQ(disp.queries[1], "uid=alice&exclude=gw1%2Cgw2");
    auto gap = ms_between(disp.times[0], disp.times[1]);
    EXPECT_GE(gap, 300);
    EXPECT_LT(gap, 300 + 700);
}

TEST(ClientSession, RateRefusalReadsTheRedirectHintAfterTheError) {
    asio::io_context io;
    fake_gateway gw(io);
    gw.refuse_login = proto::code::rate_limited;
    gw.refuse_redirect = proto::redirect_msg{1234, "", 0, "rate_limited"};
    login_outcome lo;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), fast());
        co_await s->connect("127.0.0.1", gw.port());
        lo = co_await s->login("good");
    });
    EXPECT_FALSE(lo.ok);
    ASSERT_TRUE(lo.error);
    EXPECT_EQ(lo.error->status, proto::code::rate_limited);
    ASSERT_TRUE(lo.retry_redirect);
    EXPECT_EQ(lo.retry_redirect->reconnect_after_ms, 1234u);
    EXPECT_EQ(lo.retry_redirect->reason, "rate_limited");
}

TEST(ClientSession, BusyRefusalWithoutRedirectEndsAtTheClose) {
    asio::io_context io;
    fake_gateway gw(io);
    gw.refuse_login = proto::code::server_busy;
    login_outcome lo;
    long took = 0;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto o = fast();
        o.login_timeout = 5000ms;
        auto s = std::make_shared<client_session>(io.get_executor(), o);
        co_await s->connect("127.0.0.1", gw.port());
        auto t0 = std::chrono::steady_clock::now();
        lo = co_await s->login("good");
        took = ms_between(t0, std::chrono::steady_clock::now());
    });
    ASSERT_TRUE(lo.error);
    EXPECT_EQ(lo.error->status, proto::code::server_busy);
    EXPECT_FALSE(lo.retry_redirect);
    // The close ends the wait for a hint: no 2 s stall with an old gateway.
    EXPECT_LT(took, 1000);
}

TEST(ClientSession, AnotherErrorReadsNoHint) {
    asio::io_context io;
    fake_gateway gw(io);
    gw.refuse_login = proto::code::internal;
    gw.refuse_redirect = proto::redirect_msg{1234, "", 0, "busy"};
    login_outcome lo;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), fast());
        co_await s->connect("127.0.0.1", gw.port());
        lo = co_await s->login("good");
    });
    ASSERT_TRUE(lo.error);
    EXPECT_EQ(lo.error->status, proto::code::internal);
    EXPECT_FALSE(lo.retry_redirect);
}

TEST(ServerHint, KickAndRedirectHintsButNotIdleOrZero) {
    session_end e;
    EXPECT_FALSE(server_hint(e));
    e.kick = proto::kick_msg{proto::kick_reason::shutdown, 1700, ""};
    EXPECT_EQ(server_hint(e), std::chrono::milliseconds(1700));
    e.kick = proto::kick_msg{proto::kick_reason::idle, 1700, ""};
    EXPECT_FALSE(server_hint(e));
    e.kick.reset();
    e.redirect = proto::redirect_msg{900, "", 0, "drain"};
    EXPECT_EQ(server_hint(e), std::chrono::milliseconds(900));
    e.redirect = proto::redirect_msg{0, "", 0, "drain"};
    EXPECT_FALSE(server_hint(e));
}

TEST(LossReason, NamesEachWayASessionEnds) {
    session_end e;
    e.reason = end_reason::eof;
    EXPECT_EQ(loss_reason(e), "eof");
    e.reason = end_reason::io_error;
    EXPECT_EQ(loss_reason(e), "reset");
    e.reason = end_reason::read_timeout;
    EXPECT_EQ(loss_reason(e), "timeout");
    e.reason = end_reason::eof;
    e.last_error = proto::error_msg{proto::code::slow_consumer, ""};
    EXPECT_EQ(loss_reason(e), "error:slow_consumer");
    e.reason = end_reason::kicked;
    e.kick = proto::kick_msg{proto::kick_reason::shutdown, 0, ""};
    EXPECT_EQ(loss_reason(e), "kick:shutdown");
    e.kick.reset();
    e.reason = end_reason::redirected;
    e.redirect = proto::redirect_msg{0, "", 0, "rebalance"};
    EXPECT_EQ(loss_reason(e), "redirect:rebalance");
}

TEST(Connector, AuthFailureIsFatalAndNotRetried) {
    asio::io_context io;
    fake_gateway gw1(io, "gw1"), gw2(io, "gw2");
    fake_dispatcher disp(io);
    disp.answers = {answer("gw1", gw1.port(), {{"gw2", gw2.port()}})};
    connect_result r;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {disp.url()};
        connector c(io.get_executor(), t, fast(), 1);
        r = co_await c.connect("alice", "bad", std::chrono::steady_clock::now() + 3s);
        disp.srv->stop();
    });
    EXPECT_FALSE(r.session);
    EXPECT_TRUE(r.fatal);
    ASSERT_TRUE(r.login_error);
    EXPECT_EQ(r.login_error->status, proto::code::auth_failed);
    EXPECT_EQ(gw1.logins, 1);
    EXPECT_EQ(gw2.logins, 0);
}

TEST(Connector, NoGatewayAvailableBacksOffUntilTheDeadline) {
    asio::io_context io;
    fake_dispatcher disp(io);
    disp.answers = {""};
    connect_result r;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {disp.url()};
        connector c(io.get_executor(), t, fast(), 1);
        r = co_await c.connect("alice", "good", std::chrono::steady_clock::now() + 1500ms);
        disp.srv->stop();
    });
    EXPECT_FALSE(r.session);
    EXPECT_NE(r.error.find("no_gateway_available"), std::string::npos) << r.error;
    // Retry-After: 1 s bounds how often it asks within 1.5 s.
    EXPECT_GE(disp.queries.size(), 1u);
    EXPECT_LE(disp.queries.size(), 2u);
}

TEST(Connector, GuardRefusesAddresses) {
    asio::io_context io;
    fake_gateway gw(io, "gw1");
    fake_dispatcher disp(io);
    disp.answers = {answer("gw1", gw.port())};
    connect_result r;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {disp.url()};
        connector c(io.get_executor(), t, fast(), 1);
        c.guard = [](const gateway_addr& g) { return "refused " + g.id; };
        r = co_await c.connect("alice", "good", std::chrono::steady_clock::now() + 2s);
        disp.srv->stop();
    });
    EXPECT_FALSE(r.session);
    EXPECT_EQ(r.error, "refused gw1");
    EXPECT_EQ(gw.logins, 0);
}

// Several dispatchers (--dispatcher repeated): the connector's rounds fail over between them
// per dispatcher_list's rule; the URL that answered stays the first one asked.
TEST(ConnectorDispatchers, ARefusedDispatcherFailsOverAtOnceAndTheAnswerSticks) {
    asio::io_context io;
    fake_gateway gw(io, "gw1");
    fake_dispatcher live(io);
    live.answers = {answer("gw1", gw.port())};
    http_url dead{"127.0.0.1", dead_port(io), "", false};
    std::vector<std::string> logged, failovers;
    connect_result r1, r2;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {dead, live.url()};
        connector c(io.get_executor(), t, fast(), 7,
                    [&](const std::string& m) { logged.push_back(m); });
        c.on_dispatcher_failover = [&](const http_url& from, const std::string& cause,
                                       const http_url& to) {
            failovers.push_back(from.origin() + " " + cause + " " + to.origin());
        };
        c.dispatchers().set_current(0);
        auto t0 = std::chrono::steady_clock::now();
        r1 = co_await c.connect("zoë@example.org", "good", t0 + 3s);
        if (r1.session) r1.session->close();
        // The next round starts at the dispatcher that answered: no second fail-over.
        r2 = co_await c.connect("zoë@example.org", "good", std::chrono::steady_clock::now() + 3s);
        if (r2.session) r2.session->close();
        live.srv->stop();
    });
    ASSERT_TRUE(r1.session) << r1.error;
    ASSERT_TRUE(r2.session) << r2.error;
    EXPECT_EQ(r1.dispatcher, live.url().origin());
    EXPECT_EQ(live.queries.size(), 2u);
    ASSERT_EQ(failovers.size(), 1u);
    EXPECT_EQ(failovers[0], dead.origin() + " connection refused " + live.url().origin());
    ASSERT_FALSE(logged.empty());
    EXPECT_EQ(logged[0], "dispatcher " + dead.origin() + " failed (connection refused); trying " +
                             live.url().origin());
}

TEST(ConnectorDispatchers, A503FailsOverButA4xxDoesNot) {
    asio::io_context io;
    fake_gateway gw(io, "gw2");
    fake_dispatcher empty(io), full(io);
    empty.answers = {R"(503:{"error":"no_gateway_available","retry_after_ms":400})", "400:bad_uid"};
    full.answers = {answer("gw2", gw.port())};
    connect_result r1, r2;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {empty.url(), full.url()};
        connector c(io.get_executor(), t, fast(), 1);
        c.max_rounds = 1;
        c.dispatchers().set_current(0);
        r1 = co_await c.connect("amélie", "good", std::chrono::steady_clock::now() + 3s);
        if (r1.session) r1.session->close();
        // Now the 4xx: the dispatcher that said it is asked first, and nobody after it.
        c.dispatchers().set_current(0);
        r2 = co_await c.connect("amélie", "good", std::chrono::steady_clock::now() + 3s);
        empty.srv->stop();
        full.srv->stop();
    });
    ASSERT_TRUE(r1.session) << r1.error;
    EXPECT_EQ(r1.gateway.id, "gw2");
    EXPECT_FALSE(r2.session);
    EXPECT_EQ(empty.queries.size(), 2u);
    EXPECT_EQ(full.queries.size(), 1u);  // only the first round's fail-over
    EXPECT_NE(r2.error.find("400"), std::string::npos) << r2.error;
    EXPECT_EQ(r2.error.find("all 2 dispatchers"), std::string::npos) << r2.error;
}

TEST(ConnectorDispatchers, AllFailedIsOneResultNamingEachAndWaitsTheLargest503Hint) {
    asio::io_context io;
    fake_dispatcher a(io), b(io);
    a.answers = {R"(503:{"error":"no_gateway_available","retry_after_ms":150})"};
    b.answers = {R"(503:{"error":"no_gateway_available","retry_after_ms":350})"};
    http_url dead{"127.0.0.1", dead_port(io), "", false};
    connect_result r;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {a.url(), dead, b.url()};
        connector c(io.get_executor(), t, fast(), 1);
        c.max_rounds = 1;
        c.dispatchers().set_current(1);
        r = co_await c.connect("bob", "good", std::chrono::steady_clock::now() + 3s);
        a.srv->stop();
        b.srv->stop();
    });
    EXPECT_FALSE(r.session);
    EXPECT_STREQ(r.cause, "http_503");
    ASSERT_TRUE(r.hint);
    EXPECT_EQ(*r.hint, 350ms);
    EXPECT_NE(
        r.error.find("all 3 dispatchers failed: " + dead.origin() + " (connection refused); " +
                     b.url().origin() + " (503 no_gateway_available); " + a.url().origin() +
                     " (503 no_gateway_available)"),
        std::string::npos)
        << r.error;
    EXPECT_EQ(a.queries.size(), 1u);
    EXPECT_EQ(b.queries.size(), 1u);
}
