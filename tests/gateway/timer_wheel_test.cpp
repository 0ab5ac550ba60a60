#include "gateway/timer_wheel.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <memory>
#include <vector>

using namespace imgate;
using namespace imgate::gw;
using namespace std::chrono_literals;

namespace {

// A deadline owner as the session is one: owned by a shared_ptr, told when due.
struct fake_owner final : timer_wheel::entry, std::enable_shared_from_this<fake_owner> {
    int fired = 0;
    timer_wheel* wheel = nullptr;
    ~fake_owner() {
        if (wheel) wheel->cancel(*this);
    }
};

const timer_wheel::owner_hooks fake_hooks{
    [](timer_wheel::entry& e) -> std::shared_ptr<void> {
        return static_cast<fake_owner&>(e).weak_from_this().lock();
    },
    [](timer_wheel::entry& e) { ++static_cast<fake_owner&>(e).fired; }};

struct TimerWheel : ::testing::Test {
    steady_time t0 = steady_time{} + 1000h;   // an injected clock: no test waits on real time
    timer_wheel w{t0, 100ms, fake_hooks, 8};  // 8 slots: one revolution is 800 ms
    std::shared_ptr<fake_owner> owner() {
        auto o = std::make_shared<fake_owner>();
        o->wheel = &w;
        return o;
    }
};

}  // namespace

TEST_F(TimerWheel, FiresAtTheFirstTickAtOrAfterTheDeadlineNeverBefore) {
    auto a = owner();
    EXPECT_TRUE(w.schedule(*a, t0 + 250ms));  // the wheel was empty: its driver must start
    EXPECT_TRUE(w.advance(t0 + 100ms));
    EXPECT_TRUE(w.advance(t0 + 249ms));
    EXPECT_TRUE(w.advance(t0 + 299ms));  // the 300 ms tick has not come yet
    EXPECT_EQ(a->fired, 0);
    EXPECT_FALSE(w.advance(t0 + 300ms));  // nothing left
    EXPECT_EQ(a->fired, 1);
    EXPECT_FALSE(a->scheduled());
    EXPECT_FALSE(w.advance(t0 + 2s));  // fired once only
    EXPECT_EQ(a->fired, 1);
}

TEST_F(TimerWheel, ADeadlineOnATickFiresAtThatTick) {
    auto a = owner();
    w.schedule(*a, t0 + 200ms);
    w.advance(t0 + 199ms);
    EXPECT_EQ(a->fired, 0);
    w.advance(t0 + 200ms);
    EXPECT_EQ(a->fired, 1);
}

TEST_F(TimerWheel, RescheduleReplacesTheDeadline) {
    auto a = owner();
    w.schedule(*a, t0 + 200ms);
    EXPECT_FALSE(w.schedule(*a, t0 + 500ms));  // not empty: no second driver start
    EXPECT_EQ(w.size(), 1u);
    w.advance(t0 + 400ms);
    EXPECT_EQ(a->fired, 0);
    w.advance(t0 + 500ms);
    EXPECT_EQ(a->fired, 1);
    // Earlier than before works too.
    w.schedule(*a, t0 + 1500ms);
    w.schedule(*a, t0 + 700ms);
    w.advance(t0 + 700ms);
    EXPECT_EQ(a->fired, 2);
    EXPECT_EQ(w.size(), 0u);
}

TEST_F(TimerWheel, CancelledEntriesDoNotFire) {
    auto a = owner(), b = owner();
    w.schedule(*a, t0 + 100ms);
    w.schedule(*b, t0 + 100ms);
    w.cancel(*a);
    w.cancel(*a);  // twice is harmless
    EXPECT_EQ(w.size(), 1u);
    w.advance(t0 + 100ms);
    EXPECT_EQ(a->fired, 0);
    EXPECT_EQ(b->fired, 1);
}

TEST_F(TimerWheel, APassedDeadlineFiresAtTheNextTick) {
    auto a = owner();
    w.advance(t0 + 1s);
    w.schedule(*a, t0 + 100ms);  // already over
    w.advance(t0 + 1050ms);      // still within the tick already advanced over
    EXPECT_EQ(a->fired, 0);
    w.advance(t0 + 1100ms);
    EXPECT_EQ(a->fired, 1);
}

TEST_F(TimerWheel, EntriesOfLaterRevolutionsShareASlotAndWait) {
    auto soon = owner(), later = owner();
    w.schedule(*soon, t0 + 300ms);
    w.schedule(*later, t0 + 300ms + 800ms);  // same slot, one revolution later
    w.advance(t0 + 300ms);
    EXPECT_EQ(soon->fired, 1);
    EXPECT_EQ(later->fired, 0);
    w.advance(t0 + 1000ms);
    EXPECT_EQ(later->fired, 0);
    w.advance(t0 + 1100ms);
    EXPECT_EQ(later->fired, 1);
}

TEST_F(TimerWheel, ADriverFarBehindFiresEverythingDueOnce) {
    std::vector<std::shared_ptr<fake_owner>> os;
    for (int i = 0; i < 40; ++i) {
        os.push_back(owner());
        w.schedule(*os.back(), t0 + std::chrono::milliseconds(50 * i));
    }
    auto not_yet = owner();
    w.schedule(*not_yet, t0 + 10s);
    // Ten revolutions late.
    EXPECT_TRUE(w.advance(t0 + 8s));
    for (auto& o : os) EXPECT_EQ(o->fired, 1);
    EXPECT_EQ(not_yet->fired, 0);
    EXPECT_EQ(w.size(), 1u);
    EXPECT_EQ(w.next_tick(), t0 + 8100ms);
    EXPECT_FALSE(w.advance(t0 + 10s));
    EXPECT_EQ(not_yet->fired, 1);
}

TEST_F(TimerWheel, AnOwnerGoingAwayIsNotTold) {
    auto a = owner();
    w.schedule(*a, t0 + 100ms);
    // A session whose last reference is gone: its destructor cancels, so the wheel holds nothing.
    a.reset();
    EXPECT_EQ(w.size(), 0u);
    EXPECT_FALSE(w.advance(t0 + 1s));
}

TEST_F(TimerWheel, AnOwnerThatCannotBePinnedIsUnlinkedNotTold) {
    // The owner's last reference went away while the wheel was advancing: pin_due answers null
    // (its destructor then waits for the wheel's lock and finds it unlinked).
    struct unpinnable final : timer_wheel::entry {
        int fired = 0;
    } u;
    timer_wheel lone{t0,
                     100ms,
                     {[](timer_wheel::entry&) { return std::shared_ptr<void>(); },
                      [](timer_wheel::entry& e) { ++static_cast<unpinnable&>(e).fired; }}};
    lone.schedule(u, t0 + 100ms);
    EXPECT_FALSE(lone.advance(t0 + 100ms));
    EXPECT_EQ(u.fired, 0);
    EXPECT_FALSE(u.scheduled());
    EXPECT_EQ(lone.size(), 0u);
}

TEST_F(TimerWheel, ManyEntriesInOneSlotInAnyOrder) {
    std::vector<std::shared_ptr<fake_owner>> os;
    for (int i = 0; i < 100; ++i) {
        os.push_back(owner());
        w.schedule(*os.back(), t0 + 400ms);
    }
    // Cancel every third, from the middle of the slot's list too.
    for (int i = 0; i < 100; i += 3) w.cancel(*os[i]);
    w.advance(t0 + 400ms);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(os[i]->fired, i % 3 == 0 ? 0 : 1) << i;
    EXPECT_EQ(w.size(), 0u);
}

TEST(TimerWheelService, TicksWhileItHasEntriesThenStops) {
    // The real driver on an io_context: run() returns once every entry fired and the wheel,
    // empty, stopped ticking (no wait left), so this test does not sleep.
    boost::asio::io_context io;
    struct owner_on_io final : timer_wheel::entry, std::enable_shared_from_this<owner_on_io> {
        using service = timer_wheel_service<owner_on_io>;
        service* svc = nullptr;
        steady_time deadline{};
        steady_time fired_at{};
        ~owner_on_io() { svc->cancel(*this); }
        std::shared_ptr<owner_on_io> pin_due() { return weak_from_this().lock(); }
        void on_due() { fired_at = std::chrono::steady_clock::now(); }
    };
    auto& svc = owner_on_io::service::of(io.get_executor());
    std::vector<std::shared_ptr<owner_on_io>> os;
    auto now = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i) {
        auto o = std::make_shared<owner_on_io>();
        o->svc = &svc;
        o->deadline = now + std::chrono::milliseconds(30 * i);
        svc.schedule(*o, o->deadline);
        os.push_back(o);
    }
    auto gone = std::make_shared<owner_on_io>();
    gone->svc = &svc;
    svc.schedule(*gone, now + 50ms);
    gone.reset();  // cancelled by its destructor
    io.run();
    for (auto& o : os) {
        EXPECT_NE(o->fired_at, steady_time{});
        EXPECT_GE(o->fired_at, o->deadline);  // never early
    }
    EXPECT_EQ(svc.wheel().size(), 0u);
}
