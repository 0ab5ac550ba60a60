// imgate-dispatcher: hands each client a gateway (GET /get-tcp-ip) from health and load it pulls
// from the fleet.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "common/daemon.hpp"
#include "common/logging.hpp"
#include "common/tls.hpp"
#include "dispatcher/app.hpp"

int main(int argc, char** argv) {
    CLI::App cli{"imgate-dispatcher: GET /get-tcp-ip from pulled gateway health and load"};
    std::string config_file;
    std::string ready_file;
    bool check = false;
    bool version = false;
    cli.add_option("-c,--config", config_file, "dispatcher.yaml");
    cli.add_flag("--check-config", check, "validate the configuration (and its fleet) and exit");
    cli.add_flag("--version", version, "print the version and exit");
    cli.add_option("--ready-file", ready_file,
                   "once listening, write {\"public\",\"admin\",[\"https\",]\"pid\"} JSON here");
    CLI11_PARSE(cli, argc, argv);

    if (version) {
        std::printf("imgate-dispatcher %s\n", IMGATE_VERSION);
        return 0;
    }
    if (config_file.empty()) {
        std::fprintf(stderr, "imgate-dispatcher: --config FILE is required (see --help)\n");
        return 2;
    }
    imgate::disp::dispatcher_config cfg;
    try {
        cfg = imgate::disp::load_dispatcher_config(config_file);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "imgate-dispatcher: invalid configuration: %s\n", e.what());
        return 1;
    }
    if (check) {
        std::string https;
        if (cfg.https.enabled()) {
            // The certificate is part of the configuration: load it as start-up would.
            imgate::tls_cert_info info;
            try {
                imgate::make_server_tls_context(cfg.https.tls, &info);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "imgate-dispatcher: invalid configuration: https: %s\n",
                             e.what());
                return 1;
            }
            https = "; https " + cfg.https.listen->to_string() + " with " + info.subject +
                    ", not after " + info.not_after;
        }
        std::printf("%s: OK (%zu gateways from %s%s)\n", config_file.c_str(),
                    cfg.fleet.gateways.size(), cfg.fleet_file.c_str(), https.c_str());
        return 0;
    }

    imgate::setup_logging(cfg.log, "dispatcher");
    try {
        imgate::disp::dispatcher_app app(std::move(cfg));
        app.start();
        if (!ready_file.empty() && !imgate::write_ready_file(ready_file, app.ready_json())) {
            spdlog::critical("cannot write the ready file {}", ready_file);
            return 1;
        }
        imgate::daemon_control::notify_ready("dispatching");
        app.run();
        spdlog::info("stopped");
    } catch (const std::exception& e) {
        spdlog::critical("start-up failed: {}", e.what());
        return 1;
    }
    return 0;
}
