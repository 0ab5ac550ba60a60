#include "gateway/timer_wheel.hpp"

#include <cassert>

namespace imgate::gw {

timer_wheel::timer_wheel(steady_time origin, std::chrono::milliseconds tick, owner_hooks hooks,
                         uint32_t slots)
    : origin_(origin), tick_(tick), hooks_(hooks), mask_(slots - 1), slots_(slots, nullptr) {
    assert(slots != 0 && (slots & (slots - 1)) == 0 && tick.count() > 0);
}

timer_wheel::~timer_wheel() = default;

uint64_t timer_wheel::tick_of(steady_time t) const {
    if (t <= origin_) return 0;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - origin_).count();
    return uint64_t((ms + tick_.count() - 1) / tick_.count());
}

void timer_wheel::link(entry& e, uint64_t tick) {
    e.tick_ = tick;
    entry*& head = slots_[tick & mask_];
    e.prev_ = nullptr;
    e.next_ = head;
    if (head) head->prev_ = &e;
    head = &e;
    ++size_;
}

void timer_wheel::unlink(entry& e) {
    if (e.prev_)
        e.prev_->next_ = e.next_;
    else
        slots_[e.tick_ & mask_] = e.next_;
    if (e.next_) e.next_->prev_ = e.prev_;
    e.prev_ = e.next_ = nullptr;
    e.tick_ = 0;
    --size_;
}

bool timer_wheel::schedule(entry& e, steady_time at) {
    std::lock_guard lk(mu_);
    bool was_empty = size_ == 0;
    if (e.tick_ != 0) unlink(e);
    // A deadline already passed (or within a tick already advanced over) fires at the next tick.
    link(e, std::max(tick_of(at), done_ + 1));
    return was_empty;
}

void timer_wheel::cancel(entry& e) {
    std::lock_guard lk(mu_);
    if (e.tick_ != 0) unlink(e);
}

bool timer_wheel::advance(steady_time now) {
    std::vector<std::pair<entry*, std::shared_ptr<void>>> due;
    bool more;
    {
        std::lock_guard lk(mu_);
        // The last tick at or before now.
        uint64_t upto =
            now <= origin_
                ? 0
                : uint64_t(std::chrono::floor<std::chrono::milliseconds>(now - origin_).count() /
                           tick_.count());
        // A driver that fell behind by more than a revolution visits each slot once.
        uint64_t from = std::max(done_ + 1, upto > mask_ ? upto - mask_ : 1);
        for (uint64_t t = from; t <= upto && size_ > 0; ++t) {
            for (entry* e = slots_[t & mask_]; e;) {
                entry* next = e->next_;
                // Entries of later revolutions share the slot and stay.
                if (e->tick_ <= upto) {
                    unlink(*e);
                    if (auto p = hooks_.pin(*e)) due.emplace_back(e, std::move(p));
                }
                e = next;
            }
        }
        if (upto > done_) done_ = upto;
        more = size_ > 0;
    }
    for (auto& [e, pin] : due) hooks_.due(*e);
    return more;
}

steady_time timer_wheel::next_tick() const {
    std::lock_guard lk(mu_);
    return origin_ + tick_ * int64_t(done_ + 1);
}

size_t timer_wheel::size() const {
    std::lock_guard lk(mu_);
    return size_;
}

}  // namespace imgate::gw
