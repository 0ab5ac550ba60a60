// imgate::redis::connection against a real redis-server (tests/support/redis_server.hpp): replies
// copied byte for byte, pipelining in order, reconnects, timeouts, AUTH, unix sockets, bounds,
// stop and destruction with commands outstanding.
#include "common/redis.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../support/redis_server.hpp"

using namespace imgate;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;
using imgate::test::redis_server;

namespace {

struct result {
    int calls = 0;
    error_code ec;
    redis::reply rep;
};

class RedisConnection : public ::testing::Test {
  protected:
    // Runs the io_context until pred holds, at most `limit`. The loop sleeps nowhere: run_for
    // returns as soon as handlers ran or the slice ended.
    template <class Pred>
    bool run_until(Pred pred, std::chrono::milliseconds limit = 10000ms) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (!pred()) {
            if (std::chrono::steady_clock::now() >= deadline) return false;
            if (io.stopped()) io.restart();
            io.run_for(20ms);
        }
        return true;
    }

    redis::options opts_for(const redis_server& s) {
        redis::options o;
        o.host = "127.0.0.1";
        o.port = s.port();
        o.name = "unit";
        o.password = s.password();
        o.backoff_min = 20ms;
        o.backoff_max = 200ms;
        return o;
    }

    std::shared_ptr<redis::connection> make(redis::options o) {
        auto c = redis::connection::create(io.get_executor(), std::move(o), metrics);
        c->set_on_up([this] { ++ups; });
        c->set_on_down([this](error_code ec) {
            if (++downs == 1) first_down = ec;
            last_down = ec;
        });
        return c;
    }

    // Starts c and waits for its first on_up.
    void connect(const std::shared_ptr<redis::connection>& c) {
        int before = ups;
        c->start();
        ASSERT_TRUE(run_until([&] { return ups > before; })) << "no connection";
        ASSERT_TRUE(c->connected());
    }

    // Sends one command and returns its outcome (calls counts handler invocations).
    std::shared_ptr<result> send(redis::connection& c, redis::argv args) {
        auto r = std::make_shared<result>();
        c.command(std::move(args), [r](error_code ec, const redis::reply& rep) {
            ++r->calls;
            r->ec = ec;
            r->rep = rep;
        });
        return r;
    }
    result call(redis::connection& c, redis::argv args) {
        auto r = send(c, std::move(args));
        EXPECT_TRUE(run_until([&] { return r->calls > 0; })) << "no answer";
        return *r;
    }

    double up_gauge() {
        return metrics.get_gauge("imgate_redis_up", "", {{"name", "unit"}}).value();
    }
    double pending_gauge() {
        return metrics.get_gauge("imgate_redis_pending", "", {{"name", "unit"}}).value();
    }
    uint64_t connects() {
        return metrics.get_counter("imgate_redis_connects_total", "", {{"name", "unit"}}).value();
    }
    uint64_t commands(const char* outcome) {
        return metrics
            .get_counter("imgate_redis_commands_total", "", {{"name", "unit"}, {"result", outcome}})
            .value();
    }

    asio::io_context io;
    metrics_registry metrics;
    int ups = 0;
    int downs = 0;
    error_code first_down;
    error_code last_down;
};

}  // namespace

TEST(RedisErrc, CategoryAndMessages) {
    error_code ec = redis::errc::timed_out;
    EXPECT_STREQ(ec.category().name(), "redis");
    EXPECT_EQ(ec, redis::make_error_code(redis::errc::timed_out));
    EXPECT_NE(ec.message().find("in time"), std::string::npos);
    EXPECT_NE(error_code(redis::errc::queue_full).message(),
              error_code(redis::errc::not_connected).message());
}

TEST_F(RedisConnection, BinarySafeSetAndGetWithUtf8AndEmbeddedNul) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto c = make(opts_for(server));
    connect(c);
    EXPECT_EQ(up_gauge(), 1);
    EXPECT_EQ(connects(), 1u);

    const std::string key = "imgate:u:zoë@example.com";
    const std::string value("gw-1\0\xff\r\n zoë \x01", 16);
    auto set = call(*c, {"SET", key, value});
    ASSERT_FALSE(set.ec) << set.ec.message();
    EXPECT_EQ(set.rep.type, redis::reply::kind::status);
    EXPECT_EQ(set.rep.str, "OK");

    auto get = call(*c, {"GET", key});
    ASSERT_FALSE(get.ec);
    EXPECT_EQ(get.rep.type, redis::reply::kind::string);
    EXPECT_EQ(get.rep.str, value);
    EXPECT_EQ(get.rep.str.size(), 16u);
    // The key landed under its exact UTF-8 bytes.
    EXPECT_EQ(server.cli("STRLEN", key), "16");

    auto missing = call(*c, {"GET", "imgate:u:nobody@example.com"});
    ASSERT_FALSE(missing.ec);
    EXPECT_TRUE(missing.rep.is_nil());
    EXPECT_EQ(commands("ok"), 3u);
    EXPECT_EQ(commands("failed"), 0u);
}

TEST_F(RedisConnection, TenThousandPipelinedIncrsAnswerInOrder) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto c = make(opts_for(server));
    connect(c);
    const int n = 10000;
    std::vector<long long> got;
    std::vector<int> calls(n, 0);
    for (int i = 0; i < n; ++i) {
        c->command({"INCR", "imgate:counter"}, [&, i](error_code ec, const redis::reply& r) {
            ++calls[i];
            EXPECT_FALSE(ec);
            got.push_back(r.integer);
        });
    }
    ASSERT_TRUE(run_until([&] { return got.size() == size_t(n); }));
    for (int i = 0; i < n; ++i) {
        ASSERT_EQ(got[i], i + 1) << "answer " << i;
        ASSERT_EQ(calls[i], 1);
    }
    EXPECT_EQ(pending_gauge(), 0);
    EXPECT_EQ(server.cli("GET", "imgate:counter"), "10000");
}

TEST_F(RedisConnection, CommandsFromAnotherThreadKeepTheirOrder) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto c = make(opts_for(server));
    connect(c);
    std::vector<std::string> got;
    std::thread producer([&] {
        for (int i = 0; i < 500; ++i)
            c->command({"RPUSH", "imgate:order", std::to_string(i)},
                       [&](error_code ec, const redis::reply& r) {
                           EXPECT_FALSE(ec);
                           got.push_back(std::to_string(r.integer));
                       });
    });
    ASSERT_TRUE(run_until([&] { return got.size() == 500; }));
    producer.join();
    auto range = call(*c, {"LRANGE", "imgate:order", "0", "-1"});
    ASSERT_EQ(range.rep.elements.size(), 500u);
    for (size_t i = 0; i < 500; ++i) EXPECT_EQ(range.rep.elements[i].str, std::to_string(i));
}

TEST_F(RedisConnection, HashRepliesArriveAsArrays) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto c = make(opts_for(server));
    connect(c);
    auto hset = call(
        *c, {"HSET", "imgate:u:émile", "gw-a", "00ff00ff00ff00ff 2", "gw-b", "1234567890abcdef 1"});
    ASSERT_FALSE(hset.ec);
    EXPECT_EQ(hset.rep.type, redis::reply::kind::integer);
    EXPECT_EQ(hset.rep.integer, 2);
    auto all = call(*c, {"HGETALL", "imgate:u:émile"});
    ASSERT_FALSE(all.ec);
    ASSERT_EQ(all.rep.type, redis::reply::kind::array);
    ASSERT_EQ(all.rep.elements.size(), 4u);
    std::map<std::string, std::string> fields;
    for (size_t i = 0; i + 1 < all.rep.elements.size(); i += 2)
        fields[all.rep.elements[i].str] = all.rep.elements[i + 1].str;
    EXPECT_EQ(fields["gw-a"], "00ff00ff00ff00ff 2");
    EXPECT_EQ(fields["gw-b"], "1234567890abcdef 1");
    auto empty = call(*c, {"HGETALL", "imgate:u:nobody"});
    EXPECT_EQ(empty.rep.type, redis::reply::kind::array);
    EXPECT_TRUE(empty.rep.elements.empty());
}

TEST_F(RedisConnection, AnErrorReplyIsAReplyNotAnErrorCode) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto c = make(opts_for(server));
    connect(c);
    ASSERT_FALSE(call(*c, {"SET", "imgate:s", "x"}).ec);
    auto wrong = call(*c, {"LPUSH", "imgate:s", "y"});
    EXPECT_FALSE(wrong.ec);
    EXPECT_TRUE(wrong.rep.is_error());
    EXPECT_EQ(wrong.rep.str.rfind("WRONGTYPE", 0), 0u) << wrong.rep.str;
    EXPECT_EQ(commands("error"), 1u);
    // The connection stays usable.
    EXPECT_EQ(call(*c, {"GET", "imgate:s"}).rep.str, "x");
    EXPECT_TRUE(c->connected());
}

TEST_F(RedisConnection, CommandsBeforeTheConnectionIsUpFailNotConnected) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto c = make(opts_for(server));
    auto before_start = call(*c, {"PING"});
    EXPECT_EQ(before_start.ec, redis::errc::not_connected);
    EXPECT_TRUE(before_start.rep.is_nil());
    c->start();  // runs on the executor (dispatch, inline only inside it): not connected yet
    auto connecting = send(*c, {"PING"});
    EXPECT_EQ(ups, 0);
    ASSERT_TRUE(run_until([&] { return connecting->calls > 0; }));
    EXPECT_EQ(connecting->ec, redis::errc::not_connected);
    EXPECT_EQ(commands("failed"), 2u);
    ASSERT_TRUE(run_until([&] { return ups == 1; }));
    EXPECT_EQ(call(*c, {"PING"}).rep.str, "PONG");
    EXPECT_EQ(connecting->calls, 1);
}

TEST_F(RedisConnection, CommandsThatBreakPipeliningAreRefused) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto c = make(opts_for(server));
    connect(c);
    EXPECT_EQ(call(*c, {"subscribe", "ch"}).ec, boost::asio::error::invalid_argument);
    EXPECT_EQ(call(*c, {"MONITOR"}).ec, boost::asio::error::invalid_argument);
    EXPECT_EQ(call(*c, {}).ec, boost::asio::error::invalid_argument);
    EXPECT_EQ(call(*c, {"CLIENT", "reply", "OFF"}).ec, boost::asio::error::invalid_argument);
    EXPECT_EQ(call(*c, {"HELLO", "3"}).ec, boost::asio::error::invalid_argument);
    EXPECT_EQ(call(*c, {"SELECT", "2"}).ec, boost::asio::error::invalid_argument);
    EXPECT_EQ(call(*c, {"CLIENT", "SETNAME", "imgate-gw-1"}).rep.str, "OK");
    EXPECT_EQ(call(*c, {"PING"}).rep.str, "PONG");
}

TEST_F(RedisConnection, ServerKilledFailsOutstandingThenReconnectsAfterRestart) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto o = opts_for(server);
    o.command_timeout = 30s;  // the loss, not the timeout, must end these commands
    auto c = make(o);
    connect(c);
    ASSERT_FALSE(call(*c, {"SET", "imgate:gw:gw-1", "epoch-1"}).ec);
    // BLPOP blocks this client in Redis: the commands behind it stay unanswered too.
    std::vector<std::shared_ptr<result>> outstanding;
    outstanding.push_back(send(*c, {"BLPOP", "imgate:never", "0"}));
    outstanding.push_back(send(*c, {"GET", "imgate:gw:gw-1"}));
    outstanding.push_back(send(*c, {"INCR", "imgate:n"}));
    ASSERT_TRUE(run_until([&] { return pending_gauge() == 3; }));

    server.kill();
    ASSERT_TRUE(run_until([&] { return downs >= 1; }));
    ASSERT_TRUE(run_until([&] {
        for (auto& r : outstanding)
            if (r->calls == 0) return false;
        return true;
    }));
    for (auto& r : outstanding) {
        EXPECT_EQ(r->calls, 1);
        EXPECT_EQ(r->ec, redis::errc::connection_lost) << r->ec.message();
        EXPECT_TRUE(r->rep.is_nil());
    }
    EXPECT_EQ(first_down, redis::errc::connection_lost);
    EXPECT_FALSE(c->connected());
    EXPECT_EQ(up_gauge(), 0);
    EXPECT_EQ(pending_gauge(), 0);
    EXPECT_EQ(call(*c, {"GET", "imgate:gw:gw-1"}).ec, redis::errc::not_connected);
    // While the server is down, attempts keep failing (and keep being reported).
    ASSERT_TRUE(run_until([&] { return downs >= 3; }));
    EXPECT_EQ(ups, 1);

    ASSERT_TRUE(server.start());
    ASSERT_TRUE(run_until([&] { return ups == 2; }));
    EXPECT_TRUE(c->connected());
    EXPECT_EQ(up_gauge(), 1);
    EXPECT_EQ(connects(), 2u);
    // A fresh server (no persistence): the old key is gone, new commands work.
    EXPECT_TRUE(call(*c, {"GET", "imgate:gw:gw-1"}).rep.is_nil());
    ASSERT_FALSE(call(*c, {"SET", "imgate:gw:gw-1", "epoch-2"}).ec);
    EXPECT_EQ(server.cli("GET", "imgate:gw:gw-1"), "epoch-2");
    for (auto& r : outstanding) EXPECT_EQ(r->calls, 1);
}

TEST_F(RedisConnection, ServerStoppedGracefullyIsALossToo) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto c = make(opts_for(server));
    connect(c);
    server.stop();
    ASSERT_TRUE(run_until([&] { return downs >= 1 && !c->connected(); }));
    EXPECT_EQ(call(*c, {"PING"}).ec, redis::errc::not_connected);
    ASSERT_TRUE(server.start());
    ASSERT_TRUE(run_until([&] { return ups == 2; }));
    EXPECT_EQ(call(*c, {"PING"}).rep.str, "PONG");
}

TEST_F(RedisConnection, AStalledServerTimesOutTheOldestCommandAndTheConnectionIsRemade) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto o = opts_for(server);
    o.command_timeout = 300ms;
    o.connect_timeout = 300ms;
    auto c = make(o);
    connect(c);
    ASSERT_EQ(::kill(server.pid(), SIGSTOP), 0);
    std::vector<std::shared_ptr<result>> waiting;
    for (int i = 0; i < 3; ++i) waiting.push_back(send(*c, {"INCR", "imgate:stalled"}));
    bool all = run_until(
        [&] {
            for (auto& r : waiting)
                if (r->calls == 0) return false;
            return true;
        },
        10000ms);
    ::kill(server.pid(), SIGCONT);
    ASSERT_TRUE(all);
    for (auto& r : waiting) {
        EXPECT_EQ(r->calls, 1);
        EXPECT_EQ(r->ec, redis::errc::timed_out) << r->ec.message();
    }
    EXPECT_EQ(first_down, redis::errc::timed_out);
    // The server answers again: a new connection, and commands work.
    ASSERT_TRUE(run_until([&] { return ups == 2; }));
    EXPECT_EQ(call(*c, {"INCR", "imgate:stalled"}).ec, error_code{});
    EXPECT_EQ(commands("failed"), 3u);
}

TEST_F(RedisConnection, AuthWithTheRightPasswordConnects) {
    IMGATE_REQUIRE_REDIS();
    redis_server server({.unix_socket = false, .password = "s3cret-pässwörd"});
    auto c = make(opts_for(server));
    connect(c);
    ASSERT_FALSE(call(*c, {"SET", "imgate:auth", "yes"}).ec);
    EXPECT_EQ(server.cli("GET", "imgate:auth"), "yes");
}

TEST_F(RedisConnection, AWrongPasswordIsAFailedConnectionRetriedWithBackoff) {
    IMGATE_REQUIRE_REDIS();
    redis_server server({.unix_socket = false, .password = "s3cret-pässwörd"});
    auto o = opts_for(server);
    o.password = "wrong";
    auto c = make(o);
    c->start();
    ASSERT_TRUE(run_until([&] { return downs >= 3; }));
    EXPECT_EQ(ups, 0);
    EXPECT_FALSE(c->connected());
    EXPECT_EQ(connects(), 0u);
    EXPECT_EQ(up_gauge(), 0);
    EXPECT_EQ(call(*c, {"PING"}).ec, redis::errc::not_connected);
}

TEST_F(RedisConnection, NoPasswordAgainstAProtectedServerNeverComesUp) {
    IMGATE_REQUIRE_REDIS();
    redis_server server({.unix_socket = false, .password = "s3cret"});
    auto o = opts_for(server);
    o.password.clear();  // the PING answers NOAUTH: not a usable connection
    auto c = make(o);
    c->start();
    ASSERT_TRUE(run_until([&] { return downs >= 2; }));
    EXPECT_EQ(ups, 0);
    EXPECT_FALSE(c->connected());
}

TEST_F(RedisConnection, SelectsTheConfiguredDatabase) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto o = opts_for(server);
    o.db = 3;
    auto c = make(o);
    connect(c);
    ASSERT_FALSE(call(*c, {"SET", "imgate:db", "three"}).ec);
    EXPECT_EQ(server.cli("-n", "3", "GET", "imgate:db"), "three");
    EXPECT_EQ(server.cli("-n", "0", "EXISTS", "imgate:db"), "0");
}

TEST_F(RedisConnection, UnixSocket) {
    IMGATE_REQUIRE_REDIS();
    redis_server server({.unix_socket = true, .password = ""});
    auto o = opts_for(server);
    o.unix_path = server.unix_path();
    o.port = 1;  // the socket path wins over host:port
    auto c = make(o);
    connect(c);
    ASSERT_FALSE(call(*c, {"SET", "imgate:unix", "zoë"}).ec);
    EXPECT_EQ(server.cli("GET", "imgate:unix"), "zoë");
    auto get = call(*c, {"GET", "imgate:unix"});
    EXPECT_EQ(get.rep.str, "zoë");
}

TEST_F(RedisConnection, PastMaxPendingCommandsFailQueueFull) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto o = opts_for(server);
    o.max_pending = 3;
    o.command_timeout = 30s;
    auto c = make(o);
    connect(c);
    std::vector<std::shared_ptr<result>> blocked;
    for (int i = 0; i < 3; ++i) blocked.push_back(send(*c, {"BLPOP", "imgate:q", "0"}));
    ASSERT_TRUE(run_until([&] { return pending_gauge() == 3; }));
    auto over = call(*c, {"PING"});
    EXPECT_EQ(over.ec, redis::errc::queue_full);
    EXPECT_TRUE(c->connected());
    // Answers free the slots.
    EXPECT_EQ(server.cli("RPUSH", "imgate:q", "a", "b", "c"), "3");
    ASSERT_TRUE(run_until([&] {
        for (auto& r : blocked)
            if (r->calls == 0) return false;
        return true;
    }));
    for (auto& r : blocked) {
        EXPECT_FALSE(r->ec);
        ASSERT_EQ(r->rep.elements.size(), 2u);
        EXPECT_EQ(r->rep.elements[0].str, "imgate:q");
    }
    EXPECT_EQ(pending_gauge(), 0);
    EXPECT_EQ(call(*c, {"PING"}).rep.str, "PONG");
}

TEST_F(RedisConnection, StopFailsEveryOutstandingCommandOnceWithStopped) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto o = opts_for(server);
    o.command_timeout = 30s;
    auto c = make(o);
    connect(c);
    std::vector<std::shared_ptr<result>> outstanding;
    outstanding.push_back(send(*c, {"BLPOP", "imgate:never", "0"}));
    for (int i = 0; i < 4; ++i) outstanding.push_back(send(*c, {"INCR", "imgate:n"}));
    ASSERT_TRUE(run_until([&] { return pending_gauge() == 5; }));
    c->stop();
    c->stop();  // idempotent
    ASSERT_TRUE(run_until([&] {
        for (auto& r : outstanding)
            if (r->calls == 0) return false;
        return true;
    }));
    io.restart();
    io.poll();
    for (auto& r : outstanding) {
        EXPECT_EQ(r->calls, 1);
        EXPECT_EQ(r->ec, redis::errc::stopped);
    }
    EXPECT_FALSE(c->connected());
    EXPECT_EQ(up_gauge(), 0);
    EXPECT_EQ(pending_gauge(), 0);
    EXPECT_EQ(call(*c, {"PING"}).ec, redis::errc::stopped);
    EXPECT_EQ(downs, 0);  // stopping is not a loss
    // No reconnect after stop.
    c->start();
    io.restart();
    io.run_for(100ms);
    EXPECT_EQ(ups, 1);
    // Redis saw the client go.
    EXPECT_TRUE(imgate::test::eventually(
        [&] { return server.cli("CLIENT", "LIST").find("cmd=blpop") == std::string::npos; }));
}

TEST_F(RedisConnection, DroppingTheLastReferenceStopsAndAnswersOutstandingCommands) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto o = opts_for(server);
    o.command_timeout = 30s;
    auto c = make(o);
    connect(c);
    auto blocked = send(*c, {"BLPOP", "imgate:never", "0"});
    ASSERT_TRUE(run_until([&] { return pending_gauge() == 1; }));
    c.reset();
    ASSERT_TRUE(run_until([&] { return blocked->calls > 0; }));
    EXPECT_EQ(blocked->ec, redis::errc::stopped);
    EXPECT_EQ(up_gauge(), 0);
}

TEST_F(RedisConnection, AHandlerMayDropTheConnection) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto c = make(opts_for(server));
    connect(c);
    int later_calls = 0;
    error_code later_ec;
    c->command({"PING"}, [&](error_code, const redis::reply&) { c.reset(); });
    c->command({"PING"}, [&](error_code ec, const redis::reply&) {
        ++later_calls;
        later_ec = ec;
    });
    ASSERT_TRUE(run_until([&] { return later_calls > 0; }));
    EXPECT_EQ(later_calls, 1);
    // Both answers came in one read, or the second was cut off by the stop.
    EXPECT_TRUE(!later_ec || later_ec == redis::errc::stopped) << later_ec.message();
}

TEST_F(RedisConnection, DestroyingWhileConnectingToNothingIsSafe) {
    auto o = redis::options{};
    o.host = "127.0.0.1";
    o.port = imgate::test::free_port();  // nothing listens
    o.name = "unit";
    o.backoff_min = 10ms;
    o.backoff_max = 20ms;
    auto c = make(o);
    c->start();
    ASSERT_TRUE(run_until([&] { return downs >= 3; }));
    EXPECT_EQ(last_down, redis::errc::connection_lost);
    EXPECT_EQ(call(*c, {"PING"}).ec, redis::errc::not_connected);
    c.reset();
    io.restart();
    io.run_for(100ms);
    EXPECT_EQ(ups, 0);
    int downs_after = downs;
    io.restart();
    io.run_for(100ms);
    EXPECT_EQ(downs, downs_after);  // no more attempts once destroyed
}

TEST_F(RedisConnection, ASilentListenerTimesOutTheConnectAndDestructionMidHandshakeIsSafe) {
    // Accepts (the kernel completes the handshake) but never answers the PING.
    asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
    auto o = redis::options{};
    o.port = silent.local_endpoint().port();
    o.name = "unit";
    o.connect_timeout = 100ms;
    o.backoff_min = 10ms;
    o.backoff_max = 20ms;
    auto c = make(o);
    c->start();
    ASSERT_TRUE(run_until([&] { return downs >= 2; }));
    EXPECT_EQ(last_down, redis::errc::timed_out);
    EXPECT_EQ(ups, 0);
    // Mid-handshake again (the next attempt is connecting now or soon): destroy it.
    io.restart();
    io.run_for(15ms);
    c.reset();
    io.restart();
    io.run_for(50ms);
    EXPECT_EQ(ups, 0);
}

TEST_F(RedisConnection, ANameIsResolvedWithoutBlocking) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto o = opts_for(server);
    o.host = "localhost";
    auto c = make(o);
    connect(c);
    EXPECT_EQ(call(*c, {"PING"}).rep.str, "PONG");
}

TEST_F(RedisConnection, AReplyHiredisCannotParseFailsTheCommandWithProtocol) {
    // A fake server: answers the handshake PING, then sends a reply with an unknown type byte.
    asio::ip::tcp::acceptor fake(io, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::tcp::socket peer(io);
    std::array<char, 512> buf{};
    bool garbage_sent = false;
    fake.async_accept(peer, [&](error_code ec) {
        ASSERT_FALSE(ec);
        peer.async_read_some(asio::buffer(buf), [&](error_code ec, size_t) {
            ASSERT_FALSE(ec);
            asio::write(peer, asio::buffer(std::string("+PONG\r\n")), ec);
            peer.async_read_some(asio::buffer(buf), [&](error_code ec, size_t) {
                ASSERT_FALSE(ec);
                asio::write(peer, asio::buffer(std::string("?what\r\n")), ec);
                garbage_sent = true;
            });
        });
    });
    auto o = redis::options{};
    o.port = fake.local_endpoint().port();
    o.name = "unit";
    o.backoff_min = 1000ms;  // one connection is enough here
    o.backoff_max = 1000ms;
    auto c = make(o);
    connect(c);
    auto r = call(*c, {"GET", "imgate:u:zoë@example.com"});
    EXPECT_TRUE(garbage_sent);
    EXPECT_EQ(r.ec, redis::errc::protocol) << r.ec.message();
    ASSERT_TRUE(run_until([&] { return downs >= 1; }));
    EXPECT_EQ(first_down, redis::errc::protocol);
    EXPECT_FALSE(c->connected());
}

TEST_F(RedisConnection, FailedRetriesAreLoggedThrottledAndTheReturnOnce) {
    IMGATE_REQUIRE_REDIS();
    std::ostringstream out;
    auto before = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>(
        "t", std::make_shared<spdlog::sinks::ostream_sink_mt>(out)));
    struct restore {
        std::shared_ptr<spdlog::logger> l;
        ~restore() { spdlog::set_default_logger(l); }
    } restore_logger{before};

    redis_server server;
    server.kill();
    auto o = opts_for(server);
    o.backoff_min = 1ms;
    o.backoff_max = 2ms;
    auto c = make(o);
    c->start();
    ASSERT_TRUE(run_until([&] { return downs >= 30; }));
    ASSERT_TRUE(server.start());
    ASSERT_TRUE(run_until([&] { return ups == 1; }));
    std::string s = out.str();
    auto count = [&](const std::string& what) {
        size_t n = 0;
        for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
        return n;
    };
    EXPECT_LE(count("cannot connect to " + server.address()), 2u) << s;
    EXPECT_GE(count("cannot connect to " + server.address()), 1u) << s;
    EXPECT_EQ(count("connected to " + server.address() + " after"), 1u) << s;
}

TEST_F(RedisConnection, RestartMidTrafficAnswersEveryCommandExactlyOnce) {
    IMGATE_REQUIRE_REDIS();
    redis_server server;
    auto c = make(opts_for(server));
    connect(c);
    // A producer on the executor: 50 commands every 2 ms, whatever the connection's state.
    std::vector<int> calls;
    std::map<std::string, int> outcomes;
    size_t ok_after_restart = 0;
    bool restarted = false, producing = true;
    asio::steady_timer tick(io);
    std::function<void()> produce = [&] {
        if (!producing) return;
        for (int i = 0; i < 50; ++i) {
            size_t id = calls.size();
            calls.push_back(0);
            c->command({"INCR", "imgate:traffic"}, [&, id](error_code ec, const redis::reply&) {
                ++calls[id];
                ++outcomes[ec ? ec.message() : "ok"];
                if (!ec && restarted) ++ok_after_restart;
            });
        }
        tick.expires_after(2ms);
        tick.async_wait([&](error_code ec) {
            if (!ec) produce();
        });
    };
    produce();
    ASSERT_TRUE(run_until([&] { return outcomes["ok"] >= 500; }));
    server.kill();
    ASSERT_TRUE(run_until([&] { return downs >= 1; }));
    ASSERT_TRUE(
        run_until([&] { return outcomes[error_code(redis::errc::not_connected).message()] > 0; }));
    ASSERT_TRUE(server.start());
    restarted = true;
    ASSERT_TRUE(run_until([&] { return ups == 2 && ok_after_restart >= 500; }));
    producing = false;
    tick.cancel();
    ASSERT_TRUE(run_until([&] {
        for (int n : calls)
            if (n == 0) return false;
        return true;
    }));
    for (size_t i = 0; i < calls.size(); ++i) ASSERT_EQ(calls[i], 1) << "command " << i;
    // Only these outcomes: answered, lost with the connection, refused while it was down.
    for (auto& [what, n] : outcomes) {
        EXPECT_TRUE(what == "ok" || what == error_code(redis::errc::connection_lost).message() ||
                    what == error_code(redis::errc::not_connected).message())
            << what << " x" << n;
    }
    EXPECT_EQ(pending_gauge(), 0);
    EXPECT_EQ(commands("ok") + commands("failed"), calls.size());
}
