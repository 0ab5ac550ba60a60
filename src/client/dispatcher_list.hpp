#pragma once
// The dispatcher fail-over rule of the `imgate` tool, without sockets: the dispatcher URLs a
// client was given (--dispatcher, repeatable), which one a round starts at, and which answers
// move on to the next URL in the same round. The I/O loop over it is get_gateway_round
// (http_client.hpp); the connector keeps one list per client so its choice sticks.
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/logic.hpp"

namespace imgate::client {

// The --dispatcher values: each may hold a comma-separated list; every item is an
// http[s]:// URL. Repeats of one URL are dropped (the first stays). Empty or bad: nullopt, err set
// (naming the bad item).
std::optional<std::vector<http_url>> parse_dispatcher_urls(const std::vector<std::string>& values,
                                                           std::string* err);
// Whether any of the URLs is https (the client then needs a TLS context for the dispatchers).
bool any_https(const std::vector<http_url>& urls);
// More URLs than this are refused: a client list is a handful of dispatchers, not a fleet.
inline constexpr size_t max_dispatcher_urls = 64;

// What one GET /get-tcp-ip to one dispatcher gave, as far as fail-over is concerned.
enum class dispatch_outcome {
    answer,        // 200 with a usable answer
    transport,     // refused, reset, timed out, TLS failure, no answer before the deadline
    server_error,  // 5xx other than 503, or any other status that is not 200/4xx
    bad_answer,    // 200 that cannot be parsed (or names another transport)
    no_gateway,    // 503: this dispatcher sees no gateway; another one's pulls may differ
    client_error,  // 4xx: the query is wrong, and every dispatcher says so
};
// status 0 is a transport failure; has_answer tells a usable 200 from a bad one.
dispatch_outcome classify_dispatch(int status, bool has_answer);
// True when the round moves on to the next URL: everything but an answer and a 4xx.
bool fails_over(dispatch_outcome o);

// The URLs and a sticky current index. A round tries every URL at most once, from the current
// one on in list order (wrapping). An answer (or a 4xx: that dispatcher is alive) makes its URL
// the current one, so the next round starts there; a failed URL hands over to the next one at
// once. When every URL failed, the next
// round starts at the first one that answered over HTTP in this round (it is alive), or where
// this one started when none did.
class dispatcher_list {
  public:
    using random_source = std::function<double()>;  // uniform [0, 1]

    dispatcher_list() = default;
    // start: the first round's URL (clamped). Use draw_start to spread clients over the list.
    explicit dispatcher_list(std::shared_ptr<const std::vector<http_url>> urls, size_t start = 0);
    // A uniformly drawn start index in [0, n) (0 when n <= 1 or there is no source).
    static size_t draw_start(size_t n, const random_source& random01);

    size_t size() const { return urls_ ? urls_->size() : 0; }
    bool empty() const { return size() == 0; }
    const http_url& at(size_t i) const { return (*urls_)[i]; }
    size_t current() const { return current_; }
    void set_current(size_t i) {
        if (i < size()) current_ = i;
    }

    // A new round: forgets the previous round's failures.
    void begin_round();
    // The index of the next URL to ask in this round; nullopt when the round is over (an answer,
    // a 4xx, or every URL tried).
    std::optional<size_t> next();
    // The URL next() would hand out, without taking it (for the fail-over message).
    std::optional<size_t> peek() const;
    // What asking URL i gave (cause: a short human reason, e.g. "connection refused", "503
    // no_gateway_available"). True when the round goes on with the next URL.
    bool report(size_t i, dispatch_outcome o, std::string cause);

    // After the round: every URL was tried and none answered usably (a 4xx is not "all failed").
    bool all_failed() const;
    // "http://a:8080 (connection refused); http://b:8080 (503 no_gateway_available)": each URL
    // tried in this round with its cause, in order.
    std::string failures() const;

  private:
    struct attempt {
        size_t index;
        dispatch_outcome outcome;
        std::string cause;
    };
    std::shared_ptr<const std::vector<http_url>> urls_;
    size_t current_ = 0;
    size_t round_start_ = 0;
    size_t pos_ = 0;  // URLs handed out in this round
    bool ended_ = false;
    std::vector<attempt> round_;
};

}  // namespace imgate::client
