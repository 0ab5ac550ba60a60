#pragma once
// Pulls every gateway's GET /status on its admin address: one loop per gateway, all in parallel,
// each over a kept-alive connection with a deadline on the whole exchange and a jittered
// interval. Outcomes go to fleet_state, which owns every decision.
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/metrics.hpp"
#include "dispatcher/dispatcher_config.hpp"
#include "dispatcher/fleet_state.hpp"

namespace imgate::disp {

class poller {
  public:
    poller(boost::asio::any_io_executor ex, fleet_state& fleet, metrics_registry& metrics);
    ~poller();

    void set_settings(const poll_settings& s);
    // Starts loops for gateways that have none, stops loops of removed gateways and restarts
    // those whose admin address changed.
    void sync();
    void stop();

    static constexpr size_t max_status_body = 256 * 1024;

  private:
    struct loop;
    boost::asio::awaitable<void> run(std::shared_ptr<loop> l);
    boost::asio::awaitable<std::string> pull_once(loop& l, std::string& body);
    void stop_loop(const std::shared_ptr<loop>& l);

    boost::asio::any_io_executor ex_;
    fleet_state& fleet_;
    histogram* latency_;
    std::atomic<int64_t> interval_ms_{500};
    std::atomic<int64_t> fast_interval_ms_{100};
    std::atomic<int64_t> timeout_ms_{300};
    std::atomic<double> jitter_{0.1};
    std::mutex mu_;
    std::map<std::string, std::shared_ptr<loop>> loops_;
};

}  // namespace imgate::disp
