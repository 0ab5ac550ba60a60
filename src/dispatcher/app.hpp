#pragma once
// The dispatcher process: owns the io_context, the fleet state, the poller, the public, optional
// HTTPS and admin listeners (with the HTTPS certificate), and reload. main() only parses the
// command line and calls run().
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/config_info.hpp"
#include "common/daemon.hpp"
#include "common/http_server.hpp"
#include "common/metrics.hpp"
#include "common/tls.hpp"
#include "dispatcher/dispatcher_config.hpp"
#include "dispatcher/fleet_state.hpp"
#include "dispatcher/poller.hpp"
#include "dispatcher/query.hpp"
#include "dispatcher/rebalance.hpp"

namespace imgate::disp {

class dispatcher_app {
  public:
    explicit dispatcher_app(dispatcher_config cfg);
    ~dispatcher_app();

    // Loads the HTTPS certificate if configured, binds the listeners (throws on failure) and
    // starts pulling.
    void start();
    // Runs the event loops, one thread each (cfg.threads in all), until stopped.
    void run();
    void stop();
    // Re-reads the config file; keeps the old config on any error.
    bool reload();

    endpoint public_endpoint() const;
    endpoint admin_endpoint() const;
    std::optional<endpoint> https_endpoint() const;  // none without `https:`
    std::string ready_json() const;

  private:
    struct runtime {  // what request handlers read; replaced whole on reload
        region_table regions;
        std::set<std::string> known_regions;
        size_t max_uid_length = 128;
        size_t max_exclude = 32;
        size_t alternates = 2;
        // What the 503's retry hint is based on: the poll interval rounded up to whole seconds.
        int64_t retry_base_ms = 1000;
        reconnect_policy reconnect;  // handed out in every 200 answer
        std::string admin_token;     // empty: the mutating admin endpoints answer 403
        decision_log_settings decision_log;
    };
    std::shared_ptr<const runtime> rt() const;
    // rt() for the request path: this thread's copy, refreshed after a reload.
    const runtime& hot_rt() const;
    void install(const dispatcher_config& c);
    http_response get_tcp_ip(const http_request_ctx& ctx);
    std::string status_body() const;
    http_response healthz() const;
    void add_public_routes(http_server& s);
    std::vector<boost::asio::io_context*> listener_shards();
    // SIGHUP with `https:`: new handshakes get the certificate and key now on disk. False (and
    // error set) when they do not load; the running certificate stays.
    bool reload_certificate(const dispatcher_config& next, std::string& error);
    // POST /gateways/{weight,disable,enable}?id=...: runtime overrides (docs/admin-api.md).
    http_response admin_change(const http_request_ctx& ctx, const char* action);
    void log_decision(const http_request_ctx& ctx, const std::string& uid,
                      const std::string& region, transport via,
                      const std::vector<pick_target>& targets, const pick_explanation& why) const;

    dispatcher_config cfg_;
    // Thread 0's: the admin listener, poller, rebalancer, signals, and the public and HTTPS
    // listeners' first sockets.
    boost::asio::io_context io_;
    // One per further thread (threads - 1), each run by its own thread: another SO_REUSEPORT
    // socket of the public and HTTPS listeners and the connections it accepts. Declared after
    // io_: destroyed first, while the servers' sweep timers on io_ still exist.
    std::vector<std::unique_ptr<boost::asio::io_context>> shards_;
    metrics_registry metrics_;
    config_info config_info_;
    system_clock_source clock_;
    fleet_state fleet_;
    poller poller_;
    rebalancer rebalancer_;
    std::shared_ptr<http_server> public_;
    std::shared_ptr<http_server> admin_;
    std::shared_ptr<http_server> https_;         // null without `https:`
    std::shared_ptr<tls_context_holder> certs_;  // the HTTPS listener's certificate
    daemon_control control_;
    mutable std::mutex mu_;
    std::shared_ptr<const runtime> rt_;
    std::mutex rng_mu_;
    std::mt19937_64 rng_;  // spreads the 503 retry hints
    std::chrono::steady_clock::time_point started_;
    int64_t last_reload_ms_ = 0;
    bool last_reload_ok_ = true;
    std::string last_reload_error_;
    counter* no_gateway_;
    counter* reloads_ok_;
    counter* reload_failures_;
    counter* not_ready_;
};

}  // namespace imgate::disp
