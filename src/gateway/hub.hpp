#pragma once
// The gateway's routing table: which local sessions a user has and which sessions joined each room.
// Socket-free; sessions are reached only through the session_sink interface so tests can use fakes.
#include <cstdint>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace imgate::gw {

// An encoded frame shared by every recipient of one message (encoded once).
using shared_frame = std::shared_ptr<const std::string>;

// What the hub and the router need of a session: identity, thread-safe ways to queue outbound
// frames, and a way to end it. Tests implement it with fakes; nothing casts it back to a session.
class session_sink {
  public:
    virtual ~session_sink() = default;
    virtual uint64_t session_id() const = 0;
    virtual const std::string& user() const = 0;
    virtual const std::string& device() const = 0;
    // Queues a frame for writing; returns false when the session refused it (closing, or it
    // crossed its outbound bound and is being closed as a slow consumer).
    virtual bool push_frame(const shared_frame& f) = 0;
    // Queues a frame encoded for this session alone (SEND_RESULT, RECEIPT); same answer as
    // push_frame.
    virtual bool push_owned(std::string bytes) = 0;
    // Queues a last frame (KICK, REDIRECT), flushes, then closes the session.
    virtual void finish(std::string last_frame) = 0;
};

struct string_hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Owns the user -> sessions and room -> sessions indexes. Thread-safe: lookups share a lock,
// changes take it exclusively. Delivery callbacks run under the shared lock, so they must not call
// back into the hub.
class hub {
  public:
    struct add_result {
        std::shared_ptr<session_sink> replaced;  // same user + device, now removed from the hub
        std::vector<std::string> replaced_rooms_emptied;  // rooms the replaced session left empty
        bool first_of_user = false;                       // user had no local session before
        uint32_t user_sessions = 0;                       // the user's local sessions after the add
    };
    enum class join_status { ok, already_member, too_many_rooms, unknown_session };
    struct join_result {
        join_status status = join_status::ok;
        bool first_member = false;  // room had no local member before
    };
    struct leave_result {
        bool was_member = false;
        bool last_member = false;  // room has no local member any more
    };
    struct remove_result {
        bool removed = false;  // false: not (or no longer) registered
        bool last_of_user = false;
        uint32_t user_sessions = 0;  // the user's local sessions left (when removed)
        std::vector<std::string> rooms_emptied;
    };

    // Registers s; a session with the same user and device is replaced (removed and returned).
    add_result add(std::shared_ptr<session_sink> s);
    // Unregisters the session with id sid (if it is still the registered one) and its rooms.
    remove_result remove(uint64_t sid);

    join_result join(uint64_t sid, const std::string& room, size_t max_rooms);
    leave_result leave(uint64_t sid, const std::string& room);

    // Calls f(session_sink&) for each session of user / each member of room except exclude_sid.
    // Returns the number of sessions visited.
    template <class F>
    size_t for_user(std::string_view user, F&& f) const {
        std::shared_lock lk(mu_);
        auto it = users_.find(user);
        if (it == users_.end()) return 0;
        const user_sessions& u = it->second;
        f(*u.first);
        if (!u.more) return 1;
        for (auto* s : *u.more) f(*s);
        return 1 + u.more->size();
    }
    template <class F>
    size_t for_room(std::string_view room, uint64_t exclude_sid, F&& f) const {
        std::shared_lock lk(mu_);
        auto it = rooms_.find(room);
        if (it == rooms_.end()) return 0;
        size_t n = 0;
        for (auto* s : it->second) {
            if (s->session_id() == exclude_sid) continue;
            f(*s);
            ++n;
        }
        return n;
    }

    // The local sessions of user (0: none).
    size_t user_session_count(std::string_view user) const;
    std::shared_ptr<session_sink> find(uint64_t sid) const;
    std::vector<std::shared_ptr<session_sink>> all_sessions() const;
    std::vector<std::string> users() const;
    std::vector<std::string> rooms() const;
    std::vector<std::string> rooms_of(uint64_t sid) const;
    size_t session_count() const;
    size_t user_count() const;
    size_t room_count() const;

  private:
    // noexcept: libstdc++ then keeps no copy of the hash in each node (16 bytes less per user);
    // a rehash or a lookup compares or rehashes the short ids instead.
    struct uncached_string_hash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    // Kept small: every logged-in session has one entry and its user one user_sessions, and an
    // idle session's memory is mostly such fixed parts (docs/benchmarks.md).
    struct entry {
        std::shared_ptr<session_sink> s;
        std::unique_ptr<std::vector<std::string>> rooms;  // null: in no room (the usual case)
    };
    // A user's local sessions: most users have one here, held without a vector.
    struct user_sessions {
        session_sink* first = nullptr;
        std::unique_ptr<std::vector<session_sink*>> more;
        size_t size() const { return first ? 1 + (more ? more->size() : 0) : 0; }
        void add(session_sink* s);
        void erase(session_sink* s);  // keeps `first` set while any session is left
        template <class F>
        void each(F&& f) const {
            if (first) f(first);
            if (more)
                for (auto* s : *more) f(s);
        }
    };
    // Caller holds the exclusive lock.
    remove_result remove_locked(uint64_t sid);
    bool room_remove_locked(const std::string& room, session_sink* s);

    mutable std::shared_mutex mu_;
    std::unordered_map<uint64_t, entry> sessions_;
    // Raw pointers stay valid because sessions_ keeps the owning shared_ptr and both indexes are
    // updated under the same exclusive lock. A users_ key views the user() string of the user's
    // `first` session (a session's user never changes), so the index holds no copy of the id;
    // when that session leaves, the key is pointed at the next one.
    std::unordered_map<std::string_view, user_sessions, uncached_string_hash, std::equal_to<>>
        users_;
    std::unordered_map<std::string, std::vector<session_sink*>, string_hash, std::equal_to<>>
        rooms_;
};

}  // namespace imgate::gw
