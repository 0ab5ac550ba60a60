#include "gateway/flood_penalty.hpp"

#include <algorithm>

namespace imgate::gw {

flood_penalty::flood_penalty(size_t max_entries) : max_entries_(std::max<size_t>(1, max_entries)) {}

void flood_penalty::expire(clock::time_point now) {
    // The penalty length is one configured value, so the oldest entries end first; one that a
    // reload made longer stays until it reaches the front, and until() checks every lookup.
    while (!order_.empty() && order_.front().until <= now) {
        by_user_.erase(order_.front().user);
        order_.pop_front();
    }
}

void flood_penalty::penalise(const std::string& user, clock::time_point until,
                             clock::time_point now) {
    std::lock_guard lk(mu_);
    expire(now);
    if (auto it = by_user_.find(user); it != by_user_.end()) {
        order_.erase(it->second);
        by_user_.erase(it);
    }
    if (by_user_.size() >= max_entries_) {
        by_user_.erase(order_.front().user);
        order_.pop_front();
        ++evicted_;
    }
    order_.push_back(entry{user, until});
    by_user_[user] = std::prev(order_.end());
}

std::optional<flood_penalty::clock::time_point> flood_penalty::until(const std::string& user,
                                                                     clock::time_point now) {
    std::lock_guard lk(mu_);
    expire(now);
    auto it = by_user_.find(user);
    if (it == by_user_.end() || it->second->until <= now) return std::nullopt;
    return it->second->until;
}

size_t flood_penalty::size() const {
    std::lock_guard lk(mu_);
    return by_user_.size();
}

uint64_t flood_penalty::evicted() const {
    std::lock_guard lk(mu_);
    return evicted_;
}

}  // namespace imgate::gw
