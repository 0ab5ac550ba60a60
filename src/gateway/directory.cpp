#include "gateway/directory.hpp"

#include <algorithm>

namespace imgate::gw {

void announced_directory::resolve(proto::target_kind kind, const std::string& target,
                                  std::function<void(const peer_list&)> cb) {
    peer_list out;
    peers(kind, target, out);
    cb(out);
}

void announced_directory::peers(proto::target_kind kind, const std::string& target,
                                peer_list& out) const {
    const table& t = kind == proto::target_kind::user ? users_ : rooms_;
    auto it = t.find(target);
    if (it == t.end()) return;
    for (uint16_t s : it->second) out.push_back(peer_by_slot_[s]);
}

uint16_t announced_directory::slot_of(const std::string& peer) {
    auto it = slot_by_peer_.find(peer);
    if (it != slot_by_peer_.end()) return it->second;
    uint16_t s = 0;
    while (s < peer_by_slot_.size() && !peer_by_slot_[s].empty()) ++s;
    if (s == peer_by_slot_.size()) peer_by_slot_.emplace_back();
    peer_by_slot_[s] = peer;
    slot_by_peer_.emplace(peer, s);
    return s;
}

void announced_directory::forget(table& t, size_t& pairs, uint16_t s) {
    for (auto it = t.begin(); it != t.end();) {
        auto& v = it->second;
        auto end = std::remove(v.begin(), v.end(), s);
        pairs -= static_cast<size_t>(v.end() - end);
        v.erase(end, v.end());
        it = v.empty() ? t.erase(it) : std::next(it);
    }
}

void announced_directory::apply(table& t, size_t& pairs, const std::string& peer, bool reset,
                                const std::vector<rpc::delta>& changes) {
    uint16_t s = slot_of(peer);
    if (reset) forget(t, pairs, s);
    for (const auto& d : changes) {
        if (d.on) {
            auto& v = t[d.key];
            if (std::find(v.begin(), v.end(), s) == v.end()) {
                v.push_back(s);
                ++pairs;
            }
        } else {
            auto it = t.find(d.key);
            if (it == t.end()) continue;
            auto& v = it->second;
            auto end = std::remove(v.begin(), v.end(), s);
            pairs -= static_cast<size_t>(v.end() - end);
            v.erase(end, v.end());
            if (v.empty()) t.erase(it);
        }
    }
}

void announced_directory::apply_presence(const std::string& peer, bool reset,
                                         const std::vector<rpc::delta>& changes) {
    apply(users_, user_pairs_, peer, reset, changes);
}

void announced_directory::apply_rooms(const std::string& peer, bool reset,
                                      const std::vector<rpc::delta>& changes) {
    apply(rooms_, room_pairs_, peer, reset, changes);
}

void announced_directory::drop_peer(const std::string& peer) {
    auto it = slot_by_peer_.find(peer);
    if (it == slot_by_peer_.end()) return;
    uint16_t s = it->second;
    forget(users_, user_pairs_, s);
    forget(rooms_, room_pairs_, s);
    peer_by_slot_[s].clear();
    slot_by_peer_.erase(it);
}

}  // namespace imgate::gw
