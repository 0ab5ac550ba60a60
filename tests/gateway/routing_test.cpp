#include <gtest/gtest.h>

#include <set>

#include "gateway/message_ids.hpp"
#include "gateway/pending_acks.hpp"

using namespace imgate;
using namespace imgate::gw;
using namespace std::chrono_literals;

TEST(PendingAcks, ReceiptOncePerSessionAndOnlyForRecipient) {
    steady_time t0{};
    pending_acks p(10, 5s);
    p.add(42, ack_origin{"gw1", 7, 1001, "bob"}, t0);
    EXPECT_FALSE(p.on_ack(42, 3, "mallory", t0));  // not the recipient
    auto o = p.on_ack(42, 3, "bob", t0 + 1s);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->origin_gateway, "gw1");
    EXPECT_EQ(o->origin_session, 7u);
    EXPECT_EQ(o->client_msg_id, 1001u);
    EXPECT_FALSE(p.on_ack(42, 3, "bob", t0 + 1s));  // repeated ack
    EXPECT_TRUE(p.on_ack(42, 4, "bob", t0 + 1s));   // bob's other device
    EXPECT_FALSE(p.on_ack(43, 3, "bob", t0));       // unknown id
}

TEST(PendingAcks, ExpiresAndStaysBounded) {
    steady_time t0{};
    pending_acks p(3, 5s);
    for (uint64_t i = 1; i <= 3; ++i) EXPECT_EQ(p.add(i, {"g", 1, i, "u"}, t0), 0u);
    EXPECT_EQ(p.add(4, {"g", 1, 4, "u"}, t0), 1u);  // evicts the oldest
    EXPECT_EQ(p.size(), 3u);
    EXPECT_FALSE(p.on_ack(1, 9, "u", t0));
    EXPECT_TRUE(p.on_ack(4, 9, "u", t0));
    EXPECT_FALSE(p.on_ack(2, 9, "u", t0 + 5s));  // expired at its deadline
    EXPECT_EQ(p.expire(t0 + 6s), 3u);
    EXPECT_EQ(p.size(), 0u);
}

TEST(RecentIds, DedupesWithinWindowOnly) {
    recent_ids r(3);
    EXPECT_TRUE(r.insert(1));
    EXPECT_FALSE(r.insert(1));
    EXPECT_TRUE(r.insert(2));
    EXPECT_TRUE(r.insert(3));
    EXPECT_TRUE(r.insert(4));  // pushes 1 out
    EXPECT_FALSE(r.contains(1));
    EXPECT_TRUE(r.insert(1));
    EXPECT_FALSE(r.insert(4));
    EXPECT_EQ(r.size(), 3u);
}

TEST(MsgIdSource, UniqueAcrossGatewaysAndRestarts) {
    const uint64_t now = 1795000000000ull;  // 2026-11
    msg_id_source a(1, now), b(2, now);
    std::set<uint64_t> seen;
    for (int i = 0; i < 1000; ++i) {
        EXPECT_TRUE(seen.insert(a.next()).second);
        EXPECT_TRUE(seen.insert(b.next()).second);
    }
    // A restart one second later starts past everything issued at <= 1024 ids/ms.
    msg_id_source a2(1, now + 1000);
    uint64_t first = a2.next();
    EXPECT_EQ(first >> 48, 1u);
    EXPECT_GT(first & msg_id_source::mask48, (*std::prev(seen.end()) & msg_id_source::mask48));
    EXPECT_NE(first, 0u);
}

TEST(PendingAcks, EntryLeavesOnceEveryReachedSessionAcked) {
    steady_time t0{};
    pending_acks p(10, 5s);
    p.add(1, {"g", 1, 11, "bob"}, t0);
    p.set_recipients(1, {100, 101});
    EXPECT_TRUE(p.on_ack(1, 100, "bob", t0));
    EXPECT_EQ(p.size(), 1u);
    EXPECT_TRUE(p.on_ack(1, 101, "bob", t0));
    EXPECT_EQ(p.size(), 0u);
    EXPECT_FALSE(p.on_ack(1, 102, "bob", t0));
    // Nobody reached: nothing is kept.
    p.add(2, {"g", 1, 12, "bob"}, t0);
    p.set_recipients(2, {});
    EXPECT_EQ(p.size(), 0u);
}

TEST(PendingAcks, EarlyAckedIdsDoNotCountAsEvictions) {
    steady_time t0{};
    pending_acks p(2, 5s);
    for (uint64_t i = 1; i <= 50; ++i) {
        EXPECT_EQ(p.add(i, {"g", 1, i, "u"}, t0), 0u) << i;
        p.set_recipients(i, {7});
        EXPECT_TRUE(p.on_ack(i, 7, "u", t0));
    }
    EXPECT_EQ(p.size(), 0u);
}

// Issue 11: with a fixed table of four acking sessions, the fifth device's repeated ack produced
// a second receipt. Every reached session now acks exactly once, however many there are.
TEST(PendingAcks, OneReceiptPerReachedSessionForAnyNumberOfDevices) {
    steady_time t0{};
    pending_acks p(10, 5s);
    p.add(9, {"g", 1, 99, "carol@example.com"}, t0);
    pending_acks::session_ids reached;
    for (uint64_t sid = 1; sid <= 8; ++sid) reached.push_back(sid);
    p.set_recipients(9, reached);
    for (uint64_t sid = 1; sid <= 8; ++sid) {
        EXPECT_TRUE(p.on_ack(9, sid, "carol@example.com", t0)) << sid;
        EXPECT_FALSE(p.on_ack(9, sid, "carol@example.com", t0)) << "repeat of " << sid;
    }
    EXPECT_EQ(p.size(), 0u);
}

// Sessions of the recipient that the delivery did not reach (logged in later) get no receipt.
TEST(PendingAcks, SessionNotReachedCannotAck) {
    steady_time t0{};
    pending_acks p(10, 5s);
    p.add(5, {"g", 1, 55, "bob"}, t0);
    p.set_recipients(5, {10, 11});
    EXPECT_FALSE(p.on_ack(5, 12, "bob", t0));
    EXPECT_TRUE(p.on_ack(5, 10, "bob", t0));
    EXPECT_EQ(p.size(), 1u);
}

// A session may ack before the delivery has registered its recipients (the frame is written on
// another thread): that ack counts, once, and is not expected again.
TEST(PendingAcks, AckBeforeRecipientsAreKnownCountsOnce) {
    steady_time t0{};
    pending_acks p(10, 5s);
    p.add(6, {"g", 1, 66, "Zoë"}, t0);
    EXPECT_TRUE(p.on_ack(6, 20, "Zoë", t0));
    EXPECT_FALSE(p.on_ack(6, 20, "Zoë", t0));
    p.set_recipients(6, {20, 21});
    EXPECT_FALSE(p.on_ack(6, 20, "Zoë", t0));
    EXPECT_TRUE(p.on_ack(6, 21, "Zoë", t0));
    EXPECT_EQ(p.size(), 0u);
}
