// The client-session protocol without a socket or a timer: every deadline is driven by handing
// on_deadline the instant the session's timer would fire, so no test waits for real time.
#include "gateway/session_protocol.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
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
    std::map<proto::op, int> rate_limited;
    int flood_closes = 0;

    bool serving() const { return serving_now; }
    admission gateway_verdict = admission::ok;  // after the address's bucket let it through
    admission admit_login() {
        ++allow_calls;
        return address_allowed ? gateway_verdict : admission::rate_limited_address;
    }
    // draw_hint answers base + min(jitter, drawn) and records what it was asked.
    uint32_t drawn = 0;
    std::vector<std::pair<std::chrono::milliseconds, std::chrono::milliseconds>> hints_asked;
    uint32_t draw_hint(std::chrono::milliseconds base, std::chrono::milliseconds jitter) {
        hints_asked.emplace_back(base, jitter);
        return uint32_t(base.count() + std::min<int64_t>(drawn, jitter.count()));
    }
    std::map<std::string, int> retry_hints;
    void count_retry_hint(std::string_view reason) { ++retry_hints[std::string(reason)]; }
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
    void count_rate_limited(proto::op o) { ++rate_limited[o]; }
    void count_flood_close() { ++flood_closes; }
    // The user of the last registration is this session's; penalties by user.
    std::map<std::string, steady_time> penalties;
    void penalise_user(steady_time until) {
        penalties[registered.empty() ? std::string() : registered.back().first] = until;
    }
    std::optional<steady_time> penalty_until(std::string_view user, steady_time now) {
        auto it = penalties.find(std::string(user));
        if (it == penalties.end() || it->second <= now) return std::nullopt;
        return it->second;
    }
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
    l->room_ops_rate = 10;
    l->room_ops_burst = 64;
    l->ping_rate = 1;
    l->ping_burst = 10;
    l->flood_refusals = 100;
    l->flood_window = 10s;
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

// The REDIRECT a refused LOGIN ends with: corr 0, no address (ask the dispatcher).
proto::redirect_msg expect_redirect(const std::string& bytes, std::string_view reason) {
    auto f = decode_one(bytes);
    EXPECT_EQ(f.corr, 0u);
    auto m = proto::decode<proto::redirect_msg>(f);
    EXPECT_TRUE(m.has_value());
    if (!m) return {};
    EXPECT_EQ(m->host, "");
    EXPECT_EQ(m->port, 0);
    EXPECT_EQ(m->reason, reason);
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
        // The token layer refuses a bidi override in sub itself; the metric keeps the cause.
        fake_gateway gw;
        gw.verdict.error = jwt::verify_error::bad_identity;
        session_protocol p(test_limits(), t0);
        auto a = p.on_frame(make_frame(proto::login_msg{"token"}, 5), t0, gw);
        expect_error(a.reply, proto::code::auth_failed, 5);
        EXPECT_TRUE(gw.registered.empty());
        EXPECT_EQ(gw.logins["bad_identity"], 1);
        EXPECT_EQ(gw.logins["auth_failed"], 0);
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

// --- Issue 12: the pre-login frame limit ---

TEST(SessionProtocol, BeforeLoginTheFrameLimitIsWhatTheLongestLoginNeeds) {
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->max_frame_bytes = 65536;
    l->max_token_bytes = 8192;
    fake_gateway gw;
    session_protocol p(l, t0);
    EXPECT_EQ(p.max_frame_body(), 8192u + 2u);  // the token and its str16 length prefix
    p.on_frame(make_frame(proto::login_msg{"token"}, 1), t0, gw);
    ASSERT_TRUE(p.logged_in());
    EXPECT_EQ(p.max_frame_body(), 65536u);

    // A max_frame_bytes below what the longest token needs is the limit before login too.
    auto small = std::make_shared<gateway_limits>(*l);
    small->max_frame_bytes = 2048;
    session_protocol q(small, t0);
    EXPECT_EQ(q.max_frame_body(), 2048u);
}

TEST(SessionProtocol, DecoderAtThePreLoginLimitTakesALoginOfTheLongestTokenNotOneByteMore) {
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->max_token_bytes = 300;
    fake_gateway gw;
    session_protocol p(l, t0);
    {
        frame_decoder d(p.max_frame_body());
        d.feed(proto::encode(proto::login_msg{std::string(300, 't')}, 1));
        auto f = d.next();
        ASSERT_TRUE(f);
        EXPECT_EQ(f->body.size(), 302u);
        auto a = p.on_frame(*f, t0, gw);
        EXPECT_TRUE(p.logged_in());
        EXPECT_FALSE(a.finish);
    }
    {
        session_protocol q(l, t0);
        frame_decoder d(q.max_frame_body());
        // Only the header of a LOGIN one byte too long: refused before any body arrives.
        d.feed(proto::encode(proto::login_msg{std::string(301, 't')}, 1).substr(0, 12));
        EXPECT_FALSE(d.next());
        EXPECT_EQ(d.error(), frame_error::too_large);
    }
}

TEST(SessionProtocol, FramingErrorBeforeLoginNamesThePreLoginLimitAndCountsAFailedLogin) {
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->max_token_bytes = 4000;
    fake_gateway gw;
    session_protocol p(l, t0);
    auto a = p.on_framing_error(frame_error::too_large, gw);
    auto e = expect_error(a.reply, proto::code::frame_too_large, 0);
    EXPECT_NE(e.message.find("before login"), std::string::npos) << e.message;
    EXPECT_NE(e.message.find("4002 bytes"), std::string::npos) << e.message;
    EXPECT_TRUE(a.finish);
    EXPECT_EQ(gw.logins["frame_too_large"], 1);
    EXPECT_EQ(gw.errors[proto::code::frame_too_large], 1);

    // After login the message names max_frame_bytes and no login is counted.
    logged_in s;
    auto b = s.p.on_framing_error(frame_error::too_large, s.gw);
    auto e2 = expect_error(b.reply, proto::code::frame_too_large, 0);
    EXPECT_EQ(e2.message.find("before login"), std::string::npos) << e2.message;
    EXPECT_NE(e2.message.find(std::to_string(test_limits()->max_frame_bytes)), std::string::npos);
    EXPECT_EQ(s.gw.logins.count("frame_too_large"), 0u);
}

TEST(SessionProtocol, LoginWithATokenOverMaxTokenBytesIsRefusedWithoutVerifying) {
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->max_token_bytes = 100;
    fake_gateway gw;
    session_protocol p(l, t0);
    // Whatever fed this frame (the decoder refuses it at its header), the token is not checked.
    auto a = p.on_frame(make_frame(proto::login_msg{std::string(101, 't')}, 7), t0, gw);
    expect_error(a.reply, proto::code::frame_too_large, 7);
    EXPECT_TRUE(a.finish);
    EXPECT_FALSE(p.logged_in());
    EXPECT_EQ(gw.verify_calls, 0);
    EXPECT_EQ(gw.logins["frame_too_large"], 1);
}

TEST(SessionProtocol, ReloadBeforeLoginKeepsThePreLoginLimit) {
    fake_gateway gw;
    session_protocol p(test_limits(), t0);
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->max_frame_bytes = 1 << 20;
    l->max_token_bytes = 10000;
    p.set_limits(l, t0 + 1s);
    EXPECT_EQ(p.max_frame_body(), 10002u);  // the new token limit, not max_frame_bytes
    p.on_frame(make_frame(proto::login_msg{"token"}, 1), t0 + 2s, gw);
    EXPECT_EQ(p.max_frame_body(), 1u << 20);
}

// --- Issue 12: JOIN/LEAVE and PING rate limits, flood close ---

namespace {
frame join_frame(uint32_t corr, const std::string& room) {
    return make_frame(proto::join_msg{room}, corr);
}
frame leave_frame(uint32_t corr, const std::string& room) {
    return make_frame(proto::leave_msg{room}, corr);
}
proto::room_result_msg expect_room_result(const std::string& bytes, uint32_t corr) {
    auto f = decode_one(bytes);
    EXPECT_EQ(f.corr, corr);
    auto m = proto::decode<proto::room_result_msg>(f);
    EXPECT_TRUE(m.has_value());
    return m.value_or(proto::room_result_msg{});
}
}  // namespace

TEST(SessionProtocol, JoiningSixtyFourRoomsAtLoginPassesTheRoomBucket) {
    logged_in s;  // room ops 10/s, burst 64
    for (int i = 0; i < 64; ++i) {
        auto a = s.p.on_frame(join_frame(100 + i, "Zoë-room-" + std::to_string(i)), t0, s.gw);
        EXPECT_EQ(expect_room_result(a.reply, 100 + i).status, proto::code::ok) << i;
    }
    EXPECT_EQ(s.gw.joined.size(), 64u);
    EXPECT_TRUE(s.gw.rate_limited.empty());
}

TEST(SessionProtocol, JoinAndLeaveShareOneBucketAndARefusalReachesNoGateway) {
    logged_in s;
    for (int i = 0; i < 32; ++i) {
        s.p.on_frame(join_frame(1, "王伟的房间"), t0, s.gw);
        s.p.on_frame(leave_frame(2, "王伟的房间"), t0, s.gw);
    }
    EXPECT_EQ(s.gw.joined.size() + s.gw.left.size(), 64u);
    auto a = s.p.on_frame(leave_frame(77, "王伟的房间"), t0, s.gw);
    auto r = expect_room_result(a.reply, 77);
    EXPECT_EQ(r.status, proto::code::rate_limited);
    EXPECT_EQ(r.room, "王伟的房间");
    EXPECT_FALSE(a.finish);
    a = s.p.on_frame(join_frame(78, "王伟的房间"), t0 + 99ms, s.gw);
    EXPECT_EQ(expect_room_result(a.reply, 78).status, proto::code::rate_limited);
    EXPECT_EQ(s.gw.joined.size() + s.gw.left.size(), 64u);  // no interest change, no peer frame
    EXPECT_EQ(s.gw.rate_limited[proto::op::leave], 1);
    EXPECT_EQ(s.gw.rate_limited[proto::op::join], 1);
    EXPECT_EQ(s.gw.errors[proto::code::rate_limited], 2);
    // 10 per second: one token 100 ms after the bucket emptied.
    a = s.p.on_frame(join_frame(79, "王伟的房间"), t0 + 100ms, s.gw);
    EXPECT_EQ(expect_room_result(a.reply, 79).status, proto::code::ok);
    EXPECT_EQ(s.gw.joined.size() + s.gw.left.size(), 65u);
}

TEST(SessionProtocol, PingsPastTheirBucketGetRateLimitedWithTheirCorr) {
    logged_in s;  // ping 1/s, burst 10
    for (uint32_t i = 1; i <= 10; ++i) {
        auto f = decode_one(s.p.on_frame(raw_frame(uint8_t(proto::op::ping), i), t0, s.gw).reply);
        EXPECT_EQ(f.op, uint8_t(proto::op::pong));
    }
    auto a = s.p.on_frame(raw_frame(uint8_t(proto::op::ping), 11), t0 + 999ms, s.gw);
    auto e = expect_error(a.reply, proto::code::rate_limited, 11);
    EXPECT_NE(e.message.find("PING"), std::string::npos);
    EXPECT_FALSE(a.finish);
    EXPECT_EQ(s.gw.rate_limited[proto::op::ping], 1);
    auto f = decode_one(s.p.on_frame(raw_frame(uint8_t(proto::op::ping), 12), t0 + 1s, s.gw).reply);
    EXPECT_EQ(f.op, uint8_t(proto::op::pong));
    EXPECT_EQ(f.corr, 12u);
}

TEST(SessionProtocol, HeartbeatPingsAtTheAdvisedIntervalAreNeverLimited) {
    logged_in s;
    for (int i = 0; i < 1000; ++i) {
        auto at = t0 + std::chrono::seconds(30 * i);  // heartbeat_interval
        auto f = decode_one(s.p.on_frame(raw_frame(uint8_t(proto::op::ping), 1), at, s.gw).reply);
        ASSERT_EQ(f.op, uint8_t(proto::op::pong)) << i;
    }
    EXPECT_TRUE(s.gw.rate_limited.empty());
}

TEST(SessionProtocol, FloodOfRefusedRequestsClosesTheSessionAfterAnsweringThem) {
    logged_in s;  // flood_refusals 100 within 10 s
    auto at = t0 + 1s;
    for (int i = 0; i < 64; ++i) s.p.on_frame(join_frame(1, "room-" + std::to_string(i)), at, s.gw);
    int answered = 0;
    session_actions last;
    for (uint32_t i = 0; i < 100; ++i) {
        last = s.p.on_frame(join_frame(1000 + i, "carol@example.com"), at, s.gw);
        if (expect_room_result(last.reply, 1000 + i).status == proto::code::rate_limited)
            ++answered;
        if (i < 99) ASSERT_FALSE(last.finish) << i;
    }
    EXPECT_EQ(answered, 100);
    EXPECT_TRUE(last.finish);
    auto e = expect_error(last.last_frame, proto::code::rate_limited, 0);
    EXPECT_NE(e.message.find("closing"), std::string::npos);
    EXPECT_EQ(s.gw.flood_closes, 1);
    EXPECT_EQ(s.gw.rate_limited[proto::op::join], 100);
    EXPECT_EQ(s.gw.joined.size(), 64u);
}

TEST(SessionProtocol, RefusalsSpreadOverMoreThanTheFloodWindowDoNotClose) {
    logged_in s;
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->ping_burst = 1;
    l->ping_rate = 0.001;  // practically no refill: every further ping is refused
    l->flood_refusals = 5;
    l->flood_window = 10s;
    s.p.set_limits(l, t0);
    s.p.on_frame(raw_frame(uint8_t(proto::op::ping), 1), t0, s.gw);
    // Four refusals per 10 s window, for a minute: a client that is slightly over is answered.
    for (int w = 0; w < 6; ++w)
        for (int i = 0; i < 4; ++i) {
            auto at = t0 + 1s + std::chrono::seconds(10 * w) + std::chrono::seconds(i);
            auto a = s.p.on_frame(raw_frame(uint8_t(proto::op::ping), 2), at, s.gw);
            expect_error(a.reply, proto::code::rate_limited, 2);
            ASSERT_FALSE(a.finish) << w << "/" << i;
        }
    EXPECT_EQ(s.gw.flood_closes, 0);
    // Five within one window close.
    for (int i = 0; i < 4; ++i)
        ASSERT_FALSE(s.p.on_frame(raw_frame(uint8_t(proto::op::ping), 3), t0 + 65s, s.gw).finish);
    auto a = s.p.on_frame(raw_frame(uint8_t(proto::op::ping), 3), t0 + 70s, s.gw);
    EXPECT_TRUE(a.finish);
    EXPECT_EQ(s.gw.flood_closes, 1);
}

TEST(SessionProtocol, SendRefusalsCountTowardsTheFloodClose) {
    logged_in s;
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->flood_refusals = 3;
    l->ping_burst = 1;
    s.p.set_limits(l, t0);
    auto at = t0 + 1s;
    s.p.on_frame(send_frame(1, 1), at, s.gw);
    s.p.on_frame(send_frame(2, 2), at, s.gw);  // burst 2 spent
    EXPECT_FALSE(s.p.on_frame(send_frame(3, 3), at, s.gw).finish);
    EXPECT_FALSE(s.p.on_frame(raw_frame(uint8_t(proto::op::ping), 4), at, s.gw).finish);
    EXPECT_FALSE(s.p.on_frame(raw_frame(uint8_t(proto::op::ping), 4), at, s.gw).finish);
    EXPECT_EQ(s.gw.rate_limited[proto::op::ping], 1);  // the refusals of both limits add up
    auto a = s.p.on_frame(send_frame(5, 5), at, s.gw);
    EXPECT_EQ(expect_send_result(a.reply, 5).status, proto::code::rate_limited);
    EXPECT_TRUE(a.finish);
    EXPECT_EQ(s.gw.rate_limited[proto::op::send], 2);
    EXPECT_EQ(s.gw.flood_closes, 1);
}

TEST(SessionProtocol, NewRateLimitsApplyFromNow) {
    logged_in s;
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->room_ops_burst = 2;
    l->room_ops_rate = 1;
    s.p.set_limits(l, t0);
    EXPECT_EQ(expect_room_result(s.p.on_frame(join_frame(1, "a"), t0, s.gw).reply, 1).status,
              proto::code::ok);
    EXPECT_EQ(expect_room_result(s.p.on_frame(join_frame(2, "b"), t0, s.gw).reply, 2).status,
              proto::code::ok);
    EXPECT_EQ(expect_room_result(s.p.on_frame(join_frame(3, "c"), t0, s.gw).reply, 3).status,
              proto::code::rate_limited);
}

TEST(SessionProtocol, AcksAreNotRateLimited) {
    logged_in s;
    for (uint64_t i = 1; i <= 5000; ++i)
        EXPECT_TRUE(s.p.on_frame(make_frame(proto::ack_msg{i}, 0), t0, s.gw).reply.empty());
    EXPECT_EQ(s.gw.acks.size(), 5000u);
    EXPECT_TRUE(s.gw.rate_limited.empty());
}

// limits.flood_penalty: the flood close penalises the session's user; that user's next LOGIN
// (with a valid token) is refused with rate_limited naming the flood and the time to retry,
// counted as flood_penalty, without registering; once the penalty is over it logs in.
TEST(SessionProtocol, FloodClosePenalisesTheUserUntilThePenaltyEnds) {
    logged_in s;
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->ping_burst = 1;
    l->ping_rate = 0.001;
    l->flood_refusals = 3;
    l->flood_penalty = 30s;
    s.p.set_limits(l, t0);
    auto at = t0 + 1s;
    session_actions a;
    for (uint32_t i = 0; i < 4; ++i)
        a = s.p.on_frame(raw_frame(uint8_t(proto::op::ping), i), at, s.gw);
    ASSERT_TRUE(a.finish);
    ASSERT_EQ(s.gw.penalties.count("alice"), 1u);
    EXPECT_EQ(s.gw.penalties["alice"], at + 30s);

    // The same user logs in again on a new connection, 10 s later: refused, 20 s to go.
    session_protocol again(l, at + 10s);
    size_t registrations = s.gw.registered.size();
    auto r = again.on_frame(make_frame(proto::login_msg{"token"}, 6), at + 10s, s.gw);
    auto e = expect_error(r.reply, proto::code::rate_limited, 6);
    EXPECT_NE(e.message.find("flooding"), std::string::npos) << e.message;
    EXPECT_NE(e.message.find("retry in 20 s"), std::string::npos) << e.message;
    EXPECT_TRUE(r.finish);
    // Then the REDIRECT: the penalty left (20 s) plus the draw within login_retry_jitter.
    EXPECT_EQ(expect_redirect(r.last_frame, "rate_limited").reconnect_after_ms,
              20000u + std::min<uint32_t>(s.gw.drawn, uint32_t(l->login_retry_jitter.count())));
    EXPECT_EQ(s.gw.retry_hints["rate_limited"], 1);
    EXPECT_FALSE(again.logged_in());
    EXPECT_EQ(s.gw.registered.size(), registrations);
    EXPECT_EQ(s.gw.logins["flood_penalty"], 1);

    // Another user is not affected.
    s.gw.verdict.c.sub = "bob";
    session_protocol other(l, at + 10s);
    other.on_frame(make_frame(proto::login_msg{"token"}, 7), at + 10s, s.gw);
    EXPECT_TRUE(other.logged_in());

    // After the penalty.
    s.gw.verdict.c.sub = "alice";
    session_protocol later(l, at + 30s);
    later.on_frame(make_frame(proto::login_msg{"token"}, 8), at + 30s, s.gw);
    EXPECT_TRUE(later.logged_in());
}

TEST(SessionProtocol, FloodPenaltyZeroPenalisesNobody) {
    logged_in s;
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->ping_burst = 1;
    l->ping_rate = 0.001;
    l->flood_refusals = 2;
    l->flood_penalty = 0s;
    s.p.set_limits(l, t0);
    session_actions a;
    for (uint32_t i = 0; i < 3; ++i)
        a = s.p.on_frame(raw_frame(uint8_t(proto::op::ping), i), t0, s.gw);
    ASSERT_TRUE(a.finish);
    EXPECT_TRUE(s.gw.penalties.empty());
}

// Issue 14: a LOGIN refused by the per-address or the gateway-wide bucket gets its ERROR
// rate_limited (the LOGIN's corr) and then a REDIRECT rate_limited (corr 0) whose hint is
// login_retry_after + the gateway's draw within login_retry_jitter; no token is checked.
TEST(SessionProtocol, RateRefusedLoginGetsErrorThenSpreadRedirect) {
    auto l = std::make_shared<gateway_limits>(*test_limits());
    l->login_retry_after = 1500ms;
    l->login_retry_jitter = 700ms;
    for (auto verdict : {admission::rate_limited_address, admission::rate_limited_gateway}) {
        fake_gateway gw;
        gw.gateway_verdict = verdict;
        gw.address_allowed = verdict != admission::rate_limited_address;
        gw.drawn = 321;
        session_protocol p(l, t0);
        auto a = p.on_frame(make_frame(proto::login_msg{"token"}, 42), t0, gw);
        expect_error(a.reply, proto::code::rate_limited, 42);
        ASSERT_TRUE(a.finish);
        auto r = expect_redirect(a.last_frame, "rate_limited");
        EXPECT_EQ(r.reconnect_after_ms, 1500u + 321u);
        ASSERT_EQ(gw.hints_asked.size(), 1u);
        EXPECT_EQ(gw.hints_asked[0].first, 1500ms);
        EXPECT_EQ(gw.hints_asked[0].second, 700ms);
        EXPECT_EQ(gw.retry_hints["rate_limited"], 1);
        EXPECT_EQ(gw.verify_calls, 0);
        EXPECT_FALSE(p.logged_in());
        const char* label =
            verdict == admission::rate_limited_address ? "rate_limited" : "rate_limited_gateway";
        EXPECT_EQ(gw.logins[label], 1) << label;
        EXPECT_EQ(gw.logins.size(), 1u);
    }
}

// Refusals that are not about rate (a bad token, draining) end without a REDIRECT hint.
TEST(SessionProtocol, OtherLoginRefusalsGetNoRetryHint) {
    fake_gateway gw;
    gw.verdict.error = jwt::verify_error::bad_signature;
    session_protocol p(test_limits(), t0);
    auto a = p.on_frame(make_frame(proto::login_msg{"token"}, 3), t0, gw);
    expect_error(a.reply, proto::code::auth_failed, 3);
    EXPECT_TRUE(a.finish);
    EXPECT_TRUE(a.last_frame.empty());
    EXPECT_TRUE(gw.retry_hints.empty());
}
