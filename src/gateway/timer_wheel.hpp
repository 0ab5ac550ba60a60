#pragma once
// Coarse deadlines for many sessions: one hashed timer wheel per io_context instead of one
// asio::steady_timer and one pending wait operation per session. An idle session then holds only
// an intrusive link (no heap block); the wheel ticks (every `tick`, only while it holds entries)
// on one asio timer and hands each due entry to its owner. A deadline fires at the first tick at
// or after it: never early, at most one tick (plus scheduling delay) late.
#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>
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
    // What the wheel schedules, embedded in its owner. The owner cancels it before it goes away.
    class entry {
      public:
        entry() = default;
        entry(const entry&) = delete;
        entry& operator=(const entry&) = delete;
        bool scheduled() const { return tick_ != 0; }

      protected:
        ~entry() = default;

      private:
        friend class timer_wheel;
        // Called under the wheel's lock when the entry is due (already unlinked): a reference
        // that keeps the owner alive until it has been told, or null when the owner is going away.
        virtual std::shared_ptr<entry> pin_due() = 0;
        // The deadline passed; called without the wheel's lock, on the thread that advanced it.
        virtual void on_due() = 0;

        entry* prev_ = nullptr;
        entry* next_ = nullptr;
        uint64_t tick_ = 0;  // the tick it fires at; 0: not scheduled
    };

    // origin: tick 0 (ticks are counted from it). slots: a power of two.
    timer_wheel(steady_time origin, std::chrono::milliseconds tick, uint32_t slots = 1024);
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
    const uint64_t mask_;
    mutable std::mutex mu_;
    std::vector<entry*> slots_;  // heads of intrusive doubly-linked lists
    uint64_t done_ = 0;          // every tick up to this one was advanced over
    size_t size_ = 0;
};

// The wheel of one io_context and its driver: an asio service (asio::use_service on the
// io_context), so it outlives every session (the sessions still held by pending handlers are
// destroyed in the context's shutdown, before any service is). The driver timer runs on a strand
// of its own and only while entries exist.
class timer_wheel_service : public asio::execution_context::service {
  public:
    using key_type = timer_wheel_service;
    static inline asio::execution_context::id id;
    // Deadlines of sessions are coarse (seconds); this bounds how late one fires.
    static constexpr std::chrono::milliseconds default_tick{100};

    explicit timer_wheel_service(asio::io_context& io);
    ~timer_wheel_service() override;

    void schedule(timer_wheel::entry& e, steady_time at);
    void cancel(timer_wheel::entry& e) { wheel_.cancel(e); }
    const timer_wheel& wheel() const { return wheel_; }

  private:
    void shutdown() override;
    void arm();  // on strand_

    timer_wheel wheel_;
    asio::strand<asio::io_context::executor_type> strand_;
    asio::steady_timer timer_;
    bool armed_ = false;  // a wait is pending; strand_ only
};

}  // namespace imgate::gw
