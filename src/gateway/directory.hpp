#pragma once
// Where users and rooms live in the fleet, as seen from one gateway. The forwarding code asks only
// this interface, so the default in-memory mode (fed by peers' announcements) can be replaced by a
// Redis-backed directory without touching forwarding (docs/architecture.md, "Scaling the
// directory").
#include <boost/container/small_vector.hpp>
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

class session_directory {
  public:
    virtual ~session_directory() = default;

    // The peers (never this gateway) that hold sessions of the user, or local members of the
    // room. The answer may come later (a remote directory) but comes exactly once; the default
    // directory answers before returning.
    virtual void resolve(proto::target_kind kind, const std::string& target,
                         std::function<void(const peer_list&)> cb) = 0;

    // Announcements received from `peer` (reset: a snapshot starts, forget what it said before).
    virtual void apply_presence(const std::string& peer, bool reset,
                                const std::vector<rpc::delta>& changes) = 0;
    virtual void apply_rooms(const std::string& peer, bool reset,
                             const std::vector<rpc::delta>& changes) = 0;
    // The peer's announcement stream ended (link down, removed from the fleet): forget it.
    virtual void drop_peer(const std::string& peer) = 0;

    virtual size_t user_entries() const = 0;
    virtual size_t room_entries() const = 0;
    // (user, peer) and (room, peer) pairs: a user on two peers counts twice.
    virtual size_t user_locations() const = 0;
    virtual size_t room_locations() const = 0;
};

// The default mode: an exact in-memory map built from every peer's presence and room-interest
// announcements (deltas, plus a full snapshot whenever its link comes up). Not thread-safe: the
// cluster uses it from its strand.
class announced_directory final : public session_directory {
  public:
    void resolve(proto::target_kind kind, const std::string& target,
                 std::function<void(const peer_list&)> cb) override;
    void apply_presence(const std::string& peer, bool reset,
                        const std::vector<rpc::delta>& changes) override;
    void apply_rooms(const std::string& peer, bool reset,
                     const std::vector<rpc::delta>& changes) override;
    void drop_peer(const std::string& peer) override;
    size_t user_entries() const override { return users_.size(); }
    size_t room_entries() const override { return rooms_.size(); }
    size_t user_locations() const override { return user_pairs_; }
    size_t room_locations() const override { return room_pairs_; }

    // Synchronous form of resolve for callers that know the directory is local.
    void peers(proto::target_kind kind, const std::string& target, peer_list& out) const;

  private:
    // Peers are interned to small slot numbers: a user is on one or two gateways, so an entry is
    // its key plus a couple of 16-bit slots held inline.
    using slots = boost::container::small_vector<uint16_t, 3>;
    using table = std::unordered_map<std::string, slots>;

    uint16_t slot_of(const std::string& peer);
    void apply(table& t, size_t& pairs, const std::string& peer, bool reset,
               const std::vector<rpc::delta>& changes);
    static void forget(table& t, size_t& pairs, uint16_t s);

    table users_;
    table rooms_;
    size_t user_pairs_ = 0;
    size_t room_pairs_ = 0;
    std::unordered_map<std::string, uint16_t> slot_by_peer_;
    std::vector<std::string> peer_by_slot_;  // empty string: free slot
};

}  // namespace imgate::gw
