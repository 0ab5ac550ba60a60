// basic_write_coalescer with a stand-in session: one flush per delay for everything scheduled
// meanwhile, each scheduled session flushed once, from any thread.
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
