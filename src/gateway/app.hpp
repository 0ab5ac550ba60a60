#pragma once
// The gateway process: owns the io_context and its worker threads, the signals (SIGTERM/SIGINT
// stop gracefully, SIGHUP reloads) and the gateway itself. main() only parses the command line,
// loads the configuration and calls start(), then run().
#include <boost/asio/io_context.hpp>
#include <string>

#include "common/config_info.hpp"
#include "common/daemon.hpp"
#include "common/metrics.hpp"
#include "gateway/gateway_config.hpp"
#include "gateway/server.hpp"

namespace imgate::gw {

// Owns everything one gateway process runs on; see gateway_server for what it runs.
class gateway_app {
  public:
    explicit gateway_app(gateway_config cfg);

    // Binds the client, admin and RPC listeners (throws on failure) and starts watching signals.
    void start();
    // Runs the event loop on `workers` threads until a graceful stop completes.
    void run();
    // {"id","client","admin","rpc","pid"}: what --ready-file gets once start() returned.
    std::string ready_json() const;
    unsigned workers() const { return workers_; }

  private:
    void stop();

    unsigned workers_;
    asio::io_context io_;
    metrics_registry metrics_;
    config_info config_info_;  // before server_: built from cfg before server_ takes it
    gateway_server server_;
    daemon_control control_;
};

}  // namespace imgate::gw
