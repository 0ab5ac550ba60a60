// basic_write_coalescer with a stand-in session: one flush per delay for everything scheduled
// meanwhile, each scheduled session flushed once, from any thread; write_waits(): only a busy
// session (a write within the delay, or a write of several frames within burst_span delays)
// waits for a flush.
#include "gateway/write_coalescer.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <thread>

using namespace imgate::gw;
using namespace std::chrono_literals;

namespace {
struct fake_session {
    std::atomic<int> flushed{0};
    void flush_scheduled() { ++flushed; }
};
}  // namespace

TEST(WriteCoalescer, EverythingScheduledBeforeTheFlushGoesInOne) {
    boost::asio::io_context io;
    basic_write_coalescer<fake_session> c(io.get_executor());
    c.set_delay(5ms);
    auto a = std::make_shared<fake_session>();
    auto b = std::make_shared<fake_session>();
    c.schedule(a);
    c.schedule(b);
    EXPECT_EQ(a->flushed, 0);  // nothing is written before the delay
    io.run();                  // returns once the one flush ran
    EXPECT_EQ(a->flushed, 1);
    EXPECT_EQ(b->flushed, 1);
    EXPECT_EQ(c.flushes(), 1u);

    // The next schedule arms a new flush.
    c.schedule(a);
    io.restart();
    io.run();
    EXPECT_EQ(a->flushed, 2);
    EXPECT_EQ(b->flushed, 1);
    EXPECT_EQ(c.flushes(), 2u);
}

TEST(WriteCoalescer, SchedulesFromManyThreadsAreEachFlushedOnce) {
    boost::asio::io_context io;
    basic_write_coalescer<fake_session> c(io.get_executor());
    c.set_delay(1ms);
    std::vector<std::shared_ptr<fake_session>> sessions;
    for (int i = 0; i < 400; ++i) sessions.push_back(std::make_shared<fake_session>());
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = t; i < 400; i += 4) c.schedule(sessions[size_t(i)]);
        });
    for (auto& t : threads) t.join();
    io.run();
    for (auto& s : sessions) EXPECT_EQ(s->flushed, 1);
    EXPECT_GE(c.flushes(), 1u);
    EXPECT_LE(c.flushes(), 400u);
}

TEST(WriteCoalescer, OnlyABusySessionWaits) {
    const uint32_t delay = 1000;  // 1 ms
    auto one = [](uint32_t at) { return last_write_stamp(at, 1); };
    auto several = [](uint32_t at) { return last_write_stamp(at, 20); };
    // A write of one frame: the session waits only within one delay of it.
    EXPECT_TRUE(write_waits(5000, one(5000), delay));   // a write started just now
    EXPECT_TRUE(write_waits(5998, one(5000), delay));   // 998 us ago
    EXPECT_FALSE(write_waits(6000, one(5000), delay));  // a full delay ago: quiet, write at once
    EXPECT_FALSE(write_waits(900000, one(5000), delay));
    // A write of several frames (a burst): waits within burst_span delays of it.
    EXPECT_TRUE(write_waits(6000, several(5000), delay));
    EXPECT_TRUE(write_waits(5000 + burst_span * delay - 2, several(5000), delay));
    EXPECT_FALSE(write_waits(5000 + burst_span * delay, several(5000), delay));
    // write_coalesce: 0 never waits.
    EXPECT_FALSE(write_waits(5000, several(5000), 0));
    // The 32-bit clock wraps every 71.6 minutes: differences are taken modulo 2^32.
    EXPECT_TRUE(write_waits(100, one(0xFFFFFF00u), delay));    // 356 us ago, across the wrap
    EXPECT_FALSE(write_waits(2000, one(0xFFFFFF00u), delay));  // 2.3 ms ago, across the wrap
    EXPECT_TRUE(write_waits(2000, several(0xFFFFFF00u), delay));
    // A session that never wrote is created "long ago" (2^31 us before its first write).
    EXPECT_FALSE(write_waits(12346, one(12346u - 0x80000000u), delay));
}
