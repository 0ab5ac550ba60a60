#include "client/dispatcher_list.hpp"

#include <algorithm>
#include <cmath>

namespace imgate::client {

std::optional<std::vector<http_url>> parse_dispatcher_urls(const std::vector<std::string>& values,
                                                           std::string* err) {
    std::vector<http_url> out;
    for (auto& v : values) {
        for (auto& item : split_list(v)) {
            std::string why;
            auto u = parse_http_url(item, &why);
            if (!u) {
                if (err) *err = why;
                return std::nullopt;
            }
            bool seen = std::any_of(out.begin(), out.end(), [&](const http_url& o) {
                return o.tls == u->tls && o.host == u->host && o.port == u->port &&
                       o.prefix == u->prefix;
            });
            if (seen) continue;
            if (out.size() >= max_dispatcher_urls) {
                if (err)
                    *err = "more than " + std::to_string(max_dispatcher_urls) + " dispatcher URLs";
                return std::nullopt;
            }
            out.push_back(std::move(*u));
        }
    }
    if (out.empty()) {
        if (err) *err = "expected a URL like http://127.0.0.1:8080";
        return std::nullopt;
    }
    return out;
}

bool any_https(const std::vector<http_url>& urls) {
    return std::any_of(urls.begin(), urls.end(), [](const http_url& u) { return u.tls; });
}

dispatch_outcome classify_dispatch(int status, bool has_answer) {
    if (status == 0) return dispatch_outcome::transport;
    if (status == 200) return has_answer ? dispatch_outcome::answer : dispatch_outcome::bad_answer;
    if (status == 503) return dispatch_outcome::no_gateway;
    if (status >= 400 && status < 500) return dispatch_outcome::client_error;
    // 5xx, and anything a dispatcher should never send (1xx, 3xx, 2xx other than 200).
    return dispatch_outcome::server_error;
}

bool fails_over(dispatch_outcome o) {
    return o != dispatch_outcome::answer && o != dispatch_outcome::client_error;
}

dispatcher_list::dispatcher_list(std::shared_ptr<const std::vector<http_url>> urls, size_t start)
    : urls_(std::move(urls)) {
    current_ = start < size() ? start : 0;
    round_start_ = current_;
}

size_t dispatcher_list::draw_start(size_t n, const random_source& random01) {
    if (n <= 1 || !random01) return 0;
    double r = std::clamp(random01(), 0.0, 1.0);
    // r == 1.0 would be index n: the last index takes it.
    return std::min(n - 1, static_cast<size_t>(std::floor(r * double(n))));
}

void dispatcher_list::begin_round() {
    round_start_ = current_;
    pos_ = 0;
    ended_ = false;
    round_.clear();
}

std::optional<size_t> dispatcher_list::next() {
    if (ended_ || pos_ >= size()) return std::nullopt;
    return (round_start_ + pos_++) % size();
}

std::optional<size_t> dispatcher_list::peek() const {
    if (ended_ || pos_ >= size()) return std::nullopt;
    return (round_start_ + pos_) % size();
}

bool dispatcher_list::report(size_t i, dispatch_outcome o, std::string cause) {
    round_.push_back({i, o, std::move(cause)});
    if (!fails_over(o)) {
        current_ = i;
        ended_ = true;
        return false;
    }
    if (pos_ < size()) return true;
    ended_ = true;
    // Every URL failed: start the next round at a dispatcher that is at least alive.
    auto alive = std::find_if(round_.begin(), round_.end(), [](const attempt& a) {
        return a.outcome != dispatch_outcome::transport;
    });
    current_ = alive != round_.end() ? alive->index : round_start_;
    return false;
}

bool dispatcher_list::all_failed() const {
    return !round_.empty() && round_.size() == size() &&
           std::all_of(round_.begin(), round_.end(),
                       [](const attempt& a) { return fails_over(a.outcome); });
}

std::string dispatcher_list::failures() const {
    std::string out;
    for (auto& a : round_) {
        if (!fails_over(a.outcome)) continue;
        if (!out.empty()) out += "; ";
        out += at(a.index).origin() + at(a.index).prefix + " (" + a.cause + ")";
    }
    return out;
}

}  // namespace imgate::client
