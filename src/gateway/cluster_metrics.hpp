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

}  // namespace imgate::gw
