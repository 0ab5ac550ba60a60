#include "client/load.hpp"

#include <sys/resource.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <random>
#include <sstream>
#include <unordered_map>

#include "client/connector.hpp"
#include "client/session.hpp"
#include "common/awaitable.hpp"
#include "common/config.hpp"
#include "common/daemon.hpp"
#include "common/jwt.hpp"

namespace imgate::client {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

void note(bool quiet, const std::string& s) {
    if (quiet) return;
    std::fprintf(stderr, "imgate load: %s\n", s.c_str());
    std::fflush(stderr);
}

void raise_fd_limit(uint32_t clients) {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = rlim_t(clients) + 256;
    if (rl.rlim_cur >= want) return;
    rl.rlim_cur = std::min(want, rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
}

std::string fmt1(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", v);
    return b;
}

struct pending_send {
    uint64_t sent_ns;
    uint32_t client;
};

// Owns the run: the clients, the pending sends and the counters.
struct load_run {
    load_run(asio::io_context& i, const load_params& pp, std::string sec, bool q)
        : io(i), p(pp), secret(std::move(sec)), quiet(q) {}

    asio::io_context& io;
    const load_params& p;
    std::string secret;
    bool quiet;
    std::shared_ptr<const tls_client> tls;  // one context for every client (tls, wss, https)
    clock::time_point epoch = clock::now();
    std::mt19937_64 rng{std::random_device{}()};
    std::string prefix;
    std::vector<std::shared_ptr<client_session>> sessions;
    std::vector<uint32_t> live;  // indexes of connected clients
    std::unordered_map<uint64_t, pending_send> pending;
    uint64_t next_cmid = 1;
    uint32_t next_connect = 0;
    uint32_t connect_done = 0;
    bool stopping = false;
    bool interrupted = false;
    load_report rep;

    uint64_t now_ns() const {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - epoch).count();
    }
    std::string user(uint32_t i) const { return prefix + "u" + std::to_string(i); }
    std::string room(uint32_t i) const { return prefix + "r" + std::to_string(i % p.rooms); }

    target_spec target_for(uint32_t i) const {
        target_spec t;
        t.via = p.via;
        t.tls = tls;
        if (!p.gateways.empty()) {
            auto& g = p.gateways[i % p.gateways.size()];
            t.gateway = gateway_addr{"", g.host, g.port, ""};
        } else {
            t.dispatcher = *parse_http_url(p.dispatcher);
        }
        return t;
    }

    asio::awaitable<void> connect_worker() {
        while (!interrupted && next_connect < p.clients) {
            uint32_t i = next_connect++;
            session_options so;
            so.connect_timeout = milliseconds(5000);
            so.handshake_timeout = milliseconds(5000);
            if (p.source_spread)
                so.source = asio::ip::address_v4((127u << 24) | (1 + i % p.source_spread));
            connector conn(io.get_executor(), target_for(i), so, rng());
            conn.guard = [](const gateway_addr& g) -> std::string {
                if (is_loopback_host(g.host)) return "";
                return "refusing gateway " + g.to_string() +
                       " from the dispatcher: the load generator only targets loopback";
            };
            auto now_s = jwt::now_seconds();
            auto token = jwt::sign(jwt::claims{user(i), "load", now_s + 3600}, secret, now_s);
            auto r = co_await conn.connect(user(i), token, clock::now() + milliseconds(15000));
            ++connect_done;
            if (!r.session) {
                ++rep.connect_failed;
                if (rep.first_connect_error.empty()) rep.first_connect_error = r.error;
                continue;
            }
            ++rep.connected;
            sessions[i] = r.session;
            live.push_back(i);
            if (p.rooms) r.session->join(room(i));
            spawn(io, client_loop(i, r.session), "imgate load client");
        }
    }

    asio::awaitable<void> client_loop(uint32_t i, std::shared_ptr<client_session> s) {
        session_events ev;
        ev.on_send_result = [this](const proto::send_result_msg& m) {
            auto it = pending.find(m.client_msg_id);
            if (it == pending.end()) return;  // a late result after the drain: already missing
            rep.send_to_result.add((now_ns() - it->second.sent_ns) / 1000);
            pending.erase(it);
            ++rep.results[proto::to_string(m.status)];
        };
        ev.on_deliver = [this](const proto::deliver_msg& m) {
            ++rep.deliveries;
            if (auto t = read_load_payload(m.payload)) {
                uint64_t now = now_ns();
                if (now >= *t) rep.send_to_deliver.add((now - *t) / 1000);
            }
        };
        ev.on_push = [this](const proto::push_msg&) { ++rep.deliveries; };
        ev.on_receipt = [this](const proto::receipt_msg&) { ++rep.receipts; };
        ev.on_room_result = [this](const proto::room_result_msg& m) {
            if (m.status == proto::code::ok)
                ++rep.rooms_joined;
            else
                ++rep.room_join_errors;
        };
        auto end = co_await s->run(std::move(ev));
        sessions[i].reset();
        if (!stopping) {
            ++rep.sessions_ended;
            ++rep.end_reasons[to_string(end.reason)];
            if (rep.sessions_ended <= 3) note(quiet, "client " + user(i) + ": " + end.describe());
        }
    }

    void send_one() {
        if (live.empty()) return;
        uint32_t i = live[std::uniform_int_distribution<size_t>(0, live.size() - 1)(rng)];
        auto& s = sessions[i];
        bool to_room =
            p.rooms > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < p.room_share;
        uint64_t cmid = next_cmid++;
        uint64_t t = now_ns();
        ++rep.sends;
        to_room ? ++rep.sends_room : ++rep.sends_user;
        std::string target;
        if (to_room) {
            target = room(i);
        } else {
            uint32_t j = std::uniform_int_distribution<uint32_t>(0, p.clients - 2)(rng);
            if (j >= i) ++j;  // anyone but the sender
            target = user(j);
        }
        if (!s || !s->send(to_room ? proto::target_kind::room : proto::target_kind::user, target,
                           make_load_payload(t, p.payload_bytes), cmid)) {
            ++rep.not_queued;
            return;
        }
        pending.emplace(cmid, pending_send{t, i});
    }

    asio::awaitable<void> sleep(milliseconds d) {
        asio::steady_timer t(io);
        t.expires_after(d);
        co_await t.async_wait(use_tuple);
    }

    asio::awaitable<int> run(bool json) {
        sessions.resize(p.clients);
        note(quiet, "connecting " + std::to_string(p.clients) + " clients over " +
                        to_string(p.via) + " to " +
                        (p.gateways.empty() ? p.dispatcher
                                            : std::to_string(p.gateways.size()) + " gateway(s)"));
        uint32_t workers = std::min(p.connect_concurrency, p.clients);
        for (uint32_t w = 0; w < workers; ++w) spawn(io, connect_worker(), "imgate load connect");
        auto connect_deadline = clock::now() + milliseconds(60000 + 10 * int64_t(p.clients));
        while (connect_done < p.clients && !interrupted && clock::now() < connect_deadline)
            co_await sleep(milliseconds(20));
        note(quiet,
             std::to_string(rep.connected) + " connected, " + std::to_string(rep.connect_failed) +
                 " failed" +
                 (rep.first_connect_error.empty() ? "" : " (" + rep.first_connect_error + ")"));
        if (rep.connected == 0 || interrupted) {
            stopping = true;
            for (auto& s : sessions)
                if (s) s->close();
            if (rep.connected == 0) std::fprintf(stderr, "imgate load: no client connected\n");
            co_return 1;
        }
        // Room joins are answered quickly; wait for them (bounded) so early room sends count.
        if (p.rooms) {
            auto until = clock::now() + milliseconds(5000);
            while (rep.rooms_joined + rep.room_join_errors < rep.connected && clock::now() < until)
                co_await sleep(milliseconds(10));
        }
        note(quiet, "sending for " + fmt1(p.duration_s) + " s at " + fmt1(p.rate) + " sends/s");
        auto start = clock::now();
        auto end = start + std::chrono::duration_cast<clock::duration>(
                               std::chrono::duration<double>(p.duration_s));
        while (!interrupted) {
            auto now = clock::now();
            if (now >= end) break;
            double elapsed = std::chrono::duration<double>(now - start).count();
            auto due = static_cast<uint64_t>(elapsed * p.rate);
            // Catch up at most one second's worth at once so a stall doesn't become a burst.
            uint64_t burst = static_cast<uint64_t>(p.rate) + 1;
            uint64_t n = 0;
            while (rep.sends < due && n++ < burst) send_one();
            co_await sleep(milliseconds(2));
        }
        rep.send_seconds = std::chrono::duration<double>(clock::now() - start).count();
        note(quiet, "sent " + std::to_string(rep.sends) + "; waiting up to 5 s for " +
                        std::to_string(pending.size()) + " outstanding results");
        auto drain_until = clock::now() + milliseconds(5000);
        while (!pending.empty() && clock::now() < drain_until) co_await sleep(milliseconds(10));
        // Give receipts and deliveries of the last sends a short moment too.
        co_await sleep(milliseconds(200));
        rep.missing = pending.size();
        stopping = true;
        for (auto& s : sessions)
            if (s) s->close();
        std::fputs((json ? rep.json(p) : rep.text(p)).c_str(), stdout);
        std::fputc('\n', stdout);
        std::fflush(stdout);
        co_return rep.exit_code();
    }
};

std::string latency_line(const latency_stats& s) {
    if (!s.count()) return "no samples";
    return "p50 " + std::to_string(s.percentile(50)) + "  p90 " + std::to_string(s.percentile(90)) +
           "  p99 " + std::to_string(s.percentile(99)) + "  p99.9 " +
           std::to_string(s.percentile(99.9)) + "  max " + std::to_string(s.max()) + " us (" +
           std::to_string(s.count()) + " samples)";
}

nlohmann::json latency_json(const latency_stats& s) {
    return {{"count", s.count()},      {"mean", s.mean()},        {"p50", s.percentile(50)},
            {"p90", s.percentile(90)}, {"p99", s.percentile(99)}, {"p999", s.percentile(99.9)},
            {"max", s.max()}};
}

}  // namespace

std::string load_report::text(const load_params& p) const {
    std::ostringstream o;
    double secs = send_seconds > 0 ? send_seconds : 1;
    o << "clients      " << clients << " (connected " << connected << ", failed " << connect_failed
      << "), rooms " << p.rooms << " (joined " << rooms_joined << ", join errors "
      << room_join_errors << ")\n";
    o << "sends        " << sends << " in " << fmt1(send_seconds) << " s = " << fmt1(sends / secs)
      << "/s (1:1 " << sends_user << ", room " << sends_room << "), not queued " << not_queued
      << "\n";
    o << "results     ";
    for (auto& [k, v] : results) o << " " << k << " " << v;
    o << "  missing " << missing << "\n";
    o << "deliveries   " << deliveries << " = " << fmt1(deliveries / secs) << "/s, receipts "
      << receipts << "\n";
    o << "send->result  " << latency_line(send_to_result) << "\n";
    o << "send->deliver " << latency_line(send_to_deliver) << "\n";
    if (sessions_ended) {
        o << "sessions ended during the run: " << sessions_ended;
        for (auto& [k, v] : end_reasons) o << " [" << k << " " << v << "]";
        o << "\n";
    }
    std::string s = o.str();
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

std::string load_report::json(const load_params& p) const {
    nlohmann::json j;
    j["params"] = {{"clients", p.clients},
                   {"rooms", p.rooms},
                   {"rate", p.rate},
                   {"duration_s", p.duration_s},
                   {"payload_bytes", p.payload_bytes},
                   {"room_share", p.room_share}};
    j["connected"] = connected;
    j["connect_failed"] = connect_failed;
    j["rooms_joined"] = rooms_joined;
    j["send_seconds"] = send_seconds;
    j["sends"] = sends;
    j["sends_user"] = sends_user;
    j["sends_room"] = sends_room;
    j["not_queued"] = not_queued;
    j["results"] = results;
    j["missing"] = missing;
    j["deliveries"] = deliveries;
    j["receipts"] = receipts;
    j["sends_per_s"] = send_seconds > 0 ? sends / send_seconds : 0.0;
    j["deliveries_per_s"] = send_seconds > 0 ? deliveries / send_seconds : 0.0;
    j["latency_us"] = {{"send_to_result", latency_json(send_to_result)},
                       {"send_to_deliver", latency_json(send_to_deliver)}};
    j["sessions_ended"] = sessions_ended;
    j["end_reasons"] = end_reasons;
    return j.dump();
}

int load_report::exit_code() const {
    return (missing == 0 && connect_failed == 0 && connected > 0) ? 0 : 1;
}

int run_load(const load_params& p, const std::string& secret_file, bool json, bool quiet) {
    if (auto err = validate_load(p); !err.empty()) {
        std::fprintf(stderr, "imgate load: %s\n", err.c_str());
        return 1;
    }
    std::string secret;
    try {
        secret = read_secret_file(secret_file);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "imgate load: cannot read the token secret: %s\n", e.what());
        return 1;
    }
    std::shared_ptr<const tls_client> tls;
    if (p.insecure)
        std::fprintf(stderr,
                     "imgate load: warning: --insecure: TLS certificates are NOT verified; for "
                     "local tests only\n");
    if (is_tls(p.via) || p.dispatcher.rfind("https://", 0) == 0) {
        try {
            tls = make_tls_client(p.ca_file, p.insecure);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "imgate load: %s\n", e.what());
            return 1;
        }
    }
    raise_fd_limit(p.clients);
    asio::io_context io(1);
    load_run run(io, p, secret, quiet);
    run.tls = tls;
    run.rep.clients = p.clients;
    // A per-run prefix keeps two runs (or a run and a human) from replacing each other's sessions.
    run.prefix =
        "ld" + std::to_string(std::uniform_int_distribution<int>(1000, 9999)(run.rng)) + "-";
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code ec, int) {
        if (!ec) run.interrupted = true;
    });
    int rc = 1;
    asio::co_spawn(io, run.run(json), [&](std::exception_ptr e, int r) {
        rc = e ? 1 : r;
        signals.cancel();
        io.stop();
    });
    io.run();
    return rc;
}

}  // namespace imgate::client
