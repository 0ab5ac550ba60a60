#include "gateway/hub.hpp"

#include <algorithm>
#include <mutex>

namespace imgate::gw {

namespace {
bool erase_ptr(std::vector<session_sink*>& v, session_sink* s) {
    auto it = std::find(v.begin(), v.end(), s);
    if (it == v.end()) return false;
    *it = v.back();
    v.pop_back();
    return true;
}
}  // namespace

void hub::user_sessions::add(session_sink* s) {
    if (!first) {
        first = s;
        return;
    }
    if (!more) more = std::make_unique<std::vector<session_sink*>>();
    more->push_back(s);
}

void hub::user_sessions::erase(session_sink* s) {
    if (first == s) {
        if (!more || more->empty()) {
            first = nullptr;
        } else {
            first = more->back();
            more->pop_back();
        }
    } else if (more) {
        erase_ptr(*more, s);
    }
    if (more && more->empty()) more.reset();
}

hub::add_result hub::add(std::shared_ptr<session_sink> s) {
    add_result r;
    std::unique_lock lk(mu_);
    auto uit = users_.find(s->user());
    r.first_of_user = uit == users_.end();  // a replacement never takes the user offline
    if (uit != users_.end()) {
        session_sink* same_device = nullptr;
        uit->second.each([&](session_sink* other) {
            if (!same_device && other->device() == s->device() && other != s.get())
                same_device = other;
        });
        if (same_device) {
            uint64_t old_id = same_device->session_id();
            auto e = sessions_.find(old_id);
            if (e != sessions_.end()) r.replaced = e->second.s;
            auto rr = remove_locked(old_id);
            r.replaced_rooms_emptied = std::move(rr.rooms_emptied);
        }
    }
    // A new key views this session's user(); an existing one keeps viewing its first session's.
    auto& mine = users_[std::string_view(s->user())];
    mine.add(s.get());
    r.user_sessions = uint32_t(mine.size());
    uint64_t sid = s->session_id();
    sessions_[sid] = entry{std::move(s), nullptr};
    return r;
}

hub::remove_result hub::remove(uint64_t sid) {
    std::unique_lock lk(mu_);
    return remove_locked(sid);
}

hub::remove_result hub::remove_locked(uint64_t sid) {
    remove_result r;
    auto it = sessions_.find(sid);
    if (it == sessions_.end()) return r;
    r.removed = true;
    session_sink* s = it->second.s.get();
    if (it->second.rooms)
        for (auto& room : *it->second.rooms)
            if (room_remove_locked(room, s)) r.rooms_emptied.push_back(room);
    auto uit = users_.find(s->user());
    if (uit != users_.end()) {
        bool key_was_mine = uit->first.data() == s->user().data();
        uit->second.erase(s);
        r.user_sessions = uint32_t(uit->second.size());
        if (uit->second.size() == 0) {
            users_.erase(uit);
            r.last_of_user = true;
        } else if (key_was_mine) {
            // The key viewed the leaving session's string: view the one now first (same
            // characters, same hash; re-inserting the node allocates nothing).
            auto node = users_.extract(uit);
            node.key() = std::string_view(node.mapped().first->user());
            users_.insert(std::move(node));
        }
    }
    sessions_.erase(it);
    return r;
}

bool hub::room_remove_locked(const std::string& room, session_sink* s) {
    auto rit = rooms_.find(room);
    if (rit == rooms_.end()) return false;
    erase_ptr(rit->second, s);
    if (!rit->second.empty()) return false;
    rooms_.erase(rit);
    return true;
}

hub::join_result hub::join(uint64_t sid, const std::string& room, size_t max_rooms) {
    join_result r;
    std::unique_lock lk(mu_);
    auto it = sessions_.find(sid);
    if (it == sessions_.end()) {
        r.status = join_status::unknown_session;
        return r;
    }
    auto& rooms = it->second.rooms;
    if (!rooms) rooms = std::make_unique<std::vector<std::string>>();
    auto& mine = *rooms;
    if (std::find(mine.begin(), mine.end(), room) != mine.end()) {
        r.status = join_status::already_member;
        return r;
    }
    if (mine.size() >= max_rooms) {
        r.status = join_status::too_many_rooms;
        if (mine.empty()) rooms.reset();
        return r;
    }
    mine.push_back(room);
    auto& members = rooms_[room];
    r.first_member = members.empty();
    members.push_back(it->second.s.get());
    return r;
}

hub::leave_result hub::leave(uint64_t sid, const std::string& room) {
    leave_result r;
    std::unique_lock lk(mu_);
    auto it = sessions_.find(sid);
    if (it == sessions_.end()) return r;
    auto& rooms = it->second.rooms;
    if (!rooms) return r;
    auto& mine = *rooms;
    auto pos = std::find(mine.begin(), mine.end(), room);
    if (pos == mine.end()) return r;
    *pos = std::move(mine.back());
    mine.pop_back();
    if (mine.empty()) rooms.reset();
    r.was_member = true;
    r.last_member = room_remove_locked(room, it->second.s.get());
    return r;
}

size_t hub::user_session_count(std::string_view user) const {
    std::shared_lock lk(mu_);
    auto it = users_.find(user);
    return it == users_.end() ? 0 : it->second.size();
}

std::shared_ptr<session_sink> hub::find(uint64_t sid) const {
    std::shared_lock lk(mu_);
    auto it = sessions_.find(sid);
    return it == sessions_.end() ? nullptr : it->second.s;
}

std::vector<std::shared_ptr<session_sink>> hub::all_sessions() const {
    std::shared_lock lk(mu_);
    std::vector<std::shared_ptr<session_sink>> out;
    out.reserve(sessions_.size());
    for (auto& [id, e] : sessions_) out.push_back(e.s);
    return out;
}

std::vector<std::string> hub::users() const {
    std::shared_lock lk(mu_);
    std::vector<std::string> out;
    out.reserve(users_.size());
    for (auto& [u, v] : users_) out.emplace_back(u);
    return out;
}

std::vector<std::string> hub::rooms() const {
    std::shared_lock lk(mu_);
    std::vector<std::string> out;
    out.reserve(rooms_.size());
    for (auto& [r, v] : rooms_) out.push_back(r);
    return out;
}

std::vector<std::string> hub::rooms_of(uint64_t sid) const {
    std::shared_lock lk(mu_);
    auto it = sessions_.find(sid);
    if (it == sessions_.end() || !it->second.rooms) return {};
    return *it->second.rooms;
}

size_t hub::session_count() const {
    std::shared_lock lk(mu_);
    return sessions_.size();
}
size_t hub::user_count() const {
    std::shared_lock lk(mu_);
    return users_.size();
}
size_t hub::room_count() const {
    std::shared_lock lk(mu_);
    return rooms_.size();
}

}  // namespace imgate::gw
