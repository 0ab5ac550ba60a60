// The client's transports without a gateway: flag parsing and exclusivity, the URLs and the
// dispatcher answer of the TLS/WebSocket transports, the one-frame-per-message rule of ws/wss,
// and certificate refusals against in-process TLS and WebSocket stand-ins.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <nlohmann/json.hpp>

#include "../support/test_certs.hpp"
#include "client/cli_options.hpp"
#include "client/connector.hpp"
#include "client/session.hpp"
#include "common/awaitable.hpp"
#include "common/daemon.hpp"
#include "common/frame.hpp"
#include "common/http_server.hpp"
#include "common/metrics.hpp"
#include "common/tls.hpp"

using namespace imgate::client;
using imgate::transport;
using imgate::use_tuple;
namespace proto = imgate::proto;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

// Parses argv with the shared transport options; the exception CLI11 throws, if any.
std::optional<transport> parse_flags(std::vector<std::string> args, bool with_name,
                                     std::string* err) {
    CLI::App app;
    transport_args t;
    add_transport_options(&app, t, with_name);
    std::reverse(args.begin(), args.end());  // CLI11 takes them last-first
    try {
        app.parse(args);
    } catch (const CLI::ParseError& e) {
        *err = e.what();
        return std::nullopt;
    }
    return chosen_transport(t, err);
}

}  // namespace

TEST(TransportFlags, DefaultTcpAndEachFlag) {
    std::string err;
    EXPECT_EQ(parse_flags({}, false, &err), transport::tcp);
    EXPECT_EQ(parse_flags({"--tls"}, false, &err), transport::tls);
    EXPECT_EQ(parse_flags({"--ws"}, false, &err), transport::ws);
    EXPECT_EQ(parse_flags({"--wss"}, false, &err), transport::wss);
    EXPECT_EQ(parse_flags({"--transport", "wss"}, true, &err), transport::wss);
    // Repeating the same choice both ways is fine.
    EXPECT_EQ(parse_flags({"--tls", "--transport", "tls"}, true, &err), transport::tls);
}

TEST(TransportFlags, AreMutuallyExclusive) {
    for (auto pair : std::vector<std::vector<std::string>>{
             {"--tls", "--ws"}, {"--tls", "--wss"}, {"--ws", "--wss"}}) {
        std::string err;
        EXPECT_FALSE(parse_flags(pair, false, &err)) << pair[0] << " " << pair[1];
        EXPECT_NE(err.find("excludes"), std::string::npos) << err;
    }
    std::string err;
    EXPECT_FALSE(parse_flags({"--ws", "--transport", "tls"}, true, &err));
    EXPECT_NE(err.find("contradicts"), std::string::npos) << err;
    EXPECT_FALSE(parse_flags({"--transport", "quic"}, true, &err));
    // chosen_transport alone (the commands' own check) refuses two flags too.
    transport_args a;
    a.tls = a.wss = true;
    EXPECT_FALSE(chosen_transport(a, &err));
    EXPECT_NE(err.find("mutually exclusive"), std::string::npos);
}

TEST(TransportFlags, CaMustExistAndInsecureIsAFlag) {
    std::string err;
    EXPECT_FALSE(parse_flags({"--tls", "--ca", "/nonexistent/ca.crt"}, false, &err));
    CLI::App app;
    transport_args t;
    add_transport_options(&app, t);
    app.parse(std::vector<std::string>{"--insecure", "--wss"});
    EXPECT_TRUE(t.insecure);
    EXPECT_TRUE(t.wss);
}

TEST(HttpUrl, Https) {
    auto u = parse_http_url("https://disp.example/api/");
    ASSERT_TRUE(u);
    EXPECT_TRUE(u->tls);
    EXPECT_EQ(u->port, 443);
    EXPECT_EQ(u->prefix, "/api");
    EXPECT_EQ(u->origin(), "https://disp.example:443");
    u = parse_http_url("https://127.0.0.1:8443");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->port, 8443);
    u = parse_http_url("http://127.0.0.1:8080");
    ASSERT_TRUE(u);
    EXPECT_FALSE(u->tls);
    EXPECT_EQ(u->origin(), "http://127.0.0.1:8080");
    std::string err;
    EXPECT_FALSE(parse_http_url("ftp://x", &err));
    EXPECT_FALSE(parse_http_url("https://", &err));
}

TEST(WsUrl, ParsesSchemesPortsAndPaths) {
    auto u = parse_ws_url("ws://127.0.0.1:9101/");
    ASSERT_TRUE(u);
    EXPECT_FALSE(u->secure);
    EXPECT_EQ(u->host, "127.0.0.1");
    EXPECT_EQ(u->port, 9101);
    EXPECT_EQ(u->path, "/");
    u = parse_ws_url("wss://gw.example");
    ASSERT_TRUE(u);
    EXPECT_TRUE(u->secure);
    EXPECT_EQ(u->port, 443);
    EXPECT_EQ(u->path, "/");
    u = parse_ws_url("wss://[::1]:9443/im/ws");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "::1");
    EXPECT_EQ(u->path, "/im/ws");
    std::string err;
    EXPECT_FALSE(parse_ws_url("http://x/", &err));
    EXPECT_FALSE(parse_ws_url("ws://x:0/", &err));
    EXPECT_FALSE(parse_ws_url("ws://x/a b", &err));
    EXPECT_NE(err.find("WebSocket URL"), std::string::npos);
}

TEST(GatewayAnswer, TransportAndUrl) {
    std::string err;
    auto a = parse_gateway_answer(
        R"({"id":"gw1","host":"127.0.0.1","port":9101,"transport":"wss","url":"wss://127.0.0.1:9443/ws",)"
        R"("alternates":[{"id":"gw2","host":"127.0.0.1","port":9102,"url":"wss://127.0.0.1:9444/"},)"
        R"({"id":"gw3","host":"127.0.0.1","port":9445}]})",
        &err);
    ASSERT_TRUE(a) << err;
    EXPECT_EQ(a->transport_name, "wss");
    // The url wins over host/port and gives the path.
    EXPECT_EQ(a->primary.port, 9443);
    EXPECT_EQ(a->primary.path, "/ws");
    ASSERT_EQ(a->alternates.size(), 2u);
    EXPECT_EQ(a->alternates[0].port, 9444);
    EXPECT_EQ(a->alternates[1].port, 9445);
    EXPECT_EQ(a->alternates[1].path, "");
    EXPECT_EQ(check_answer_transport(*a, transport::wss), "");
    EXPECT_NE(check_answer_transport(*a, transport::tls).find("answered transport wss"),
              std::string::npos);
    EXPECT_FALSE(parse_gateway_answer(R"({"host":"h","port":1,"url":"http://h/"})", &err));
    EXPECT_NE(err.find("answer.url"), std::string::npos);
    EXPECT_FALSE(parse_gateway_answer(R"({"host":"h","port":1,"transport":7})", &err));
}

TEST(GatewayAnswer, OldDispatcherAnswerIsTcpOnly) {
    std::string err;
    auto a = parse_gateway_answer(R"({"id":"gw1","host":"127.0.0.1","port":9001})", &err);
    ASSERT_TRUE(a);
    EXPECT_EQ(check_answer_transport(*a, transport::tcp), "");
    EXPECT_NE(check_answer_transport(*a, transport::tls).find("names no transport"),
              std::string::npos);
}

TEST(GatewayQuery, TransportOnlyWhenNotTcp) {
    EXPECT_EQ(get_gateway_query("alice@example.com", "", {}, transport::tcp),
              "uid=alice%40example.com");
    EXPECT_EQ(get_gateway_query("bob", "", {"gw1"}, transport::wss),
              "uid=bob&exclude=gw1&transport=wss");
}

TEST(WsMessage, ExactlyOneWellFormedFrame) {
    std::string one = proto::encode(proto::ack_msg{42}, 7);
    std::string ping = proto::encode(proto::ping_msg{}, 1);  // empty body: 12 bytes
    EXPECT_EQ(check_ws_message(one, 65536), "");
    EXPECT_EQ(check_ws_message(ping, 65536), "");
    EXPECT_EQ(frame_size_at(one), one.size());
    // Two frames in one message, half a frame, a header alone that declares a body.
    EXPECT_NE(check_ws_message(one + ping, 65536).find("not exactly one frame"), std::string::npos);
    EXPECT_NE(check_ws_message(one.substr(0, one.size() - 1), 65536).find("not exactly one"),
              std::string::npos);
    EXPECT_NE(check_ws_message(one.substr(0, 12), 65536), "");
    EXPECT_NE(check_ws_message("", 65536).find("shorter than a frame header"), std::string::npos);
    EXPECT_NE(check_ws_message(one.substr(0, 5), 65536).find("shorter"), std::string::npos);
    std::string v2 = one;
    v2[4] = 2;
    EXPECT_NE(check_ws_message(v2, 65536).find("version 2"), std::string::npos);
    std::string big = proto::encode(
        proto::send_msg{proto::target_kind::user, "bob", 1, std::string(2000, 'x')}, 1);
    EXPECT_NE(check_ws_message(big, 1000).find("over the 1000-byte limit"), std::string::npos);
}

namespace {

template <class F>
void run_coro(asio::io_context& io, F&& body, std::chrono::milliseconds limit = 10000ms) {
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

std::shared_ptr<asio::ssl::context> server_context(const imgate::test::cert_set& c) {
    imgate::tls_settings s;
    s.cert_file = c.server_crt;
    s.key_file = c.server_key;
    return imgate::make_server_tls_context(s, nullptr);
}

// A one-connection WebSocket gateway stand-in (wss with a TLS context): answers the LOGIN
// message, then writes each scripted message as is (text when `text`), then records what the
// client sends until it goes away.
struct fake_ws_gateway {
    asio::io_context& io;
    tcp::acceptor acc;
    std::shared_ptr<asio::ssl::context> tls;
    std::vector<std::string> script;
    bool text = false;
    std::vector<std::string> received;
    bool accepted = false;

    fake_ws_gateway(asio::io_context& i, std::shared_ptr<asio::ssl::context> t = nullptr,
                    const char* addr = "127.0.0.1")
        : io(i), acc(i, tcp::endpoint(asio::ip::make_address(addr), 0)), tls(std::move(t)) {}
    uint16_t port() const { return acc.local_endpoint().port(); }

    template <class Ws>
    asio::awaitable<void> converse(Ws& ws) {
        auto [aec] = co_await ws.async_accept(use_tuple);
        if (aec) co_return;
        accepted = true;
        ws.binary(true);
        beast::flat_buffer b;
        auto [rec, n] = co_await ws.async_read(b, use_tuple);
        if (rec) co_return;
        received.push_back(beast::buffers_to_string(b.data()));
        std::string login = proto::encode(
            proto::login_result_msg{"alice@example.com", "d", "fakews", 0, 0, 65536}, 1);
        auto [wec, wn] = co_await ws.async_write(asio::buffer(login), use_tuple);
        if (wec) co_return;
        ws.text(text);
        for (auto& m : script) {
            auto [e, k] = co_await ws.async_write(asio::buffer(m), use_tuple);
            if (e) co_return;
        }
        while (true) {
            b.clear();
            auto [e, k] = co_await ws.async_read(b, use_tuple);
            if (e) break;
            received.push_back(beast::buffers_to_string(b.data()));
        }
    }

    // The tls transport: the same frames as tcp, as a byte stream inside TLS (no WebSocket).
    asio::awaitable<void> converse_raw(asio::ssl::stream<tcp::socket>& s) {
        accepted = true;
        imgate::frame_decoder dec;
        char buf[4096];
        std::string login = proto::encode(
            proto::login_result_msg{"alice@example.com", "d", "faketls", 0, 0, 65536}, 1);
        bool answered = false;
        while (true) {
            auto [e, n] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
            if (e) break;
            dec.feed(std::string_view(buf, n));
            while (auto f = dec.next()) {
                received.push_back(std::string(1, static_cast<char>(f->op)));
                if (answered) continue;
                answered = true;
                std::string out = login;
                for (auto& m : script) out += m;  // one write: frames need not align to records
                auto [we, wn] = co_await asio::async_write(s, asio::buffer(out), use_tuple);
                if (we) co_return;
            }
        }
    }

    bool raw_tls = false;

    asio::awaitable<void> serve() {
        auto [ec, sock] = co_await acc.async_accept(use_tuple);
        if (ec) co_return;
        if (tls && raw_tls) {
            asio::ssl::stream<tcp::socket> s(std::move(sock), *tls);
            auto [hec] = co_await s.async_handshake(asio::ssl::stream_base::server, use_tuple);
            if (hec) co_return;
            co_await converse_raw(s);
        } else if (tls) {
            websocket::stream<asio::ssl::stream<tcp::socket>> ws(std::move(sock), *tls);
            auto [hec] =
                co_await ws.next_layer().async_handshake(asio::ssl::stream_base::server, use_tuple);
            if (hec) co_return;
            co_await converse(ws);
        } else {
            websocket::stream<tcp::socket> ws(std::move(sock));
            co_await converse(ws);
        }
    }
};

proto::deliver_msg deliver(uint64_t id, std::string payload) {
    proto::deliver_msg d;
    d.server_msg_id = id;
    d.kind = proto::target_kind::user;
    d.from_user = "bob@example.com";
    d.from_device = "phone";
    d.payload = std::move(payload);
    return d;
}

session_options opts(transport via, std::shared_ptr<const tls_client> tls = nullptr) {
    session_options o;
    o.connect_timeout = 2000ms;
    o.handshake_timeout = 2000ms;
    o.login_timeout = 2000ms;
    o.via = via;
    o.tls = std::move(tls);
    return o;
}

// Connects, logs in and runs a session against the stand-in; returns how it ended.
struct ws_outcome {
    boost::system::error_code connect_ec;
    std::string connect_detail;
    bool cert_refused = false;
    login_outcome login;
    session_end end;
    std::vector<std::string> delivered;
};

ws_outcome converse(asio::io_context& io, fake_ws_gateway& gw, session_options o,
                    std::string host = "127.0.0.1") {
    ws_outcome out;
    imgate::spawn(io, gw.serve(), "fake ws gateway");
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = std::make_shared<client_session>(io.get_executor(), o);
        out.connect_ec = co_await s->connect(host, gw.port(), &out.connect_detail, "/");
        out.cert_refused = s->certificate_refused();
        if (out.connect_ec) co_return;
        out.login = co_await s->login("token");
        if (!out.login.ok) co_return;
        if (gw.script.empty()) {
            s->close();
            co_return;
        }
        session_events ev;
        ev.on_deliver = [&out, s](const proto::deliver_msg& m) {
            out.delivered.push_back(m.payload);
            if (out.delivered.size() == 2) s->close_after_flush();
        };
        out.end = co_await s->run(std::move(ev));
    });
    return out;
}

}  // namespace

TEST(WsTransport, OneFramePerMessageBothWays) {
    asio::io_context io;
    fake_ws_gateway gw(io);
    gw.script = {proto::encode(deliver(1, "héllo ünïcode ✓")), proto::encode(deliver(2, "two"))};
    auto r = converse(io, gw, opts(transport::ws));
    ASSERT_FALSE(r.connect_ec) << r.connect_detail;
    ASSERT_TRUE(r.login.ok) << r.login.detail;
    EXPECT_EQ(r.delivered, (std::vector<std::string>{"héllo ünïcode ✓", "two"}));
    EXPECT_EQ(r.end.reason, end_reason::local) << r.end.describe();
    // The LOGIN and both ACKs, each its own message holding exactly one frame.
    ASSERT_GE(gw.received.size(), 3u);
    for (auto& m : gw.received) EXPECT_EQ(check_ws_message(m, 65536), "");
    EXPECT_EQ(gw.received[0][5], static_cast<char>(proto::op::login));
    EXPECT_EQ(gw.received[1][5], static_cast<char>(proto::op::ack));
}

TEST(WsTransport, TwoFramesInOneMessageIsAProtocolError) {
    asio::io_context io;
    fake_ws_gateway gw(io);
    gw.script = {proto::encode(deliver(1, "a")) + proto::encode(deliver(2, "b"))};
    auto r = converse(io, gw, opts(transport::ws));
    ASSERT_TRUE(r.login.ok) << r.login.detail;
    EXPECT_TRUE(r.delivered.empty());
    EXPECT_EQ(r.end.reason, end_reason::protocol_error);
    EXPECT_NE(r.end.describe().find("not exactly one frame"), std::string::npos)
        << r.end.describe();
}

TEST(WsTransport, TextMessageIsAProtocolError) {
    asio::io_context io;
    fake_ws_gateway gw(io);
    gw.text = true;
    gw.script = {proto::encode(deliver(1, "a"))};
    auto r = converse(io, gw, opts(transport::ws));
    ASSERT_TRUE(r.login.ok) << r.login.detail;
    EXPECT_EQ(r.end.reason, end_reason::protocol_error);
    EXPECT_NE(r.end.describe().find("text WebSocket message"), std::string::npos)
        << r.end.describe();
}

TEST(WssTransport, TrustedCertificateCarriesFrames) {
    auto& main = imgate::test::test_certs("main");
    asio::io_context io;
    fake_ws_gateway gw(io, server_context(main));
    gw.script = {proto::encode(deliver(1, "über TLS")), proto::encode(deliver(2, "zwei"))};
    auto r = converse(io, gw, opts(transport::wss, make_tls_client(main.ca_crt, false)));
    ASSERT_FALSE(r.connect_ec) << r.connect_detail;
    ASSERT_TRUE(r.login.ok) << r.login.detail;
    EXPECT_EQ(r.delivered, (std::vector<std::string>{"über TLS", "zwei"}));
}

TEST(TlsTransport, TrustedCertificateCarriesTheByteStream) {
    auto& main = imgate::test::test_certs("main");
    asio::io_context io;
    fake_ws_gateway gw(io, server_context(main));
    gw.raw_tls = true;
    gw.script = {proto::encode(deliver(1, "naïve café")), proto::encode(deliver(2, "2"))};
    auto r = converse(io, gw, opts(transport::tls, make_tls_client(main.ca_crt, false)));
    ASSERT_FALSE(r.connect_ec) << r.connect_detail;
    ASSERT_TRUE(r.login.ok) << r.login.detail;
    EXPECT_EQ(r.login.result.gateway_id, "faketls");
    EXPECT_EQ(r.delivered, (std::vector<std::string>{"naïve café", "2"}));
    EXPECT_EQ(r.end.reason, end_reason::local) << r.end.describe();
    // LOGIN, then both ACKs over the TLS stream.
    EXPECT_EQ(gw.received, (std::vector<std::string>{std::string(1, char(proto::op::login)),
                                                     std::string(1, char(proto::op::ack)),
                                                     std::string(1, char(proto::op::ack))}));
}

TEST(WssTransport, UntrustedCertificateIsRefusedWithTheCaNamed) {
    auto& main = imgate::test::test_certs("main");
    auto& other = imgate::test::test_certs("other");
    asio::io_context io;
    fake_ws_gateway gw(io, server_context(main));
    auto r = converse(io, gw, opts(transport::wss, make_tls_client(other.ca_crt, false)));
    ASSERT_TRUE(r.connect_ec);
    EXPECT_TRUE(r.cert_refused);
    EXPECT_NE(r.connect_detail.find("was not trusted"), std::string::npos) << r.connect_detail;
    EXPECT_NE(r.connect_detail.find(other.ca_crt), std::string::npos) << r.connect_detail;
    EXPECT_NE(r.connect_detail.find("127.0.0.1:"), std::string::npos) << r.connect_detail;
    EXPECT_FALSE(gw.accepted);
}

TEST(TlsTransport, NameMismatchIsRefused) {
    // The test certificate is for localhost, 127.0.0.1 and ::1: 127.0.0.2 is not in it.
    auto& main = imgate::test::test_certs("main");
    asio::io_context io;
    fake_ws_gateway gw(io, server_context(main), "127.0.0.2");
    auto r =
        converse(io, gw, opts(transport::wss, make_tls_client(main.ca_crt, false)), "127.0.0.2");
    ASSERT_TRUE(r.connect_ec);
    EXPECT_TRUE(r.cert_refused);
    EXPECT_NE(r.connect_detail.find("name mismatch"), std::string::npos) << r.connect_detail;
    EXPECT_NE(r.connect_detail.find("127.0.0.2"), std::string::npos) << r.connect_detail;
}

TEST(TlsTransport, InsecureSkipsVerificationAndPlainPortFailsClearly) {
    auto& main = imgate::test::test_certs("main");
    {
        asio::io_context io;
        fake_ws_gateway gw(io, server_context(main), "127.0.0.2");
        auto r = converse(io, gw, opts(transport::wss, make_tls_client("", true)), "127.0.0.2");
        EXPECT_FALSE(r.connect_ec) << r.connect_detail;
        EXPECT_TRUE(r.login.ok) << r.login.detail;
    }
    {
        // TLS to a plaintext WebSocket port: the handshake fails and says it may not be TLS.
        asio::io_context io;
        fake_ws_gateway gw(io);
        auto r = converse(io, gw, opts(transport::tls, make_tls_client(main.ca_crt, false)));
        ASSERT_TRUE(r.connect_ec);
        EXPECT_FALSE(r.cert_refused);
        EXPECT_NE(r.connect_detail.find("TLS handshake with 127.0.0.1:"), std::string::npos)
            << r.connect_detail;
    }
}

namespace {

imgate::metrics_registry& test_metrics() {
    static imgate::metrics_registry m;
    return m;
}

// A dispatcher stand-in answering every GET /get-tcp-ip with `body`, recording the queries.
struct fake_dispatcher {
    std::shared_ptr<imgate::http_server> srv;
    std::vector<std::string> queries;
    std::string body;

    explicit fake_dispatcher(asio::io_context& io) {
        srv = std::make_shared<imgate::http_server>(io, imgate::http_server_options{},
                                                    test_metrics());
        imgate::http_sync_handler h = [this](const imgate::http_request_ctx& ctx) {
            queries.emplace_back(ctx.query);
            return imgate::http_response::json(boost::beast::http::status::ok, body);
        };
        srv->route(boost::beast::http::verb::get, "/get-tcp-ip", h);
        srv->listen({"127.0.0.1", 0});
    }
    http_url url() const { return {"127.0.0.1", srv->local_endpoint().port(), "", false}; }
};

}  // namespace

TEST(TransportConnector, RefusedCertificateOfAFixedGatewayIsFatal) {
    auto& main = imgate::test::test_certs("main");
    auto& other = imgate::test::test_certs("other");
    asio::io_context io;
    fake_ws_gateway gw(io, server_context(main));
    imgate::spawn(io, gw.serve(), "fake wss gateway");
    connect_result r;
    auto t0 = std::chrono::steady_clock::now();
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.gateway = gateway_addr{"", "127.0.0.1", gw.port(), "/"};
        t.via = transport::wss;
        t.tls = make_tls_client(other.ca_crt, false);
        connector c(io.get_executor(), t, opts(transport::tcp), 1);
        r = co_await c.connect("alice", "token", std::chrono::steady_clock::now() + 8s);
    });
    EXPECT_FALSE(r.session);
    EXPECT_TRUE(r.fatal);
    EXPECT_TRUE(r.cert_refused);
    EXPECT_EQ(r.attempts, 1u);
    EXPECT_NE(r.error.find("was not trusted"), std::string::npos) << r.error;
    // No back-off loop until the deadline.
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

TEST(TransportConnector, AlternatesAreTriedThenARoundOfRefusalsEnds) {
    auto& main = imgate::test::test_certs("main");
    auto& other = imgate::test::test_certs("other");
    asio::io_context io;
    fake_ws_gateway gw1(io, server_context(main)), gw2(io, server_context(main));
    imgate::spawn(io, gw1.serve(), "fake wss gateway 1");
    imgate::spawn(io, gw2.serve(), "fake wss gateway 2");
    fake_dispatcher disp(io);
    auto url = [](uint16_t p) { return "wss://127.0.0.1:" + std::to_string(p) + "/"; };
    disp.body =
        nlohmann::json{
            {"id", "gw1"},
            {"host", "127.0.0.1"},
            {"port", 1},
            {"transport", "wss"},
            {"url", url(gw1.port())},
            {"alternates",
             {{{"id", "gw2"}, {"host", "127.0.0.1"}, {"port", 2}, {"url", url(gw2.port())}}}}}
            .dump();
    connect_result r;
    run_coro(io, [&]() -> asio::awaitable<void> {
        target_spec t;
        t.dispatchers = {disp.url()};
        t.via = transport::wss;
        t.tls = make_tls_client(other.ca_crt, false);
        connector c(io.get_executor(), t, opts(transport::tcp), 1);
        r = co_await c.connect("alice@example.com", "token", std::chrono::steady_clock::now() + 8s);
        disp.srv->stop();
    });
    EXPECT_FALSE(r.session);
    EXPECT_TRUE(r.fatal);
    EXPECT_EQ(r.attempts, 2u);  // the pick and its alternate, both by their url's port
    ASSERT_EQ(disp.queries.size(), 1u);
    EXPECT_EQ(disp.queries[0], "uid=alice%40example.com&transport=wss");
    EXPECT_NE(r.error.find("was not trusted"), std::string::npos) << r.error;
}
