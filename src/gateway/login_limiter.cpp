#include "gateway/login_limiter.hpp"

#include <algorithm>

namespace imgate::gw {

login_limiter::login_limiter(double rate, double burst, size_t max_entries)
    : rate_(rate), burst_(std::max(1.0, burst)), max_entries_(std::max<size_t>(1, max_entries)) {}

void login_limiter::set_limits(double rate, double burst) {
    std::lock_guard lk(mu_);
    rate_ = rate;
    burst_ = std::max(1.0, burst);
    for (auto& [addr, b] : buckets_) b.tokens = std::min(b.tokens, burst_);
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
        it = buckets_.emplace(addr, bucket{burst_, now}).first;
    }
    auto& b = it->second;
    if (now > b.last) {
        double elapsed = std::chrono::duration<double>(now - b.last).count();
        b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
        b.last = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
}

void login_limiter::prune(clock::time_point now) {
    // A full scan is O(table); doing it at most once a second bounds the cost under a flood.
    if (last_prune_ != clock::time_point{} && now - last_prune_ < std::chrono::seconds(1)) return;
    last_prune_ = now;
    for (auto it = buckets_.begin(); it != buckets_.end();) {
        double elapsed = std::chrono::duration<double>(now - it->second.last).count();
        if (it->second.tokens + elapsed * rate_ >= burst_)
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
