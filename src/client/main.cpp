// `imgate`: the reference client, token tool and load generator. This file only declares the
// command line; the subcommands live in commands.cpp and load.cpp.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "client/cli_options.hpp"
#include "client/commands.hpp"
#include "client/load.hpp"

using namespace imgate::client;

namespace {

void add_session_options(CLI::App* c, session_args& s) {
    c->add_option("--user,-u", s.user, "user id to log in as (default: the token's sub)");
    c->add_option("--device,-d", s.device, "device id (default: <command>-<pid>)");
    c->add_option("--token,-t", s.token, "a JWT to log in with (default: minted from the secret)");
    c->add_option("--secret-file", s.secret_file,
                  "HS256 secret to mint the token (default: $IMGATE_TOKEN_SECRET_FILE or "
                  "./config/local/token.secret)");
    c->add_option("--ttl", s.ttl, "lifetime of a minted token")->capture_default_str();
    auto* g =
        c->add_option("--gateway,-g", s.gateway, "connect to this gateway host:port directly");
    auto* d = add_dispatcher_option(c, s.dispatcher)->capture_default_str();
    g->excludes(d);
    c->add_option("--region", s.region, "preferred region, passed to the dispatcher");
    c->add_option("--connect-timeout", s.connect_timeout,
                  "connect timeout per gateway (and again for the TLS/WebSocket handshake)")
        ->capture_default_str();
    add_transport_options(c, s.transport);
    c->add_flag("--json", s.json, "JSON lines on stdout instead of text");
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"imgate: client, token tool and load generator for the imgate gateways"};
    app.set_version_flag("--version,-V", std::string("imgate ") + IMGATE_VERSION);
    app.require_subcommand(1);
    app.fallthrough(false);

    token_args tk;
    auto* token = app.add_subcommand("token", "print an HS256 JWT for a user");
    token->add_option("--secret-file", tk.secret_file,
                      "HS256 secret (default: $IMGATE_TOKEN_SECRET_FILE or "
                      "./config/local/token.secret)");
    token->add_option("--user,-u", tk.user, "the sub claim")->required();
    token->add_option("--device,-d", tk.device, "the dev claim (optional)");
    token->add_option("--ttl", tk.ttl, "lifetime: seconds or 30m, 1h, 7d")->capture_default_str();

    get_gateway_args gg;
    auto* getgw =
        app.add_subcommand("get-gateway", "ask the dispatcher for a gateway (GET /get-tcp-ip)");
    add_dispatcher_option(getgw, gg.dispatcher)->capture_default_str();
    getgw->add_option("--user,-u", gg.user, "user id (for affinity)");
    getgw->add_option("--region", gg.region, "preferred region");
    getgw->add_option("--exclude", gg.exclude, "comma-separated gateway ids to avoid");
    add_transport_options(getgw, gg.transport, true);

    listen_args la;
    auto* listen = app.add_subcommand(
        "listen", "log in, join rooms and print every message received (acking each one)");
    add_session_options(listen, la.s);
    listen->add_option("--room,-r", la.rooms, "room to join (repeatable)");
    listen->add_option("--count,-n", la.count, "exit 0 after this many messages");
    listen->add_option("--timeout", la.timeout, "stop after this long (e.g. 30s)");

    send_args sa;
    std::string send_text_opt;
    auto* send = app.add_subcommand("send", "log in, send one message and print the send result");
    add_session_options(send, sa.s);
    auto* to = send->add_option("--to", sa.to, "recipient user id");
    auto* room = send->add_option("--room,-r", sa.room, "room id");
    to->excludes(room);
    send->add_option("text", sa.text, "the message text");
    send->add_option("--text", send_text_opt, "the message text (instead of the argument)");
    send->add_option("--wait-receipt", sa.wait_receipt,
                     "after a delivered result, wait this long for the delivery receipts");
    send->add_option("--timeout", sa.timeout, "bound on the whole command")->capture_default_str();

    push_args pa;
    auto* push = app.add_subcommand(
        "push", "push a message from the backend (POST /push on a gateway admin)");
    push->add_option("--admin", pa.admin, "gateway admin listener host:port")->required();
    push->add_option("--admin-token-file", pa.admin_token_file,
                     "admin bearer token (default: $IMGATE_ADMIN_TOKEN_FILE or "
                     "./config/local/admin.token)");
    auto* pu = push->add_option("--user,-u", pa.user, "push to this user");
    auto* pr = push->add_option("--room,-r", pa.room, "push to this room");
    pu->excludes(pr);
    push->add_option("text", pa.text, "the payload")->required();
    push->add_option("--timeout", pa.timeout, "HTTP timeout")->capture_default_str();

    listen_args ca;
    std::string chat_to, chat_room;
    auto* chat = app.add_subcommand(
        "chat", "interactive: each stdin line is sent, every message received is printed");
    add_session_options(chat, ca.s);
    auto* cto = chat->add_option("--to", chat_to, "chat with this user");
    auto* croom = chat->add_option("--room,-r", chat_room, "chat in this room");
    cto->excludes(croom);

    load_params lp;
    std::string gateways, load_secret, duration = "10s";
    std::vector<std::string> load_dispatcher;
    bool load_json = false, quiet = false;
    auto* load = app.add_subcommand(
        "load", "bounded load generator against a LOCAL fleet (loopback targets only)");
    auto* lg = load->add_option("--gateways", gateways, "comma-separated gateway host:port list");
    auto* ld = add_dispatcher_option(load, load_dispatcher, " (instead of --gateways)");
    lg->excludes(ld);
    load->add_option("--clients,-c", lp.clients,
                     "sessions (2..20000; with --shard the whole run's, up to 200000)")
        ->capture_default_str();
    load->add_option("--rooms", lp.rooms, "rooms; client i joins room i % rooms")
        ->capture_default_str();
    load->add_option("--rate", lp.rate, "sends per second, all clients together")
        ->capture_default_str();
    load->add_option("--duration", duration, "sending time (<= 600 s)")->capture_default_str();
    load->add_option("--payload-bytes", lp.payload_bytes, "payload size")->capture_default_str();
    load->add_option("--room-share", lp.room_share, "fraction of sends that go to a room")
        ->capture_default_str();
    load->add_option("--connect-concurrency", lp.connect_concurrency, "logins in flight")
        ->capture_default_str();
    load->add_option("--source-spread", lp.source_spread,
                     "bind clients to 127.0.0.1..127.0.0.N in turn (0: off)")
        ->capture_default_str();
    std::vector<std::string> allow_targets;
    load->add_option("--allow-target", allow_targets,
                     "CIDR: also target this private network, which one of this machine's "
                     "interfaces must be on (e.g. make run-hosts' 10.77.0.0/24); repeatable; "
                     "turns --source-spread off");
    std::string shard;
    load->add_flag("--reconnect", lp.reconnect,
                   "hold the sessions for --duration and log in again through the dispatcher "
                   "after every loss (needs --dispatcher; --rate may be 0)");
    load->add_option("--reconnect-concurrency", lp.reconnect_concurrency,
                     "reconnects (dispatcher round and logins) in flight at once")
        ->capture_default_str();
    load->add_option("--shard", shard,
                     "I/N: run clients [I*C/N, (I+1)*C/N) of --clients C (N <= 64, share <= "
                     "20000; --clients up to 200000)");
    load->add_option("--run-id", lp.run_id,
                     "user-id prefix shared by the shards of one run (1..32 of [A-Za-z0-9_-]; "
                     "default random)");
    load->add_option("--events", lp.events_file,
                     "append one JSON line per login, lost session and failed attempt");
    load->add_option("--status-file", lp.status_file,
                     "rewrite this JSON file every 200 ms with the live counts");
    load->add_option(
        "--secret-file", load_secret,
        "HS256 secret (default: $IMGATE_TOKEN_SECRET_FILE or ./config/local/token.secret)");
    transport_args load_transport;
    add_transport_options(load, load_transport);
    load->add_flag("--json", load_json, "print the report as one JSON object");
    load->add_flag("--quiet,-q", quiet, "no progress lines on stderr");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    if (*token) return run_token(tk);
    if (*getgw) return run_get_gateway(gg);
    if (*listen) return run_listen(la);
    if (*send) {
        if (!send_text_opt.empty()) {
            if (!sa.text.empty()) {
                std::fprintf(stderr,
                             "imgate: give the text either as an argument or with --text\n");
                return 1;
            }
            sa.text = send_text_opt;
        }
        return run_send(sa);
    }
    if (*push) return run_push(pa);
    if (*chat) return run_chat(ca, chat_to, chat_room);
    if (*load) {
        for (auto& g : split_list(gateways)) {
            auto ep = imgate::parse_endpoint(g);
            if (!ep) {
                std::fprintf(stderr, "imgate load: --gateways: bad host:port \"%s\"\n", g.c_str());
                return 1;
            }
            lp.gateways.push_back(*ep);
        }
        for (auto& v : load_dispatcher)
            for (auto& u : split_list(v)) lp.dispatchers.push_back(u);
        if (lp.reconnect && lp.dispatchers.empty()) {
            std::fprintf(stderr, "imgate load: --reconnect needs --dispatcher URL\n");
            return 1;
        }
        if (!shard.empty()) {
            auto sh = parse_shard(shard);
            if (!sh) {
                std::fprintf(stderr, "imgate load: --shard: expected I/N like 0/4\n");
                return 1;
            }
            lp.shard_index = sh->first;
            lp.shard_count = sh->second;
        }
        if (lp.gateways.empty() && lp.dispatchers.empty())
            lp.dispatchers.push_back("http://127.0.0.1:8080");
        if (!allow_targets.empty()) {
            auto err =
                parse_target_networks(allow_targets, local_interface_addresses(), lp.allowed);
            if (!err.empty()) {
                std::fprintf(stderr, "imgate load: %s\n", err.c_str());
                return 1;
            }
        }
        std::string terr;
        auto via = chosen_transport(load_transport, &terr);
        if (!via) {
            std::fprintf(stderr, "imgate load: %s\n", terr.c_str());
            return 1;
        }
        lp.via = *via;
        lp.ca_file = load_transport.ca_file;
        lp.insecure = load_transport.insecure;
        auto d = parse_duration(duration);
        if (!d) {
            std::fprintf(stderr, "imgate load: --duration: expected a duration like 10s\n");
            return 1;
        }
        lp.duration_s = d->count() / 1000.0;
        auto secret = default_secret_file(load_secret);
        if (secret.empty()) {
            std::fprintf(stderr,
                         "imgate load: no token secret: give --secret-file or set "
                         "IMGATE_TOKEN_SECRET_FILE\n");
            return 1;
        }
        return run_load(lp, secret, load_json, quiet);
    }
    return 1;
}
