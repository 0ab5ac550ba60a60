#pragma once
// Coarse deadlines for many sessions: one hashed timer wheel per io_context instead of one
// asio::steady_timer and one pending wait operation per session. An idle session then holds only
// an intrusive link (24 bytes, no heap block); the wheel ticks (every `tick`, only while it holds
// entries) on one asio timer and hands each due entry to its owner. A deadline fires at the first
// tick at or after it: never early, at most one tick (plus scheduling delay) late.
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "common/clock.hpp"

namespace imgate::gw {

namespace asio = boost::asio;

// Owns the slots of one wheel and the links of the entries scheduled on it (not the entries).
// Socket- and clock-free: the caller passes the time to every call. Thread-safe.
class timer_wheel {
  public:
    // What the wheel schedules, embedded in its owner (no virtual functions: the owner's
    // behaviour is the wheel's `owner_hooks`, the same for every entry). The owner cancels it
    // before it goes away.
    class entry {
      public:
        entry() = default;
        entry(const entry&) = delete;
        entry& operator=(const entry&) = delete;
        bool scheduled() const { return tick_ != 0; }

      private:
        friend class timer_wheel;
        entry* prev_ = nullptr;
        entry* next_ = nullptr;
        uint64_t tick_ = 0;  // the tick it fires at; 0: not scheduled
    };

    // What happens to a due entry (already unlinked).
    struct owner_hooks {
        // Under the wheel's lock: a reference that keeps the owner alive until it has been told,
        // or null when the owner is going away (its destructor then finds the entry unlinked).
        std::shared_ptr<void> (*pin)(entry&);
        // The deadline passed; without the wheel's lock, on the thread that advanced the wheel.
        void (*due)(entry&);
    };

    // origin: tick 0 (ticks are counted from it). slots: a power of two.
    timer_wheel(steady_time origin, std::chrono::milliseconds tick, owner_hooks hooks,
                uint32_t slots = 1024);
    ~timer_wheel();
    timer_wheel(const timer_wheel&) = delete;
    timer_wheel& operator=(const timer_wheel&) = delete;

    // (Re)schedules e at `at` (a later or earlier time than before). Returns true when the wheel
    // was empty before: its driver must start ticking.
    bool schedule(entry& e, steady_time at);
    void cancel(entry& e);
    // Unlinks every entry due at `now` and tells each owner (outside the lock). Returns true when
    // entries remain: the driver ticks again at next_tick().
    bool advance(steady_time now);
    // The time of the first tick not yet advanced over.
    steady_time next_tick() const;
    size_t size() const;
    std::chrono::milliseconds tick() const { return tick_; }

  private:
    uint64_t tick_of(steady_time t) const;  // the first tick at or after t
    void link(entry& e, uint64_t tick);
    void unlink(entry& e);

    const steady_time origin_;
    const std::chrono::milliseconds tick_;
    const owner_hooks hooks_;
    const uint64_t mask_;
    mutable std::mutex mu_;
    std::vector<entry*> slots_;  // heads of intrusive doubly-linked lists
    uint64_t done_ = 0;          // every tick up to this one was advanced over
    size_t size_ = 0;
};

// Deadlines of sessions are coarse (seconds); this bounds how late one fires.
inline constexpr std::chrono::milliseconds wheel_tick{100};

// The wheel of one io_context for one kind of owner, and its driver: an asio service, so it
// outlives every owner (the ones still held by pending handlers are destroyed in the context's
// shutdown, before any service is) and owners find it through their executor instead of keeping
// a pointer. The driver timer runs on a strand of its own and only while entries exist.
// Owner derives from timer_wheel::entry and has `std::shared_ptr<Owner> pin_due()` (null once it
// is going away) and `void on_due()` (called on the driver's thread).
template <class Owner>
class timer_wheel_service : public asio::execution_context::service {
  public:
    using key_type = timer_wheel_service;
    static inline asio::execution_context::id id;

    // ctx must be an io_context (the gateway's sockets all run on one).
    explicit timer_wheel_service(asio::execution_context& ctx)
        : asio::execution_context::service(ctx),
          wheel_(std::chrono::steady_clock::now(), wheel_tick,
                 {[](timer_wheel::entry& e) -> std::shared_ptr<void> {
                      return static_cast<Owner&>(e).pin_due();
                  },
                  [](timer_wheel::entry& e) { static_cast<Owner&>(e).on_due(); }}),
          strand_(asio::make_strand(static_cast<asio::io_context&>(ctx))),
          timer_(strand_) {}

    // The service of the context an executor runs on.
    template <class Executor>
    static timer_wheel_service& of(const Executor& ex) {
        return asio::use_service<timer_wheel_service>(asio::query(ex, asio::execution::context));
    }

    void schedule(Owner& o, steady_time at) {
        if (wheel_.schedule(o, at)) asio::post(strand_, [this] { arm(); });
    }
    void cancel(Owner& o) { wheel_.cancel(o); }
    const timer_wheel& wheel() const { return wheel_; }

  private:
    void shutdown() override { timer_.cancel(); }  // handlers are destroyed, never run

    void arm() {  // on strand_
        // Several schedules onto an empty wheel may each have posted an arm: one wait at a time.
        if (armed_) return;
        armed_ = true;
        timer_.expires_at(wheel_.next_tick());
        timer_.async_wait([this](const boost::system::error_code& ec) {
            armed_ = false;
            if (ec) return;
            if (wheel_.advance(std::chrono::steady_clock::now())) arm();
        });
    }

    timer_wheel wheel_;
    asio::strand<asio::io_context::executor_type> strand_;
    asio::steady_timer timer_;
    bool armed_ = false;  // a wait is pending; strand_ only
};

}  // namespace imgate::gw
