#pragma once
// Per-user login penalty after a flood close (limits.flood_penalty): a user whose session was
// closed for flooding may not log in on this gateway until the penalty ends, so a flooder that
// reconnects at once does not get a fresh burst every time. Socket-free; the clock is injected.
#include <chrono>
#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace imgate::gw {

// Owns the table of penalised user ids and when each penalty ends. Memory is bounded by
// max_entries: entries are kept in the order they were penalised, expired ones are dropped from
// the front as they are met, and when the table is full the oldest entry is evicted (that user
// may log in early; failing open keeps a many-user flood from growing the table). Thread-safe.
class flood_penalty {
  public:
    using clock = std::chrono::steady_clock;

    explicit flood_penalty(size_t max_entries = 65536);

    // user may not log in before `until` (a later penalty of the same user replaces it).
    void penalise(const std::string& user, clock::time_point until, clock::time_point now);
    // When user's penalty ends, if it has not ended at `now`.
    std::optional<clock::time_point> until(const std::string& user, clock::time_point now);
    size_t size() const;
    uint64_t evicted() const;  // penalties dropped early because the table was full

  private:
    struct entry {
        std::string user;
        clock::time_point until;
    };
    void expire(clock::time_point now);

    mutable std::mutex mu_;
    size_t max_entries_;
    std::list<entry> order_;  // oldest penalty first
    std::unordered_map<std::string, std::list<entry>::iterator> by_user_;
    uint64_t evicted_ = 0;
};

}  // namespace imgate::gw
