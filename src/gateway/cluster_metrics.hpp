#pragma once
// Every counter and gauge of the cluster layer (imgate_rpc_*), declared once. Each label value the
// cluster can count is registered at 0 when it starts: an increase() alert
// (docs/prometheus-alerts.yml) cannot fire on a series' first sample, so a series born with its
// first event would hide that event. New reasons belong in the lists in cluster_metrics.cpp.
#include <map>
#include <string>

#include "common/config.hpp"
#include "common/metrics.hpp"
#include "common/protocol.hpp"
#include "gateway/rpc_wire.hpp"

namespace imgate::gw {

// Owns the cluster's handles into the process registry (the registry owns the series).
class cluster_metrics {
  public:
    cluster_metrics(metrics_registry& m, const fleet_config& fleet, const std::string& self_id);

    // imgate_rpc_forwards_total{result}: ok -> delivered, offline, timeout; anything else
    // -> unavailable.
    counter& forward_result(proto::code c);
    counter& auth_failure(const char* direction, const char* reason);
    counter& closed_for(const char* reason);
    counter& protocol_error(const char* direction);
    counter& entry_skipped(rpc::op o);
    // imgate_rpc_directory_refused_total{kind}: entries not stored, the peer at its cap.
    counter& directory_refused(proto::target_kind kind);
    // imgate_rpc_directory_entries{kind,peer}, imgate_rpc_directory_overflowed{kind,peer}
    // (1 while some of the peer's entries are refused) and imgate_rpc_directory_held{kind,peer}
    // (the peer's entries kept after its link ended with an unknown fate; 0 otherwise). Looked up
    // at each use, not cached: a reload that removes the peer removes the series.
    void set_peer_directory(const std::string& peer, proto::target_kind kind, size_t entries,
                            bool overflowed, size_t held);
    // imgate_rpc_link_connects_total{peer}; also registers the series of a peer a reload adds.
    counter& connects(const std::string& peer);
    // A peer left the fleet: its series do not linger.
    void forget_peer(const std::string& peer);

    counter& forward_frames;
    counter& forwards_received;
    counter& receipts_dropped;
    counter& late_answers;
    counter& in_flight_full;
    counter& claims_received;
    counter& claims_sent;
    // Announced mode's directory traffic: PRESENCE/ROOM_INTEREST frames (deltas and link-up
    // snapshots) written to peers, and their bytes.
    counter& announcements_sent;
    counter& announcement_bytes_sent;
    gauge& links_up;
    gauge& inbound_links;
    gauge& directory_users;
    gauge& directory_rooms;
    gauge& directory_user_locations;
    gauge& directory_room_locations;

  private:
    using by_label = std::map<std::string, counter*>;
    template <class Register>
    counter& cached(by_label& m, const std::string& key, Register reg);

    metrics_registry& m_;
    counter* forward_results_[4];  // delivered, offline, unavailable, timeout
    by_label auth_failures_;       // "direction/reason"
    by_label closed_;              // reason
    by_label protocol_errors_;     // direction
    std::map<uint8_t, counter*> entries_skipped_;
    counter* directory_refused_[2];  // user, room
};

// Where a directory lookup's answer came from: the local cache, Redis, or (Redis unable to
// answer) every peer with a usable link.
enum class lookup_source { cache, redis, fallback };
const char* to_string(lookup_source s);

// What a directory lookup was for: routing a 1:1 message or DEVICE_CLAIM (user), a room message
// (room), or the presence API (presence).
enum class lookup_kind { user, room, presence };

// The directory's series (imgate_directory_*), in both modes (announced mode only sets the mode
// gauge). Every label value is registered at 0 by the constructor. Owns handles into the registry.
class directory_metrics {
  public:
    // mode: "announced" or "redis"; imgate_directory_mode{mode} is 1 for it, 0 for the other.
    directory_metrics(metrics_registry& m, const char* mode);

    // imgate_directory_lookups_total{kind,source}: every lookup by where its answer came from.
    counter& lookup(lookup_kind k, lookup_source s) { return *lookups_[int(k)][int(s)]; }
    // imgate_directory_fallback_total{kind}: lookups Redis could not answer (not connected,
    // error, timeout), answered by asking every peer (presence: known=false). The same events as
    // lookups_total{source="fallback"}, kept as its own series for alerting.
    counter& fallback(lookup_kind k) { return *fallbacks_[int(k)]; }
    // Commands writing this gateway's own entries and lease (HSET, HDEL, PEXPIRE, SET).
    counter& redis_writes;
    // Fields found in Redis whose gateway's lease is gone or holds another epoch.
    counter& stale_entries;
    // PRESENCE / ROOM_INTEREST frames received from peers in redis mode (a mixed fleet).
    counter& announcements_ignored;
    // Time from asking Redis to having the answer (lookups that asked Redis, fallbacks included).
    histogram& lookup_seconds;

  private:
    counter* lookups_[3][3];
    counter* fallbacks_[3];
};

}  // namespace imgate::gw
