#include "gateway/pending_acks.hpp"

#include <algorithm>

namespace imgate::gw {

size_t pending_acks::add(uint64_t server_msg_id, ack_origin origin, steady_time now) {
    std::lock_guard lk(mu_);
    size_t evicted = trim_locked(now);
    // Entries acked early leave stale ids in order_; bound both the table and that queue.
    while ((map_.size() >= max_ || order_.size() >= 2 * max_ + 16) && !order_.empty()) {
        evicted += map_.erase(order_.front().first);
        order_.pop_front();
    }
    if (max_ == 0) return evicted;
    auto expires = now + ttl_;
    auto [it, fresh] = map_.try_emplace(server_msg_id, entry{std::move(origin), expires});
    if (fresh) order_.emplace_back(server_msg_id, expires);
    return evicted;
}

std::optional<ack_origin> pending_acks::on_ack(uint64_t server_msg_id, uint64_t sid,
                                               const std::string& user, steady_time now) {
    std::lock_guard lk(mu_);
    auto it = map_.find(server_msg_id);
    if (it == map_.end()) return std::nullopt;
    auto& e = it->second;
    if (e.expires <= now || e.origin.recipient != user) return std::nullopt;
    if (!e.known) {
        // The frame reached the session before the delivery finished registering recipients.
        if (std::find(e.early.begin(), e.early.end(), sid) != e.early.end()) return std::nullopt;
        e.early.push_back(sid);
        return e.origin;
    }
    auto w = std::find(e.waiting.begin(), e.waiting.end(), sid);
    if (w == e.waiting.end()) return std::nullopt;  // not reached, or acked already
    e.waiting.erase(w);
    if (e.waiting.empty()) {
        // Everyone acked: free the entry now (its slot in order_ is skipped when it expires).
        auto origin = std::move(e.origin);
        map_.erase(it);
        return origin;
    }
    return e.origin;
}

void pending_acks::set_recipients(uint64_t server_msg_id, const session_ids& reached) {
    std::lock_guard lk(mu_);
    auto it = map_.find(server_msg_id);
    if (it == map_.end()) return;
    auto& e = it->second;
    e.known = true;
    e.waiting.clear();
    for (uint64_t sid : reached)
        if (std::find(e.early.begin(), e.early.end(), sid) == e.early.end())
            e.waiting.push_back(sid);
    e.early.clear();
    e.early.shrink_to_fit();
    if (e.waiting.empty()) map_.erase(it);
}

size_t pending_acks::trim_locked(steady_time now) {
    size_t n = 0;
    while (!order_.empty() && order_.front().second <= now) {
        auto it = map_.find(order_.front().first);
        // A re-added id keeps its first deadline; only erase when this queue slot still owns it.
        if (it != map_.end() && it->second.expires == order_.front().second) {
            map_.erase(it);
            ++n;
        }
        order_.pop_front();
    }
    return n;
}

size_t pending_acks::expire(steady_time now) {
    std::lock_guard lk(mu_);
    return trim_locked(now);
}

size_t pending_acks::size() const {
    std::lock_guard lk(mu_);
    return map_.size();
}

void pending_acks::set_limits(size_t max_entries, std::chrono::milliseconds ttl) {
    std::lock_guard lk(mu_);
    max_ = max_entries;
    ttl_ = ttl;
}

}  // namespace imgate::gw
