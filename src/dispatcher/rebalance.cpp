#include "dispatcher/rebalance.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/http/field.hpp>
#include <cmath>
#include <mutex>

#include "common/awaitable.hpp"
#include "common/daemon.hpp"
#include "dispatcher/admin_http.hpp"

namespace imgate::disp {

namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {
bool in_pool(const gateway_load& g) {
    return g.state == gw_state::up && g.weight != 0 && g.connections.has_value();
}
}  // namespace

uint64_t pool_total(const std::vector<gateway_load>& gateways) {
    uint64_t t = 0;
    for (auto& g : gateways)
        if (in_pool(g)) t += *g.connections;
    return t;
}

void total_window::add(steady_time now, uint64_t total) {
    samples_.emplace_back(now, total);
    auto keep_from = now - span_;
    auto first = std::find_if(samples_.begin(), samples_.end(),
                              [&](const auto& p) { return p.first >= keep_from; });
    samples_.erase(samples_.begin(), first);
}

uint64_t total_window::max(steady_time now) const {
    uint64_t m = 0;
    for (auto& [t, v] : samples_)
        if (t >= now - span_) m = std::max(m, v);
    return m;
}

rebalance_plan plan_rebalance(const std::vector<gateway_load>& gateways,
                              const rebalance_settings& s, uint64_t total_floor) {
    rebalance_plan plan;
    std::vector<const gateway_load*> pool;
    // Integers, so that ceil(fair) of an exact share (3000 * 1 / 3) is 1000, not 1001.
    unsigned __int128 sum_c = 0, sum_w = 0;
    for (auto& g : gateways) {
        if (!in_pool(g)) continue;
        pool.push_back(&g);
        sum_c += *g.connections;
        sum_w += g.weight;
    }
    if (pool.empty() || sum_w == 0) return plan;
    sum_c = std::max<unsigned __int128>(sum_c, total_floor);
    for (auto* g : pool) {
        auto share = sum_c * g->weight;  // fair * sum_w
        plan.fair[g->id] = static_cast<double>(share) / static_cast<double>(sum_w);
        // Below fair: c * sum_w < sum_c * w.
        if (!g->slow_start && static_cast<unsigned __int128>(*g->connections) * sum_w < share)
            plan.triggered = true;
    }
    if (!plan.triggered) return plan;
    for (auto* g : pool) {
        auto share = sum_c * g->weight;
        double fair = plan.fair[g->id];
        double c = static_cast<double>(*g->connections);
        if (!(c > fair * (1.0 + s.threshold))) continue;
        rebalance_request r;
        r.id = g->id;
        r.admin = g->admin;
        r.connections = *g->connections;
        r.fair = fair;
        r.target = static_cast<uint64_t>((share + sum_w - 1) / sum_w);  // ceil(fair)
        // ceil(c - fair) = c - floor(fair); at least 1 since c > fair.
        uint64_t floor_fair = static_cast<uint64_t>(share / sum_w);
        uint64_t excess = *g->connections > floor_fair ? *g->connections - floor_fair : 1;
        r.max = std::max<uint64_t>(1, std::min(s.max_per_request, excess));
        r.rate = s.rate;
        plan.requests.push_back(std::move(r));
    }
    return plan;
}

std::string rebalance_body(const rebalance_request& r) {
    nlohmann::json j{{"target", r.target}, {"max", r.max}};
    double whole = std::floor(r.rate);
    if (whole == r.rate && r.rate < 9e15)
        j["rate"] = static_cast<uint64_t>(whole);
    else
        j["rate"] = r.rate;
    return j.dump();
}

namespace {

// What /status shows of the last request sent to one gateway.
struct last_request {
    int64_t at_ms = 0;
    uint64_t target = 0, max = 0, connections = 0;
    double rate = 0, fair = 0;
    bool ok = false;
    int status = 0;         // HTTP status, 0 when no answer came
    nlohmann::json answer;  // the gateway's JSON answer (null when none or not JSON)
    std::string error;      // transport error or non-200 reason
};

}  // namespace

struct rebalancer::shared {
    shared(asio::any_io_executor ex, fleet_state& f, metrics_registry& m, const clock_source& c)
        : strand(asio::make_strand(ex)), timer(strand), fleet(f), metrics(m), clock(c) {}
    asio::strand<asio::any_io_executor> strand;
    asio::steady_timer timer;
    fleet_state& fleet;
    metrics_registry& metrics;
    const clock_source& clock;
    counter* rounds = nullptr;
    mutable std::mutex mu;
    rebalance_settings settings;
    std::string token;
    bool stopped = false;
    std::optional<int64_t> last_round_ms;
    bool last_triggered = false;
    std::map<std::string, last_request> last;
    total_window totals{std::chrono::milliseconds(10000)};
    uint64_t last_floor = 0;  // the total the last evaluation balanced

    void count(const std::string& id, bool ok, uint64_t asked) {
        metrics
            .get_counter("imgate_dispatcher_rebalance_requests_total",
                         "POST /rebalance sent to gateways, by answer (ok: 200)",
                         {{"gateway", id}, {"result", ok ? "ok" : "failed"}})
            .inc();
        auto& s = metrics.get_counter(
            "imgate_dispatcher_rebalance_sessions_asked_total",
            "Sessions gateways were asked to move (the max of each request answered 200)",
            {{"gateway", id}});
        if (ok) s.inc(asked);
    }
};

rebalancer::rebalancer(asio::any_io_executor ex, fleet_state& fleet, metrics_registry& metrics,
                       const clock_source& clock)
    : st_(std::make_shared<shared>(std::move(ex), fleet, metrics, clock)) {
    st_->rounds = &metrics.get_counter(
        "imgate_dispatcher_rebalance_rounds_total",
        "Rebalancing evaluations (every rebalance.interval, also while disabled: they give the "
        "fair shares on /status)");
}

rebalancer::~rebalancer() {
    stop();
}

void rebalancer::configure(const rebalance_settings& s, std::string admin_token) {
    std::lock_guard lk(st_->mu);
    st_->settings = s;
    st_->token = std::move(admin_token);
}

void rebalancer::start() {
    spawn(st_->strand, run(st_), "rebalancer");
}

void rebalancer::stop() {
    {
        std::lock_guard lk(st_->mu);
        if (st_->stopped) return;
        st_->stopped = true;
    }
    auto st = st_;
    asio::post(st->strand, [st] { st->timer.cancel(); });
}

asio::awaitable<void> rebalancer::run(std::shared_ptr<shared> st) {
    for (;;) {
        std::chrono::milliseconds interval;
        {
            std::lock_guard lk(st->mu);
            if (st->stopped) co_return;
            interval = st->settings.interval;
        }
        st->timer.expires_after(interval);
        co_await st->timer.async_wait(use_tuple);
        rebalance_settings s;
        std::string token;
        {
            std::lock_guard lk(st->mu);
            if (st->stopped) co_return;
            s = st->settings;
            token = st->token;
        }
        auto snapshot = st->fleet.load_snapshot();
        uint64_t floor = 0;
        {
            std::lock_guard lk(st->mu);
            auto now = st->clock.now();
            st->totals.set_span(total_window::span_for(s.interval));
            st->totals.add(now, pool_total(snapshot));
            floor = st->totals.max(now);
        }
        auto plan = plan_rebalance(snapshot, s, floor);
        st->rounds->inc();
        {
            std::lock_guard lk(st->mu);
            st->last_floor = floor;
            st->last_round_ms = st->clock.wall_ms();
            st->last_triggered = plan.triggered;
        }
        if (!s.enabled) continue;
        for (auto& r : plan.requests) spawn(st->strand, send(st, r, token), "rebalance " + r.id);
    }
}

asio::awaitable<void> rebalancer::send(std::shared_ptr<shared> st, rebalance_request r,
                                       std::string token) {
    std::chrono::milliseconds interval;
    {
        std::lock_guard lk(st->mu);
        interval = st->settings.interval;
    }
    // Done before the next evaluation re-asks: a gateway never has two of ours in flight.
    auto timeout = std::min(interval, std::chrono::milliseconds(2000));
    admin_connection conn(st->strand);
    admin_request req{http::verb::post, "/rebalance", 11};
    req.set(http::field::host, r.admin.to_string());
    req.set(http::field::user_agent, "imgate-dispatcher");
    req.set(http::field::authorization, "Bearer " + token);
    req.set(http::field::content_type, "application/json");
    req.keep_alive(false);
    req.body() = rebalance_body(r);
    req.prepare_payload();
    admin_response res;
    std::string err = co_await admin_exchange(conn, r.admin, req, res, timeout, 64 * 1024);
    conn.close();

    last_request rec;
    rec.at_ms = st->clock.wall_ms();
    rec.target = r.target;
    rec.max = r.max;
    rec.rate = r.rate;
    rec.fair = r.fair;
    rec.connections = r.connections;
    if (err.empty()) {
        rec.status = static_cast<int>(res.result_int());
        rec.answer = nlohmann::json::parse(res.body(), nullptr, false);
        if (rec.answer.is_discarded()) rec.answer = nullptr;
        rec.ok = res.result() == http::status::ok;
        if (!rec.ok) rec.error = "answered HTTP " + std::to_string(rec.status);
    } else {
        rec.error = err;
    }
    st->count(r.id, rec.ok, r.max);
    if (rec.ok)
        spdlog::info(
            "rebalance: asked {} ({} connections, fair share {:.1f}) to shed to {} (at most {} "
            "at {}/s): {}",
            r.id, r.connections, r.fair, r.target, r.max, r.rate, res.body());
    else
        spdlog::warn("rebalance: POST /rebalance to {} at {} failed: {}{}", r.id,
                     r.admin.to_string(), rec.error, err.empty() ? " " + res.body() : "");
    std::lock_guard lk(st->mu);
    st->last[r.id] = std::move(rec);
}

nlohmann::json rebalancer::status_json() const {
    std::lock_guard lk(st_->mu);
    const auto& s = st_->settings;
    return {{"enabled", s.enabled},
            {"threshold", s.threshold},
            {"rate", s.rate},
            {"max_per_request", s.max_per_request},
            {"interval_ms", s.interval.count()},
            {"rounds", st_->rounds->value()},
            {"last_round_ms",
             st_->last_round_ms ? nlohmann::json(*st_->last_round_ms) : nlohmann::json(nullptr)},
            {"triggered", st_->last_triggered},
            {"balanced_total", st_->last_floor}};
}

std::map<std::string, nlohmann::json> rebalancer::gateway_json() const {
    rebalance_settings s;
    {
        std::lock_guard lk(st_->mu);
        s = st_->settings;
    }
    auto snapshot = st_->fleet.load_snapshot();
    uint64_t floor = 0;
    {
        std::lock_guard lk(st_->mu);
        floor = st_->totals.max(st_->clock.now());
    }
    auto plan = plan_rebalance(snapshot, s, floor);
    std::map<std::string, nlohmann::json> out;
    std::lock_guard lk(st_->mu);
    for (auto& g : snapshot) {
        nlohmann::json j;
        auto f = plan.fair.find(g.id);
        j["fair_share"] = f == plan.fair.end() ? nlohmann::json(nullptr)
                                               : nlohmann::json(std::round(f->second * 10) / 10);
        auto l = st_->last.find(g.id);
        if (l == st_->last.end()) {
            j["last_rebalance"] = nullptr;
        } else {
            const auto& r = l->second;
            j["last_rebalance"] = {
                {"at_ms", r.at_ms},
                {"connections", r.connections},
                {"fair_share", std::round(r.fair * 10) / 10},
                {"target", r.target},
                {"max", r.max},
                {"rate", r.rate},
                {"result", r.ok ? "ok" : "failed"},
                {"status", r.status ? nlohmann::json(r.status) : nlohmann::json(nullptr)},
                {"answer", r.answer},
                {"error", r.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.error)}};
        }
        out[g.id] = std::move(j);
    }
    return out;
}

}  // namespace imgate::disp
