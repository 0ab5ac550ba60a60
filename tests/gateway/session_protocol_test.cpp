// The client-session protocol without a socket or a timer: every deadline is driven by handing
// on_deadline the instant the session's timer would fire, so no test waits for real time.
#include "gateway/session_protocol.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace imgate;
using namespace imgate::gw;
using namespace std::chrono_literals;

namespace {

const steady_time t0{std::chrono::seconds(1000)};

// Answers the protocol's questions as a test sets them and records every call.
struct fake_gateway {
    bool serving_now = true;
    bool address_allowed = true;
    bool register_ok = true;
    jwt::verify_result verdict{jwt::verify_error::none, {"alice", "phone", 0}};
    proto::code room_status = proto::code::ok;

    int allow_calls = 0;
    int verify_calls = 0;
    std::vector<std::pair<std::string, std::string>> registered;
    std::vector<std::pair<proto::send_msg, uint32_t>> sent;
    std::vector<uint64_t> acks;
    std::vector<std::string> joined, left;
    std::map<proto::code, int> errors;
    std::map<std::string, int> logins;
    int messages_counted = 0;
    std::vector<proto::kick_reason> kicks;
    int idle_closes = 0;
    int slow_consumers = 0;

    bool serving() const { return serving_now; }
    bool allow_login() {
        ++allow_calls;
        return address_allowed;
    }
    jwt::verify_result verify_token(std::string_view) {
        ++verify_calls;
        return verdict;
    }
    bool register_session(std::string user, std::string device) {
        registered.emplace_back(std::move(user), std::move(device));
        return register_ok;
    }
    std::string_view gateway_id() const { return "gw1"; }
    void send(proto::send_msg& m, uint32_t corr) { sent.emplace_back(std::move(m), corr); }
    void ack(uint64_t id) { acks.push_back(id); }
    proto::code join(const std::string& room) {
        joined.push_back(room);
        return room_status;
    }
    proto::code leave(const std::string& room) {
        left.push_back(room);
        return room_status;
    }
    void count_error(proto::code c) { ++errors[c]; }
    void count_login(const char* result) { ++logins[result]; }
    void count_message(proto::target_kind, proto::code) { ++messages_counted; }
    void count_kick(proto::kick_reason r) { kicks.push_back(r); }
    void count_idle_close() { ++idle_closes; }
    void count_slow_consumer() { ++slow_consumers; }
};
static_assert(session_gateway<fake_gateway>);

std::shared_ptr<const gateway_limits> test_limits() {
    auto l = std::make_shared<gateway_limits>();
    l->login_timeout = 10s;
    l->idle_timeout = 90s;
    l->write_timeout = 5s;
    l->heartbeat_interval = 30s;
    l->send_rate = 1;
    l->send_burst = 2;
    l->max_payload_bytes = 16;
    return l;
}

template <class M>
frame make_frame(const M& m, uint32_t corr) {
    frame f;
    f.op = static_cast<uint8_t>(M::opcode);
    f.corr = corr;
    std::string bytes = proto::encode(m, corr);
    f.body = bytes.substr(frame_header_size);
    return f;
}

frame raw_frame(uint8_t op, uint32_t corr, std::string body = {}) {
    frame f;
    f.op = op;
    f.corr = corr;
    f.body = std::move(body);
    return f;
}

frame send_frame(uint32_t corr, uint64_t cid, std::string target = "bob",
                 std::string payload = "hi") {
    return make_frame(
        proto::send_msg{proto::target_kind::user, std::move(target), cid, std::move(payload)},
        corr);
}

// The one frame an action queues, decoded.
frame decode_one(const std::string& bytes) {
    frame_decoder d(absolute_max_frame_body);
    d.feed(bytes);
    auto f = d.next();
    EXPECT_TRUE(f.has_value());
    EXPECT_EQ(d.buffered(), 0u);
    return f.value_or(frame{});
}

proto::error_msg expect_error(const std::string& bytes, proto::code c, uint32_t corr) {
    auto f = decode_one(bytes);
    EXPECT_EQ(f.corr, corr);
    auto m = proto::decode<proto::error_msg>(f);
    EXPECT_TRUE(m.has_value());
    if (!m) return {};
    EXPECT_EQ(m->status, c) << m->message;
    return *m;
}

proto::send_result_msg expect_send_result(const std::string& bytes, uint32_t corr) {
    auto f = decode_one(bytes);
    EXPECT_EQ(f.corr, corr);
    auto m = proto::decode<proto::send_result_msg>(f);
    EXPECT_TRUE(m.has_value());
    return m.value_or(proto::send_result_msg{});
}

// A protocol that logged in at `at` (LOGIN corr 1).
struct logged_in {
    fake_gateway gw;
    session_protocol p;
    explicit logged_in(steady_time at = t0) : p(test_limits(), at) {
        auto a = p.on_frame(make_frame(proto::login_msg{"token"}, 1), at, gw);
        EXPECT_TRUE(p.logged_in());
        EXPECT_FALSE(a.finish);
    }
};

}  // namespace

TEST(SessionProtocol, StartArmsTheLoginDeadline) {
    session_protocol p(test_limits(), t0);
    EXPECT_EQ(p.start().deadline, t0 + 10s);
}

TEST(SessionProtocol, LoginTimeoutSendsErrorWithCorrZeroThenFinishes) {
    fake_gateway gw;
    session_protocol p(test_limits(), t0);
    // Bytes of a LOGIN that never completes do not move the login deadline.
    p.on_input(t0 + 4s);
    auto early = p.on_deadline(t0 + 9999ms, false, gw);
    EXPECT_TRUE(early.reply.empty());
    EXPECT_FALSE(early.finish);
    EXPECT_EQ(early.deadline, t0 + 10s);

    auto a = p.on_deadline(t0 + 10s, false, gw);
    expect_error(a.reply, proto::code::login_timeout, 0);
    EXPECT_TRUE(a.finish);
    EXPECT_TRUE(a.last_frame.empty());
    EXPECT_EQ(a.close, close_cause::none);
    EXPECT_EQ(gw.logins["login_timeout"], 1);
    EXPECT_EQ(gw.errors[proto::code::login_timeout], 1);
}

TEST(SessionProtocol, FirstFrameNotLoginIsRefusedWithItsCorr) {
    fake_gateway gw;
    session_protocol p(test_limits(), t0);
    auto a = p.on_frame(raw_frame(uint8_t(proto::op::ping), 9), t0 + 1s, gw);
    expect_error(a.reply, proto::code::login_required, 9);
    EXPECT_TRUE(a.finish);
    EXPECT_FALSE(p.logged_in());
    EXPECT_EQ(gw.logins["login_required"], 1);
    EXPECT_EQ(gw.verify_calls, 0);
}

TEST(SessionProtocol, LoginAnswersLoginResultAndArmsTheIdleDeadline) {
    fake_gateway gw;
    gw.verdict.c.dev = "";  // no `dev` claim: device `default`
    session_protocol p(test_limits(), t0);
    auto a = p.on_frame(make_frame(proto::login_msg{"token"}, 77), t0 + 2s, gw);
    ASSERT_TRUE(p.logged_in());
    auto f = decode_one(a.reply);
    EXPECT_EQ(f.corr, 77u);
    auto r = proto::decode<proto::login_result_msg>(f);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->user, "alice");
    EXPECT_EQ(r->device, "default");
    EXPECT_EQ(r->gateway_id, "gw1");
    EXPECT_EQ(r->heartbeat_ms, 30000u);
    EXPECT_EQ(r->idle_timeout_ms, 90000u);
    EXPECT_FALSE(a.finish);
    EXPECT_TRUE(a.shrink_decoder);
    EXPECT_EQ(a.deadline, t0 + 2s + 90s);
    ASSERT_EQ(gw.registered.size(), 1u);
    EXPECT_EQ(gw.registered[0], std::make_pair(std::string("alice"), std::string("default")));
    EXPECT_EQ(gw.logins["ok"], 1);
}

TEST(SessionProtocol, DrainingAtLoginRefusesBeforeAnyTokenOrRateWork) {
    fake_gateway gw;
    gw.serving_now = false;
    session_protocol p(test_limits(), t0);
    auto a = p.on_frame(make_frame(proto::login_msg{"token"}, 5), t0, gw);
    expect_error(a.reply, proto::code::draining, 5);
    EXPECT_TRUE(a.finish);
    EXPECT_EQ(gw.allow_calls, 0);  // the per-address limiter is not charged
    EXPECT_EQ(gw.verify_calls, 0);
    EXPECT_EQ(gw.logins["draining"], 1);
    EXPECT_FALSE(p.logged_in());
}

TEST(SessionProtocol, DrainStartedWhileTheTokenWasCheckedRefusesLogin) {
    fake_gateway gw;
    gw.register_ok = false;
    session_protocol p(test_limits(), t0);
    auto a = p.on_frame(make_frame(proto::login_msg{"token"}, 6), t0, gw);
    expect_error(a.reply, proto::code::draining, 6);
    EXPECT_TRUE(a.finish);
    EXPECT_FALSE(p.logged_in());
    EXPECT_EQ(gw.logins["draining"], 1);
    EXPECT_EQ(gw.logins.count("ok"), 0u);
}

TEST(SessionProtocol, LoginRefusals) {
    {
        fake_gateway gw;
        gw.address_allowed = false;
        session_protocol p(test_limits(), t0);
        auto a = p.on_frame(make_frame(proto::login_msg{"token"}, 2), t0, gw);
        expect_error(a.reply, proto::code::rate_limited, 2);
        EXPECT_EQ(gw.verify_calls, 0);  // no HMAC work for a flooding address
    }
    {
        fake_gateway gw;
        gw.verdict.error = jwt::verify_error::expired;
        session_protocol p(test_limits(), t0);
        auto a = p.on_frame(make_frame(proto::login_msg{"token"}, 3), t0, gw);
        expect_error(a.reply, proto::code::token_expired, 3);
        EXPECT_EQ(gw.logins["token_expired"], 1);
    }
    {
        fake_gateway gw;
        gw.verdict.c.sub = "a b";  // whitespace: not an identifier
        session_protocol p(test_limits(), t0);
        auto a = p.on_frame(make_frame(proto::login_msg{"token"}, 4), t0, gw);
        expect_error(a.reply, proto::code::auth_failed, 4);
        EXPECT_TRUE(a.finish);
        EXPECT_TRUE(gw.registered.empty());
        EXPECT_EQ(gw.logins["bad_identity"], 1);
    }
    {
        fake_gateway gw;
        session_protocol p(test_limits(), t0);
        auto a = p.on_frame(raw_frame(uint8_t(proto::op::login), 8, "\x01"), t0, gw);
        expect_error(a.reply, proto::code::bad_frame, 8);
        EXPECT_TRUE(a.finish);
        EXPECT_EQ(gw.logins["bad_frame"], 1);
    }
}

TEST(SessionProtocol, SecondLoginIsAnErrorThatKeepsTheSession) {
    logged_in s;
    auto a = s.p.on_frame(make_frame(proto::login_msg{"token"}, 12), t0, s.gw);
    expect_error(a.reply, proto::code::already_logged_in, 12);
    EXPECT_FALSE(a.finish);
    EXPECT_EQ(s.gw.registered.size(), 1u);
}

TEST(SessionProtocol, IdleKickAfterIdleTimeoutOfSilenceNotBefore) {
    logged_in s;
    auto early = s.p.on_deadline(t0 + 90s - 1ms, false, s.gw);
    EXPECT_FALSE(early.finish);
    EXPECT_EQ(early.deadline, t0 + 90s);

    auto a = s.p.on_deadline(t0 + 90s, false, s.gw);
    EXPECT_TRUE(a.finish);
    EXPECT_TRUE(a.reply.empty());
    auto f = decode_one(a.last_frame);
    EXPECT_EQ(f.corr, 0u);
    auto k = proto::decode<proto::kick_msg>(f);
    ASSERT_TRUE(k);
    EXPECT_EQ(k->reason, proto::kick_reason::idle);
    EXPECT_EQ(s.gw.idle_closes, 1);
    ASSERT_EQ(s.gw.kicks.size(), 1u);
    EXPECT_EQ(s.gw.kicks[0], proto::kick_reason::idle);
}

TEST(SessionProtocol, AnyFrameOrBytesResetTheIdleDeadline) {
    logged_in s;
    s.p.on_frame(raw_frame(uint8_t(proto::op::pong), 0), t0 + 30s, s.gw);
    auto a = s.p.on_deadline(t0 + 90s, false, s.gw);  // the timer armed at login fires
    EXPECT_FALSE(a.finish);
    EXPECT_EQ(a.deadline, t0 + 120s);

    s.p.on_input(t0 + 100s);  // part of a frame: still activity
    a = s.p.on_deadline(t0 + 120s, false, s.gw);
    EXPECT_FALSE(a.finish);
    EXPECT_EQ(a.deadline, t0 + 190s);

    a = s.p.on_deadline(t0 + 190s, false, s.gw);
    EXPECT_TRUE(a.finish);
    EXPECT_EQ(s.gw.idle_closes, 1);
}

TEST(SessionProtocol, PingIsAnsweredByPongWithItsCorr) {
    logged_in s;
    auto a = s.p.on_frame(raw_frame(uint8_t(proto::op::ping), 4242), t0 + 1s, s.gw);
    auto f = decode_one(a.reply);
    EXPECT_EQ(f.op, uint8_t(proto::op::pong));
    EXPECT_EQ(f.corr, 4242u);
    EXPECT_TRUE(f.body.empty());
    EXPECT_FALSE(a.finish);
}

TEST(SessionProtocol, PingWithABodyIsABadFrameThatKeepsTheSession) {
    logged_in s;
    auto a = s.p.on_frame(raw_frame(uint8_t(proto::op::ping), 17, "x"), t0 + 1s, s.gw);
    expect_error(a.reply, proto::code::bad_frame, 17);
    EXPECT_FALSE(a.finish);
    EXPECT_EQ(a.close, close_cause::none);
    EXPECT_EQ(s.gw.errors[proto::code::bad_frame], 1);
}

TEST(SessionProtocol, ReplacedSessionFlushesItsLastFrameThenLingers) {
    // gateway_server::on_login finishes the replaced session with KICK replaced (session::finish
    // queues that frame); from then on the protocol only watches the write, then lingers.
    logged_in s;
    auto quiet = s.p.on_deadline(t0 + 200s, true, s.gw);  // past idle: no idle KICK on top
    EXPECT_FALSE(quiet.finish);
    EXPECT_TRUE(quiet.last_frame.empty());
    EXPECT_EQ(quiet.close, close_cause::none);
    EXPECT_EQ(quiet.deadline, steady_time{});
    EXPECT_EQ(s.gw.idle_closes, 0);

    s.p.on_write_started(t0 + 200s);
    auto watching = s.p.on_deadline(t0 + 201s, true, s.gw);
    EXPECT_EQ(watching.deadline, t0 + 205s);
    s.p.on_write_done();
    auto flushed = s.p.on_flushed(t0 + 202s);
    EXPECT_TRUE(flushed.shutdown_send);
    EXPECT_EQ(flushed.deadline, t0 + 202s + session_linger);
    EXPECT_EQ(flushed.close, close_cause::none);
}

TEST(SessionProtocol, LingerClosesAtItsEndOrOnTheClientsClose) {
    logged_in s;
    auto a = s.p.on_flushed(t0 + 5s);
    EXPECT_TRUE(a.shutdown_send);
    EXPECT_EQ(a.deadline, t0 + 7s);
    // Flushing again (the queue emptied twice) does not shut down or extend the linger again.
    auto again = s.p.on_flushed(t0 + 6s);
    EXPECT_FALSE(again.shutdown_send);
    EXPECT_EQ(again.deadline, steady_time{});

    auto before = s.p.on_deadline(t0 + 6s, true, s.gw);
    EXPECT_EQ(before.close, close_cause::none);
    EXPECT_EQ(before.deadline, t0 + 7s);
    EXPECT_EQ(s.p.on_deadline(t0 + 7s, true, s.gw).close, close_cause::linger_over);

    EXPECT_EQ(session_protocol::on_read_end().close, close_cause::read_ended);
}

TEST(SessionProtocol, QueueOverItsBoundClosesAsSlowConsumer) {
    fake_gateway gw;
    auto a = session_protocol::on_queue_overflow(gw);
    EXPECT_EQ(a.close, close_cause::queue_over_bound);
    EXPECT_TRUE(a.reply.empty());
    EXPECT_TRUE(a.last_frame.empty());  // nothing more can reach it
    EXPECT_EQ(gw.slow_consumers, 1);
}

TEST(SessionProtocol, WriteStuckPastWriteTimeoutClosesAsSlowConsumer) {
    logged_in s;
    s.p.on_frame(raw_frame(uint8_t(proto::op::pong), 0), t0 + 60s, s.gw);  // idle at 150 s
    s.p.on_write_started(t0 + 85s);
    // The timer armed at login fires with the write 1 ms short of write_timeout: watched.
    auto a = s.p.on_deadline(t0 + 90s - 1ms, false, s.gw);
    EXPECT_EQ(a.close, close_cause::none);
    EXPECT_EQ(a.deadline, t0 + 90s);  // the write deadline comes before the idle one (150 s)
    a = s.p.on_deadline(t0 + 90s, false, s.gw);
    EXPECT_EQ(a.close, close_cause::write_stalled);
    EXPECT_FALSE(a.finish);
    EXPECT_TRUE(a.reply.empty());
    EXPECT_EQ(s.gw.slow_consumers, 1);
}

TEST(SessionProtocol, WriteThatCompletesIsNoLongerWatched) {
    logged_in s;
    s.p.on_write_started(t0 + 1s);
    s.p.on_write_done();
    s.p.on_frame(raw_frame(uint8_t(proto::op::pong), 0), t0 + 60s, s.gw);
    auto a = s.p.on_deadline(t0 + 90s, false, s.gw);
    EXPECT_EQ(a.close, close_cause::none);
    EXPECT_EQ(a.deadline, t0 + 150s);
    EXPECT_EQ(s.gw.slow_consumers, 0);
}

TEST(SessionProtocol, WriteStuckWhileFinishingClosesAsSlowConsumer) {
    logged_in s;
    s.p.on_write_started(t0 + 10s);
    auto a = s.p.on_deadline(t0 + 15s, true, s.gw);
    EXPECT_EQ(a.close, close_cause::write_stalled);
    EXPECT_EQ(s.gw.slow_consumers, 1);
}

TEST(SessionProtocol, SendIsRoutedWithItsCorr) {
    logged_in s;
    auto a = s.p.on_frame(send_frame(31, 1001, "bob", "hello"), t0 + 1s, s.gw);
    EXPECT_TRUE(a.reply.empty());  // the router answers once the result is known
    ASSERT_EQ(s.gw.sent.size(), 1u);
    EXPECT_EQ(s.gw.sent[0].first.target, "bob");
    EXPECT_EQ(s.gw.sent[0].first.client_msg_id, 1001u);
    EXPECT_EQ(s.gw.sent[0].first.payload, "hello");
    EXPECT_EQ(s.gw.sent[0].second, 31u);
}

TEST(SessionProtocol, RefusedSendEchoesCorrAndClientMsgId) {
    logged_in s;
    auto a = s.p.on_frame(send_frame(55, 7, "bob", std::string(17, 'x')), t0 + 1s, s.gw);
    auto r = expect_send_result(a.reply, 55);
    EXPECT_EQ(r.status, proto::code::payload_too_large);
    EXPECT_EQ(r.client_msg_id, 7u);
    EXPECT_EQ(r.server_msg_id, 0u);
    EXPECT_EQ(r.reached, 0u);
    EXPECT_TRUE(s.gw.sent.empty());
    EXPECT_EQ(s.gw.messages_counted, 1);

    a = s.p.on_frame(send_frame(56, 8, "b o b"), t0 + 1s, s.gw);
    EXPECT_EQ(expect_send_result(a.reply, 56).status, proto::code::bad_request);
}

TEST(SessionProtocol, ErrorsEchoTheFramesCorr) {
    logged_in s;
    auto a = s.p.on_frame(raw_frame(uint8_t(proto::op::send), 61, "\x01"), t0, s.gw);
    expect_error(a.reply, proto::code::bad_frame, 61);
    a = s.p.on_frame(raw_frame(0x55, 62), t0, s.gw);
    expect_error(a.reply, proto::code::unknown_op, 62);
    a = s.p.on_frame(raw_frame(uint8_t(proto::op::deliver), 63), t0, s.gw);
    expect_error(a.reply, proto::code::bad_request, 63);  // a server-to-client op
    a = s.p.on_frame(raw_frame(uint8_t(proto::op::ack), 64, "short"), t0, s.gw);
    expect_error(a.reply, proto::code::bad_frame, 64);
    EXPECT_FALSE(a.finish);
}

TEST(SessionProtocol, FramingErrorsCarryCorrZeroAndFinish) {
    logged_in s;
    auto a = s.p.on_framing_error(frame_error::too_large, s.gw);
    expect_error(a.reply, proto::code::frame_too_large, 0);
    EXPECT_TRUE(a.finish);
    a = s.p.on_framing_error(frame_error::bad_version, s.gw);
    expect_error(a.reply, proto::code::unsupported_version, 0);
}

TEST(SessionProtocol, UnknownKindIsSendResultBadRequestCountedUnderNoKind) {
    logged_in s;
    // kind 9: the body parses, so the client still gets its SEND_RESULT.
    std::string bytes =
        proto::encode(proto::send_msg{proto::target_kind::user, "bob", 99, "p"}, 70);
    frame f = decode_one(bytes);
    f.body[0] = 9;
    auto a = s.p.on_frame(f, t0 + 1s, s.gw);
    auto r = expect_send_result(a.reply, 70);
    EXPECT_EQ(r.status, proto::code::bad_request);
    EXPECT_EQ(r.client_msg_id, 99u);
    EXPECT_EQ(s.gw.errors[proto::code::bad_request], 1);
    EXPECT_EQ(s.gw.messages_counted, 0);
    EXPECT_TRUE(s.gw.sent.empty());
}

TEST(SessionProtocol, SendRateLimitRefillsWithTime) {
    logged_in s;  // send_rate 1/s, burst 2
    auto at = t0 + 1s;
    EXPECT_TRUE(s.p.on_frame(send_frame(1, 1), at, s.gw).reply.empty());
    EXPECT_TRUE(s.p.on_frame(send_frame(2, 2), at, s.gw).reply.empty());
    auto a = s.p.on_frame(send_frame(3, 3), at, s.gw);
    auto r = expect_send_result(a.reply, 3);
    EXPECT_EQ(r.status, proto::code::rate_limited);
    EXPECT_EQ(r.client_msg_id, 3u);
    EXPECT_EQ(s.gw.sent.size(), 2u);
    EXPECT_FALSE(s.p.on_frame(send_frame(4, 4), at + 999ms, s.gw).reply.empty());
    EXPECT_TRUE(s.p.on_frame(send_frame(5, 5), at + 1s, s.gw).reply.empty());
    EXPECT_EQ(s.gw.sent.size(), 3u);
}

TEST(SessionProtocol, NewLimitsApplyFromNow) {
    logged_in s;
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->idle_timeout = 20s;
    s.p.set_limits(l, t0 + 1s);
    auto a = s.p.on_deadline(t0 + 19s, false, s.gw);
    EXPECT_EQ(a.deadline, t0 + 20s);
    EXPECT_TRUE(s.p.on_deadline(t0 + 20s, false, s.gw).finish);
}

TEST(SessionProtocol, RoomsAreCheckedThenAnsweredWithTheGatewaysStatus) {
    logged_in s;
    auto a = s.p.on_frame(make_frame(proto::join_msg{"r1"}, 80), t0, s.gw);
    auto f = decode_one(a.reply);
    EXPECT_EQ(f.corr, 80u);
    auto rr = proto::decode<proto::room_result_msg>(f);
    ASSERT_TRUE(rr);
    EXPECT_EQ(rr->room, "r1");
    EXPECT_EQ(rr->status, proto::code::ok);
    EXPECT_EQ(s.gw.joined, std::vector<std::string>{"r1"});

    s.gw.room_status = proto::code::not_in_room;
    a = s.p.on_frame(make_frame(proto::leave_msg{"r2"}, 81), t0, s.gw);
    EXPECT_EQ(proto::decode<proto::room_result_msg>(decode_one(a.reply))->status,
              proto::code::not_in_room);
    EXPECT_EQ(s.gw.errors[proto::code::not_in_room], 1);

    a = s.p.on_frame(make_frame(proto::join_msg{"bad room"}, 82), t0, s.gw);
    EXPECT_EQ(proto::decode<proto::room_result_msg>(decode_one(a.reply))->status,
              proto::code::bad_request);
    EXPECT_EQ(s.gw.joined.size(), 1u);  // an invalid id never reaches the gateway
}

TEST(SessionProtocol, AckGoesToTheGateway) {
    logged_in s;
    auto a = s.p.on_frame(make_frame(proto::ack_msg{123456}, 0), t0, s.gw);
    EXPECT_TRUE(a.reply.empty());
    EXPECT_EQ(s.gw.acks, std::vector<uint64_t>{123456});
}
