#include "gateway/call_table.hpp"

namespace imgate::gw::rpc {

uint32_t call_table::add(clock::time_point deadline, callback cb) {
    if (calls_.size() >= max_) return 0;
    do {
        ++next_;
    } while (next_ == 0 || calls_.count(next_));
    calls_.emplace(next_, call{deadline, std::move(cb)});
    deadlines_.emplace(deadline, next_);
    return next_;
}

bool call_table::complete(uint32_t corr, forward_result r) {
    auto it = calls_.find(corr);
    if (it == calls_.end()) return false;
    auto cb = std::move(it->second.cb);
    calls_.erase(it);
    if (calls_.empty()) deadlines_ = {};
    cb(r);
    return true;
}

size_t call_table::expire(clock::time_point now) {
    std::vector<callback> due;
    while (!deadlines_.empty() && deadlines_.top().first <= now) {
        auto [deadline, corr] = deadlines_.top();
        deadlines_.pop();
        auto it = calls_.find(corr);
        // The id may have been answered, or reused by a later call with a later deadline.
        if (it == calls_.end() || it->second.deadline != deadline) continue;
        due.push_back(std::move(it->second.cb));
        calls_.erase(it);
    }
    for (auto& cb : due) cb(forward_result{proto::code::timeout, 0});
    return due.size();
}

size_t call_table::fail_all(proto::code c) {
    std::vector<callback> all;
    all.reserve(calls_.size());
    for (auto& [id, c2] : calls_) all.push_back(std::move(c2.cb));
    calls_.clear();
    deadlines_ = {};
    for (auto& cb : all) cb(forward_result{c, 0});
    return all.size();
}

std::optional<clock::time_point> call_table::next_deadline() {
    while (!deadlines_.empty()) {
        auto [deadline, corr] = deadlines_.top();
        auto it = calls_.find(corr);
        if (it != calls_.end() && it->second.deadline == deadline) return deadline;
        deadlines_.pop();
    }
    return std::nullopt;
}

void result_combiner::add(const forward_result& r) {
    if (r.status == proto::code::ok || r.status == proto::code::offline) {
        reached_ += r.reached;
    } else if (r.status == proto::code::timeout) {
        timeout_ = true;
    } else {
        failed_ = true;
    }
}

forward_result result_combiner::result() const {
    if (reached_ > 0) return {proto::code::ok, reached_};
    if (timeout_) return {proto::code::timeout, 0};
    if (failed_) return {proto::code::unavailable, 0};
    return {proto::code::offline, 0};
}

}  // namespace imgate::gw::rpc
