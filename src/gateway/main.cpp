// imgate-gateway: long-lived client connections (login, heartbeats, 1:1 and room messages), an
// admin API pulled by the dispatcher, and the cluster layer to the other gateways.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "common/daemon.hpp"
#include "common/logging.hpp"
#include "common/metrics.hpp"
#include "gateway/gateway_config.hpp"
#include "gateway/server.hpp"

namespace {


std::string hostport(const boost::asio::ip::tcp::endpoint& ep) {
    return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{"imgate-gateway: long-connection IM gateway"};
    std::string config_file;
    std::string id;
    std::string ready_file;
    bool check = false;
    bool version = false;
    cli.add_option("-c,--config", config_file, "gateway.yaml");
    cli.add_option("--id", id, "this gateway's id in the fleet (overrides id: in the file)");
    cli.add_flag("--check-config", check, "validate the configuration (and its fleet) and exit");
    cli.add_flag("--version", version, "print the version and exit");
    cli.add_option("--ready-file", ready_file,
                   "once listening, write {\"id\",\"client\",\"admin\",\"rpc\",\"pid\"} JSON here");
    CLI11_PARSE(cli, argc, argv);

    if (version) {
        std::printf("imgate-gateway %s\n", IMGATE_VERSION);
        return 0;
    }
    if (config_file.empty()) {
        std::fprintf(stderr, "imgate-gateway: --config FILE is required (see --help)\n");
        return 2;
    }
    imgate::gw::gateway_config cfg;
    try {
        cfg = imgate::gw::load_gateway_config(config_file, id);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "imgate-gateway: invalid configuration: %s\n", e.what());
        return 1;
    }
    if (check) {
        std::printf("%s: OK (gateway %s, %zu gateways in %s)\n", config_file.c_str(),
                    cfg.id.c_str(), cfg.fleet.gateways.size(), cfg.fleet_file.c_str());
        return 0;
    }

    imgate::setup_logging(cfg.log, "gateway");
    unsigned workers =
        cfg.workers ? cfg.workers : std::max(1u, std::thread::hardware_concurrency());
    try {
        boost::asio::io_context io(static_cast<int>(workers));
        imgate::metrics_registry metrics;
        imgate::gw::gateway_server server(io, cfg, metrics);
        server.start();

        imgate::daemon_control control(
            io,
            [&] {
                server.stop([&] {
                    spdlog::info("stopped");
                    io.stop();
                });
            },
            [&] { server.reload(); });
        control.start();

        if (!ready_file.empty()) {
            nlohmann::json j{{"id", cfg.id},
                             {"client", hostport(server.client_endpoint())},
                             {"admin", hostport(server.admin_endpoint())},
                             {"rpc", server.rpc_endpoint()},
                             {"pid", ::getpid()}};
            if (!imgate::write_ready_file(ready_file, j.dump())) {
                spdlog::critical("cannot write the ready file {}", ready_file);
                return 1;
            }
        }
        imgate::daemon_control::notify_ready("serving");
        spdlog::info("gateway {} ready with {} worker threads", cfg.id, workers);

        std::vector<std::thread> threads;
        for (unsigned i = 1; i < workers; ++i) threads.emplace_back([&io] { io.run(); });
        io.run();
        for (auto& t : threads) t.join();
        control.stop_watching();
    } catch (const std::exception& e) {
        spdlog::critical("start-up failed: {}", e.what());
        return 1;
    }
    return 0;
}
