#pragma once
// Where users and rooms live in the fleet, as seen from one gateway. The forwarding code asks only
// this interface, so the default in-memory mode (fed by peers' announcements) can be replaced by a
// Redis-backed directory without touching forwarding (docs/architecture.md, "Scaling the
// directory").
#include <boost/container/small_vector.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/protocol.hpp"
#include "gateway/rpc_wire.hpp"

namespace imgate::gw {

using peer_list = std::vector<std::string>;
using hold_clock = std::chrono::steady_clock;

// How much of this gateway's memory one peer's announcements may take (cluster_rpc.max_peer_*).
struct directory_limits {
    size_t max_peer_users = 500000;
    size_t max_peer_rooms = 500000;
};

// What one announcement frame did to the directory.
struct apply_result {
    uint32_t refused = 0;  // new entries not stored: the peer is at its cap
};

class session_directory {
  public:
    virtual ~session_directory() = default;

    // The peers (never this gateway) that hold sessions of the user, or local members of the
    // room. The answer may come later (a remote directory) but comes exactly once; the default
    // directory answers before returning.
    virtual void resolve(proto::target_kind kind, const std::string& target,
                         std::function<void(const peer_list&)> cb) = 0;

    // Caps per peer; entries past them are refused (counted in apply_result), and a peer with
    // refused entries is "overflowed": resolve() then lists it for every target of that kind,
    // since only that peer knows whether it holds the target.
    virtual void set_limits(const directory_limits& l) = 0;
    // Announcements received from `peer` (reset: a snapshot starts, forget what it said before).
    virtual apply_result apply_presence(const std::string& peer, bool reset,
                                        const std::vector<rpc::delta>& changes) = 0;
    virtual apply_result apply_rooms(const std::string& peer, bool reset,
                                     const std::vector<rpc::delta>& changes) = 0;
    // The peer's announcement stream ended cleanly (it closed its link, or it left the fleet):
    // its sessions are gone, so forget it and give the memory back.
    virtual void drop_peer(const std::string& peer) = 0;

    // The peer's link ended without telling us its fate (watchdog, reset, I/O error): it may
    // still serve its users, so its entries are kept, marked held, until `until`; sends to them
    // go to the peer (or fail unavailable) instead of answering a made-up offline. Returns the
    // hold's generation, unique for the life of the directory, which expire_hold must present.
    virtual uint64_t hold_peer(const std::string& peer, hold_clock::time_point until) = 0;
    // The hold's time has come: drops the peer's entries if that hold is still the current one
    // and `now` has reached its end. A newer link (end_hold), a snapshot or another hold has made
    // `generation` stale, and then nothing is dropped. Returns whether it dropped the peer.
    virtual bool expire_hold(const std::string& peer, uint64_t generation,
                             hold_clock::time_point now) = 0;
    // A new link from the peer authenticated: its hold ends (the entries stay until its reset
    // snapshot replaces them, as on any link-up). Returns whether the peer was held.
    virtual bool end_hold(const std::string& peer) = 0;
    // Whether the peer's entries are held (its link ended with an unknown fate).
    virtual bool held(const std::string& peer) const = 0;
    // Entries held for one peer, and whether some of its entries were refused since its last
    // snapshot started.
    virtual size_t peer_entries(const std::string& peer, proto::target_kind kind) const = 0;
    virtual bool overflowed(const std::string& peer, proto::target_kind kind) const = 0;

    virtual size_t user_entries() const = 0;
    virtual size_t room_entries() const = 0;
    // (user, peer) and (room, peer) pairs: a user on two peers counts twice.
    virtual size_t user_locations() const = 0;
    virtual size_t room_locations() const = 0;
};

// The default mode: an exact in-memory map built from every peer's presence and room-interest
// announcements (deltas, plus a full snapshot whenever its link comes up), at most
// directory_limits entries of each kind per peer. Owns the maps and the per-peer counts. Not
// thread-safe: the cluster uses it from its strand.
class announced_directory final : public session_directory {
  public:
    void resolve(proto::target_kind kind, const std::string& target,
                 std::function<void(const peer_list&)> cb) override;
    void set_limits(const directory_limits& l) override { limits_ = l; }
    apply_result apply_presence(const std::string& peer, bool reset,
                                const std::vector<rpc::delta>& changes) override;
    apply_result apply_rooms(const std::string& peer, bool reset,
                             const std::vector<rpc::delta>& changes) override;
    void drop_peer(const std::string& peer) override;
    uint64_t hold_peer(const std::string& peer, hold_clock::time_point until) override;
    bool expire_hold(const std::string& peer, uint64_t generation,
                     hold_clock::time_point now) override;
    bool end_hold(const std::string& peer) override;
    bool held(const std::string& peer) const override;
    size_t peer_entries(const std::string& peer, proto::target_kind kind) const override;
    bool overflowed(const std::string& peer, proto::target_kind kind) const override;
    size_t user_entries() const override { return sides_[0].t.size(); }
    size_t room_entries() const override { return sides_[1].t.size(); }
    size_t user_locations() const override { return sides_[0].pairs; }
    size_t room_locations() const override { return sides_[1].pairs; }
    // Buckets of both maps (tests check that a dropped peer's share is given back).
    size_t bucket_count() const { return sides_[0].t.bucket_count() + sides_[1].t.bucket_count(); }

    // Synchronous form of resolve for callers that know the directory is local.
    void peers(proto::target_kind kind, const std::string& target, peer_list& out) const;

  private:
    // Peers are interned to small slot numbers: a user is on one or two gateways, so an entry is
    // its key plus a couple of 16-bit slots held inline.
    using slots = boost::container::small_vector<uint16_t, 3>;
    using table = std::unordered_map<std::string, slots>;
    // One kind of entry: users (index 0) or rooms (index 1).
    struct side {
        table t;
        size_t pairs = 0;       // (key, peer) pairs
        size_t overflowed = 0;  // peers with refused entries of this kind
    };
    struct peer_slot {
        std::string id;              // empty: free slot
        size_t entries[2] = {0, 0};  // pairs held for this peer, by kind
        bool overflowed[2] = {false, false};
        uint64_t hold = 0;  // generation of the current hold; 0: not held
        hold_clock::time_point hold_until{};
    };

    static int index(proto::target_kind kind) { return kind == proto::target_kind::user ? 0 : 1; }
    uint16_t slot_of(const std::string& peer);
    const peer_slot* find_slot(const std::string& peer) const;
    apply_result apply(int k, const std::string& peer, bool reset,
                       const std::vector<rpc::delta>& changes);
    size_t forget(int k, uint16_t s);

    directory_limits limits_;
    side sides_[2];
    std::unordered_map<std::string, uint16_t> slot_by_peer_;
    std::vector<peer_slot> slots_;
    // Hold generations are never reused, even across a peer's slot being freed and taken again,
    // so a stale hold timer can never match a later hold.
    uint64_t last_hold_ = 0;
};

}  // namespace imgate::gw
