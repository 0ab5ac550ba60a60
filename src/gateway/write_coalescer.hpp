#pragma once
// Batching of client socket writes that does not depend on luck, without making a quiet session
// pay for it. A session whose outbound queue goes from empty to non-empty and that is busy (it
// started a write less than `timeouts.write_coalesce` ago, or a write of several frames less than
// burst_span delays ago) does not write at once but joins the next flush, at most one delay later;
// every frame queued for it meanwhile (more deliveries, the SEND_RESULTs of a burst of SENDs, more
// room copies) then leaves in the same socket write. A session that wrote nothing for the delay or
// longer writes right after the events being handled (write_waits() decides). One timer for the
// whole gateway, armed at most once per delay, instead of one per session.
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace imgate::gw {

namespace asio = boost::asio;

// Whether a session whose queue just became non-empty waits for the next flush: it started a
// write less than delay_us ago, or less than burst_span × delay_us ago when that write carried
// more than one frame (a session in a burst: lockstep exchanges such as a window of sends whose
// next top-up comes a few milliseconds later keep their full batches; a chat session that
// receives a frame now and then writes at once). last_write packs the write's start (steady
// clock, us, low 32 bits, its lowest bit dropped) with that "several frames" flag in bit 0 (see
// last_write_stamp). The difference is taken modulo 2^32, so a session idle for almost exactly a
// multiple of 71.6 minutes may wait one delay it need not have, never longer.
inline constexpr uint32_t burst_span = 4;
inline uint32_t last_write_stamp(uint32_t start_us, size_t frames) {
    return (start_us & ~1u) | (frames > 1 ? 1u : 0u);
}
inline bool write_waits(uint32_t now_us, uint32_t last_write, uint32_t delay_us) {
    if (delay_us == 0) return false;
    uint32_t since = now_us - (last_write & ~1u);
    return since < delay_us || ((last_write & 1u) && since / burst_span < delay_us);
}

// Owns the list of sessions waiting for the next flush and the timer that ends the wait. Thread
// safe: schedule() may be called from any thread. T is the session type (a template so the unit
// test can use a stand-in); T::flush_scheduled() runs once per schedule() on T's own executor.
template <class T>
class basic_write_coalescer {
  public:
    using clock = std::chrono::steady_clock;
    explicit basic_write_coalescer(asio::any_io_executor ex)
        : strand_(asio::make_strand(ex)), timer_(strand_) {}

    // 0: no delay, the caller writes at once (after the current handler) instead of scheduling.
    void set_delay(std::chrono::microseconds d) {
        delay_us_.store(d.count(), std::memory_order_relaxed);
    }
    std::chrono::microseconds delay() const {
        return std::chrono::microseconds(delay_us_.load(std::memory_order_relaxed));
    }

    // Queues s for the next flush; arms the flush timer when it is the first one waiting.
    void schedule(std::shared_ptr<T> s) {
        bool arm = false;
        {
            std::lock_guard lk(mu_);
            pending_.push_back(std::move(s));
            if (!armed_) armed_ = arm = true;
        }
        if (!arm) return;
        auto d = delay();
        asio::post(strand_, [this, d] {
            timer_.expires_after(d);
            timer_.async_wait([this](const boost::system::error_code& ec) {
                if (!ec) flush();
            });
        });
        flushes_armed_.fetch_add(1, std::memory_order_relaxed);
    }

    // Flushes everything waiting now (the timer's callback).
    void flush() {
        std::vector<std::shared_ptr<T>> due;
        {
            std::lock_guard lk(mu_);
            due.swap(pending_);
            armed_ = false;
        }
        for (auto& s : due) s->flush_scheduled();
    }

    // How many times a flush was armed (the unit tests check that schedules share flushes).
    uint64_t flushes() const { return flushes_armed_.load(std::memory_order_relaxed); }

  private:
    asio::strand<asio::any_io_executor> strand_;
    asio::steady_timer timer_;  // on strand_
    std::atomic<int64_t> delay_us_{0};
    std::atomic<uint64_t> flushes_armed_{0};
    std::mutex mu_;
    std::vector<std::shared_ptr<T>> pending_;  // guarded by mu_
    bool armed_ = false;                       // guarded by mu_: a flush is on its way
};

}  // namespace imgate::gw
