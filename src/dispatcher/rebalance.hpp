#pragma once
// Rebalancing: the socket-free planner that decides which gateways are asked to shed sessions
// (plan_rebalance), and the rebalancer that runs it every rebalance.interval on the dispatcher's
// io_context and sends POST /rebalance to each overfull gateway's admin address
// (docs/configuration.md `rebalance:`, docs/admin-api.md of the gateway).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/metrics.hpp"
#include "dispatcher/dispatcher_config.hpp"
#include "dispatcher/fleet_state.hpp"

namespace imgate::disp {

// One POST /rebalance the planner wants sent.
struct rebalance_request {
    std::string id;
    endpoint admin;
    uint64_t connections = 0;  // what the gateway reported at the last pull
    double fair = 0;           // its fair share
    uint64_t target = 0;       // ceil(fair)
    uint64_t max = 0;          // min(max_per_request, ceil(connections - fair)), >= 1
    double rate = 0;
};

struct rebalance_plan {
    // Fair share of every gateway that can take clients and reported its connections; the other
    // gateways have none (they take no part in the balance).
    std::map<std::string, double> fair;
    // Some gateway out of slow start is below its fair share: only then are requests made.
    bool triggered = false;
    std::vector<rebalance_request> requests;
};

// Fair share over the gateways in state `up` (not draining, overloaded, disabled, degraded or
// down) with a known connection count and weight > 0: fair_i = (sum c) * w_i / (sum w), with
// w_i the weight in force (runtime override, else the fleet file). When at least one of them is
// out of slow start and below its fair share, every one with c_i > fair_i * (1 + threshold) gets
// a request. `enabled` is not looked at: the caller decides whether to send.
//
// total_floor: the fair shares use max(sum c, total_floor). Clients a gateway has just
// redirected are connected nowhere until they log in again (their hint is seconds): counting
// only the connected ones would shrink every fair share while a move is under way, and the next
// request would ask for a lower target, pushing the gateway below its real share.
rebalance_plan plan_rebalance(const std::vector<gateway_load>& gateways,
                              const rebalance_settings& s, uint64_t total_floor = 0);

// The largest total of connected clients seen over a sliding window: the planner's total_floor.
// A falling total (clients leaving, or in transit between gateways) is believed only once it has
// stayed low for the whole window. Socket-free; the caller passes the time.
class total_window {
  public:
    explicit total_window(std::chrono::milliseconds span) : span_(span) {}
    void set_span(std::chrono::milliseconds span) { span_ = span; }
    void add(steady_time now, uint64_t total);
    uint64_t max(steady_time now) const;
    // The window for a rebalance interval: ten seconds (five times the default 1 s + 1 s hint of
    // a redirected client), or two intervals when longer.
    static std::chrono::milliseconds span_for(std::chrono::milliseconds interval) {
        return std::max(std::chrono::milliseconds(10000), 2 * interval);
    }

  private:
    std::chrono::milliseconds span_;
    std::vector<std::pair<steady_time, uint64_t>> samples_;  // oldest first
};

// The total the planner balances: connections of the gateways in its pool.
uint64_t pool_total(const std::vector<gateway_load>& gateways);

// The body of one POST /rebalance: {"max":M,"rate":R,"target":T} (rate an integer when whole).
std::string rebalance_body(const rebalance_request& r);

// Drives rebalancing: every `interval` evaluates the plan on fleet_state's latest pulls and, when
// enabled, sends each request (in parallel, each with its own deadline) with the admin token.
// Owns the timer, the last request per gateway (for /status) and the rebalance metrics.
class rebalancer {
  public:
    rebalancer(boost::asio::any_io_executor ex, fleet_state& fleet, metrics_registry& metrics,
               const clock_source& clock);
    ~rebalancer();

    // Settings and token apply from the next evaluation (SIGHUP).
    void configure(const rebalance_settings& s, std::string admin_token);
    void start();
    void stop();

    // {"enabled":..,"threshold":..,"rate":..,"max_per_request":..,"interval_ms":..,
    //  "rounds":N,"last_round_ms":..|null,"triggered":bool}
    nlohmann::json status_json() const;
    // Per gateway id: {"fair_share":x|null,"last_request":{...}|null}, for /status and the
    // dashboard; the fair shares are computed now from the latest pulls.
    std::map<std::string, nlohmann::json> gateway_json() const;

  private:
    struct shared;
    static boost::asio::awaitable<void> run(std::shared_ptr<shared> st);
    static boost::asio::awaitable<void> send(std::shared_ptr<shared> st, rebalance_request r,
                                             std::string token);
    std::shared_ptr<shared> st_;
};

}  // namespace imgate::disp
