#include "gateway/call_table.hpp"

#include <gtest/gtest.h>

using namespace imgate;
using namespace imgate::gw;
using namespace std::chrono_literals;

TEST(RpcCallTable, AnswerTimeoutAndLinkFailureEachCompleteExactlyOnce) {
    rpc::call_table t(10);
    auto t0 = rpc::clock::time_point{} + 1h;
    std::vector<forward_result> got(3);
    std::vector<int> calls(3, 0);
    auto cb = [&](int i) {
        return [&, i](forward_result r) {
            got[i] = r;
            ++calls[i];
        };
    };
    uint32_t a = t.add(t0 + 100ms, cb(0));
    uint32_t b = t.add(t0 + 200ms, cb(1));
    uint32_t c = t.add(t0 + 300ms, cb(2));
    EXPECT_NE(a, 0u);
    EXPECT_NE(a, b);
    EXPECT_EQ(t.next_deadline(), t0 + 100ms);
    EXPECT_TRUE(t.complete(a, {proto::code::ok, 2}));
    EXPECT_FALSE(t.complete(a, {proto::code::ok, 2}));  // duplicate answer
    EXPECT_EQ(t.next_deadline(), t0 + 200ms);
    EXPECT_EQ(t.expire(t0 + 199ms), 0u);
    EXPECT_EQ(t.expire(t0 + 200ms), 1u);
    EXPECT_FALSE(t.complete(b, {proto::code::ok, 1}));  // late answer is ignored
    EXPECT_EQ(t.fail_all(proto::code::unavailable), 1u);
    EXPECT_EQ(t.size(), 0u);
    EXPECT_FALSE(t.next_deadline());
    EXPECT_EQ(calls, (std::vector<int>{1, 1, 1}));
    EXPECT_EQ(got[0].status, proto::code::ok);
    EXPECT_EQ(got[0].reached, 2u);
    EXPECT_EQ(got[1].status, proto::code::timeout);
    EXPECT_EQ(got[2].status, proto::code::unavailable);
    (void)c;
}

TEST(RpcCallTable, BoundedInFlight) {
    rpc::call_table t(2);
    auto now = rpc::clock::now();
    EXPECT_NE(t.add(now, [](forward_result) {}), 0u);
    EXPECT_NE(t.add(now, [](forward_result) {}), 0u);
    EXPECT_EQ(t.add(now, [](forward_result) {}), 0u);
    t.expire(now);
    EXPECT_NE(t.add(now, [](forward_result) {}), 0u);
}

TEST(RpcCallTable, CallbackMayStartANewCall) {
    rpc::call_table t(4);
    auto now = rpc::clock::time_point{} + 1h;
    int done = 0;
    t.add(now, [&](forward_result) {
        ++done;
        t.add(now + 1s, [&](forward_result) { ++done; });
    });
    EXPECT_EQ(t.expire(now), 1u);
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(t.fail_all(proto::code::unavailable), 1u);
    EXPECT_EQ(done, 2);
}

TEST(RpcCombiner, DeliveredOfflineAndFailures) {
    rpc::result_combiner none;
    EXPECT_EQ(none.result().status, proto::code::offline);

    rpc::result_combiner c;
    c.add({proto::code::offline, 0});
    c.add({proto::code::unavailable, 0});
    EXPECT_EQ(c.result().status, proto::code::unavailable);
    c.add({proto::code::timeout, 0});
    EXPECT_EQ(c.result().status, proto::code::timeout);
    c.add({proto::code::ok, 2});
    c.add({proto::code::ok, 1});
    EXPECT_EQ(c.result().status, proto::code::ok);
    EXPECT_EQ(c.result().reached, 3u);

    rpc::result_combiner off;
    off.add({proto::code::offline, 0});
    off.add({proto::code::offline, 0});
    EXPECT_EQ(off.result().status, proto::code::offline);
}
