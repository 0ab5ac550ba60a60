#include "client/load.hpp"

#include <sys/resource.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
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
    uint32_t client;      // local index
    uint32_t generation;  // of the client's session at send time
};

int64_t wall_ms() {
    return std::chrono::duration_cast<milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Owns the --events file: one buffered writer for every client, one JSON object per line,
// appended as events happen (flushed with each status tick and at the end).
class event_log {
  public:
    bool open(const std::string& path, std::string* err) {
        f_ = std::fopen(path.c_str(), "a");
        if (!f_) {
            *err = "--events " + path + ": " + std::strerror(errno);
            return false;
        }
        std::setvbuf(f_, nullptr, _IOFBF, 1 << 16);
        return true;
    }
    ~event_log() {
        if (f_) std::fclose(f_);
    }
    void write(uint32_t client, const char* event, const char* key, const std::string& gateway,
               const char* key2, const nlohmann::json& v2) {
        if (!f_) return;
        nlohmann::json j{{"t_ms", wall_ms()}, {"client", client}, {"event", event}};
        j[key] = gateway;
        j[key2] = v2;
        auto line = j.dump();
        line.push_back('\n');
        std::fwrite(line.data(), 1, line.size(), f_);
    }
    void flush() {
        if (f_) std::fflush(f_);
    }

  private:
    std::FILE* f_ = nullptr;
};

// Bounds the connects in flight; waiters are served first come, first served. Single-threaded
// (the run's one io_context thread).
class connect_gate {
  public:
    explicit connect_gate(uint32_t slots) : free_(slots) {}
    asio::awaitable<void> acquire(asio::any_io_executor ex) {
        if (free_ > 0 && waiters_.empty()) {
            --free_;
            co_return;
        }
        asio::steady_timer t(ex, clock::time_point::max());
        waiters_.push_back(&t);
        // release() hands its slot over by cancelling this wait.
        co_await t.async_wait(use_tuple);
    }
    void release() {
        if (waiters_.empty()) {
            ++free_;
            return;
        }
        auto* t = waiters_.front();
        waiters_.pop_front();
        t->cancel();
    }
    size_t waiting() const { return waiters_.size(); }

  private:
    uint32_t free_;
    std::deque<asio::steady_timer*> waiters_;
};

// One client of this process: what the run keeps per client, small on purpose (15 000 of them).
struct client_slot {
    std::shared_ptr<client_session> session;  // set while logged in
    std::string gateway;                      // id of the gateway it is logged in to / lost
    int64_t lost_at_ms = -1;                  // steady ms of the loss awaiting a re-login
    uint32_t live_pos = UINT32_MAX;           // index in load_run::live while connected
    uint32_t generation = 0;                  // sessions so far
    // The dispatcher its next round starts at (sticky across its connectors); none yet: drawn.
    uint16_t dispatcher = UINT16_MAX;
};

// Owns the run: the clients, the pending sends and the counters.
struct load_run {
    load_run(asio::io_context& i, const load_params& pp, std::string sec, bool q)
        : io(i),
          p(pp),
          secret(std::move(sec)),
          quiet(q),
          connect_slots(pp.connect_concurrency),
          reconnect_slots(pp.reconnect_concurrency) {}

    asio::io_context& io;
    const load_params& p;
    std::string secret;
    bool quiet;
    std::shared_ptr<const tls_client> tls;  // one context for every client (tls, wss, https)
    std::vector<http_url> dispatchers;      // parsed --dispatcher URLs (fail-over order)
    clock::time_point epoch = clock::now();
    std::mt19937_64 rng{std::random_device{}()};
    std::string prefix;  // the run id
    uint32_t first = 0;  // global index of local client 0
    uint32_t local = 0;  // this process's clients
    std::vector<client_slot> clients;
    std::vector<uint32_t> live;  // local indexes of connected clients
    std::unordered_map<uint64_t, pending_send> pending;
    std::map<std::string, uint32_t> by_gateway;  // connected clients per gateway id
    reconnect_policy policy;  // the dispatcher's latest; every new connector starts from it
    connect_gate connect_slots;
    connect_gate reconnect_slots;
    event_log events;
    uint64_t next_cmid = 1;
    uint32_t next_connect = 0;
    uint32_t connect_done = 0;
    bool stopping = false;
    bool interrupted = false;
    load_report rep;

    uint64_t now_ns() const {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - epoch).count();
    }
    int64_t now_ms() const {
        return std::chrono::duration_cast<milliseconds>(clock::now() - epoch).count();
    }
    // Users and rooms are named by global index, so the shards of one run share them.
    std::string user_at(uint32_t global) const { return prefix + "u" + std::to_string(global); }
    std::string user(uint32_t i) const { return user_at(first + i); }
    std::string room(uint32_t i) const {
        return prefix + "r" + std::to_string((first + i) % p.rooms);
    }

    target_spec target_for(uint32_t i) const {
        target_spec t;
        t.via = p.via;
        t.tls = tls;
        if (!p.gateways.empty()) {
            auto& g = p.gateways[i % p.gateways.size()];
            t.gateway = gateway_addr{"", g.host, g.port, ""};
        } else {
            t.dispatchers = dispatchers;
        }
        return t;
    }

    std::unique_ptr<connector> make_connector(uint32_t i) {
        session_options so;
        so.connect_timeout = milliseconds(5000);
        so.handshake_timeout = milliseconds(5000);
        if (p.source_spread && p.allowed.empty())
            so.source = asio::ip::address_v4((127u << 24) | (1 + (first + i) % p.source_spread));
        auto conn = std::make_unique<connector>(io.get_executor(), target_for(i), so, rng());
        conn->guard = [this](const gateway_addr& g) -> std::string {
            if (p.allowed.allows(g.host)) return "";
            return "refusing gateway " + g.to_string() +
                   " from the dispatcher: the load generator only targets loopback and the "
                   "networks of --allow-target";
        };
        conn->on_attempt_failed = [this, i](const std::string& gw, const char* cause) {
            ++rep.attempts_failed;
            ++rep.failed_by_cause[cause];
            events.write(first + i, "attempt_failed", "gateway", gw, "cause", cause);
        };
        conn->on_dispatcher_failover = [this, i](const http_url& from, const std::string& cause,
                                                 const http_url& to) {
            ++rep.dispatcher_failovers;
            events.write(first + i, "dispatcher_failover", "dispatcher",
                         from.origin() + from.prefix, "cause", cause);
            if (rep.dispatcher_failovers <= 3)
                note(quiet, "client " + user(i) + ": " + failover_line(from, cause, to));
        };
        if (clients[i].dispatcher != UINT16_MAX)
            conn->dispatchers().set_current(clients[i].dispatcher);
        conn->schedule().set_policy(policy);
        return conn;
    }

    std::string token_for(uint32_t i) const {
        auto now_s = jwt::now_seconds();
        return jwt::sign(jwt::claims{user(i), "load", now_s + 3600}, secret, now_s);
    }

    // A login: the session becomes the client's, counted, logged and started.
    void logged_in(uint32_t i, const connect_result& r) {
        auto& c = clients[i];
        c.session = r.session;
        c.gateway = r.gateway.id.empty() ? r.session->info().gateway_id : r.gateway.id;
        ++c.generation;
        c.live_pos = static_cast<uint32_t>(live.size());
        live.push_back(i);
        ++by_gateway[c.gateway];
        ++rep.logins;
        if (c.lost_at_ms >= 0) {
            ++rep.relogins;
            rep.relogin_ms.add(static_cast<uint64_t>(now_ms() - c.lost_at_ms));
            c.lost_at_ms = -1;
        }
        events.write(first + i, "login", "gateway", c.gateway, "attempts", r.attempts);
        if (p.rooms) r.session->join(room(i));
    }

    // The session ended (not at the run's end): counted and logged; false when the client must
    // not come back (KICK replaced: another session took its place).
    bool lost(uint32_t i, const session_end& end) {
        auto& c = clients[i];
        c.session.reset();
        if (c.live_pos != UINT32_MAX) {
            uint32_t moved = live.back();
            live[c.live_pos] = moved;
            clients[moved].live_pos = c.live_pos;
            live.pop_back();
            c.live_pos = UINT32_MAX;
        }
        if (auto it = by_gateway.find(c.gateway); it != by_gateway.end() && --it->second == 0)
            by_gateway.erase(it);
        auto reason = loss_reason(end);
        ++rep.sessions_ended;
        ++rep.end_reasons[to_string(end.reason)];
        ++rep.losses;
        ++rep.loss_reasons[reason];
        c.lost_at_ms = now_ms();
        events.write(first + i, "lost", "gateway", c.gateway, "reason", reason);
        if (rep.sessions_ended <= 3) note(quiet, "client " + user(i) + ": " + end.describe());
        return !(end.kick && end.kick->reason == proto::kick_reason::replaced);
    }

    asio::awaitable<void> connect_worker() {
        while (!interrupted && next_connect < local) {
            uint32_t i = next_connect++;
            auto conn = make_connector(i);
            auto token = token_for(i);
            auto r = co_await conn->connect(user(i), token, clock::now() + milliseconds(15000));
            clients[i].dispatcher = static_cast<uint16_t>(conn->dispatchers().current());
            ++connect_done;
            if (!r.session) {
                ++rep.connect_failed;
                if (rep.first_connect_error.empty()) rep.first_connect_error = r.error;
                continue;
            }
            ++rep.connected;
            logged_in(i, r);
            spawn(io, client_loop(i, r.session), "imgate load client");
        }
    }

    session_events make_events() {
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
        return ev;
    }

    // Without --reconnect: one session per client, for the run.
    asio::awaitable<void> client_loop(uint32_t i, std::shared_ptr<client_session> s) {
        auto ev = make_events();
        auto end = co_await s->run(std::move(ev));
        if (!stopping) lost(i, end);
    }

    // Waits d. The run does not wait for its clients at the end (it stops the io_context), so a
    // sleeping client needs no wake-up.
    asio::awaitable<void> pause(milliseconds d) { co_await sleep(d); }

    // With --reconnect: the whole life of client i until the run stops. Logs in (through the
    // connect gate the first time, the reconnect gate after a loss), holds the session, and after
    // each loss follows rule A/C: the server's hint or uniform [0, jitter] before the first
    // round (excluding the lost gateway), then the schedule's wait after each failed round.
    asio::awaitable<void> client_life(uint32_t i) {
        bool first_login = true;
        std::unique_ptr<connector> conn;  // only while (re)connecting: keeps a held client small
        std::string excluded;
        unsigned tried = 0;  // gateways tried since the loss (or the start)
        while (!stopping) {
            auto& gate = first_login ? connect_slots : reconnect_slots;
            co_await gate.acquire(io.get_executor());
            if (stopping) {
                gate.release();
                break;
            }
            if (!conn) conn = make_connector(i);
            if (!excluded.empty()) conn->exclude_once(excluded);
            excluded.clear();
            conn->max_rounds = 1;
            auto token = token_for(i);
            auto r = co_await conn->connect(user(i), token, clock::time_point::max());
            clients[i].dispatcher = static_cast<uint16_t>(conn->dispatchers().current());
            gate.release();
            if (stopping) break;
            tried += r.attempts;
            if (!r.session) {
                if (r.fatal) {
                    note(quiet, "client " + user(i) + " gives up: " + r.error);
                    if (first_login) ++connect_done;
                    co_return;
                }
                auto wait = conn->schedule().after_failed_round(r.hint);
                co_await pause(wait);
                continue;
            }
            policy = conn->schedule().policy();
            if (first_login) {
                ++connect_done;
                ++rep.connected;
                first_login = false;
            }
            r.attempts = tried;
            tried = 0;
            logged_in(i, r);
            conn.reset();
            auto ev = make_events();
            auto s = r.session;
            r = connect_result{};
            auto end = co_await s->run(std::move(ev));
            if (stopping) break;
            if (!lost(i, end)) co_return;
            excluded = clients[i].gateway;
            conn = make_connector(i);
            auto hint = server_hint(end);
            auto wait = conn->schedule().after_loss(hint);
            co_await pause(wait);
        }
    }

    void send_one() {
        if (live.empty()) return;
        uint32_t i = live[std::uniform_int_distribution<size_t>(0, live.size() - 1)(rng)];
        auto& c = clients[i];
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
            // Any user of the run (every shard's) but the sender.
            uint32_t j = std::uniform_int_distribution<uint32_t>(0, p.clients - 2)(rng);
            if (j >= first + i) ++j;
            target = user_at(j);
        }
        if (!c.session ||
            !c.session->send(to_room ? proto::target_kind::room : proto::target_kind::user, target,
                             make_load_payload(t, p.payload_bytes), cmid)) {
            ++rep.not_queued;
            return;
        }
        pending.emplace(cmid, pending_send{t, i, c.generation});
    }

    asio::awaitable<void> sleep(milliseconds d) {
        asio::steady_timer t(io);
        t.expires_after(d);
        co_await t.async_wait(use_tuple);
    }

    std::string status_json() const {
        nlohmann::json j{
            {"t_ms", wall_ms()},          {"clients", local},
            {"connected", live.size()},   {"lost_total", rep.losses},
            {"logins_total", rep.logins}, {"attempts_failed_total", rep.attempts_failed},
            {"by_gateway", by_gateway}};
        return j.dump();
    }

    void write_status() {
        if (p.status_file.empty()) return;
        // tmp + rename: a reader never sees half a file.
        std::string tmp = p.status_file + ".tmp";
        if (std::FILE* f = std::fopen(tmp.c_str(), "w")) {
            auto s = status_json();
            s.push_back('\n');
            bool ok = std::fwrite(s.data(), 1, s.size(), f) == s.size();
            ok = std::fclose(f) == 0 && ok;
            if (ok) std::rename(tmp.c_str(), p.status_file.c_str());
        }
    }

    asio::awaitable<void> status_ticker() {
        while (!stopping) {
            write_status();
            events.flush();
            co_await sleep(milliseconds(200));
        }
    }

    asio::awaitable<int> run(bool json) {
        clients.resize(local);
        note(quiet, "connecting " + std::to_string(local) + " clients" +
                        (p.shard_count > 1 ? " (shard " + std::to_string(p.shard_index) + "/" +
                                                 std::to_string(p.shard_count) + " of " +
                                                 std::to_string(p.clients) + ")"
                                           : "") +
                        " over " + to_string(p.via) + " to " +
                        (p.gateways.empty() ? dispatcher_names()
                                            : std::to_string(p.gateways.size()) + " gateway(s)"));
        spawn(io, status_ticker(), "imgate load status");
        if (p.reconnect) {
            for (uint32_t i = 0; i < local; ++i) spawn(io, client_life(i), "imgate load client");
        } else {
            uint32_t workers = std::min(p.connect_concurrency, local);
            for (uint32_t w = 0; w < workers; ++w)
                spawn(io, connect_worker(), "imgate load connect");
        }
        auto connect_deadline = clock::now() + milliseconds(60000 + 10 * int64_t(local));
        // --reconnect: clients keep trying; the run starts when all are in (or at the deadline).
        auto all_in = [&] { return p.reconnect ? live.size() >= local : connect_done >= local; };
        while (!all_in() && !interrupted && clock::now() < connect_deadline)
            co_await sleep(milliseconds(20));
        note(quiet,
             std::to_string(rep.connected) + " connected, " +
                 std::to_string(p.reconnect ? local - rep.connected : rep.connect_failed) +
                 (p.reconnect ? " not yet" : " failed") +
                 (rep.first_connect_error.empty() ? "" : " (" + rep.first_connect_error + ")"));
        if ((rep.connected == 0 && !p.reconnect) || interrupted) {
            co_return finish_early();
        }
        // Room joins are answered quickly; wait for them (bounded) so early room sends count.
        if (p.rooms) {
            auto until = clock::now() + milliseconds(5000);
            while (rep.rooms_joined + rep.room_join_errors < rep.connected && clock::now() < until)
                co_await sleep(milliseconds(10));
        }
        note(quiet, (p.reconnect ? "holding sessions for " : "sending for ") + fmt1(p.duration_s) +
                        " s at " + fmt1(p.rate) + " sends/s");
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
            co_await sleep(milliseconds(p.rate > 0 ? 2 : 20));
        }
        rep.send_seconds = std::chrono::duration<double>(clock::now() - start).count();
        rep.stuck = local - static_cast<uint32_t>(live.size());
        note(quiet, "sent " + std::to_string(rep.sends) + "; waiting up to 5 s for " +
                        std::to_string(pending.size()) + " outstanding results");
        auto drain_until = clock::now() + milliseconds(5000);
        while (!pending.empty() && clock::now() < drain_until) co_await sleep(milliseconds(10));
        // Give receipts and deliveries of the last sends a short moment too.
        co_await sleep(milliseconds(200));
        // A send outstanding when its session was lost has no result to wait for.
        for (auto& [cmid, ps] : pending) {
            if (clients[ps.client].generation != ps.generation || !clients[ps.client].session)
                ++rep.lost_with_session;
            else
                ++rep.missing;
        }
        write_status();
        stopping = true;
        events.flush();
        for (auto& c : clients)
            if (c.session) c.session->close();
        std::fputs((json ? rep.json(p) : rep.text(p)).c_str(), stdout);
        std::fputc('\n', stdout);
        std::fflush(stdout);
        co_return rep.exit_code(p);
    }

    std::string dispatcher_names() const {
        std::string out;
        for (auto& u : dispatchers) out += (out.empty() ? "" : ",") + u.origin() + u.prefix;
        return out;
    }

    int finish_early() {
        write_status();
        stopping = true;
        events.flush();
        for (auto& c : clients)
            if (c.session) c.session->close();
        if (rep.connected == 0) std::fprintf(stderr, "imgate load: no client connected\n");
        return 1;
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
    if (p.reconnect) {
        o << "losses       " << losses;
        for (auto& [k, v] : loss_reasons) o << " [" << k << " " << v << "]";
        o << ", re-logins " << relogins << ", logins " << logins << "\n";
        o << "loss->login   ";
        if (relogin_ms.count())
            o << "p50 " << relogin_ms.percentile(50) << "  p90 " << relogin_ms.percentile(90)
              << "  p99 " << relogin_ms.percentile(99) << "  max " << relogin_ms.max() << " ms ("
              << relogin_ms.count() << " samples)\n";
        else
            o << "no samples\n";
        o << "failed attempts " << attempts_failed;
        for (auto& [k, v] : failed_by_cause) o << " [" << k << " " << v << "]";
        auto h503 = failed_by_cause.find("http_503");
        o << ", 503s " << (h503 == failed_by_cause.end() ? 0 : h503->second) << "\n";
        o << "at the end   " << (clients - stuck) << " of " << clients << " connected, stuck "
          << stuck << "; sends lost with their session " << lost_with_session
          << "; reconnect concurrency " << p.reconnect_concurrency << "\n";
    }
    if (p.dispatchers.size() > 1)
        o << "dispatcher fail-overs " << dispatcher_failovers << " (over " << p.dispatchers.size()
          << " dispatchers)\n";
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
    j["params"]["shard"] = std::to_string(p.shard_index) + "/" + std::to_string(p.shard_count);
    j["params"]["first_client"] = p.first_client();
    j["params"]["local_clients"] = clients;
    j["params"]["reconnect"] = p.reconnect;
    j["params"]["reconnect_concurrency"] = p.reconnect_concurrency;
    j["logins"] = logins;
    j["losses"] = losses;
    j["loss_reasons"] = loss_reasons;
    j["relogins"] = relogins;
    j["attempts_failed"] = attempts_failed;
    j["attempts_failed_by_cause"] = failed_by_cause;
    auto h503 = failed_by_cause.find("http_503");
    j["http_503"] = h503 == failed_by_cause.end() ? 0 : h503->second;
    j["stuck"] = stuck;
    if (!p.dispatchers.empty()) j["dispatcher_failovers"] = dispatcher_failovers;
    j["lost_with_session"] = lost_with_session;
    j["relogin_ms"] = {{"count", relogin_ms.count()},
                       {"p50", relogin_ms.percentile(50)},
                       {"p90", relogin_ms.percentile(90)},
                       {"p99", relogin_ms.percentile(99)},
                       {"max", relogin_ms.max()}};
    return j.dump();
}

int load_report::exit_code(const load_params& p) const {
    // --reconnect: a client lost mid-run is fine if it is back by the end.
    if (p.reconnect) return (missing == 0 && stuck == 0 && connected > 0) ? 0 : 1;
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
    std::vector<http_url> dispatchers;
    if (!p.dispatchers.empty()) dispatchers = *parse_dispatcher_urls(p.dispatchers, nullptr);
    if (is_tls(p.via) || any_https(dispatchers)) {
        try {
            tls = make_tls_client(p.ca_file, p.insecure);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "imgate load: %s\n", e.what());
            return 1;
        }
    }
    raise_fd_limit(p.local_clients());
    asio::io_context io(1);
    load_run run(io, p, secret, quiet);
    run.tls = tls;
    run.dispatchers = std::move(dispatchers);
    run.first = p.first_client();
    run.local = p.local_clients();
    run.rep.clients = run.local;
    // A per-run prefix keeps two runs (or a run and a human) from replacing each other's sessions;
    // the shards of one run share it (--run-id).
    run.prefix =
        !p.run_id.empty()
            ? p.run_id
            : "ld" + std::to_string(std::uniform_int_distribution<int>(1000, 9999)(run.rng)) + "-";
    if (!p.events_file.empty()) {
        std::string err;
        if (!run.events.open(p.events_file, &err)) {
            std::fprintf(stderr, "imgate load: %s\n", err.c_str());
            return 1;
        }
    }
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
