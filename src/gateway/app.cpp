#include "gateway/app.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

namespace imgate::gw {

namespace {
config_files files_of(const gateway_config& c) {
    config_files f{c.file, c.fleet_file, c.token_secret_files};
    if (!c.admin_token_file.empty()) f.secrets.push_back(c.admin_token_file);
    if (!c.fleet.cluster_secret_file.empty()) f.secrets.push_back(c.fleet.cluster_secret_file);
    return f;
}

std::string hostport(const asio::ip::tcp::endpoint& ep) {
    return ep.address().to_string() + ":" + std::to_string(ep.port());
}
}  // namespace

gateway_app::gateway_app(gateway_config cfg)
    : workers_(worker_threads(cfg)),
      io_(static_cast<int>(workers_)),
      config_info_(
          metrics_, files_of(cfg),
          [file = cfg.file, id = cfg.id] { return files_of(load_gateway_config(file, id)); }),
      server_(io_, std::move(cfg), metrics_),
      control_(
          io_, [this] { stop(); },
          [this] {
              if (server_.reload()) config_info_.reloaded();
          }) {}

void gateway_app::start() {
    server_.start();
    control_.start();
}

void gateway_app::stop() {
    server_.stop([this] {
        spdlog::info("stopped");
        io_.stop();
    });
}

void gateway_app::run() {
    spdlog::info("gateway {} ready with {} worker threads", server_.id(), workers_);
    std::vector<std::thread> threads;
    for (unsigned i = 1; i < workers_; ++i) threads.emplace_back([this] { io_.run(); });
    io_.run();
    for (auto& t : threads) t.join();
    control_.stop_watching();
}

std::string gateway_app::ready_json() const {
    nlohmann::json j{{"id", server_.id()},
                     {"client", hostport(server_.client_endpoint())},
                     {"admin", hostport(server_.admin_endpoint())},
                     {"rpc", server_.rpc_endpoint()},
                     {"pid", ::getpid()}};
    // Every transport's bound address by name ("tcp", "tls", "ws", "wss"), so tests and
    // scripts started on port 0 find each listener.
    for (auto t : all_transports)
        if (auto ep = server_.client_endpoint(t)) j[to_string(t)] = hostport(*ep);
    return j.dump();
}

}  // namespace imgate::gw
