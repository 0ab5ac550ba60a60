#pragma once
// Command-line options shared by several `imgate` commands, declared once so main.cpp and the
// unit tests parse them the same way (CLI11 is header-only).
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "client/logic.hpp"

namespace imgate::client {

// --dispatcher URL: repeatable, and one value may be a comma-separated list; the URLs are asked
// in turn when one fails (dispatcher_list.hpp). One URL per occurrence, so a positional argument
// after it (send's text) is never taken for a second URL.
inline CLI::Option* add_dispatcher_option(CLI::App* c, std::vector<std::string>& urls,
                                          const std::string& extra_help = "") {
    return c
        ->add_option("--dispatcher", urls,
                     "dispatcher URL; repeat it (or give a comma-separated list) to fail over "
                     "to the next one when a dispatcher is down, errs or has no gateway" +
                         extra_help)
        ->allow_extra_args(false);
}

// --tls / --ws / --wss (mutually exclusive; default tcp), --ca FILE, --insecure; with
// with_name, also --transport NAME (get-gateway), which may repeat one of the flags but not
// contradict it (chosen_transport checks that).
inline void add_transport_options(CLI::App* c, transport_args& t, bool with_name = false) {
    auto* tls = c->add_flag("--tls", t.tls, "connect to the gateway over TLS (its tls port)");
    auto* ws = c->add_flag("--ws", t.ws, "connect over WebSocket (one binary message per frame)");
    auto* wss = c->add_flag("--wss", t.wss, "connect over WebSocket inside TLS");
    tls->excludes(ws, wss);
    ws->excludes(tls, wss);
    wss->excludes(tls, ws);
    if (with_name)
        c->add_option("--transport", t.name, "tcp, tls, ws or wss (like the flags)")
            ->check(CLI::IsMember({"tcp", "tls", "ws", "wss"}));
    c->add_option("--ca", t.ca_file,
                  "PEM CA certificates to verify TLS servers against (gateway tls/wss, https "
                  "dispatcher); default: the system store")
        ->check(CLI::ExistingFile);
    c->add_flag("--insecure", t.insecure,
                "do not verify TLS certificates: for local tests only (prints a warning)");
}

}  // namespace imgate::client
