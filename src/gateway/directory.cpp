#include "gateway/directory.hpp"

#include <algorithm>
#include <utility>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace imgate::gw {

namespace {

// A dropped peer may have held hundreds of thousands of small nodes. glibc keeps freed chunks
// in its arenas and returns only the top of the heap by itself: measured with
// bench/directory_memory.sh, 500k entries cleared from a map (even swapped with an empty one)
// left RSS at 79 MB; malloc_trim brought it back to 3 MB. It walks the arenas, so only for drops
// big enough to matter.
constexpr size_t trim_threshold = 16384;

void give_back_memory(size_t freed) {
#if defined(__GLIBC__)
    if (freed >= trim_threshold) malloc_trim(0);
#else
    (void)freed;
#endif
}

}  // namespace

void announced_directory::resolve(proto::target_kind kind, const std::string& target,
                                  std::function<void(const peer_list&)> cb) {
    peer_list out;
    peers(kind, target, out);
    cb(out);
}

void announced_directory::peers(proto::target_kind kind, const std::string& target,
                                peer_list& out) const {
    const side& sd = sides_[index(kind)];
    const slots* known = nullptr;
    if (auto it = sd.t.find(target); it != sd.t.end()) {
        known = &it->second;
        for (uint16_t s : *known) out.push_back(slots_[s].id);
    }
    if (sd.overflowed == 0) return;
    // An overflowed peer may hold the target without this directory knowing: it is asked too,
    // and its own answer (delivered or offline) is the honest one.
    int k = index(kind);
    for (uint16_t s = 0; s < slots_.size(); ++s) {
        if (!slots_[s].overflowed[k]) continue;
        if (known && std::find(known->begin(), known->end(), s) != known->end()) continue;
        out.push_back(slots_[s].id);
    }
}

uint16_t announced_directory::slot_of(const std::string& peer) {
    auto it = slot_by_peer_.find(peer);
    if (it != slot_by_peer_.end()) return it->second;
    uint16_t s = 0;
    while (s < slots_.size() && !slots_[s].id.empty()) ++s;
    if (s == slots_.size()) slots_.emplace_back();
    slots_[s] = peer_slot{};
    slots_[s].id = peer;
    slot_by_peer_.emplace(peer, s);
    return s;
}

const announced_directory::peer_slot* announced_directory::find_slot(
    const std::string& peer) const {
    auto it = slot_by_peer_.find(peer);
    return it == slot_by_peer_.end() ? nullptr : &slots_[it->second];
}

size_t announced_directory::peer_entries(const std::string& peer, proto::target_kind kind) const {
    const peer_slot* p = find_slot(peer);
    return p ? p->entries[index(kind)] : 0;
}

bool announced_directory::overflowed(const std::string& peer, proto::target_kind kind) const {
    const peer_slot* p = find_slot(peer);
    return p && p->overflowed[index(kind)];
}

// Removes every entry of slot s of kind k and clears its overflow; returns how many it removed.
// The bucket array of an unordered_map never shrinks by itself: after a big removal it is
// rebuilt for what is left, so a peer that announced a million entries and left does not keep
// ~8 bytes a bucket here for good.
size_t announced_directory::forget(int k, uint16_t s) {
    side& sd = sides_[k];
    peer_slot& p = slots_[s];
    size_t removed = 0;
    if (p.entries[k] > 0) {
        for (auto it = sd.t.begin(); it != sd.t.end();) {
            auto& v = it->second;
            auto end = std::remove(v.begin(), v.end(), s);
            removed += static_cast<size_t>(v.end() - end);
            v.erase(end, v.end());
            it = v.empty() ? sd.t.erase(it) : std::next(it);
        }
    }
    sd.pairs -= removed;
    p.entries[k] = 0;
    if (std::exchange(p.overflowed[k], false)) --sd.overflowed;
    if (sd.t.empty())
        table().swap(sd.t);
    else if (sd.t.size() < sd.t.bucket_count() / 4)
        sd.t.rehash(0);  // libstdc++: the smallest bucket count for the current size
    return removed;
}

apply_result announced_directory::apply(int k, const std::string& peer, bool reset,
                                        const std::vector<rpc::delta>& changes) {
    uint16_t s = slot_of(peer);
    side& sd = sides_[k];
    const size_t cap = k == 0 ? limits_.max_peer_users : limits_.max_peer_rooms;
    apply_result r;
    if (reset) {
        // A snapshot comes only on a live link: whatever was held is replaced, and a pending
        // hold timer must not drop the fresh entries.
        slots_[s].hold = 0;
        give_back_memory(forget(k, s));
    }
    peer_slot& p = slots_[s];
    for (const auto& d : changes) {
        auto it = sd.t.find(d.key);
        if (d.on) {
            if (it != sd.t.end() &&
                std::find(it->second.begin(), it->second.end(), s) != it->second.end())
                continue;  // already known: set semantics, never refused
            if (p.entries[k] >= cap) {
                ++r.refused;
                continue;
            }
            if (it == sd.t.end()) it = sd.t.try_emplace(d.key).first;
            it->second.push_back(s);
            ++sd.pairs;
            ++p.entries[k];
        } else {
            if (it == sd.t.end()) continue;
            auto& v = it->second;
            auto end = std::remove(v.begin(), v.end(), s);
            size_t n = static_cast<size_t>(v.end() - end);
            sd.pairs -= n;
            p.entries[k] -= n;
            v.erase(end, v.end());
            if (v.empty()) sd.t.erase(it);
        }
    }
    // Stays set until the peer's next snapshot or its link ends: an entry removed later does
    // not bring back the ones refused.
    if (r.refused > 0 && !std::exchange(p.overflowed[k], true)) ++sd.overflowed;
    return r;
}

apply_result announced_directory::apply_presence(const std::string& peer, bool reset,
                                                 const std::vector<rpc::delta>& changes) {
    return apply(0, peer, reset, changes);
}

apply_result announced_directory::apply_rooms(const std::string& peer, bool reset,
                                              const std::vector<rpc::delta>& changes) {
    return apply(1, peer, reset, changes);
}

void announced_directory::drop_peer(const std::string& peer) {
    auto it = slot_by_peer_.find(peer);
    if (it == slot_by_peer_.end()) return;
    uint16_t s = it->second;
    size_t freed = forget(0, s) + forget(1, s);
    slots_[s] = peer_slot{};
    slot_by_peer_.erase(it);
    give_back_memory(freed);
}

uint64_t announced_directory::hold_peer(const std::string& peer, hold_clock::time_point until) {
    peer_slot& p = slots_[slot_of(peer)];
    p.hold = ++last_hold_;
    p.hold_until = until;
    return p.hold;
}

bool announced_directory::expire_hold(const std::string& peer, uint64_t generation,
                                      hold_clock::time_point now) {
    const peer_slot* p = find_slot(peer);
    if (!p || generation == 0 || p->hold != generation || now < p->hold_until) return false;
    drop_peer(peer);
    return true;
}

bool announced_directory::end_hold(const std::string& peer) {
    auto it = slot_by_peer_.find(peer);
    if (it == slot_by_peer_.end()) return false;
    return std::exchange(slots_[it->second].hold, 0) != 0;
}

bool announced_directory::held(const std::string& peer) const {
    const peer_slot* p = find_slot(peer);
    return p && p->hold != 0;
}

}  // namespace imgate::gw
