#include "gateway/event_sink.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "common/log_throttle.hpp"

namespace imgate::gw {

namespace asio = boost::asio;

event_sink_options event_options_of(const events_config& c) {
    event_sink_options o;
    o.stream = c.stream;
    o.maxlen = c.maxlen;
    o.messages = c.messages;
    o.max_buffered = c.max_buffered;
    o.overflow = c.overflow;
    return o;
}

const char* event_sink::to_string(type t) {
    switch (t) {
        case type::login:
            return "login";
        case type::logout:
            return "logout";
        case type::message:
            return "message";
        case type::push:
            return "push";
    }
    return "?";
}

std::shared_ptr<event_sink> event_sink::create(asio::any_io_executor ex, redis::commands& redis,
                                               event_sink_options o, std::string gateway_id,
                                               metrics_registry& metrics,
                                               const clock_source& clock) {
    return std::shared_ptr<event_sink>(
        new event_sink(std::move(ex), redis, std::move(o), std::move(gateway_id), metrics, clock));
}

event_sink::event_sink(asio::any_io_executor ex, redis::commands& redis, event_sink_options o,
                       std::string gateway_id, metrics_registry& metrics, const clock_source& clock)
    : strand_(asio::make_strand(std::move(ex))),
      redis_(redis),
      opts_(std::move(o)),
      gateway_(std::move(gateway_id)),
      clock_(clock),
      retry_timer_(strand_) {
    if (opts_.max_in_flight == 0) opts_.max_in_flight = 1;
    for (size_t i = 0; i < type_count; ++i) {
        const char* t = to_string(type(i));
        appended_[i] = &metrics.get_counter(
            "imgate_events_total", "Events appended to the Redis stream, by type", {{"type", t}});
        dropped_[i] = &metrics.get_counter(
            "imgate_events_dropped_total",
            "Events lost: the buffer was full (overflow drop, or a session event under refuse), "
            "or Redis answered the XADD with an error",
            {{"type", t}});
    }
    refused_ = &metrics.get_counter(
        "imgate_events_refused_total",
        "SENDs and pushes refused (unavailable) because the event buffer was full (overflow "
        "refuse)");
    buffered_gauge_ = &metrics.get_gauge("imgate_events_buffered",
                                         "Events waiting for Redis to acknowledge their XADD");
}

redis::argv event_sink::head(type t, uint64_t ts_ms) const {
    redis::argv a;
    a.reserve(24);
    a.emplace_back("XADD");
    a.push_back(opts_.stream);
    a.emplace_back("MAXLEN");
    a.emplace_back("~");
    a.push_back(std::to_string(opts_.maxlen));
    a.emplace_back("*");
    a.emplace_back("type");
    a.emplace_back(to_string(t));
    a.emplace_back("gateway");
    a.push_back(gateway_);
    a.emplace_back("ts_ms");
    a.push_back(std::to_string(ts_ms));
    return a;
}

void event_sink::login(const std::string& user, const std::string& device, uint64_t session,
                       std::string_view transport, std::string_view addr) {
    auto a = head(type::login, uint64_t(clock_.wall_ms()));
    a.insert(a.end(), {"user", user, "device", device, "session", std::to_string(session),
                       "transport", std::string(transport), "addr", std::string(addr)});
    record(type::login, std::move(a), false);
}

void event_sink::logout(const std::string& user, const std::string& device, uint64_t session,
                        std::string_view reason) {
    auto a = head(type::logout, uint64_t(clock_.wall_ms()));
    a.insert(a.end(), {"user", user, "device", device, "session", std::to_string(session), "reason",
                       std::string(reason)});
    record(type::logout, std::move(a), false);
}

namespace {
const char* kind_name(proto::target_kind k) {
    return k == proto::target_kind::room ? "room" : "user";
}
}  // namespace

bool event_sink::message(const outbound_message& msg) {
    if (!opts_.messages) return true;
    auto a = head(type::message, msg.ts_ms);
    a.insert(a.end(), {"id", std::to_string(msg.server_msg_id), "client_msg_id",
                       std::to_string(msg.client_msg_id), "from_user", msg.from_user, "from_device",
                       msg.from_device, "kind", kind_name(msg.kind), "target", msg.target,
                       "payload", msg.payload});
    return record(type::message, std::move(a), true);
}

bool event_sink::push(const outbound_message& msg) {
    if (!opts_.messages) return true;
    auto a = head(type::push, msg.ts_ms);
    a.insert(a.end(), {"id", std::to_string(msg.server_msg_id), "kind", kind_name(msg.kind),
                       "target", msg.target, "payload", msg.payload});
    return record(type::push, std::move(a), true);
}

bool event_sink::record(type t, redis::argv args, bool refusable) {
    std::lock_guard lk(mu_);
    if (stopped_ || buf_.size() >= opts_.max_buffered) {
        if (refusable && opts_.overflow == events_overflow::refuse && !stopped_) {
            refused_->inc();
            IMGATE_LOG_THROTTLED(warn,
                                 "events: {} events wait for Redis (events.max_buffered): "
                                 "refusing sends (events.overflow refuse)",
                                 buf_.size());
            return false;
        }
        dropped_[size_t(t)]->inc();
        IMGATE_LOG_THROTTLED(warn,
                             "events: {} events wait for Redis (events.max_buffered): dropping "
                             "new events (imgate_events_dropped_total)",
                             buf_.size());
        return true;
    }
    buf_.push_back(entry{next_seq_++, t, std::move(args)});
    buffered_gauge_->set(double(buf_.size()));
    post_flush_locked();
    return true;
}

void event_sink::post_flush_locked() {
    if (flush_posted_ || waiting_ || stopped_) return;
    flush_posted_ = true;
    asio::post(strand_, [self = shared_from_this()] { self->flush(); });
}

void event_sink::flush() {
    std::vector<std::pair<uint64_t, redis::argv>> out;
    {
        std::lock_guard lk(mu_);
        flush_posted_ = false;
        if (stopped_ || waiting_ || buf_.empty()) return;
        if (!redis_.connected()) {
            IMGATE_LOG_THROTTLED(warn, "events: Redis is not connected: buffering ({} events)",
                                 buf_.size());
            waiting_ = probing_ = true;
            arm_retry_locked();
            return;
        }
        uint64_t front = buf_.front().seq;
        if (send_from_ < front) send_from_ = front;
        size_t i = size_t(send_from_ - front);
        while (i < buf_.size() && in_flight_ < opts_.max_in_flight) {
            if (probing_ && in_flight_ > 0) break;
            auto& e = buf_[i++];
            send_from_ = e.seq + 1;
            if (e.done || e.in_flight) continue;
            e.in_flight = true;
            ++in_flight_;
            out.emplace_back(e.seq, e.args);  // kept in the buffer until Redis answers
        }
    }
    // Outside the lock (a fake may answer inline); on the strand, so in buffer order.
    for (auto& [seq, args] : out) {
        auto self = shared_from_this();
        uint64_t s = seq;
        redis_.command(std::move(args),
                       [self, s](boost::system::error_code ec, const redis::reply& r) {
                           self->answered(s, ec, r);
                       });
    }
}

void event_sink::answered(uint64_t seq, boost::system::error_code ec, const redis::reply& r) {
    std::lock_guard lk(mu_);
    if (buf_.empty() || seq < buf_.front().seq) return;
    size_t i = size_t(seq - buf_.front().seq);
    if (i >= buf_.size()) return;
    auto& e = buf_[i];
    if (!e.in_flight) return;
    e.in_flight = false;
    --in_flight_;
    if (ec) {
        // Not appended (or not known to be): sent again from the oldest unanswered entry once
        // Redis is usable and nothing else is in flight, so the stream keeps the buffer's order.
        if (!waiting_ && !stopped_)
            IMGATE_LOG_THROTTLED(warn, "events: XADD failed ({}): buffering and retrying",
                                 ec.message());
        waiting_ = probing_ = true;
        send_from_ = buf_.front().seq;
        arm_retry_locked();
        return;
    }
    e.done = true;
    if (r.is_error()) {
        dropped_[size_t(e.t)]->inc();
        IMGATE_LOG_THROTTLED(error, "events: Redis refused an XADD to {}: {}: event dropped",
                             opts_.stream, r.str);
    } else {
        appended_[size_t(e.t)]->inc();
    }
    // An answer to the probe: Redis works again, pipelining resumes. (An answer to an XADD sent
    // before a failure changes nothing while waiting.)
    if (!waiting_) probing_ = false;
    pop_done_locked();
    post_flush_locked();
}

void event_sink::pop_done_locked() {
    while (!buf_.empty() && buf_.front().done) buf_.pop_front();
    buffered_gauge_->set(double(buf_.size()));
}

void event_sink::arm_retry_locked() {
    if (retry_armed_ || stopped_) return;
    retry_armed_ = true;
    auto self = shared_from_this();
    asio::post(strand_, [self] {
        self->retry_timer_.expires_after(self->opts_.retry);
        self->retry_timer_.async_wait([self](boost::system::error_code ec) {
            {
                std::lock_guard lk(self->mu_);
                self->retry_armed_ = false;
            }
            if (!ec) self->wake();
        });
    });
}

void event_sink::on_up() {
    asio::post(strand_, [self = shared_from_this()] { self->wake(); });
}

void event_sink::wake() {
    std::lock_guard lk(mu_);
    if (stopped_ || !waiting_) return;
    if (in_flight_ > 0 || !redis_.connected()) {
        arm_retry_locked();
        return;
    }
    waiting_ = false;
    send_from_ = buf_.empty() ? next_seq_ : buf_.front().seq;
    post_flush_locked();
}

void event_sink::stop() {
    std::lock_guard lk(mu_);
    stopped_ = true;
    asio::post(strand_, [self = shared_from_this()] { self->retry_timer_.cancel(); });
}

size_t event_sink::buffered() const {
    std::lock_guard lk(mu_);
    return buf_.size();
}

}  // namespace imgate::gw
