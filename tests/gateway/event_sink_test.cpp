#include "gateway/event_sink.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <map>

#include "common/clock.hpp"
#include "common/frame.hpp"
#include "common/metrics.hpp"
#include "fake_session_sink.hpp"
#include "gateway/router.hpp"

using namespace imgate;
using namespace imgate::gw;
namespace asio = boost::asio;

namespace {

// Redis as the sink sees it: commands are recorded with their handlers and answered by the test.
class fake_redis final : public redis::commands {
  public:
    struct call {
        redis::argv args;
        redis::reply_handler h;
    };
    bool up = true;
    std::vector<call> calls;
    size_t answered = 0;  // calls[0, answered) have had their answer

    void command(redis::argv args, redis::reply_handler h) override {
        calls.push_back(call{std::move(args), std::move(h)});
    }
    bool connected() const override { return up; }

    // Answers the next unanswered call with an entry id (success).
    void ok() {
        redis::reply r;
        r.type = redis::reply::kind::string;
        r.str = std::to_string(answered + 1) + "-0";
        calls.at(answered++).h({}, r);
    }
    void fail(redis::errc e) { calls.at(answered++).h(redis::make_error_code(e), redis::reply{}); }
    void error_reply(std::string text) {
        redis::reply r;
        r.type = redis::reply::kind::error;
        r.str = std::move(text);
        calls.at(answered++).h({}, r);
    }
    size_t unanswered() const { return calls.size() - answered; }
};

// The field -> value map of one XADD (after the "*" id).
std::map<std::string, std::string> fields(const redis::argv& a) {
    std::map<std::string, std::string> m;
    EXPECT_GE(a.size(), 6u);
    EXPECT_EQ(a.size() % 2, 0u);
    for (size_t i = 6; i + 1 < a.size(); i += 2) m[a[i]] = a[i + 1];
    return m;
}

outbound_message sample_message(uint64_t id, std::string payload) {
    outbound_message m;
    m.server_msg_id = id;
    m.client_msg_id = id + 1000;
    m.kind = proto::target_kind::user;
    m.target = "zoë@example.com";
    m.from_user = "émile@example.com";
    m.from_device = "phone";
    m.ts_ms = 1800000000123;
    m.payload = std::move(payload);
    return m;
}

struct EventSink : ::testing::Test {
    asio::io_context io;
    fake_redis redis;
    metrics_registry metrics;
    manual_clock clock{1800000000000};
    std::shared_ptr<event_sink> sink;

    void make(size_t max_buffered = 100, events_overflow overflow = events_overflow::drop,
              bool messages = true) {
        event_sink_options o;
        o.stream = "imgate:events";
        o.maxlen = 5000;
        o.messages = messages;
        o.max_buffered = max_buffered;
        o.overflow = overflow;
        o.retry = std::chrono::hours(1);  // the tests wake the sink with on_up()
        sink = event_sink::create(io.get_executor(), redis, o, "gw1", metrics, clock);
    }
    void run() {
        io.restart();
        io.poll();
    }
    double metric(const std::string& name, const std::string& type = "") {
        if (type.empty()) return metrics.get_gauge(name, "").value();
        return double(metrics.get_counter(name, "", {{"type", type}}).value());
    }
    void login(int n) {
        sink->login("u" + std::to_string(n) + "@example.com", "phone", n, "tcp", "127.0.0.1");
    }
    // The session ids of the login events in the order they were sent.
    std::vector<std::string> sent_sessions(size_t from = 0) {
        std::vector<std::string> out;
        for (size_t i = from; i < redis.calls.size(); ++i)
            out.push_back(fields(redis.calls[i].args)["session"]);
        return out;
    }
};

TEST_F(EventSink, LoginAndLogoutCarryExactlyTheDocumentedFields) {
    make();
    sink->login("zoë@example.com", "phone", 42, "wss", "192.0.2.7");
    sink->logout("zoë@example.com", "phone", 42, "kick:replaced");
    run();
    ASSERT_EQ(redis.calls.size(), 2u);
    const auto& a = redis.calls[0].args;
    ASSERT_GE(a.size(), 6u);
    EXPECT_EQ((redis::argv{a.begin(), a.begin() + 6}),
              (redis::argv{"XADD", "imgate:events", "MAXLEN", "~", "5000", "*"}));
    EXPECT_EQ(fields(a), (std::map<std::string, std::string>{{"type", "login"},
                                                             {"gateway", "gw1"},
                                                             {"ts_ms", "1800000000000"},
                                                             {"user", "zoë@example.com"},
                                                             {"device", "phone"},
                                                             {"session", "42"},
                                                             {"transport", "wss"},
                                                             {"addr", "192.0.2.7"}}));
    EXPECT_EQ(fields(redis.calls[1].args),
              (std::map<std::string, std::string>{{"type", "logout"},
                                                  {"gateway", "gw1"},
                                                  {"ts_ms", "1800000000000"},
                                                  {"user", "zoë@example.com"},
                                                  {"device", "phone"},
                                                  {"session", "42"},
                                                  {"reason", "kick:replaced"}}));
    EXPECT_EQ(metric("imgate_events_buffered"), 2);
    redis.ok();
    redis.ok();
    EXPECT_EQ(metric("imgate_events_buffered"), 0);
    EXPECT_EQ(metric("imgate_events_total", "login"), 1);
    EXPECT_EQ(metric("imgate_events_total", "logout"), 1);
}

TEST_F(EventSink, MessageAndPushFieldsKeepBinaryPayloads) {
    make();
    std::string payload("\x00\xff\x01 zoë\n", 9);
    auto m = sample_message(77, payload);
    EXPECT_TRUE(sink->message(m));
    outbound_message p;
    p.server_msg_id = 78;
    p.kind = proto::target_kind::room;
    p.target = "café-lovers";
    p.ts_ms = 1800000000999;
    p.payload = std::string("\x00\x00", 2);
    p.is_push = true;
    EXPECT_TRUE(sink->push(p));
    run();
    ASSERT_EQ(redis.calls.size(), 2u);
    EXPECT_EQ(fields(redis.calls[0].args),
              (std::map<std::string, std::string>{{"type", "message"},
                                                  {"gateway", "gw1"},
                                                  {"ts_ms", "1800000000123"},
                                                  {"id", "77"},
                                                  {"client_msg_id", "1077"},
                                                  {"from_user", "émile@example.com"},
                                                  {"from_device", "phone"},
                                                  {"kind", "user"},
                                                  {"target", "zoë@example.com"},
                                                  {"payload", payload}}));
    EXPECT_EQ(fields(redis.calls[1].args),
              (std::map<std::string, std::string>{{"type", "push"},
                                                  {"gateway", "gw1"},
                                                  {"ts_ms", "1800000000999"},
                                                  {"id", "78"},
                                                  {"kind", "room"},
                                                  {"target", "café-lovers"},
                                                  {"payload", std::string("\x00\x00", 2)}}));
}

TEST_F(EventSink, MessagesOffRecordsNoMessageOrPush) {
    make(100, events_overflow::drop, false);
    EXPECT_TRUE(sink->message(sample_message(1, "x")));
    EXPECT_TRUE(sink->push(sample_message(2, "y")));
    login(1);
    run();
    ASSERT_EQ(redis.calls.size(), 1u);
    EXPECT_EQ(fields(redis.calls[0].args)["type"], "login");
}

TEST_F(EventSink, EventsArePipelinedInRecordOrder) {
    make();
    for (int i = 1; i <= 20; ++i) login(i);
    run();
    std::vector<std::string> want;
    for (int i = 1; i <= 20; ++i) want.push_back(std::to_string(i));
    EXPECT_EQ(sent_sessions(), want);
    EXPECT_EQ(redis.unanswered(), 20u);
}

TEST_F(EventSink, FullBufferDropsNewEventsUnderDropAndCountsThem) {
    make(3, events_overflow::drop);
    for (int i = 1; i <= 3; ++i) login(i);
    EXPECT_TRUE(sink->message(sample_message(9, "m")));  // drop never refuses a send
    sink->logout("u1@example.com", "phone", 1, "client_closed");
    run();
    EXPECT_EQ(sent_sessions(), (std::vector<std::string>{"1", "2", "3"}));
    EXPECT_EQ(metric("imgate_events_dropped_total", "message"), 1);
    EXPECT_EQ(metric("imgate_events_dropped_total", "logout"), 1);
    EXPECT_EQ(metrics.get_counter("imgate_events_refused_total", "").value(), 0u);
    // Acknowledged entries make room again.
    redis.ok();
    login(4);
    run();
    EXPECT_EQ(sent_sessions(3), (std::vector<std::string>{"4"}));
}

TEST_F(EventSink, FullBufferRefusesMessagesUnderRefuseButDropsSessionEvents) {
    make(2, events_overflow::refuse);
    login(1);
    EXPECT_TRUE(sink->message(sample_message(5, "a")));
    EXPECT_FALSE(sink->message(sample_message(6, "b")));
    EXPECT_FALSE(sink->push(sample_message(7, "c")));
    login(2);
    EXPECT_EQ(metrics.get_counter("imgate_events_refused_total", "").value(), 2u);
    EXPECT_EQ(metric("imgate_events_dropped_total", "message"), 0);
    EXPECT_EQ(metric("imgate_events_dropped_total", "login"), 1);
    run();
    redis.ok();
    EXPECT_TRUE(sink->message(sample_message(8, "d")));
}

TEST_F(EventSink, RedisDownBuffersThenSendsEverythingInOrderWhenItReturns) {
    make();
    redis.up = false;
    for (int i = 1; i <= 5; ++i) login(i);
    run();
    EXPECT_TRUE(redis.calls.empty());  // nothing is sent to a connection that is down
    EXPECT_EQ(metric("imgate_events_buffered"), 5);
    redis.up = true;
    sink->on_up();
    run();
    // The oldest alone first (a probe), then the rest pipelined once it is answered.
    EXPECT_EQ(sent_sessions(), (std::vector<std::string>{"1"}));
    redis.ok();
    run();
    EXPECT_EQ(sent_sessions(), (std::vector<std::string>{"1", "2", "3", "4", "5"}));
    for (int i = 0; i < 4; ++i) redis.ok();
    EXPECT_EQ(metric("imgate_events_buffered"), 0);
    EXPECT_EQ(metric("imgate_events_total", "login"), 5);
}

TEST_F(EventSink, AFailedXaddIsResentWithEverythingAfterItInOrder) {
    make();
    for (int i = 1; i <= 4; ++i) login(i);
    run();
    ASSERT_EQ(sent_sessions(), (std::vector<std::string>{"1", "2", "3", "4"}));
    redis.ok();                                // 1 appended
    redis.fail(redis::errc::timed_out);        // 2: no answer: the connection is dropped
    redis.fail(redis::errc::connection_lost);  // 3 and 4 fail with it
    redis.fail(redis::errc::connection_lost);
    login(5);
    run();
    EXPECT_EQ(redis.calls.size(), 4u);  // waiting: nothing new is sent
    sink->on_up();
    run();
    EXPECT_EQ(sent_sessions(4), (std::vector<std::string>{"2"}));
    redis.ok();
    run();
    EXPECT_EQ(sent_sessions(4), (std::vector<std::string>{"2", "3", "4", "5"}));
    for (int i = 0; i < 3; ++i) redis.ok();
    EXPECT_EQ(metric("imgate_events_total", "login"), 5);
    EXPECT_EQ(metric("imgate_events_dropped_total", "login"), 0);
    EXPECT_EQ(metric("imgate_events_buffered"), 0);
}

TEST_F(EventSink, AProbeThatFailsAgainKeepsWaiting) {
    make();
    login(1);
    login(2);
    run();
    redis.fail(redis::errc::not_connected);
    redis.fail(redis::errc::not_connected);
    sink->on_up();
    run();
    EXPECT_EQ(sent_sessions(2), (std::vector<std::string>{"1"}));
    redis.fail(redis::errc::timed_out);
    run();
    EXPECT_EQ(redis.calls.size(), 3u);
    redis.up = false;
    sink->on_up();  // a stale wake-up while Redis is down again sends nothing
    run();
    EXPECT_EQ(redis.calls.size(), 3u);
    redis.up = true;
    sink->on_up();
    run();
    EXPECT_EQ(sent_sessions(3), (std::vector<std::string>{"1"}));
    redis.ok();
    run();
    EXPECT_EQ(sent_sessions(3), (std::vector<std::string>{"1", "2"}));
    EXPECT_EQ(metric("imgate_events_buffered"), 1);
}

TEST_F(EventSink, AnErrorReplyDropsThatEventAndTheRestGoOn) {
    make();
    login(1);
    EXPECT_TRUE(sink->message(sample_message(3, "x")));
    login(2);
    run();
    redis.ok();
    redis.error_reply("WRONGTYPE Operation against a key holding the wrong kind of value");
    redis.ok();
    EXPECT_EQ(metric("imgate_events_dropped_total", "message"), 1);
    EXPECT_EQ(metric("imgate_events_total", "login"), 2);
    EXPECT_EQ(metric("imgate_events_buffered"), 0);
    EXPECT_EQ(redis.calls.size(), 3u);  // not re-sent
}

TEST_F(EventSink, TheBufferBoundCountsEventsInFlightUntilAnswered) {
    make(2, events_overflow::drop);
    login(1);
    login(2);
    run();
    EXPECT_EQ(redis.unanswered(), 2u);
    login(3);  // both still unanswered: the buffer is full
    EXPECT_EQ(metric("imgate_events_dropped_total", "login"), 1);
    redis.ok();
    login(4);
    run();
    EXPECT_EQ(sent_sessions(), (std::vector<std::string>{"1", "2", "4"}));
}

TEST_F(EventSink, StopSendsNothingMoreAndCountsLaterEventsDropped) {
    make();
    login(1);
    run();
    sink->stop();
    login(2);
    run();
    EXPECT_EQ(redis.calls.size(), 1u);
    EXPECT_EQ(metric("imgate_events_dropped_total", "login"), 1);
}

// The fleet for the router tests below: answers offline at once and records what it heard.
class counting_cluster final : public cluster {
  public:
    std::vector<outbound_message> forwarded;
    std::vector<std::string> heard;
    // Read at each forward (e.g. how many events the sink holds then).
    std::function<size_t()> probe;
    std::vector<size_t> probed;

    void forward(const outbound_message& msg, std::function<void(forward_result)> done) override {
        forwarded.push_back(msg);
        if (probe) probed.push_back(probe());
        done(forward_result{proto::code::offline, 0});
    }
    void send_receipt(const std::string&, uint64_t, const proto::receipt_msg&) override {}
    void user_online(const std::string& u) override { heard.push_back("online " + u); }
    void user_offline(const std::string& u) override { heard.push_back("offline " + u); }
    void room_interest(const std::string&, bool) override {}
    void device_login(const std::string&, const std::string&) override {}
    void user_sessions(const std::string& u, uint32_t n) override {
        heard.push_back("sessions " + u + " " + std::to_string(n));
    }
    void reload(const fleet_config&) override {}
    void stop() override {}
};

struct EventSinkRouter : EventSink {
    gateway_metrics gmetrics{metrics};
    counting_cluster fleet;
    message_router router{"gw1", 3, gateway_limits{}, gmetrics, clock};
    EventSinkRouter() { router.attach(fleet); }
    std::shared_ptr<test::fake_session> login(uint64_t id, std::string user, std::string device) {
        auto s = std::make_shared<test::fake_session>(id, std::move(user), std::move(device));
        router.admitted(*s, router.sessions().add(s));
        return s;
    }
    proto::send_result_msg send(const std::shared_ptr<test::fake_session>& from, uint64_t cid) {
        proto::send_msg m{proto::target_kind::user, "böb@example.com", cid, "payload"};
        router.send(from, m, uint32_t(cid));
        frame_decoder dec;
        dec.feed(from->owned.back());
        auto f = dec.next();
        EXPECT_TRUE(f);
        auto r = f ? proto::decode<proto::send_result_msg>(*f) : std::nullopt;
        EXPECT_TRUE(r);
        return r ? *r : proto::send_result_msg{};
    }
};

TEST_F(EventSinkRouter, ASendIsRecordedBeforeItIsRouted) {
    make();
    router.attach_events(sink.get());
    fleet.probe = [&] { return sink->buffered(); };
    auto z = login(1, "zoë@example.com", "phone");
    auto r = send(z, 5);
    EXPECT_EQ(r.status, proto::code::offline);
    ASSERT_EQ(fleet.forwarded.size(), 1u);
    EXPECT_EQ(fleet.probed, (std::vector<size_t>{1}));  // buffered before it was forwarded
    run();
    ASSERT_EQ(redis.calls.size(), 1u);
    auto f = fields(redis.calls[0].args);
    EXPECT_EQ(f["type"], "message");
    EXPECT_EQ(f["id"], std::to_string(r.server_msg_id));
    EXPECT_EQ(f["client_msg_id"], "5");
    EXPECT_EQ(f["from_user"], "zoë@example.com");
    EXPECT_EQ(f["target"], "böb@example.com");
    EXPECT_EQ(f["payload"], "payload");
    EXPECT_EQ(f["ts_ms"], std::to_string(clock.wall_ms()));
}

TEST_F(EventSinkRouter, AFullSinkUnderRefuseRefusesTheSendAndRoutesNothing) {
    make(1, events_overflow::refuse);
    router.attach_events(sink.get());
    auto z = login(1, "zoë@example.com", "phone");
    EXPECT_EQ(send(z, 1).status, proto::code::offline);
    auto r = send(z, 2);
    EXPECT_EQ(r.status, proto::code::unavailable);
    EXPECT_EQ(r.server_msg_id, 0u);
    EXPECT_EQ(r.client_msg_id, 2u);
    EXPECT_EQ(r.reached, 0u);
    EXPECT_EQ(fleet.forwarded.size(), 1u);  // the refused one went nowhere
    EXPECT_EQ(metrics.get_counter("imgate_events_refused_total", "").value(), 1u);

    std::optional<std::pair<proto::code, uint32_t>> pushed;
    outbound_message p;
    p.target = "zoë@example.com";
    p.payload = "x";
    router.push(p, [&](proto::code c, uint32_t n) { pushed.emplace(c, n); });
    ASSERT_TRUE(pushed);
    EXPECT_EQ(pushed->first, proto::code::unavailable);
    EXPECT_TRUE(z->frames.empty());  // not delivered locally either
    EXPECT_EQ(fleet.forwarded.size(), 1u);
}

TEST_F(EventSinkRouter, TheClusterHearsEachChangeOfAUsersLocalSessionCount) {
    auto phone = login(1, "zoë@example.com", "phone");
    auto tablet = login(2, "zoë@example.com", "tablet");
    auto phone2 = login(3, "zoë@example.com", "phone");  // replaces session 1: still 2
    router.closed(1, "zoë@example.com");                 // the replaced one: already gone
    router.closed(2, "zoë@example.com");
    router.closed(3, "zoë@example.com");
    EXPECT_EQ(fleet.heard,
              (std::vector<std::string>{"online zoë@example.com", "sessions zoë@example.com 1",
                                        "sessions zoë@example.com 2", "sessions zoë@example.com 1",
                                        "offline zoë@example.com", "sessions zoë@example.com 0"}));
}

}  // namespace
