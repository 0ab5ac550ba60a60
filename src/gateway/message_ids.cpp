#include "gateway/message_ids.hpp"

namespace imgate::gw {

bool recent_ids::insert(uint64_t id) {
    std::lock_guard lk(mu_);
    if (!set_.insert(id).second) return false;
    order_.push_back(id);
    while (order_.size() > cap_) {
        set_.erase(order_.front());
        order_.pop_front();
    }
    return true;
}

bool recent_ids::contains(uint64_t id) const {
    std::lock_guard lk(mu_);
    return set_.count(id) != 0;
}

size_t recent_ids::size() const {
    std::lock_guard lk(mu_);
    return set_.size();
}

msg_id_source::msg_id_source(uint16_t node, uint64_t now_ms_since_epoch)
    : prefix_(uint64_t(node) << 48) {
    constexpr uint64_t epoch_2025_ms = 1735689600000ull;
    uint64_t ms = now_ms_since_epoch > epoch_2025_ms ? now_ms_since_epoch - epoch_2025_ms : 0;
    counter_.store(((ms << 10) & mask48) | 1, std::memory_order_relaxed);
}

}  // namespace imgate::gw
