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
    std::vector<std::string> answers;  // one per call; the last repeats

    explicit fake_dispatcher(asio::io_context& io) {
        srv = std::make_shared<imgate::http_server>(io, imgate::http_server_options{},
                                                    test_metrics());
        imgate::http_sync_handler h = [this](const imgate::http_request_ctx& ctx) {
            queries.emplace_back(ctx.query);
            auto& body = answers[std::min(queries.size(), answers.size()) - 1];
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
                   std::vector<std::pair<std::string, uint16_t>> alts = {}) {
    nlohmann::json j = {{"id", id}, {"host", "127.0.0.1"}, {"port", port}};
    j["alternates"] = nlohmann::json::array();
    for (auto& [i, p] : alts)
        j["alternates"].push_back({{"id", i}, {"host", "127.0.0.1"}, {"port", p}});
    return j.dump();
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
        t.dispatcher = disp.url();
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
        t.dispatcher = disp.url();
        connector c(io.get_executor(), t, fast(), 1);
        r = co_await c.connect("alice", "good", std::chrono::steady_clock::now() + 3s);
        if (r.session) r.session->close();
        disp.srv->stop();
    });
    ASSERT_TRUE(r.session) << r.error;
    EXPECT_EQ(r.gateway.id, "gw3");
    ASSERT_EQ(disp.queries.size(), 2u);
    EXPECT_EQ(disp.queries[1], "uid=alice&exclude=gw1%2Cgw2");
}

TEST(Connector, AuthFailureIsFatalAndNotRetried) {
    asio::io_context io;
    fake_gateway gw1(io, "gw1"), gw2(io, "gw2");
    fake_dispatcher disp(io);
    disp.answers = {answer("gw1", gw1.port(), {{"gw2", gw2.port()}})};
    connect_result r;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatcher = disp.url();
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
        t.dispatcher = disp.url();
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
        t.dispatcher = disp.url();
        connector c(io.get_executor(), t, fast(), 1);
        c.guard = [](const gateway_addr& g) { return "refused " + g.id; };
        r = co_await c.connect("alice", "good", std::chrono::steady_clock::now() + 2s);
        disp.srv->stop();
    });
    EXPECT_FALSE(r.session);
    EXPECT_EQ(r.error, "refused gw1");
    EXPECT_EQ(gw.logins, 0);
}
