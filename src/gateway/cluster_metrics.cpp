#include "gateway/cluster_metrics.hpp"

namespace imgate::gw {

namespace {

const char* const forwards_name = "imgate_rpc_forwards_total";
const char* const auth_name = "imgate_rpc_auth_failures_total";
const char* const auth_help = "RPC handshakes refused (wrong secret, unknown peer, garbage)";
const char* const closed_name = "imgate_rpc_links_closed_total";
const char* const closed_help = "Peer links closed by this gateway, by reason";
const char* const protocol_name = "imgate_rpc_protocol_errors_total";
const char* const protocol_help = "Malformed or unexpected frames from authenticated peers";
const char* const connects_name = "imgate_rpc_link_connects_total";
const char* const peer_entries_name = "imgate_rpc_directory_entries";
const char* const peer_entries_help =
    "Directory entries held for one peer (cap: cluster_rpc.max_peer_users / max_peer_rooms)";
const char* const overflowed_name = "imgate_rpc_directory_overflowed";
const char* const overflowed_help =
    "1 while entries of the peer were refused at its cap since its last snapshot (sends are "
    "then also forwarded to it)";

const char* const held_name = "imgate_rpc_directory_held";
const char* const held_help =
    "Directory entries of a peer whose link ended without a clean close, kept for "
    "cluster_rpc.unreachable_hold so sends to its users answer unavailable, not offline";

const char* kind_label(proto::target_kind k) {
    return k == proto::target_kind::user ? "user" : "room";
}

}  // namespace

cluster_metrics::cluster_metrics(metrics_registry& m, const fleet_config& fleet,
                                 const std::string& self_id)
    : forward_frames(m.get_counter("imgate_rpc_forward_frames_total",
                                   "FORWARD frames sent to peers (one per peer per message)")),
      forwards_received(m.get_counter("imgate_rpc_forwards_received_total",
                                      "FORWARD frames received from peers")),
      receipts_dropped(
          m.get_counter("imgate_rpc_receipts_dropped_total",
                        "Receipts not sent because the link to the origin gateway was down")),
      late_answers(m.get_counter("imgate_rpc_late_answers_total",
                                 "FORWARD_RESULTs for calls already timed out")),
      in_flight_full(
          m.get_counter("imgate_rpc_in_flight_full_total",
                        "Forwards failed fast because max_in_flight calls were pending")),
      claims_received(m.get_counter("imgate_rpc_device_claims_received_total",
                                    "DEVICE_CLAIMs from peers (a user+device logged in there; "
                                    "older sessions here kicked)")),
      claims_sent(m.get_counter("imgate_rpc_device_claims_sent_total",
                                "DEVICE_CLAIMs sent to peers holding the user")),
      announcements_sent(m.get_counter("imgate_rpc_announcements_sent_total",
                                       "PRESENCE and ROOM_INTEREST frames sent to peers (announced "
                                       "mode; deltas and snapshots)")),
      announcement_bytes_sent(
          m.get_counter("imgate_rpc_announcement_bytes_sent_total",
                        "Bytes of the PRESENCE and ROOM_INTEREST frames sent to peers")),
      links_up(m.get_gauge("imgate_rpc_links_up", "Authenticated outbound peer links")),
      inbound_links(m.get_gauge("imgate_rpc_inbound_links", "Authenticated inbound peer links")),
      directory_users(m.get_gauge("imgate_rpc_directory_users",
                                  "Users known to be on other gateways (directory entries)")),
      directory_rooms(m.get_gauge("imgate_rpc_directory_rooms",
                                  "Rooms with members on other gateways (directory entries)")),
      directory_user_locations(m.get_gauge("imgate_rpc_directory_user_locations",
                                           "(user, peer gateway) pairs in the directory")),
      directory_room_locations(m.get_gauge("imgate_rpc_directory_room_locations",
                                           "(room, peer gateway) pairs in the directory")),
      m_(m) {
    const char* results[] = {"delivered", "offline", "unavailable", "timeout"};
    for (int i = 0; i < 4; ++i)
        forward_results_[i] = &m.get_counter(
            forwards_name, "Cross-node forwards by combined result", {{"result", results[i]}});
    for (const char* r : {"bad_frame", "unknown_peer", "bad_proof", "refused", "timeout", "closed"})
        auth_failure("outbound", r);
    for (const char* r :
         {"bad_frame", "unknown_peer", "bad_proof", "timeout", "closed", "too_many_handshakes"})
        auth_failure("inbound", r);
    for (const char* r : {"slow_consumer", "read_timeout", "write_stall"}) closed_for(r);
    for (const char* d : {"inbound", "outbound"}) protocol_error(d);
    for (auto o : {rpc::op::forward, rpc::op::receipt, rpc::op::presence, rpc::op::room_interest,
                   rpc::op::device_claim})
        entries_skipped_[static_cast<uint8_t>(o)] = &m.get_counter(
            "imgate_rpc_entries_skipped_total",
            "Entries from peers skipped because an id breaks the id rule (link kept)",
            {{"op", rpc::to_string(o)}});
    for (auto k : {proto::target_kind::user, proto::target_kind::room})
        directory_refused_[k == proto::target_kind::user ? 0 : 1] = &m.get_counter(
            "imgate_rpc_directory_refused_total",
            "Directory entries from peers not stored because the peer was at its cap",
            {{"kind", kind_label(k)}});
    for (auto& g : fleet.gateways) {
        if (g.id == self_id) continue;
        connects(g.id);
        for (auto k : {proto::target_kind::user, proto::target_kind::room})
            set_peer_directory(g.id, k, 0, false, 0);
    }
}

counter& cluster_metrics::forward_result(proto::code c) {
    switch (c) {
        case proto::code::ok:
            return *forward_results_[0];
        case proto::code::offline:
            return *forward_results_[1];
        case proto::code::timeout:
            return *forward_results_[3];
        default:
            return *forward_results_[2];
    }
}

// The maps are filled by the constructor and then only read, on the cluster's strand; a label
// value missing from the constructor's lists is still counted, just not pre-registered.
template <class Register>
counter& cluster_metrics::cached(by_label& m, const std::string& key, Register reg) {
    auto it = m.find(key);
    if (it != m.end()) return *it->second;
    counter& c = reg();
    m.emplace(key, &c);
    return c;
}

counter& cluster_metrics::auth_failure(const char* direction, const char* reason) {
    auto reg = [&]() -> counter& {
        return m_.get_counter(auth_name, auth_help, {{"direction", direction}, {"reason", reason}});
    };
    return cached(auth_failures_, std::string(direction) + "/" + reason, reg);
}

counter& cluster_metrics::closed_for(const char* reason) {
    auto reg = [&]() -> counter& {
        return m_.get_counter(closed_name, closed_help, {{"reason", reason}});
    };
    return cached(closed_, reason, reg);
}

counter& cluster_metrics::protocol_error(const char* direction) {
    auto reg = [&]() -> counter& {
        return m_.get_counter(protocol_name, protocol_help, {{"direction", direction}});
    };
    return cached(protocol_errors_, direction, reg);
}

counter& cluster_metrics::entry_skipped(rpc::op o) {
    return *entries_skipped_.at(static_cast<uint8_t>(o));
}

counter& cluster_metrics::directory_refused(proto::target_kind kind) {
    return *directory_refused_[kind == proto::target_kind::user ? 0 : 1];
}

void cluster_metrics::set_peer_directory(const std::string& peer, proto::target_kind kind,
                                         size_t entries, bool overflowed, size_t held) {
    label_set l{{"kind", kind_label(kind)}, {"peer", peer}};
    m_.get_gauge(peer_entries_name, peer_entries_help, l).set(static_cast<double>(entries));
    m_.get_gauge(overflowed_name, overflowed_help, l).set(overflowed ? 1 : 0);
    m_.get_gauge(held_name, held_help, l).set(static_cast<double>(held));
}

counter& cluster_metrics::connects(const std::string& peer) {
    return m_.get_counter(connects_name, "Successful handshakes on the outbound link to a peer",
                          {{"peer", peer}});
}

void cluster_metrics::forget_peer(const std::string& peer) {
    m_.remove_series(connects_name, "peer", peer);
    m_.remove_series(peer_entries_name, "peer", peer);
    m_.remove_series(overflowed_name, "peer", peer);
    m_.remove_series(held_name, "peer", peer);
}

const char* to_string(lookup_source s) {
    switch (s) {
        case lookup_source::cache:
            return "cache";
        case lookup_source::redis:
            return "redis";
        case lookup_source::fallback:
            return "fallback";
    }
    return "redis";
}

directory_metrics::directory_metrics(metrics_registry& m, const char* mode)
    : redis_writes(m.get_counter("imgate_directory_redis_writes_total",
                                 "Commands writing this gateway's directory entries and lease to "
                                 "Redis (HSET, HDEL, PEXPIRE, SET)")),
      stale_entries(m.get_counter(
          "imgate_directory_stale_entries_total",
          "Directory fields seen in Redis whose gateway's lease is gone or has another epoch "
          "(removed lazily)")),
      announcements_ignored(m.get_counter(
          "imgate_directory_announcements_ignored_total",
          "PRESENCE/ROOM_INTEREST frames from peers ignored in redis mode (a mixed fleet)")),
      lookup_seconds(m.get_histogram("imgate_directory_lookup_seconds",
                                     "Directory lookups that asked Redis: time to the answer",
                                     metrics_registry::latency_buckets_seconds())) {
    for (const char* md : {"announced", "redis"})
        m.get_gauge("imgate_directory_mode", "1 for the directory mode in use (directory.mode)",
                    {{"mode", md}})
            .set(std::string(md) == mode ? 1 : 0);
    const char* kinds[] = {"user", "room", "presence"};
    for (int k = 0; k < 3; ++k) {
        for (int s = 0; s < 3; ++s)
            lookups_[k][s] = &m.get_counter(
                "imgate_directory_lookups_total",
                "Directory lookups in redis mode by what they were for and where the answer came "
                "from",
                {{"kind", kinds[k]}, {"source", to_string(lookup_source(s))}});
        fallbacks_[k] = &m.get_counter(
            "imgate_directory_fallback_total",
            "Directory lookups Redis could not answer: sent to every peer with a usable link "
            "(presence: unknown)",
            {{"kind", kinds[k]}});
    }
}

}  // namespace imgate::gw
