// imgate-gateway: long-lived client connections (login, heartbeats, 1:1 and room messages), an
// admin API pulled by the dispatcher, and the cluster layer to the other gateways.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "common/daemon.hpp"
#include "common/logging.hpp"
#include "gateway/app.hpp"
#include "gateway/gateway_config.hpp"

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
    try {
        imgate::gw::gateway_app app(std::move(cfg));
        app.start();
        if (!ready_file.empty() && !imgate::write_ready_file(ready_file, app.ready_json())) {
            spdlog::critical("cannot write the ready file {}", ready_file);
            return 1;
        }
        imgate::daemon_control::notify_ready("serving");
        app.run();
    } catch (const std::exception& e) {
        spdlog::critical("start-up failed: {}", e.what());
        return 1;
    }
    return 0;
}
