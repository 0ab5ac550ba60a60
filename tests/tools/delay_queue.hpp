#pragma once
// The socket-free part of imgate-delay-relay (tests/tools/delay_relay.cpp): one direction's queue
// of chunks, each due `delay` after it was read, with the byte budget that gives backpressure,
// and the parsing of durations and routes. Header-only so the relay's tests can drive it with
// made-up times.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "common/config.hpp"

namespace imgate::relay {

using relay_clock = std::chrono::steady_clock;

// One direction of one relayed connection: the bytes read from one side and not yet written to
// the other, oldest first, with the moment each may be written. An EOF marker ends the queue.
class delay_queue {
  public:
    struct chunk {
        std::string bytes;
        relay_clock::time_point due;
        bool eof = false;  // the reading side shut down its sending half: shutdown(send) here
    };

    explicit delay_queue(size_t max_buffer) : max_(std::max<size_t>(max_buffer, 1)) {}

    // How many more bytes the reader may take from its socket now (0: stop reading, the writer
    // has to drain first).
    size_t room() const { return buffered_ >= max_ ? 0 : max_ - buffered_; }
    size_t buffered() const { return buffered_; }
    bool empty() const { return q_.empty(); }
    bool eof_queued() const { return eof_queued_; }

    // A chunk read at `read_at`, to be written `delay` later. A chunk is never due before the
    // one ahead of it: after the delay shrinks, newer bytes wait for older ones (a wire keeps
    // the order).
    void push(std::string bytes, relay_clock::time_point read_at, std::chrono::milliseconds delay) {
        if (bytes.empty()) return;
        buffered_ += bytes.size();
        q_.push_back({std::move(bytes), due_after(read_at, delay), false});
    }
    // End of stream, forwarded after every byte queued before it.
    void push_eof(relay_clock::time_point read_at, std::chrono::milliseconds delay) {
        eof_queued_ = true;
        q_.push_back({{}, due_after(read_at, delay), true});
    }

    const chunk& front() const { return q_.front(); }
    void pop() {
        buffered_ -= q_.front().bytes.size();
        q_.pop_front();
    }

  private:
    relay_clock::time_point due_after(relay_clock::time_point read_at,
                                      std::chrono::milliseconds delay) {
        auto due = read_at + delay;
        if (!q_.empty()) due = std::max(due, q_.back().due);
        return due;
    }

    size_t max_;
    size_t buffered_ = 0;
    bool eof_queued_ = false;
    std::deque<chunk> q_;
};

// A delay as the daemons' configuration reads durations ("0ms", "250ms", "1s", a bare number is
// milliseconds; common/config.cpp's parser). Surrounding whitespace (a file's newline) ignored.
// nullopt when it is not one.
inline std::optional<std::chrono::milliseconds> parse_delay(std::string text) {
    auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return std::nullopt;
    text = text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
    try {
        YAML::Node n(YAML::NodeType::Map);
        n["delay"] = text;
        yaml_map m(n, "delay");
        return m.duration("delay", std::chrono::milliseconds(0));
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

struct route {
    endpoint listen;
    endpoint target;
};

// "LISTEN=TARGET", both HOST:PORT with a literal IPv4 or [IPv6] host; the target's port must
// not be 0. nullopt on anything else (the caller names the bad argument).
inline std::optional<route> parse_route(const std::string& s) {
    auto eq = s.find('=');
    if (eq == std::string::npos || s.find('=', eq + 1) != std::string::npos) return std::nullopt;
    auto l = parse_endpoint(std::string_view(s).substr(0, eq));
    auto t = parse_endpoint(std::string_view(s).substr(eq + 1));
    if (!l || !t || t->port == 0) return std::nullopt;
    for (auto* e : {&*l, &*t}) {
        boost::system::error_code ec;
        boost::asio::ip::make_address(e->host, ec);
        if (ec) return std::nullopt;  // a name: the relay resolves nothing
    }
    return route{*l, *t};
}

}  // namespace imgate::relay
