#pragma once
// What every part of the RPC cluster shares: who this gateway is, the secret and membership a
// reload replaces, the configuration, the strand all cluster state lives on, the metrics, and the
// observations tests and the status page read from other threads. Held by shared_ptr by every
// coroutine of the cluster, so it outlives them all.
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>

#include "common/config.hpp"
#include "common/fingerprint.hpp"
#include "gateway/cluster.hpp"
#include "gateway/cluster_metrics.hpp"
#include "gateway/directory.hpp"
#include "gateway/rpc_config.hpp"

namespace imgate::gw {

using cluster_strand = boost::asio::strand<boost::asio::io_context::executor_type>;

// Owns the cluster-wide state; its fields other than the atomics and observations are used on
// the strand only.
struct cluster_context {
    cluster_context(boost::asio::io_context& io, const fleet_config& fleet, std::string self,
                    std::string secret, const rpc_config& cfg, local_delivery& local,
                    metrics_registry& m)
        : io(io),
          strand(boost::asio::make_strand(io)),
          self_id(std::move(self)),
          secret(std::move(secret)),
          cfg(cfg),
          local(local),
          metrics(m, fleet, self_id),
          rng(std::random_device{}()) {
        set_members(fleet);
        set_secret(this->secret);
    }

    void set_members(const fleet_config& fleet) {
        members.clear();
        for (auto& g : fleet.gateways) members.insert(g.id);
    }
    bool is_member(std::string_view id) const { return members.count(std::string(id)) > 0; }
    double random01() { return std::uniform_real_distribution<double>(0, 1)(rng); }

    // Publishes the directory's size to the gauges and the observers.
    void publish_directory(const session_directory& dir) {
        users_count = dir.user_entries();
        rooms_count = dir.room_entries();
        metrics.directory_users.set(static_cast<double>(users_count.load()));
        metrics.directory_rooms.set(static_cast<double>(rooms_count.load()));
        metrics.directory_user_locations.set(static_cast<double>(dir.user_locations()));
        metrics.directory_room_locations.set(static_cast<double>(dir.room_locations()));
    }
    void count_connect(const std::string& peer) {
        {
            std::lock_guard lk(obs_mu);
            ++connects_by_peer[peer];
        }
        metrics.connects(peer).inc();
    }
    // The cluster secret in use (on the strand); its fingerprint is published for the status page.
    void set_secret(std::string s) {
        secret = std::move(s);
        std::lock_guard lk(obs_mu);
        secret_fp = secret.empty() ? std::string() : secret_fingerprint("cluster", secret);
    }
    // A peer link's state for the status page; the time moves only when the state changes.
    void set_peer_state(const std::string& peer, const char* state) {
        std::lock_guard lk(obs_mu);
        auto& p = peer_states[peer];
        if (p.state == state) return;
        p.state = state;
        p.since_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    }
    void forget_peer_state(const std::string& peer) {
        std::lock_guard lk(obs_mu);
        peer_states.erase(peer);
    }
    mesh_status mesh() const {
        mesh_status m;
        m.links_up = links_count.load();
        std::lock_guard lk(obs_mu);
        m.secret_fingerprint = secret_fp;
        m.peers_expected = peer_states.size();
        for (auto& [id, p] : peer_states) m.peers.push_back(mesh_peer{id, p.state, p.since_ms});
        return m;
    }
    uint64_t connects(const std::string& peer) const {
        std::lock_guard lk(obs_mu);
        auto it = connects_by_peer.find(peer);
        return it == connects_by_peer.end() ? 0 : it->second;
    }

    boost::asio::io_context& io;
    cluster_strand strand;
    const std::string self_id;
    std::string secret;             // the cluster secret (set_secret); a reload may replace it
    std::set<std::string> members;  // fleet ids; a reload may replace them
    const rpc_config cfg;
    local_delivery& local;
    cluster_metrics metrics;
    // directory.mode redis: locations live in Redis; no PRESENCE/ROOM_INTEREST is sent (no
    // link-up snapshots either). Set before any link starts.
    bool redis_directory = false;
    bool stopped = false;               // on the strand
    std::atomic<bool> stopping{false};  // set at once by stop(), before the strand sees it
    std::mt19937_64 rng;                // backoff jitter

    // Observations, safe from any thread.
    std::atomic<uint16_t> port{0};
    std::atomic<size_t> links_count{0};
    std::atomic<size_t> inbound_count{0};
    std::atomic<size_t> users_count{0};
    std::atomic<size_t> rooms_count{0};
    mutable std::mutex obs_mu;
    std::map<std::string, uint64_t> connects_by_peer;
    struct peer_obs {
        std::string state;
        int64_t since_ms = 0;
    };
    std::map<std::string, peer_obs> peer_states;  // one per outbound link
    std::string secret_fp;
};

}  // namespace imgate::gw
