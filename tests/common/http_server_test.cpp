// The shared HTTP server (every listener of both daemons): exact response bytes, keep-alive and
// pipelining, limits, deadlines enforced by the sweep, async handlers, the connection cap, stop(),
// many clients against a multi-threaded io_context, and SO_REUSEPORT listeners on one io_context
// per thread. Loopback only, port 0.
#include "common/http_server.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "../support/loopback_http.hpp"
#include "../support/raw_conn.hpp"

namespace {

using namespace imgate;
using namespace std::chrono_literals;
using imgate::test::raw_conn;

TEST(HttpSerialize, Http11KeepAliveExactBytes) {
    http_response r = http_response::json(http::status::ok, R"({"a":1})");
    std::string out;
    serialize_response(out, r, 11, true);
    EXPECT_EQ(out,
              "HTTP/1.1 200 OK\r\nServer: imgate\r\nContent-Type: application/json\r\n"
              "Cache-Control: no-store\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
}

TEST(HttpSerialize, ConnectionHeaderFollowsVersionDefaults) {
    http_response r = http_response::text("x");
    std::string close11, keep10, close10;
    serialize_response(close11, r, 11, false);
    serialize_response(keep10, r, 10, true);
    serialize_response(close10, r, 10, false);
    EXPECT_NE(close11.find("\r\nConnection: close\r\n"), std::string::npos);
    EXPECT_EQ(keep10.rfind("HTTP/1.0 200 OK\r\n", 0), 0u);
    EXPECT_NE(keep10.find("\r\nConnection: keep-alive\r\n"), std::string::npos);
    EXPECT_EQ(close10.find("Connection:"), std::string::npos);  // 1.0 closes by default
}

TEST(HttpSerialize, HeadersWithInvalidNamesOrValuesAreDropped) {
    http_response r = http_response::error(http::status::service_unavailable, "busy");
    r.headers = {
        {"Retry-After", "1"}, {"X-Split", "a\r\nSet-Cookie: evil=1"}, {"Bad Name", "v"}, {"", "v"}};
    std::string out;
    size_t dropped = 0;
    serialize_response(out, r, 11, true, &dropped);
    EXPECT_EQ(dropped, 3u);
    EXPECT_NE(out.find("\r\nRetry-After: 1\r\n"), std::string::npos);
    EXPECT_EQ(out.find("evil"), std::string::npos);
    EXPECT_EQ(out.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u);
}

// One server on 127.0.0.1:0 with its own io_context and threads (tests/support/loopback_http).
struct server_fixture {
    static http_server_options named(http_server_options o) {
        o.name = "t";
        return o;
    }
    test::loopback_http http;
    http_server* srv;
    std::string addr;
    std::atomic<int> guarded_calls{0};
    std::atomic<size_t> authorizer_saw_body{0};

    explicit server_fixture(http_server_options o = {}) : http(named(o)), srv(&http.server()) {
        srv->route(http::verb::get, "/hello", http_sync_handler([](const http_request_ctx& c) {
                       return http_response::json(http::status::ok,
                                                  "{\"q\":\"" + std::string(c.query) + "\"}");
                   }));
        srv->route(http::verb::post, "/hello", http_sync_handler([](const http_request_ctx& c) {
                       return http_response::text(c.req.body());
                   }),
                   route_options{.authorize = {}, .body_limit = 1 << 20});
        // Guarded: the key is checked on the header; the body (at most 64 bytes) is read after.
        srv->route(
            http::verb::post, "/guarded", http_sync_handler([this](const http_request_ctx& c) {
                ++guarded_calls;
                return http_response::text(c.req.body());
            }),
            route_options{
                .authorize = [this](const http_request_ctx& c) -> std::optional<http_response> {
                    authorizer_saw_body += c.req.body().size();
                    if (c.req["X-Key"] == "k") return std::nullopt;
                    return http_response::error(http::status::unauthorized, "unauthorized");
                },
                .body_limit = 64});
        srv->route(http::verb::get, "/big", http_sync_handler([](const http_request_ctx&) {
                       return http_response::text(std::string(32 << 20, 'x'));
                   }));
        srv->route(http::verb::get, "/later",
                   http_handler([](http_request_ctx) -> asio::awaitable<http_response> {
                       asio::steady_timer t(co_await asio::this_coro::executor);
                       t.expires_after(20ms);
                       co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
                       co_return http_response::json(http::status::accepted, "{}");
                   }));
        srv->route(http::verb::get, "/throws",
                   http_handler([](http_request_ctx) -> asio::awaitable<http_response> {
                       throw std::runtime_error("handler bug");
                       co_return http_response{};
                   }));
    }
    void start(int nthreads = 1) {
        http.start(nthreads);
        addr = http.addr();
    }
    uint64_t counter_value(const std::string& name, label_set labels) {
        return http.metrics().get_counter(name, "", std::move(labels)).value();
    }
};

// Reads from c until `complete(received)` or the deadline.
template <class Pred>
bool receive_until(raw_conn& c, Pred complete, std::chrono::milliseconds timeout = 3000ms) {
    return imgate::test::eventually(
        [&] {
            c.pump();
            return complete(c.received());
        },
        timeout, 1ms);
}

size_t count_of(const std::string& hay, const std::string& needle) {
    size_t n = 0;
    for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
    return n;
}

TEST(HttpServer, KeepAliveServesSeveralRequestsOnOneConnection) {
    server_fixture f;
    f.start();
    raw_conn c;
    ASSERT_TRUE(c.connect(f.addr));
    for (int i = 1; i <= 3; ++i) {
        ASSERT_TRUE(c.send("GET /hello?n=" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n"));
        std::string want = "{\"q\":\"n=" + std::to_string(i) + "\"}";
        ASSERT_TRUE(receive_until(c, [&](const std::string& r) { return r.find(want) != r.npos; }))
            << c.received();
    }
    EXPECT_FALSE(c.is_closed());
    EXPECT_EQ(count_of(c.received(), "HTTP/1.1 200 OK\r\n"), 3u);
    EXPECT_EQ(f.counter_value("imgate_http_requests_total", {{"server", "t"}, {"code", "200"}}),
              3u);
}

TEST(HttpServer, PipelinedRequestsAreAnsweredInOrder) {
    server_fixture f;
    f.start();
    raw_conn c;
    ASSERT_TRUE(c.connect(f.addr));
    std::string batch;
    for (int i = 0; i < 20; ++i) batch += "GET /hello?i=" + std::to_string(i) + " HTTP/1.1\r\n\r\n";
    ASSERT_TRUE(c.send(batch));
    ASSERT_TRUE(receive_until(c, [](const std::string& r) { return r.find("i=19") != r.npos; }));
    size_t at = 0;
    for (int i = 0; i < 20; ++i) {
        auto p = c.received().find("\"i=" + std::to_string(i) + "\"", at);
        ASSERT_NE(p, std::string::npos) << "answer " << i << " missing or out of order";
        at = p;
    }
}

TEST(HttpServer, Http10ClosesUnlessAskedAndConnectionCloseIsHonoured) {
    server_fixture f;
    f.start();
    raw_conn a, b, k;
    ASSERT_TRUE(a.connect(f.addr));
    ASSERT_TRUE(a.send("GET /hello HTTP/1.0\r\n\r\n"));
    ASSERT_TRUE(a.wait_closed(3s));
    EXPECT_EQ(a.received().rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << a.received();

    ASSERT_TRUE(b.connect(f.addr));
    ASSERT_TRUE(b.send("GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n"));
    ASSERT_TRUE(b.wait_closed(3s));
    EXPECT_NE(b.received().find("Connection: close\r\n"), std::string::npos);

    ASSERT_TRUE(k.connect(f.addr));
    ASSERT_TRUE(k.send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    ASSERT_TRUE(receive_until(k, [](const std::string& r) { return r.find("{\"q\"") != r.npos; }));
    EXPECT_NE(k.received().find("Connection: keep-alive\r\n"), std::string::npos);
    EXPECT_FALSE(k.is_closed());
}

// The last answer of a connection that closes is sent with MSG_MORE and the close() right after
// it puts the FIN in the same segment: the client receives the SYN-ACK, the ACK of its request
// and one segment with the answer and the FIN (a separate FIN would be a fourth).
TEST(HttpServer, TheFinOfAClosingConnectionRidesItsLastAnswer) {
    server_fixture f;
    f.start();
    for (const char* req :
         {"GET /hello?a HTTP/1.1\r\nConnection: close\r\n\r\n", "GET /hello?b HTTP/1.0\r\n\r\n"}) {
        raw_conn c;
        ASSERT_TRUE(c.connect(f.addr));
        ASSERT_TRUE(c.send(req));
        ASSERT_TRUE(c.wait_closed(3s));
        EXPECT_NE(c.received().find("{\"q\""), std::string::npos) << c.received();
        // The kernel's struct tcp_info (append-only ABI) past the part glibc declares.
        struct {
            tcp_info base;
            uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
            uint32_t segs_out, segs_in;
        } ti{};
        static_assert(sizeof(tcp_info) == 104);
        socklen_t len = sizeof ti;
        ASSERT_EQ(::getsockopt(c.fd(), IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
        ASSERT_GE(len, sizeof ti);
        // SYN-ACK, the kernel's immediate ACK of the first data of a connection, answer + FIN.
        EXPECT_EQ(ti.segs_in, 3u) << req;
    }
}

TEST(HttpServer, UnknownPathIs404AndWrongMethodIs405WithAllow) {
    server_fixture f;
    f.start();
    auto nf = test::http_get(f.addr, "/nope");
    EXPECT_EQ(nf.status, 404);
    EXPECT_EQ(nf.json()["error"], "not_found");
    auto na = test::http_request(f.addr, http::verb::delete_, "/hello");
    EXPECT_EQ(na.status, 405);
    EXPECT_EQ(na.headers["Allow"], "GET, POST");
    EXPECT_EQ(test::http_get(f.addr, "/hello?x=1").json()["q"], "x=1");
}

TEST(HttpServer, OversizedHeadersBodiesAndGarbageGetAnErrorAndAClose) {
    http_server_options o;
    o.header_limit = 1024;
    o.body_limit = 16;
    server_fixture f(o);
    f.start();
    struct probe {
        std::string bytes;
        std::string status_line;
    };
    std::vector<probe> probes = {
        {"GET /hello HTTP/1.1\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n",
         "HTTP/1.1 431 Request Header Fields Too Large\r\n"},
        // The server-wide ceiling caps a route that takes more.
        {"POST /hello HTTP/1.1\r\nContent-Length: 17\r\n\r\n" + std::string(17, 'b'),
         "HTTP/1.1 413 Payload Too Large\r\n"},
        {"\x16\x03\x01 garbage\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"},
    };
    for (auto& p : probes) {
        raw_conn c;
        ASSERT_TRUE(c.connect(f.addr));
        ASSERT_TRUE(c.send(p.bytes));
        ASSERT_TRUE(c.wait_closed(3s)) << p.status_line;
        EXPECT_EQ(c.received().rfind(p.status_line, 0), 0u) << c.received();
        EXPECT_NE(c.received().find("Connection: close\r\n"), std::string::npos);
    }
    // A body within the limit is read and handed over.
    auto ok = test::http_request(f.addr, http::verb::post, "/hello", "sixteen bytes!!!");
    EXPECT_EQ(ok.status, 200);
    EXPECT_EQ(ok.body, "sixteen bytes!!!");
    EXPECT_EQ(
        f.counter_value("imgate_http_rejected_total", {{"server", "t"}, {"reason", "limits"}}), 3u);
}

// The body of a request is read only after routing and authorization: an unauthorized request
// declaring a 1 MiB body is answered 401 at once and closed, without waiting for (or buffering)
// the body. The read deadline is far away, so only reading the header first can close it in time.
TEST(HttpServer, UnauthorizedRequestIsAnswered401BeforeItsBodyAndClosed) {
    http_server_options o;
    o.read_timeout = 20s;
    server_fixture f(o);
    f.start();
    raw_conn c;
    ASSERT_TRUE(c.connect(f.addr));
    ASSERT_TRUE(c.send("POST /guarded HTTP/1.1\r\nX-Key: wrong\r\nContent-Length: 1048576\r\n\r\n" +
                       std::string(1000, 'b')));
    ASSERT_TRUE(c.wait_closed(3s)) << c.received();
    EXPECT_EQ(c.received().rfind("HTTP/1.1 401 Unauthorized\r\n", 0), 0u) << c.received();
    EXPECT_NE(c.received().find("Connection: close\r\n"), std::string::npos);
    EXPECT_EQ(f.guarded_calls.load(), 0);
    EXPECT_EQ(f.authorizer_saw_body.load(), 0u);  // the authorizer runs on the header alone
    EXPECT_EQ(f.counter_value("imgate_http_rejected_total",
                              {{"server", "t"}, {"reason", "unauthorized"}}),
              1u);
    EXPECT_EQ(f.counter_value("imgate_http_requests_total", {{"server", "t"}, {"code", "401"}}),
              1u);
    // Without a body the refusal is the same: no keep-alive after a refused authorization.
    raw_conn n;
    ASSERT_TRUE(n.connect(f.addr));
    ASSERT_TRUE(n.send("POST /guarded HTTP/1.1\r\n\r\n"));
    ASSERT_TRUE(n.wait_closed(3s));
    EXPECT_EQ(n.received().rfind("HTTP/1.1 401 Unauthorized\r\n", 0), 0u) << n.received();
}

TEST(HttpServer, AuthorizedRequestHasItsBodyReadAndHandledWithinTheRouteLimit) {
    server_fixture f;
    f.start();
    auto ok =
        test::http_request(f.addr, http::verb::post, "/guarded", "{\"x\":1}", {{"X-Key", "k"}});
    EXPECT_EQ(ok.status, 200);
    EXPECT_EQ(ok.body, "{\"x\":1}");
    EXPECT_EQ(f.guarded_calls.load(), 1);
    // Over the route's 64 bytes, declared: 413 on the header, closed, handler not run.
    raw_conn big;
    ASSERT_TRUE(big.connect(f.addr));
    ASSERT_TRUE(big.send("POST /guarded HTTP/1.1\r\nX-Key: k\r\nContent-Length: 65\r\n\r\n"));
    ASSERT_TRUE(big.wait_closed(3s));
    EXPECT_EQ(big.received().rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u) << big.received();
    // Over it in chunks (no length to check up front): refused as the chunks arrive.
    raw_conn chunked;
    ASSERT_TRUE(chunked.connect(f.addr));
    ASSERT_TRUE(
        chunked.send("POST /guarded HTTP/1.1\r\nX-Key: k\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "28\r\n" +
                     std::string(40, 'c') + "\r\n28\r\n" + std::string(40, 'c') + "\r\n0\r\n\r\n"));
    ASSERT_TRUE(chunked.wait_closed(3s));
    EXPECT_EQ(chunked.received().rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u)
        << chunked.received();
    EXPECT_EQ(f.guarded_calls.load(), 1);
    EXPECT_EQ(
        f.counter_value("imgate_http_rejected_total", {{"server", "t"}, {"reason", "limits"}}), 2u);
}

// A route registered without a body limit takes no body: a request declaring one is refused with
// 413 on its header, whatever its size, and its connection is closed (the body is never read).
TEST(HttpServer, BodyOnARouteThatTakesNoneIsRefused413WithoutReadingIt) {
    http_server_options o;
    o.read_timeout = 20s;
    server_fixture f(o);
    f.start();
    std::vector<std::string> probes = {
        "GET /hello HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n" + std::string(1000, 'b'),
        "GET /hello HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
        "GET /hello HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    for (auto& p : probes) {
        raw_conn c;
        ASSERT_TRUE(c.connect(f.addr));
        ASSERT_TRUE(c.send(p));
        ASSERT_TRUE(c.wait_closed(3s)) << p;
        EXPECT_EQ(c.received().rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u) << c.received();
        EXPECT_NE(c.received().find("body_not_allowed"), std::string::npos);
    }
    EXPECT_EQ(f.counter_value("imgate_http_rejected_total",
                              {{"server", "t"}, {"reason", "unexpected_body"}}),
              3u);
    // Content-Length: 0 is no body: served, and the connection stays open.
    raw_conn z;
    ASSERT_TRUE(z.connect(f.addr));
    ASSERT_TRUE(z.send("GET /hello?z HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
    ASSERT_TRUE(receive_until(z, [](const std::string& r) { return r.find("\"z\"") != r.npos; }));
    EXPECT_FALSE(z.is_closed());
}

// A 404 leaves the body of its request unread: that connection must not be kept alive (the body
// would be parsed as the next request); one without a body still is.
TEST(HttpServer, NotFoundWithABodyClosesWithoutOneKeepsAlive) {
    http_server_options o;
    o.read_timeout = 20s;
    server_fixture f(o);
    f.start();
    raw_conn b;
    ASSERT_TRUE(b.connect(f.addr));
    ASSERT_TRUE(b.send("POST /nope HTTP/1.1\r\nContent-Length: 100000\r\n\r\nGET /hello"));
    ASSERT_TRUE(b.wait_closed(3s));
    EXPECT_EQ(b.received().rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << b.received();
    EXPECT_EQ(count_of(b.received(), "HTTP/1.1 "), 1u);
    raw_conn k;
    ASSERT_TRUE(k.connect(f.addr));
    ASSERT_TRUE(k.send("GET /nope HTTP/1.1\r\n\r\nGET /hello?after HTTP/1.1\r\n\r\n"));
    ASSERT_TRUE(
        receive_until(k, [](const std::string& r) { return r.find("\"after\"") != r.npos; }));
    EXPECT_FALSE(k.is_closed());
}

TEST(HttpServer, IdleAndTricklingConnectionsAreClosedAtTheReadDeadline) {
    http_server_options o;
    o.read_timeout = 300ms;
    server_fixture f(o);
    f.start();
    raw_conn idle, trickle;
    ASSERT_TRUE(idle.connect(f.addr));
    ASSERT_TRUE(trickle.connect(f.addr));
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(trickle.send("GET /hello HTTP/1.1\r\n"));
    // The deadline covers the whole request: header lines arriving every 50 ms do not extend it.
    bool closed = false;
    for (int i = 0; i < 40 && !closed; ++i) {
        trickle.send("X-" + std::to_string(i) + ": y\r\n");
        closed = trickle.wait_closed(50ms);
    }
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_TRUE(closed);
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 1500ms);  // deadline + sweep period, with slack for a loaded machine
    EXPECT_TRUE(idle.wait_closed(2s));
    EXPECT_EQ(trickle.received(), "");  // no answer to a request that never completed
    // Counted before the socket is shut down, so a client that saw the close sees the count.
    EXPECT_EQ(f.counter_value("imgate_http_read_timeouts_total", {{"server", "t"}}), 2u);
    // The server still answers.
    EXPECT_EQ(test::http_get(f.addr, "/hello").status, 200);
}

TEST(HttpServer, AReaderThatStopsReadingIsClosedAtTheWriteDeadline) {
    http_server_options o;
    o.write_timeout = 300ms;
    server_fixture f(o);
    f.start();
    raw_conn c;
    ASSERT_TRUE(c.connect(f.addr, 4096));
    ASSERT_TRUE(c.send("GET /big HTTP/1.1\r\n\r\n"));  // 32 MiB that we never read
    EXPECT_TRUE(imgate::test::eventually(
        [&] {
            return f.counter_value("imgate_http_write_timeouts_total", {{"server", "t"}}) == 1;
        },
        3s, 10ms));
    EXPECT_TRUE(imgate::test::eventually([&] { return f.srv->connections() == 0; }, 2s, 5ms));
    EXPECT_EQ(test::http_get(f.addr, "/hello").status, 200);
}

TEST(HttpServer, AsyncHandlersAnswerAndAThrowingHandlerGives500) {
    server_fixture f;
    f.start();
    auto later = test::http_get(f.addr, "/later");
    EXPECT_EQ(later.status, 202);
    auto bad = test::http_get(f.addr, "/throws");
    EXPECT_EQ(bad.status, 500);
    EXPECT_EQ(bad.json()["error"], "internal_error");
    EXPECT_EQ(test::http_get(f.addr, "/hello").status, 200);
}

TEST(HttpServer, ConnectionsPastTheCapGet503AndClose) {
    http_server_options o;
    o.max_connections = 2;
    server_fixture f(o);
    f.start();
    raw_conn a, b, c;
    ASSERT_TRUE(a.connect(f.addr));
    ASSERT_TRUE(b.connect(f.addr));
    ASSERT_TRUE(imgate::test::eventually([&] { return f.srv->connections() == 2; }, 2s, 1ms));
    ASSERT_TRUE(c.connect(f.addr));
    ASSERT_TRUE(c.wait_closed(3s));
    EXPECT_EQ(c.received().rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u) << c.received();
    EXPECT_EQ(f.counter_value("imgate_http_rejected_total",
                              {{"server", "t"}, {"reason", "max_connections"}}),
              1u);
    // The admitted ones are still served.
    ASSERT_TRUE(a.send("GET /hello HTTP/1.1\r\n\r\n"));
    EXPECT_TRUE(receive_until(a, [](const std::string& r) { return r.find("200 OK") != r.npos; }));
}

// Out of descriptors: accept() fails with EMFILE while connections wait in the backlog. The
// listener must back off instead of spinning, and must take the waiting connections once
// descriptors are free again.
TEST(HttpServer, DescriptorExhaustionBacksOffWithoutSpinningAndRecovers) {
    server_fixture f;
    f.start();
    rlimit old{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
    rlimit low = old;
    low.rlim_cur = std::min<rlim_t>(old.rlim_cur, 512);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
    // The client sockets exist before the process runs out: connecting them needs no
    // descriptor, accepting them does.
    std::vector<raw_conn> waiting(4);
    for (auto& c : waiting) ASSERT_TRUE(c.open());
    std::vector<int> filler;
    for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) filler.push_back(fd);
    ASSERT_EQ(errno, EMFILE);
    for (auto& c : waiting) {
        ASSERT_TRUE(c.connect(f.addr));
        ASSERT_TRUE(c.send("GET /hello?waited HTTP/1.1\r\n\r\n"));
    }
    const auto accept_errors = [&] {
        return f.counter_value("imgate_http_accept_errors_total", {{"server", "t"}});
    };
    ASSERT_TRUE(imgate::test::eventually([&] { return accept_errors() >= 1; }, 3s, 5ms));
    auto cpu = [] {
        rusage u{};
        ::getrusage(RUSAGE_SELF, &u);
        auto sec = [](timeval t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
        return sec(u.ru_utime) + sec(u.ru_stime);
    };
    double cpu0 = cpu();
    std::this_thread::sleep_for(500ms);  // the window being measured, not a synchronisation
    double used = cpu() - cpu0;
    uint64_t tries = accept_errors();
    EXPECT_LT(used, 0.25) << "a busy accept loop would burn the whole 0.5 s";
    EXPECT_LE(tries, 20u) << "one attempt per 100 ms back-off";
    for (int fd : filler) ::close(fd);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);

    for (auto& c : waiting)
        EXPECT_TRUE(receive_until(c, [](const std::string& r) {
            return r.find("waited") != r.npos;
        })) << c.received();
}

TEST(HttpServer, StopClosesOpenConnections) {
    server_fixture f;
    f.start();
    raw_conn a;
    ASSERT_TRUE(a.connect(f.addr));
    ASSERT_TRUE(a.send("GET /hello HTTP/1.1\r\n\r\n"));
    ASSERT_TRUE(receive_until(a, [](const std::string& r) { return r.find("200 OK") != r.npos; }));
    f.srv->stop();
    EXPECT_TRUE(a.wait_closed(2s));
}

// Many keep-alive clients against four io threads: every request gets its own answer. Under
// TSan (make test-tsan) this is the race check of the strand-free connection chain + sweep.
TEST(HttpServer, ManyClientsOnSeveralThreadsAllAnswered) {
    http_server_options o;
    o.read_timeout = 2s;
    server_fixture f(o);
    f.start(4);
    constexpr int clients = 16, per_client = 50;
    std::vector<std::thread> ts;
    std::atomic<int> ok{0};
    for (int i = 0; i < clients; ++i) {
        ts.emplace_back([&, i] {
            raw_conn c;
            if (!c.connect(f.addr)) return;
            for (int k = 0; k < per_client; ++k) {
                std::string tag = std::to_string(i) + "-" + std::to_string(k);
                if (!c.send("GET /hello?" + tag + " HTTP/1.1\r\n\r\n")) return;
                std::string want = "{\"q\":\"" + tag + "\"}";
                if (!receive_until(c, [&](const std::string& r) { return r.find(want) != r.npos; }))
                    return;
                ++ok;
            }
        });
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(ok.load(), clients * per_client);
}

// A server listening on one SO_REUSEPORT socket per io_context, each io_context run by its own
// thread, as the dispatcher does with `threads` > 1. The sweep runs on the first io_context.
struct sharded_fixture {
    metrics_registry metrics;
    asio::io_context main{1};
    std::vector<std::unique_ptr<asio::io_context>> shards;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work;
    std::shared_ptr<http_server> srv;
    std::vector<std::thread> threads;
    std::mutex mu;
    std::set<std::thread::id> served_by;  // threads that ran the /who handler
    std::string addr;

    explicit sharded_fixture(size_t n, http_server_options o = {}) {
        o.name = "t";
        srv = std::make_shared<http_server>(main, o, metrics);
        std::vector<asio::io_context*> ios{&main};
        for (size_t i = 1; i < n; ++i) {
            shards.push_back(std::make_unique<asio::io_context>(1));
            ios.push_back(shards.back().get());
        }
        for (auto* io : ios) work.emplace_back(io->get_executor());
        srv->route(http::verb::get, "/who", http_sync_handler([this](const http_request_ctx&) {
                       std::lock_guard lk(mu);
                       served_by.insert(std::this_thread::get_id());
                       return http_response::json(http::status::ok, "{}");
                   }));
        srv->listen(endpoint{"127.0.0.1", 0}, ios);
        for (auto* io : ios) threads.emplace_back([io] { io->run(); });
        addr = "127.0.0.1:" + std::to_string(srv->local_endpoint().port());
    }
    ~sharded_fixture() {
        srv->stop();
        work.clear();
        main.stop();
        for (auto& s : shards) s->stop();
        for (auto& t : threads) t.join();
    }
    size_t threads_that_served() {
        std::lock_guard lk(mu);
        return served_by.size();
    }
    uint64_t counter_value(const std::string& name, label_set labels) {
        return metrics.get_counter(name, "", std::move(labels)).value();
    }
};

TEST(HttpServerShards, EachIoContextGetsItsOwnListeningSocketOnOnePort) {
    sharded_fixture f(3);
    EXPECT_EQ(f.srv->listeners(), 3u);
    ASSERT_NE(f.srv->local_endpoint().port(), 0);
    // Connections from many source ports are spread over the sockets by the kernel; each is
    // served on the thread of the socket that accepted it. 48 connections all hashed to one of
    // three sockets would be a 3^-47 event.
    std::vector<raw_conn> conns(48);
    for (auto& c : conns) {
        ASSERT_TRUE(c.connect(f.addr));
        ASSERT_TRUE(c.send("GET /who HTTP/1.1\r\n\r\n"));
    }
    for (auto& c : conns) {
        ASSERT_TRUE(receive_until(c, [](const std::string& r) {
            return r.find("\r\n\r\n{}") != r.npos;
        })) << c.received();
        EXPECT_EQ(c.received().rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
    }
    EXPECT_GE(f.threads_that_served(), 2u);
    EXPECT_EQ(f.srv->connections(), 48u);
    EXPECT_EQ(f.counter_value("imgate_http_requests_total", {{"server", "t"}, {"code", "200"}}),
              48u);
}

TEST(HttpServerShards, OneListeningSocketWithoutShards) {
    sharded_fixture f(1);
    EXPECT_EQ(f.srv->listeners(), 1u);
    EXPECT_EQ(test::http_get(f.addr, "/who").status, 200);
}

TEST(HttpServerShards, TheConnectionCapCountsEverySocketsConnections) {
    http_server_options o;
    o.max_connections = 4;
    sharded_fixture f(2, o);
    std::vector<raw_conn> admitted(4);
    for (auto& c : admitted) ASSERT_TRUE(c.connect(f.addr));
    ASSERT_TRUE(imgate::test::eventually([&] { return f.srv->connections() == 4; }, 2s, 1ms));
    // Whichever socket takes them, the next ones are over the server's cap.
    std::vector<raw_conn> refused(6);
    for (auto& c : refused) {
        ASSERT_TRUE(c.connect(f.addr));
        ASSERT_TRUE(c.wait_closed(3s));
        EXPECT_EQ(c.received().rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u)
            << c.received();
    }
    EXPECT_EQ(f.counter_value("imgate_http_rejected_total",
                              {{"server", "t"}, {"reason", "max_connections"}}),
              6u);
    for (auto& c : admitted) {
        ASSERT_TRUE(c.send("GET /who HTTP/1.1\r\n\r\n"));
        EXPECT_TRUE(
            receive_until(c, [](const std::string& r) { return r.find("200 OK") != r.npos; }));
    }
}

TEST(HttpServerShards, TheSweepClosesIdleConnectionsOnEverySocket) {
    http_server_options o;
    o.read_timeout = 300ms;
    sharded_fixture f(3, o);
    std::vector<raw_conn> idle(12);
    for (auto& c : idle) ASSERT_TRUE(c.connect(f.addr));
    for (auto& c : idle) EXPECT_TRUE(c.wait_closed(3s));
    EXPECT_EQ(f.counter_value("imgate_http_read_timeouts_total", {{"server", "t"}}), 12u);
}

TEST(HttpServerShards, StopClosesEverySocketAndItsConnections) {
    sharded_fixture f(3);
    std::vector<raw_conn> open(12);
    for (auto& c : open) {
        ASSERT_TRUE(c.connect(f.addr));
        ASSERT_TRUE(c.send("GET /who HTTP/1.1\r\n\r\n"));
        ASSERT_TRUE(
            receive_until(c, [](const std::string& r) { return r.find("200 OK") != r.npos; }));
    }
    f.srv->stop();
    for (auto& c : open) EXPECT_TRUE(c.wait_closed(2s));
    // Every listening socket is closed: nothing accepts on the port any more.
    EXPECT_TRUE(imgate::test::eventually(
        [&] {
            raw_conn late;
            return !late.connect(f.addr);
        },
        2s, 5ms));
}

}  // namespace
