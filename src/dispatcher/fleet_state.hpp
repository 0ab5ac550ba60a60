#pragma once
// The dispatcher's view of the fleet: per gateway its spec, health state machine and pick
// counters; the balancer that hands out gateways; reload that keeps state. Thread-safe (one
// mutex, held for microseconds); no sockets, clock and random seed injected.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/clock.hpp"
#include "common/config.hpp"
#include "common/metrics.hpp"
#include "dispatcher/gateway_status.hpp"
#include "dispatcher/health.hpp"
#include "dispatcher/region_table.hpp"

namespace imgate::disp {

struct pick_request {
    std::string region;                // preferred region ("" = none)
    std::vector<std::string> exclude;  // gateway ids the client does not want
    size_t alternates = 0;
    transport via = transport::tcp;  // only gateways serving it are candidates
};

struct pick_target {
    std::string id;
    endpoint address;  // the gateway's advertised address for the request's transport
};

// Why pick() answered what it did, for the decision log: one line per gateway left out.
struct pick_explanation {
    std::string pool;  // "region" (preferred region), "fallback" (other regions), "none"
    std::vector<std::pair<std::string, std::string>> skipped;  // id, why (state or "excluded")
    std::string chosen_why;  // effective weight and load score of the pick
};

// An operator's runtime change to one gateway (POST /gateways/{id}/...): kept until the next
// successful reload, which drops every override (the fleet file wins).
struct gateway_override {
    std::optional<uint32_t> weight;
    bool disabled = false;
    std::string by;  // who: remote address and token fingerprint
    int64_t at_ms = 0;
};

// What the poller needs to reach one gateway.
struct pull_target {
    std::string id;
    endpoint admin;
    bool operator==(const pull_target&) const = default;
};

// One gateway as the rebalancing planner sees it (rebalance.hpp): a copy, taken under the lock.
struct gateway_load {
    std::string id;
    endpoint admin;
    gw_state state = gw_state::down;
    uint32_t weight = 0;      // in force: the runtime override's, else the fleet file's
    bool slow_start = false;  // ramping in after coming back (slow-start factor below 1)
    std::optional<uint64_t> connections;  // from the last good pull; none before any
};

class fleet_state {
  public:
    fleet_state(const clock_source& clock, uint64_t seed, metrics_registry* metrics = nullptr);

    struct apply_summary {
        std::vector<std::string> added, removed, changed, kept;
        std::vector<std::string> overrides_dropped;  // runtime overrides the reload dropped
    };
    // Installs a fleet at start-up (initial = true) or on reload. Gateways whose id and admin
    // address are unchanged keep their health, load and counters; spec edits (weight, client
    // address, region, labels) apply at once; new ones start down until they pass `rise`.
    apply_summary apply(const fleet_config& fleet, const health_params& params, bool initial);

    std::vector<pull_target> pull_targets() const;

    // Poller hooks. pull_started returns a token to pass back, so that a result for an older
    // incarnation of the gateway (removed/changed by a reload meanwhile) is ignored.
    uint64_t pull_started(const std::string& id);
    // Whether the gateway is between states, so the poller pulls it again after fast_interval.
    bool in_transition(const std::string& id) const;
    void pull_succeeded(const std::string& id, uint64_t token, const gateway_status& s,
                        double latency_ms);
    void pull_failed(const std::string& id, uint64_t token, const std::string& error,
                     double latency_ms);

    // The first element is the pick, the rest are alternates in preference order, all among the
    // gateways serving r.via. Empty when none of those can take clients. Only the first counts as
    // handed out.
    std::vector<pick_target> pick(const pick_request& r, pick_explanation* why = nullptr);
    // true with probability p, from the injected random source (decision log sampling).
    bool sample(double p);

    // Runtime overrides; false for an unknown id. A reload drops them all (returns how many).
    bool set_weight(const std::string& id, uint32_t weight, const std::string& by);
    bool set_disabled(const std::string& id, bool disabled, const std::string& by);
    std::optional<gateway_override> override_of(const std::string& id) const;
    // Why a gateway is degraded ("jwt_secret_mismatch", "no_mesh_links"), "" when it is not.
    std::string degraded_reason(const std::string& id) const;
    // The current JWT fingerprint most up gateways report; none on a tie (jwt_split()).
    std::optional<std::string> jwt_majority() const;
    bool jwt_split() const;

    bool has_region(const std::string& region) const;
    size_t available() const;  // gateways currently able to take clients
    nlohmann::json status_json() const;
    gw_state state_of(const std::string& id) const;  // disabled for unknown ids
    uint64_t picks_of(const std::string& id) const;
    size_t size() const;  // gateways configured
    std::vector<gateway_load> load_snapshot() const;

  private:
    struct entry {
        gateway_spec spec;
        gateway_health health;
        uint64_t generation = 0;
        uint64_t picks_total = 0;
        uint64_t picks_since_pull = 0;
        uint64_t picks_at_pull_start = 0;
        bool pull_in_flight = false;
        gw_state last_state = gw_state::down;
        int64_t state_since_ms = 0;
        std::optional<int64_t> last_pull_ms;
        std::optional<double> pull_latency_ms;
        steady_time rate_t0{};
        uint64_t rate_p0 = 0;
        double picks_per_s = 0;
        counter* picks_metric = nullptr;
        counter* pulls_ok_metric = nullptr;
        counter* pulls_failed_metric = nullptr;
        std::optional<gateway_override> ov;
        bool jwt_mismatch = false;     // its current JWT fingerprint is not the majority's
        uint32_t no_links_in_row = 0;  // good pulls in a row with links_up 0 (peers expected)
        explicit entry(bool ramp) : health(ramp) {}
    };
    struct candidate {
        entry* e;
        double weight;
        double score;  // estimated connections per unit of weight: lower is less loaded
    };

    std::vector<candidate> scratch_preferred_, scratch_other_;  // pick()'s pools, under mu_
    entry* find(const std::string& id) const;
    uint32_t weight_of(const entry& e) const;  // the override's, else the fleet file's
    gw_state state_of(const entry& e) const;   // health state, disabled override, degraded
    std::string degraded_of(const entry& e) const;
    bool mesh_elsewhere(const entry& e) const;
    void update_jwt_majority();
    void change_override(entry& e, const std::string& by, const char* what);
    double effective_weight(const entry& e, steady_time now) const;
    std::string reason(const entry& e, steady_time now) const;
    void after_event(entry& e, const char* why);
    void update_rate(entry& e, steady_time now);
    void register_metrics(entry& e);
    size_t draw(const std::vector<candidate>& pool, size_t skip);
    size_t choose(const std::vector<candidate>& pool);

    const clock_source& clock_;
    metrics_registry* metrics_;
    mutable std::mutex mu_;
    std::mt19937_64 rng_;
    health_params params_;
    std::vector<std::unique_ptr<entry>> entries_;
    uint64_t next_generation_ = 1;
    std::optional<std::string> jwt_majority_;
    bool jwt_split_ = false;
};

}  // namespace imgate::disp
