#pragma once
// Upstream events (docs/events.md): session events (login, logout) and, with events.messages,
// every accepted SEND and POST /push, appended to a Redis Stream with
// XADD <stream> MAXLEN ~ <maxlen> * field value ... on the sink's own Redis connection.
// Socket-free: Redis is the redis::commands seam, so the buffer and its retry state machine are
// unit-tested with a fake (tests/gateway/event_sink_test.cpp).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/clock.hpp"
#include "common/metrics.hpp"
#include "common/redis.hpp"
#include "gateway/backend_config.hpp"
#include "gateway/cluster.hpp"

namespace imgate::gw {

struct event_sink_options {
    std::string stream = "imgate:events";
    size_t maxlen = 1000000;
    bool messages = false;
    size_t max_buffered = 100000;
    events_overflow overflow = events_overflow::drop;
    // XADDs pipelined at once (sent, not yet answered).
    size_t max_in_flight = 1024;
    // After a failed XADD, how often the sink looks whether Redis is back (on_up() is faster).
    std::chrono::milliseconds retry{200};
};
event_sink_options event_options_of(const events_config& c);

// Owns the buffer of events not yet acknowledged by Redis (in record order) and the state of
// sending them: every entry stays buffered until Redis answered its XADD. Thread-safe: record
// from any thread (a mutex over the buffer, then a post to the strand); XADDs are issued on the
// strand in buffer order; answers may arrive on any executor.
//
// Delivery: at least once, in order. A failed XADD (not connected, timed out, connection lost,
// queue full) is not lost: the sink stops, waits until Redis is connected again and nothing is in
// flight, re-sends the oldest unacknowledged entry alone, and resumes pipelining once it is
// answered. An XADD that timed out may still have been appended: it then appears twice. A Redis
// error reply (-ERR, WRONGTYPE...) would fail again: that entry is dropped and counted.
class event_sink : public std::enable_shared_from_this<event_sink> {
  public:
    enum class type : uint8_t { login, logout, message, push };
    static constexpr size_t type_count = 4;
    static const char* to_string(type t);

    // redis must outlive the sink's answers (the server stops the sink, then the connection).
    static std::shared_ptr<event_sink> create(boost::asio::any_io_executor ex,
                                              redis::commands& redis, event_sink_options o,
                                              std::string gateway_id, metrics_registry& metrics,
                                              const clock_source& clock = real_clock());

    // Whether message and push events are recorded (events.messages).
    bool messages() const { return opts_.messages; }

    void login(const std::string& user, const std::string& device, uint64_t session,
               std::string_view transport, std::string_view addr);
    void logout(const std::string& user, const std::string& device, uint64_t session,
                std::string_view reason);
    // A SEND accepted at this gateway (msg as routed: id, sender, target, payload). false: the
    // buffer is full and overflow is refuse: the SEND must be refused (`unavailable`).
    bool message(const outbound_message& msg);
    // POST /push; false as for message().
    bool push(const outbound_message& msg);

    // The Redis connection is (again) ready: resume at once instead of at the next retry tick.
    void on_up();
    // No more XADDs; what is still buffered is lost (the server waits a little for it first).
    void stop();
    size_t buffered() const;

  private:
    struct entry {
        uint64_t seq;
        type t;
        redis::argv args;
        bool in_flight = false;
        bool done = false;  // answered (appended, or dropped on an error reply)
    };

    event_sink(boost::asio::any_io_executor ex, redis::commands& redis, event_sink_options o,
               std::string gateway_id, metrics_registry& metrics, const clock_source& clock);
    // XADD <stream> MAXLEN ~ <maxlen> * type <t> gateway <id> ts_ms <ts>, the rest appended.
    redis::argv head(type t, uint64_t ts_ms) const;
    // Buffers one event; false when refused (refusable and the buffer is full under refuse).
    bool record(type t, redis::argv args, bool refusable);
    void flush();
    void answered(uint64_t seq, boost::system::error_code ec, const redis::reply& r);
    void wake();  // on the strand: leave the waiting state if Redis is usable
    // Caller holds mu_.
    void post_flush_locked();
    void arm_retry_locked();
    void pop_done_locked();

    boost::asio::strand<boost::asio::any_io_executor> strand_;
    redis::commands& redis_;
    event_sink_options opts_;
    std::string gateway_;
    const clock_source& clock_;
    boost::asio::steady_timer retry_timer_;  // strand only

    counter* appended_[type_count];
    counter* dropped_[type_count];
    counter* refused_;
    gauge* buffered_gauge_;

    mutable std::mutex mu_;  // guards everything below
    std::deque<entry> buf_;  // not yet answered, seq order (contiguous)
    uint64_t next_seq_ = 1;
    uint64_t send_from_ = 1;  // the first seq the next flush looks at
    size_t in_flight_ = 0;
    bool flush_posted_ = false;
    // A send failed: nothing is sent until Redis is connected and nothing is in flight; then the
    // oldest entry goes alone (probing) before pipelining resumes.
    bool waiting_ = false;
    bool probing_ = false;
    bool retry_armed_ = false;
    bool stopped_ = false;
};

}  // namespace imgate::gw
