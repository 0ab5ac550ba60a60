#include "dispatcher/fleet_state.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>

namespace imgate::disp {

namespace {

constexpr gw_state all_states[] = {gw_state::up,         gw_state::down,     gw_state::draining,
                                   gw_state::overloaded, gw_state::disabled, gw_state::degraded};
constexpr const char* degraded_reasons[] = {"jwt_secret_mismatch", "no_mesh_links"};
constexpr const char* per_gateway_families[] = {
    "imgate_dispatcher_picks_total", "imgate_dispatcher_pulls_total",
    "imgate_dispatcher_gateway_state", "imgate_dispatcher_gateway_effective_weight",
    "imgate_dispatcher_gateway_degraded",
    // Registered by the rebalancer on each request, looked up by name every time (never cached).
    "imgate_dispatcher_rebalance_requests_total",
    "imgate_dispatcher_rebalance_sessions_asked_total"};

std::string iso_time(int64_t wall_ms) {
    std::time_t t = static_cast<std::time_t>(wall_ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string percent(double f) {
    return std::to_string(static_cast<int>(std::lround(f * 100))) + "%";
}

std::string fixed2(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", v);
    return buf;
}

}  // namespace

fleet_state::fleet_state(const clock_source& clock, uint64_t seed, metrics_registry* metrics)
    : clock_(clock), metrics_(metrics), rng_(seed) {}

fleet_state::entry* fleet_state::find(const std::string& id) const {
    for (auto& e : entries_)
        if (e->spec.id == id) return e.get();
    return nullptr;
}

uint32_t fleet_state::weight_of(const entry& e) const {
    return e.ov && e.ov->weight ? *e.ov->weight : e.spec.weight;
}

std::string fleet_state::degraded_of(const entry& e) const {
    if (e.jwt_mismatch) return "jwt_secret_mismatch";
    if (e.no_links_in_row >= std::max<uint32_t>(1, params_.degraded_after) && mesh_elsewhere(e))
        return "no_mesh_links";
    return "";
}

// Whether another gateway the dispatcher can reach is linked to some peer: only then is a gateway
// without links cut off from a mesh that works. When its peers are down (or the whole mesh is
// broken) it is the last one serving, and local delivery still works: handing it out beats a 503
// (the mesh alert tells the operator).
bool fleet_state::mesh_elsewhere(const entry& e) const {
    for (auto& up : entries_) {
        const entry& f = *up;
        if (&f == &e) continue;
        auto st = f.health.state(weight_of(f));
        if (st != gw_state::up && st != gw_state::overloaded && st != gw_state::draining) continue;
        const auto& s = f.health.status();
        if (s && s->links_up && *s->links_up > 0) return true;
    }
    return false;
}

gw_state fleet_state::state_of(const entry& e) const {
    if (e.ov && e.ov->disabled) return gw_state::disabled;
    auto st = e.health.state(weight_of(e));
    // Degraded outranks overloaded (a client must not get it even when it has room) but not
    // draining or down, which already keep it out and say more.
    if ((st == gw_state::up || st == gw_state::overloaded) && !degraded_of(e).empty())
        return gw_state::degraded;
    return st;
}

// The majority is taken over every gateway whose last pull succeeded, rising ones included: a
// new gateway with other secrets is then degraded from the pull that makes it alive, never handed
// out first. Gateways that do not report the fingerprint (older) neither vote nor mismatch.
void fleet_state::update_jwt_majority() {
    std::map<std::string, size_t> votes;
    bool alive_voter = false;  // no warning for the start-up moment when only some have answered
    for (auto& e : entries_) {
        const auto& st = e->health.status();
        if (st && st->jwt_fingerprint && e->health.bad_in_row() == 0) {
            ++votes[*st->jwt_fingerprint];
            alive_voter = alive_voter || e->health.alive();
        }
    }
    size_t best = 0, at_best = 0;
    std::optional<std::string> maj;
    for (auto& [fp, n] : votes) {
        if (n > best) {
            best = n;
            at_best = 1;
            maj = fp;
        } else if (n == best) {
            ++at_best;
        }
    }
    bool split = at_best > 1;
    if (split) maj.reset();
    if (split != jwt_split_ && alive_voter) {
        if (split)
            spdlog::warn(
                "JWT secrets split evenly across the fleet ({} each): no majority to compare "
                "with, no gateway degraded for it; check secrets.jwt on each gateway's /status",
                best);
        else
            spdlog::info("JWT secrets: a majority again (largest group {})", best);
    }
    jwt_split_ = split;
    jwt_majority_ = maj;
    for (auto& e : entries_) {
        const auto& st = e->health.status();
        bool mismatch = maj && st && st->jwt_fingerprint && *st->jwt_fingerprint != *maj;
        if (mismatch == e->jwt_mismatch) continue;
        e->jwt_mismatch = mismatch;
        after_event(*e, mismatch ? "jwt secret differs from the fleet's" : "jwt secret agrees");
    }
}

void fleet_state::register_metrics(entry& e) {
    if (!metrics_) return;
    const auto& id = e.spec.id;
    e.picks_metric =
        &metrics_->get_counter("imgate_dispatcher_picks_total",
                               "Gateways handed out by GET /get-tcp-ip", {{"gateway", id}});
    e.pulls_ok_metric = &metrics_->get_counter("imgate_dispatcher_pulls_total",
                                               "Pulls of a gateway's /status, by result",
                                               {{"gateway", id}, {"result", "ok"}});
    e.pulls_failed_metric = &metrics_->get_counter("imgate_dispatcher_pulls_total",
                                                   "Pulls of a gateway's /status, by result",
                                                   {{"gateway", id}, {"result", "failed"}});
}

fleet_state::apply_summary fleet_state::apply(const fleet_config& fleet,
                                              const health_params& params, bool initial) {
    std::lock_guard lk(mu_);
    apply_summary sum;
    params_ = params;
    std::vector<std::unique_ptr<entry>> next;
    for (const auto& spec : fleet.gateways) {
        auto it = std::find_if(entries_.begin(), entries_.end(),
                               [&](const auto& e) { return e && e->spec.id == spec.id; });
        if (it != entries_.end() && (*it)->spec.admin == spec.admin) {
            auto& e = *it;
            if (e->spec.weight != spec.weight)
                spdlog::info("gateway {}: weight {} -> {}", spec.id, e->spec.weight, spec.weight);
            (e->spec == spec ? sum.kept : sum.changed).push_back(spec.id);
            e->spec = spec;
            next.push_back(std::move(e));
            continue;
        }
        auto e = std::make_unique<entry>(!initial);
        e->spec = spec;
        e->generation = next_generation_++;
        e->state_since_ms = clock_.wall_ms();
        e->rate_t0 = clock_.now();
        register_metrics(*e);
        if (it != entries_.end()) {
            spdlog::info("gateway {}: admin address changed to {}; health state reset", spec.id,
                         spec.admin.to_string());
            e->picks_total = (*it)->picks_total;
            sum.changed.push_back(spec.id);
            it->reset();
        } else {
            sum.added.push_back(spec.id);
        }
        next.push_back(std::move(e));
    }
    for (auto& e : entries_) {
        if (!e) continue;
        sum.removed.push_back(e->spec.id);
        if (metrics_)
            for (auto* fam : per_gateway_families)
                metrics_->remove_series(fam, "gateway", e->spec.id);
    }
    entries_ = std::move(next);
    for (auto& e : entries_) {
        if (e->ov) {
            spdlog::info(
                "gateway {}: runtime override (weight {}, {}) by {} dropped: the fleet "
                "file wins on reload",
                e->spec.id, e->ov->weight ? std::to_string(*e->ov->weight) : "-",
                e->ov->disabled ? "disabled" : "enabled", e->ov->by);
            e->ov.reset();
            sum.overrides_dropped.push_back(e->spec.id);
        }
    }
    update_jwt_majority();
    for (auto& e : entries_) after_event(*e, initial ? "start-up" : "reload");
    return sum;
}

std::vector<pull_target> fleet_state::pull_targets() const {
    std::lock_guard lk(mu_);
    std::vector<pull_target> out;
    for (auto& e : entries_) out.push_back({e->spec.id, e->spec.admin});
    return out;
}

uint64_t fleet_state::pull_started(const std::string& id) {
    std::lock_guard lk(mu_);
    auto* e = find(id);
    if (!e) return 0;
    e->picks_at_pull_start = e->picks_total;
    e->pull_in_flight = true;
    return e->generation;
}

void fleet_state::update_rate(entry& e, steady_time now) {
    double dt = std::chrono::duration<double>(now - e.rate_t0).count();
    if (dt < 1.0) return;
    e.picks_per_s = static_cast<double>(e.picks_total - e.rate_p0) / dt;
    e.rate_t0 = now;
    e.rate_p0 = e.picks_total;
}

void fleet_state::pull_succeeded(const std::string& id, uint64_t token, const gateway_status& s,
                                 double latency_ms) {
    if (s.id != id) {
        pull_failed(id, token,
                    "id mismatch: the gateway at this admin address reports id \"" + s.id +
                        "\", the fleet expects \"" + id + "\"",
                    latency_ms);
        return;
    }
    std::lock_guard lk(mu_);
    auto* e = find(id);
    if (!e || e->generation != token) return;
    auto now = clock_.now();
    e->health.pull_ok(s, now, params_);
    bool no_links = s.links_up && s.peers_expected && *s.links_up == 0 && *s.peers_expected > 0 &&
                    entries_.size() > 1;
    e->no_links_in_row = no_links ? e->no_links_in_row + 1 : 0;
    // Picks handed out while the pull was in flight may not be in the reported count yet.
    e->picks_since_pull = e->picks_total - e->picks_at_pull_start;
    e->pull_in_flight = false;
    e->last_pull_ms = clock_.wall_ms();
    e->pull_latency_ms = latency_ms;
    if (e->pulls_ok_metric) e->pulls_ok_metric->inc();
    update_rate(*e, now);
    // Majority first: a gateway that comes up with other secrets goes straight to degraded.
    update_jwt_majority();
    after_event(*e, "pull");
}

bool fleet_state::in_transition(const std::string& id) const {
    std::lock_guard lk(mu_);
    auto* e = find(id);
    // A gateway counting pulls without mesh links is pulled fast too: the grace is in pulls.
    return e && (e->health.in_transition() ||
                 (e->no_links_in_row > 0 && e->no_links_in_row < params_.degraded_after));
}

void fleet_state::pull_failed(const std::string& id, uint64_t token, const std::string& error,
                              double latency_ms) {
    std::lock_guard lk(mu_);
    auto* e = find(id);
    if (!e || e->generation != token) return;
    auto now = clock_.now();
    bool first = e->health.last_error().empty() || e->health.bad_in_row() == 0;
    e->health.pull_failed(error, now, params_);
    e->pull_in_flight = false;
    e->pull_latency_ms = latency_ms;
    if (e->pulls_failed_metric) e->pulls_failed_metric->inc();
    if (first) spdlog::warn("gateway {}: pull failed: {}", id, error);
    update_rate(*e, now);
    update_jwt_majority();
    after_event(*e, error.c_str());
}

void fleet_state::after_event(entry& e, const char* why) {
    auto now = clock_.now();
    auto st = state_of(e);
    bool changed = st != e.last_state;
    if (changed) {
        spdlog::info("gateway {}: {} -> {} ({})", e.spec.id, to_string(e.last_state), to_string(st),
                     reason(e, now).empty() ? why : reason(e, now));
        e.last_state = st;
        e.state_since_ms = clock_.wall_ms();
    }
    if (!metrics_) return;
    auto degraded = degraded_of(e);
    for (auto* r : degraded_reasons)
        metrics_
            ->get_gauge("imgate_dispatcher_gateway_degraded",
                        "1 while a gateway that is up by health is not handed out, by reason",
                        {{"gateway", e.spec.id}, {"reason", r}})
            .set(st == gw_state::degraded && degraded == r ? 1 : 0);
    for (auto s : all_states)
        metrics_
            ->get_gauge("imgate_dispatcher_gateway_state",
                        "1 for the state each gateway is in, 0 for the others",
                        {{"gateway", e.spec.id}, {"state", to_string(s)}})
            .set(s == st ? 1 : 0);
    metrics_
        ->get_gauge("imgate_dispatcher_gateway_effective_weight",
                    "Static weight x headroom x slow-start factor at the last event",
                    {{"gateway", e.spec.id}})
        .set(effective_weight(e, now));
}

double fleet_state::effective_weight(const entry& e, steady_time now) const {
    if (state_of(e) != gw_state::up) return 0;
    double headroom = 1.0 - e.health.utilisation(e.picks_since_pull);
    if (headroom <= 0) return 0;
    return weight_of(e) * headroom * e.health.slow_start_factor(now, params_);
}

std::string fleet_state::reason(const entry& e, steady_time now) const {
    const auto& h = e.health;
    switch (state_of(e)) {
        case gw_state::disabled:
            if (e.ov && e.ov->disabled) return "disabled at runtime by " + e.ov->by;
            if (e.ov && e.ov->weight)
                return "disabled (weight set to 0 at runtime by " + e.ov->by + ")";
            return "disabled (weight 0)";
        case gw_state::degraded: {
            auto r = degraded_of(e);
            if (r == "jwt_secret_mismatch")
                return "degraded: jwt_secret_mismatch (its current JWT secret " +
                       h.status()->jwt_fingerprint.value_or("?") + " is not the fleet's " +
                       jwt_majority_.value_or("?") + "; logins there would fail)";
            return "degraded: no_mesh_links (0 of " +
                   std::to_string(h.status()->peers_expected.value_or(0)) + " peer links up for " +
                   std::to_string(e.no_links_in_row) + " pulls)";
        }
        case gw_state::down: {
            std::string r;
            if (h.down_since()) {
                auto ago =
                    std::chrono::duration_cast<std::chrono::milliseconds>(now - *h.down_since());
                r = (h.ever_up() ? "down since " : "never up; failing since ") +
                    iso_time(clock_.wall_ms() - ago.count());
                if (!h.last_error().empty()) r += ": " + h.last_error();
            } else {
                r = "waiting for the first pulls";
            }
            if (h.good_in_row() > 0)
                r += " (" + std::to_string(h.good_in_row()) + "/" + std::to_string(params_.rise) +
                     " good pulls)";
            return r;
        }
        case gw_state::draining:
            return "draining (gateway reports " + h.status()->state + ")";
        case gw_state::overloaded:
            if (h.status()->full) return "overloaded: gateway reports full";
            return "overloaded: utilisation " + percent(h.utilisation(0)) + " (high water " +
                   percent(params_.high_water) + ", readmitted at " + percent(params_.low_water) +
                   ")";
        case gw_state::up: {
            double headroom = 1.0 - h.utilisation(e.picks_since_pull);
            std::string r = "load headroom " + fixed2(std::max(0.0, headroom));
            double ss = h.slow_start_factor(now, params_);
            if (ss < 1.0) r += ", slow start " + percent(ss);
            if (h.bad_in_row() > 0)
                r += ", " + std::to_string(h.bad_in_row()) + "/" + std::to_string(params_.fall) +
                     " failed pulls: " + h.last_error();
            return r;
        }
    }
    return "";
}

size_t fleet_state::draw(const std::vector<candidate>& pool, size_t skip) {
    double total = 0;
    for (size_t i = 0; i < pool.size(); ++i)
        if (i != skip) total += pool[i].weight;
    double x = std::uniform_real_distribution<double>(0.0, total)(rng_);
    size_t last = pool.size();
    for (size_t i = 0; i < pool.size(); ++i) {
        if (i == skip) continue;
        last = i;
        if (x < pool[i].weight) return i;
        x -= pool[i].weight;
    }
    return last;  // rounding at the top end
}

size_t fleet_state::choose(const std::vector<candidate>& pool) {
    if (pool.size() == 1) return 0;
    // Two weighted random draws (distinct), keep the one with fewer estimated connections per
    // unit of weight: the best-looking gateway wins only when it is drawn, so even on stale data
    // and with several dispatchers it gets a bounded share (see docs/architecture.md).
    size_t a = draw(pool, pool.size());
    size_t b = draw(pool, a);
    return pool[b].score < pool[a].score ? b : a;
}

bool fleet_state::sample(double p) {
    if (p <= 0) return false;
    if (p >= 1) return true;
    std::lock_guard lk(mu_);
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < p;
}

std::vector<pick_target> fleet_state::pick(const pick_request& r, pick_explanation* why) {
    std::lock_guard lk(mu_);
    auto now = clock_.now();
    // Reused under mu_: no allocation per pick once they have grown to the fleet's size.
    auto& preferred = scratch_preferred_;
    auto& other = scratch_other_;
    preferred.clear();
    other.clear();
    for (auto& up : entries_) {
        entry& e = *up;
        if (std::find(r.exclude.begin(), r.exclude.end(), e.spec.id) != r.exclude.end()) {
            if (why) why->skipped.emplace_back(e.spec.id, "excluded");
            continue;
        }
        // Not a candidate at all for this transport: weights and scores are compared among the
        // gateways that serve it only.
        if (!e.spec.serves(r.via)) {
            if (why) why->skipped.emplace_back(e.spec.id, std::string("no_") + to_string(r.via));
            continue;
        }
        double w = effective_weight(e, now);
        if (w <= 0) {
            if (why) {
                auto st = state_of(e);
                std::string what = to_string(st);
                if (st == gw_state::degraded) what += ":" + degraded_of(e);
                if (st == gw_state::up) what += ":no_headroom";
                why->skipped.emplace_back(e.spec.id, std::move(what));
            }
            continue;
        }
        // Connections per unit of weight, counting our picks since the last pull as connections:
        // continuous across a pull when the clients did connect, so pulls landing at different
        // moments for different gateways do not skew the shares.
        double conns = e.health.status() ? static_cast<double>(e.health.status()->connections) : 0;
        candidate c{&e, w, (conns + static_cast<double>(e.picks_since_pull)) / w};
        if (r.region.empty() || e.spec.region == r.region)
            preferred.push_back(c);
        else
            other.push_back(c);
    }
    std::vector<pick_target> out;
    size_t want = 1 + r.alternates;
    out.reserve(std::min(want, preferred.size() + other.size()));
    if (why) why->pool = !preferred.empty() ? "region" : !other.empty() ? "fallback" : "none";
    for (auto* pool : {&preferred, &other}) {
        while (out.size() < want && !pool->empty()) {
            size_t i = choose(*pool);
            entry& e = *(*pool)[i].e;
            out.push_back({e.spec.id, *e.spec.address_of(r.via)});
            if (out.size() == 1 && why)
                why->chosen_why = "weight " + std::to_string(weight_of(e)) + " effective " +
                                  fixed2((*pool)[i].weight) + " score " + fixed2((*pool)[i].score) +
                                  " of " + std::to_string(pool->size()) + " candidates";
            if (out.size() == 1) {
                e.picks_total++;
                e.picks_since_pull++;
                if (e.picks_metric) e.picks_metric->inc();
            }
            pool->erase(pool->begin() + static_cast<std::ptrdiff_t>(i));
        }
    }
    return out;
}

bool fleet_state::has_region(const std::string& region) const {
    std::lock_guard lk(mu_);
    for (auto& e : entries_)
        if (e->spec.region == region) return true;
    return false;
}

size_t fleet_state::available() const {
    std::lock_guard lk(mu_);
    auto now = clock_.now();
    size_t n = 0;
    for (auto& e : entries_)
        if (effective_weight(*e, now) > 0) ++n;
    return n;
}

gw_state fleet_state::state_of(const std::string& id) const {
    std::lock_guard lk(mu_);
    auto* e = find(id);
    return e ? state_of(*e) : gw_state::disabled;
}

size_t fleet_state::size() const {
    std::lock_guard lk(mu_);
    return entries_.size();
}

std::vector<gateway_load> fleet_state::load_snapshot() const {
    std::lock_guard lk(mu_);
    auto now = clock_.now();
    std::vector<gateway_load> out;
    out.reserve(entries_.size());
    for (auto& e : entries_) {
        gateway_load g;
        g.id = e->spec.id;
        g.admin = e->spec.admin;
        g.state = state_of(*e);
        g.weight = weight_of(*e);
        g.slow_start = e->health.slow_start_factor(now, params_) < 1.0;
        if (const auto& st = e->health.status()) g.connections = st->connections;
        out.push_back(std::move(g));
    }
    return out;
}

std::string fleet_state::degraded_reason(const std::string& id) const {
    std::lock_guard lk(mu_);
    auto* e = find(id);
    return e && state_of(*e) == gw_state::degraded ? degraded_of(*e) : "";
}

std::optional<std::string> fleet_state::jwt_majority() const {
    std::lock_guard lk(mu_);
    return jwt_majority_;
}

bool fleet_state::jwt_split() const {
    std::lock_guard lk(mu_);
    return jwt_split_;
}

void fleet_state::change_override(entry& e, const std::string& by, const char* what) {
    e.ov->by = by;
    e.ov->at_ms = clock_.wall_ms();
    // Back to the file's values: no override left to show.
    if (!e.ov->disabled && (!e.ov->weight || *e.ov->weight == e.spec.weight)) e.ov.reset();
    after_event(e, what);
}

bool fleet_state::set_weight(const std::string& id, uint32_t weight, const std::string& by) {
    std::lock_guard lk(mu_);
    auto* e = find(id);
    if (!e) return false;
    if (!e->ov) e->ov.emplace();
    e->ov->weight = weight;
    change_override(*e, by, "weight set at runtime");
    return true;
}

bool fleet_state::set_disabled(const std::string& id, bool disabled, const std::string& by) {
    std::lock_guard lk(mu_);
    auto* e = find(id);
    if (!e) return false;
    if (!e->ov) e->ov.emplace();
    e->ov->disabled = disabled;
    change_override(*e, by, disabled ? "disabled at runtime" : "enabled at runtime");
    return true;
}

std::optional<gateway_override> fleet_state::override_of(const std::string& id) const {
    std::lock_guard lk(mu_);
    auto* e = find(id);
    return e ? e->ov : std::nullopt;
}

uint64_t fleet_state::picks_of(const std::string& id) const {
    std::lock_guard lk(mu_);
    auto* e = find(id);
    return e ? e->picks_total : 0;
}

nlohmann::json fleet_state::status_json() const {
    std::lock_guard lk(mu_);
    auto now = clock_.now();
    auto arr = nlohmann::json::array();
    for (auto& up : entries_) {
        const entry& e = *up;
        const auto& h = e.health;
        const auto& st = h.status();
        nlohmann::json g;
        g["id"] = e.spec.id;
        auto state = state_of(e);
        g["state"] = to_string(state);
        g["weight"] = weight_of(e);
        g["file_weight"] = e.spec.weight;
        g["degraded_reason"] =
            state == gw_state::degraded ? nlohmann::json(degraded_of(e)) : nlohmann::json(nullptr);
        if (e.ov)
            g["override"] = {
                {"weight", e.ov->weight ? nlohmann::json(*e.ov->weight) : nlohmann::json(nullptr)},
                {"disabled", e.ov->disabled},
                {"by", e.ov->by},
                {"at", iso_time(e.ov->at_ms)},
                {"at_ms", e.ov->at_ms}};
        else
            g["override"] = nullptr;
        g["links_up"] =
            st && st->links_up ? nlohmann::json(*st->links_up) : nlohmann::json(nullptr);
        g["peers_expected"] = st && st->peers_expected ? nlohmann::json(*st->peers_expected)
                                                       : nlohmann::json(nullptr);
        g["jwt_fingerprint"] = st && st->jwt_fingerprint ? nlohmann::json(*st->jwt_fingerprint)
                                                         : nlohmann::json(nullptr);
        g["effective_weight"] = std::round(effective_weight(e, now) * 100) / 100;
        g["connections"] = st ? nlohmann::json(st->connections) : nlohmann::json(nullptr);
        g["max_connections"] = st ? nlohmann::json(st->max_connections) : nlohmann::json(nullptr);
        g["sessions"] = st ? nlohmann::json(st->sessions) : nlohmann::json(nullptr);
        g["load"] = st ? nlohmann::json(st->load) : nlohmann::json(nullptr);
        g["full"] = st ? nlohmann::json(st->full) : nlohmann::json(nullptr);
        g["gateway_state"] = st ? nlohmann::json(st->state) : nlohmann::json(nullptr);
        g["version"] = st ? nlohmann::json(st->version) : nlohmann::json(nullptr);
        g["pid"] = st ? nlohmann::json(st->pid) : nlohmann::json(nullptr);
        g["uptime_s"] = st ? nlohmann::json(st->uptime_s) : nlohmann::json(nullptr);
        g["admin"] = e.spec.admin.to_string();
        // Every transport the gateway serves, with the address handed out for it; "client" stays
        // the tcp address (null when the gateway serves no plain tcp).
        auto* tcp = e.spec.address_of(transport::tcp);
        g["client"] = tcp ? nlohmann::json(tcp->to_string()) : nlohmann::json(nullptr);
        auto transports = nlohmann::json::object();
        for (auto t : all_transports)
            if (auto* a = e.spec.address_of(t)) transports[to_string(t)] = a->to_string();
        g["transports"] = std::move(transports);
        g["region"] = e.spec.region;
        g["labels"] = e.spec.labels;
        g["last_pull_ms"] =
            e.last_pull_ms ? nlohmann::json(*e.last_pull_ms) : nlohmann::json(nullptr);
        g["last_error"] =
            h.last_error().empty() ? nlohmann::json(nullptr) : nlohmann::json(h.last_error());
        g["pull_latency_ms"] =
            e.pull_latency_ms ? nlohmann::json(*e.pull_latency_ms) : nlohmann::json(nullptr);
        g["picks"] = e.picks_total;
        g["picks_since_pull"] = e.picks_since_pull;
        g["picks_per_s"] = std::round(e.picks_per_s * 10) / 10;
        g["reason"] = reason(e, now);
        g["state_since_ms"] = e.state_since_ms;
        g["slow_start_factor"] = h.slow_start_factor(now, params_);
        g["good_pulls_in_row"] = h.good_in_row();
        g["failed_pulls_in_row"] = h.bad_in_row();
        arr.push_back(std::move(g));
    }
    return arr;
}

}  // namespace imgate::disp
