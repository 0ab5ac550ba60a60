#include "gateway/login_limiter.hpp"

#include <algorithm>

namespace imgate::gw {

login_limiter::login_limiter(double rate, double burst, size_t max_entries)
    : rate_(rate), burst_(std::max(1.0, burst)), max_entries_(std::max<size_t>(1, max_entries)) {}

void login_limiter::set_limits(double rate, double burst) {
    std::lock_guard lk(mu_);
    rate_ = rate;
    burst_ = std::max(1.0, burst);
    for (auto& [addr, b] : buckets_) b.set_limits(rate_, burst_);
}

bool login_limiter::allow(const std::string& addr, clock::time_point now) {
    std::lock_guard lk(mu_);
    if (rate_ <= 0) return true;
    auto it = buckets_.find(addr);
    if (it == buckets_.end()) {
        if (buckets_.size() >= max_entries_) prune(now);
        if (buckets_.size() >= max_entries_) {
            ++untracked_;
            return true;
        }
        it = buckets_.emplace(addr, token_bucket(rate_, burst_, now)).first;
    }
    return it->second.take(now);
}

void login_limiter::prune(clock::time_point now) {
    // A full scan is O(table); doing it at most once a second bounds the cost under a flood.
    if (last_prune_ != clock::time_point{} && now - last_prune_ < std::chrono::seconds(1)) return;
    last_prune_ = now;
    for (auto it = buckets_.begin(); it != buckets_.end();) {
        if (it->second.full_at(now))
            it = buckets_.erase(it);
        else
            ++it;
    }
}

size_t login_limiter::tracked() const {
    std::lock_guard lk(mu_);
    return buckets_.size();
}

uint64_t login_limiter::untracked() const {
    std::lock_guard lk(mu_);
    return untracked_;
}

}  // namespace imgate::gw
