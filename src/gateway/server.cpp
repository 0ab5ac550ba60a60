#include "gateway/server.hpp"

#include <sys/resource.h>

#include <spdlog/spdlog.h>

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/awaitable.hpp"
#include "common/daemon.hpp"
#include "common/fingerprint.hpp"
#include "common/log_throttle.hpp"
#include "common/logging.hpp"
#include "gateway/admin_api.hpp"
#include "gateway/session.hpp"

namespace imgate::gw {

namespace {

gateway_live live_of(const gateway_config& c) {
    return gateway_live{c.limits,      c.token_secrets,         c.token_leeway_s,
                        c.admin_token, c.tls.handshake_timeout, c.tls.max_handshakes};
}

std::string hostport(const asio::ip::tcp::endpoint& ep) {
    auto a = ep.address();
    return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" +
           std::to_string(ep.port());
}

// The start-up-only sections (directory:, redis:, events:) as one comparable string.
std::string backend_sections(const gateway_config& c) {
    const auto& d = c.directory;
    const auto& e = c.events;
    const auto& r = c.redis.conn;
    return fmt::format("{} {} {} {} {}|{} {}:{} {} {} {} {} {} {} {} {} {}|{} {} {} {} {} {}",
                       to_string(d.mode), d.lease.count(), d.entry_ttl.count(), d.cache_ttl.count(),
                       d.cache_entries, c.redis.configured, r.host, r.port, r.unix_path,
                       c.redis.password_file, r.db, c.redis.prefix, r.connect_timeout.count(),
                       r.command_timeout.count(), r.backoff_min.count(), r.backoff_max.count(),
                       r.max_pending, e.enabled, e.stream, e.maxlen, e.messages, e.max_buffered,
                       to_string(e.overflow));
}
}  // namespace

const char* to_string(gateway_state s) {
    switch (s) {
        case gateway_state::serving:
            return "serving";
        case gateway_state::draining:
            return "draining";
        case gateway_state::stopping:
            return "stopping";
    }
    return "?";
}

gateway_server::gateway_server(asio::io_context& io, gateway_config cfg, metrics_registry& metrics)
    : io_(io),
      cfg_(std::move(cfg)),
      registry_(metrics),
      metrics_(metrics),
      live_(live_of(cfg_)),
      router_(cfg_.id, cfg_.fleet.find(cfg_.id)->node, cfg_.limits, metrics_),
      listen_strand_(asio::make_strand(io)),
      started_(std::chrono::steady_clock::now()),
      summary_timer_(asio::make_strand(io)),
      coalescer_(io.get_executor()) {
    coalescer_.set_delay(cfg_.limits.write_coalesce);
    fd_limit_ = raise_fd_limit();
    linger_max_ = linger_budget(fd_limit_);
    uint64_t reserve = fd_reserve(cfg_.fleet.gateways.size()) + linger_max_;
    fd_cap_ = fd_limit_ > reserve ? fd_limit_ - reserve : 1;
    if (cfg_.limits.max_connections > fd_cap_)
        spdlog::warn(
            "limits.max_connections {} is more than the descriptor limit allows ({} open files, "
            "{} kept for listeners, admin and RPC): at most {} client connections; raise "
            "LimitNOFILE= (systemd) or ulimit -n",
            cfg_.limits.max_connections, fd_limit_, reserve, fd_cap_);
    admission_.set_limits(cfg_.limits.login_rate, cfg_.limits.login_burst,
                          cfg_.limits.gateway_login_rate, cfg_.limits.gateway_login_burst,
                          std::chrono::steady_clock::now());
    gateway_metrics::gauge_sources g;
    g.connections = [this] { return double(connections_.load()); };
    g.sessions = [this] { return double(router_.sessions().session_count()); };
    g.users = [this] { return double(router_.sessions().user_count()); };
    g.rooms = [this] { return double(router_.sessions().room_count()); };
    g.pending_acks = [this] { return double(router_.pending_ack_count()); };
    g.event_loop_lag_seconds = [this] { return lag_ms_.load() / 1000.0; };
    g.max_connections = [this] { return double(max_connections()); };
    metrics_.expose(std::move(g));
}

gateway_server::~gateway_server() = default;

uint64_t gateway_server::raise_fd_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlimit want = rl;
        want.rlim_cur = rl.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
    }
    return rl.rlim_cur == RLIM_INFINITY ? uint64_t(1) << 20 : uint64_t(rl.rlim_cur);
}

uint32_t gateway_server::max_connections() const {
    uint32_t configured = live_.get()->limits.max_connections;
    return uint32_t(std::min<uint64_t>(configured, fd_cap_));
}

std::shared_ptr<const gateway_limits> gateway_server::limits(uint64_t& gen) const {
    auto snap = live_.get(gen);
    return std::shared_ptr<const gateway_limits>(snap, &snap->limits);
}

void gateway_server::start() {
    const gateway_spec* spec = cfg_.fleet.find(cfg_.id);
    if (cfg_.tls.enabled()) {
        tls_ = std::make_unique<tls_context_holder>(cfg_.tls);
        auto info = tls_->info();
        spdlog::info("tls: certificate {} (sha256 {}), valid until {}", info.subject,
                     info.fingerprint, info.not_after);
        metrics_.expose_cert_expiry([this] { return double(tls_->info().seconds_left); });
    }
    cluster_ = make_cluster(cfg_.fleet, cfg_.id, cfg_.cluster_secret, cfg_.rpc, router_, io_,
                            registry_, cfg_.directory, cfg_.redis);
    router_.attach(*cluster_);
    if (cfg_.events.enabled) start_events();

    for (auto t : all_transports) {
        const endpoint* where = spec->listen_of(t);
        if (!where) continue;
        auto l = std::make_unique<client_listener>(t, listen_strand_);
        bind_listener(*l, *where);
        listeners_.push_back(std::move(l));
    }

    admin_ = std::make_unique<admin_api>(io_, *this, router_, metrics_, registry_);
    admin_->listen(spec->admin);

    // Every session's deadline is on this wheel; made now, so that a session's destructor
    // (even in the io_context's shutdown) only ever finds it.
    timer_wheel_service<session>::of(io_.get_executor());
    if (unsigned threads = worker_threads(cfg_); threads != 1) {
        // Enough that sessions rarely wait for each other on the threads there are.
        for (unsigned i = 0; i < std::max(64u, 16 * threads); ++i)
            session_strands_.push_back(asio::make_strand(io_));
    }
    // The accept loops and close_acceptor() share the listeners' strand: no race on close.
    for (auto& l : listeners_) spawn(listen_strand_, accept_loop(*l), "gateway accept");
    spawn(io_, lag_probe(), "gateway lag probe");
    spawn(io_, housekeeping(), "gateway housekeeping");
    // On the timer's strand, like the cancel in stop(): a timer is not thread-safe.
    spawn(summary_timer_.get_executor(), login_summary_loop(), "gateway login summary");
    std::string serving;
    for (auto& l : listeners_)
        serving +=
            (serving.empty() ? "" : ", ") + std::string(to_string(l->kind)) + " " + hostport(l->ep);
    spdlog::info("gateway {} serving clients on {}; admin on {}", cfg_.id, serving,
                 hostport(admin_endpoint()));
}

void gateway_server::start_events() {
    auto o = cfg_.redis.conn;
    o.name = "events";  // its own connection: XADD traffic never delays directory lookups
    auto ex = asio::make_strand(io_);
    events_redis_ = redis::connection::create(ex, o, registry_);
    auto eo = event_options_of(cfg_.events);
    // Never more in flight than the connection queues: a queue_full failure of one XADD while a
    // later one is accepted would reorder the stream.
    eo.max_in_flight = std::min(eo.max_in_flight, o.max_pending);
    events_ = event_sink::create(ex, *events_redis_, eo, cfg_.id, registry_);
    std::weak_ptr<event_sink> w = events_;
    events_redis_->set_on_up([w] {
        if (auto e = w.lock()) e->on_up();
    });
    events_redis_->start();
    router_.attach_events(events_.get());
    spdlog::info("events: appending to stream {} (messages {}, max_buffered {}, overflow {})",
                 cfg_.events.stream, cfg_.events.messages ? "on" : "off", cfg_.events.max_buffered,
                 to_string(cfg_.events.overflow));
}

void gateway_server::bind_listener(client_listener& l, const endpoint& where) {
    auto ep_str = where.to_string();
    const char* key = l.kind == transport::tcp   ? "client_listen"
                      : l.kind == transport::tls ? "tls_listen"
                      : l.kind == transport::ws  ? "ws_listen"
                                                 : "wss_listen";
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(where.host, ec);
    if (ec) throw config_error(std::string(key) + " " + ep_str + ": host must be an IP address");
    asio::ip::tcp::endpoint ep(addr, where.port);
    l.acceptor.open(ep.protocol());
    l.acceptor.set_option(asio::socket_base::reuse_address(true));
    l.acceptor.bind(ep, ec);
    if (ec)
        throw std::runtime_error(std::string("cannot bind the ") + to_string(l.kind) +
                                 " client listener " + ep_str + ": " + ec.message());
    l.acceptor.listen(asio::socket_base::max_listen_connections);
    l.ep = l.acceptor.local_endpoint();
}

asio::ip::tcp::endpoint gateway_server::client_endpoint() const {
    if (auto ep = client_endpoint(transport::tcp)) return *ep;
    return listeners_.empty() ? asio::ip::tcp::endpoint{} : listeners_.front()->ep;
}
std::optional<asio::ip::tcp::endpoint> gateway_server::client_endpoint(transport t) const {
    for (auto& l : listeners_)
        if (l->kind == t) return l->ep;
    return std::nullopt;
}
std::optional<tls_cert_info> gateway_server::tls_info() const {
    if (!tls_) return std::nullopt;
    return tls_->info();
}
asio::ip::tcp::endpoint gateway_server::admin_endpoint() const {
    return admin_->local_endpoint();
}
std::string gateway_server::rpc_endpoint() const {
    return cfg_.fleet.find(cfg_.id)->rpc.to_string();
}
double gateway_server::uptime_s() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}
std::chrono::milliseconds gateway_server::push_timeout() const {
    return cfg_.rpc.call_timeout + std::chrono::seconds(5);
}

asio::awaitable<void> gateway_server::accept_loop(client_listener& l) {
    for (;;) {
        // A session's handlers must not run concurrently. With one thread (workers: 1) the
        // io_context's executor serialises them; with more, one of a fixed set of strands does
        // (shared by many sessions: no strand object per connection).
        asio::any_io_executor ex = io_.get_executor();
        if (!session_strands_.empty())
            ex = session_strands_[next_strand_++ % session_strands_.size()];
        auto [ec, sock] = co_await l.acceptor.async_accept(ex, use_tuple);
        if (ec) {
            if (ec == asio::error::operation_aborted || !l.acceptor.is_open()) co_return;
            if (is_fd_exhaustion(ec)) {
                // Throttled: this repeats every 100 ms for as long as descriptors are short.
                IMGATE_LOG_THROTTLED(warn, "accept: {}: backing off 100ms", ec.message());
                asio::steady_timer t(io_, std::chrono::milliseconds(100));
                co_await t.async_wait(use_tuple);
            }
            continue;
        }
        // Accepted in the moment between a drain and the listener's close: served like any
        // connection opened before the drain (its LOGIN gets ERROR draining, docs/protocol.md).
        if (state_.load() == gateway_state::stopping) {
            boost::system::error_code ignored;
            sock.close(ignored);
            continue;
        }
        if (connections_.load() >= max_connections()) {
            refuse_busy(sock, l.kind);
            continue;
        }
        metrics_.accepted->inc();
        if (l.kind == transport::tcp) {
            connections_.fetch_add(1);
            start_session(make_tcp_io(std::move(sock)));
            continue;
        }
        // TLS and WebSocket handshakes cost CPU and memory before any credential is seen: a
        // bounded number run at once, the rest are closed at accept (counted, result "busy").
        if (l.handshakes.load() >= live_.get()->max_handshakes) {
            metrics_.handshake(l.kind, "busy");
            IMGATE_LOG_THROTTLED(warn, "{} listener: {} handshakes in flight: refusing connections",
                                 to_string(l.kind), l.handshakes.load());
            boost::system::error_code ignored;
            sock.close(ignored);
            continue;
        }
        l.handshakes.fetch_add(1);
        connections_.fetch_add(1);
        spawn(ex, handshake_and_start(l, std::move(sock)), "gateway client handshake");
    }
}

asio::awaitable<void> gateway_server::handshake_and_start(client_listener& l,
                                                          asio::ip::tcp::socket sock) {
    handshake_options opts;
    uint64_t g;
    auto live = live_.get();
    opts.timeout = live->handshake_timeout;
    opts.max_prelogin_body = prelogin_max_frame_body(*limits(g));
    auto ctx = tls_ ? tls_->get() : nullptr;
    auto r = co_await server_handshake(l.kind, std::move(sock), std::move(ctx), opts);
    l.handshakes.fetch_sub(1);
    metrics_.handshake(l.kind, r.result);
    if (!r.io || state_.load() == gateway_state::stopping) {
        if (!r.io) spdlog::debug("{} handshake {}: {}", to_string(l.kind), r.result, r.error);
        if (r.io) r.io->close();
        connections_.fetch_sub(1);
        co_return;
    }
    start_session(std::move(r.io));
}

void gateway_server::start_session(std::unique_ptr<session_io> io) {
    uint64_t sid = next_session_id_.fetch_add(1);
    auto s = std::make_shared<session>(*this, std::move(io), sid);
    {
        std::lock_guard lk(conns_mu_);
        uint32_t slot;
        if (free_conn_slots_.empty()) {
            slot = uint32_t(conns_.size());
            conns_.emplace_back(s);
        } else {
            slot = free_conn_slots_.back();
            free_conn_slots_.pop_back();
            conns_[slot] = s;
        }
        s->set_conn_slot(slot);
    }
    s->start();
}

void gateway_server::refuse_busy(asio::ip::tcp::socket& sock, transport kind) {
    metrics_.busy->inc();
    count_error(proto::code::server_busy);
    if (kind != transport::tcp) {
        // A frame would need a TLS or WebSocket handshake first: a full gateway spends no CPU
        // on that, the client sees the close and asks the dispatcher again.
        boost::system::error_code ignored;
        sock.close(ignored);
        return;
    }
    // Best effort, non-blocking: both frames fit any socket buffer. The REDIRECT's hint spreads
    // the refused clients' next attempts (docs/protocol.md section 3).
    static const std::string error_frame =
        proto::encode(proto::error_msg{proto::code::server_busy, "gateway is full"});
    uint64_t g;
    auto lim = limits(g);
    std::string frame =
        error_frame +
        proto::encode(proto::redirect_msg{
            draw_hint(lim->login_retry_after, lim->login_retry_jitter), "", 0, "busy"});
    metrics_.retry_hint("busy");
    boost::system::error_code ec;
    sock.non_blocking(true, ec);
    sock.write_some(asio::buffer(frame), ec);
    sock.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    // Closing a socket with unread input resets it, and a reset can discard the frames before
    // the client reads them: read what the client already sent (its LOGIN), then let it read
    // ours during a short linger. Lingering sockets hold descriptors, so a burst of refusals
    // lingers only up to linger_max_ at once; the rest close right after the read.
    char sink[4096];
    for (int i = 0; i < 4; ++i) {
        sock.read_some(asio::buffer(sink), ec);
        if (ec) break;
    }
    if (lingering_->fetch_add(1) >= linger_max_) {
        lingering_->fetch_sub(1);
        sock.close(ec);
        return;
    }
    auto s = std::make_shared<asio::ip::tcp::socket>(std::move(sock));
    auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(200));
    auto count = lingering_;
    t->async_wait([s, t, count](const boost::system::error_code&) {
        boost::system::error_code e;
        s->close(e);
        count->fetch_sub(1);
    });
}

admission gateway_server::admit_login(const std::optional<asio::ip::address>& remote) {
    return admission_.admit(remote ? remote->to_string() : std::string(),
                            std::chrono::steady_clock::now());
}

jwt::verify_result gateway_server::verify_token(std::string_view token) const {
    auto live = live_.get();
    return jwt::verify(token, live->token_secrets, jwt::now_seconds(), live->token_leeway_s);
}

bool gateway_server::on_login(const std::shared_ptr<session>& s) {
    hub::add_result r;
    {
        std::lock_guard lk(login_mu_);
        if (state_.load() != gateway_state::serving) return false;
        r = router_.sessions().add(s);
        s->set_logged_in();
    }
    router_.admitted(*s, r);
    if (events_)
        events_->login(s->user(), s->device(), s->session_id(), to_string(s->kind()),
                       s->remote_address());
    return true;
}

void gateway_server::on_closed(session& s) {
    router_.closed(s.session_id(), s.user());
    // Every session that logged in, replaced ones included (they left the hub at the new login).
    if (events_ && s.logged_in())
        events_->logout(s.user(), s.device(), s.session_id(), s.close_reason());
    {
        std::lock_guard lk(conns_mu_);
        // Only while the slot is still this session's: a second call must not free it twice.
        uint32_t slot = s.conn_slot();
        if (slot < conns_.size() && conns_[slot].lock().get() == &s) {
            conns_[slot].reset();
            free_conn_slots_.push_back(slot);
        }
    }
    connections_.fetch_sub(1);
}

void gateway_server::on_send(session& s, proto::send_msg& m, uint32_t corr) {
    router_.send(s.shared_from_this(), m, corr);
}

void gateway_server::on_ack(session& s, uint64_t server_msg_id) {
    router_.ack(s, server_msg_id);
}

proto::code gateway_server::on_join(session& s, const std::string& room) {
    return router_.join(s.session_id(), room, live_.get()->limits.max_rooms_per_session);
}

proto::code gateway_server::on_leave(session& s, const std::string& room) {
    return router_.leave(s.session_id(), room);
}

void gateway_server::count_slow_consumer() {
    metrics_.slow->inc();
    metrics_.error(proto::code::slow_consumer);
}

std::vector<std::shared_ptr<session>> gateway_server::open_sessions() {
    std::vector<std::shared_ptr<session>> all;
    std::lock_guard lk(conns_mu_);
    all.reserve(conns_.size() - free_conn_slots_.size());
    for (auto& w : conns_)
        if (auto s = w.lock()) all.push_back(std::move(s));
    return all;
}

void gateway_server::close_acceptor() {
    asio::post(listen_strand_, [this] {
        boost::system::error_code e;
        for (auto& l : listeners_) l->acceptor.close(e);
    });
}

double gateway_server::load() const {
    double conn = double(connections_.load()) / double(std::max<uint32_t>(1, max_connections()));
    // 100 ms of event-loop lag counts as fully loaded even with few connections.
    return std::max(conn, lag_ms_.load() / 100.0);
}

asio::awaitable<void> gateway_server::lag_probe() {
    asio::steady_timer t(io_);
    const auto period = std::chrono::milliseconds(250);
    double ema = 0;
    for (;;) {
        auto due = std::chrono::steady_clock::now() + period;
        t.expires_at(due);
        auto [ec] = co_await t.async_wait(use_tuple);
        if (ec) co_return;
        double late =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - due)
                .count();
        ema = ema * 0.7 + std::max(0.0, late) * 0.3;
        lag_ms_.store(ema);
        if (state_.load() == gateway_state::stopping) co_return;
    }
}

asio::awaitable<void> gateway_server::housekeeping() {
    asio::steady_timer t(io_);
    for (;;) {
        t.expires_after(std::chrono::seconds(1));
        auto [ec] = co_await t.async_wait(use_tuple);
        if (ec || state_.load() == gateway_state::stopping) co_return;
        router_.expire_acks();
    }
}

asio::awaitable<void> gateway_server::login_summary_loop() {
    for (;;) {
        uint64_t g;
        auto interval = limits(g)->login_failure_summary;
        // 0 disables the summary: look again each second in case a reload enables it.
        summary_timer_.expires_after(interval.count() > 0 ? interval : std::chrono::seconds(1));
        auto [ec] = co_await summary_timer_.async_wait(use_tuple);
        if (ec || state_.load() == gateway_state::stopping) co_return;
        auto line = login_summary_.take(interval);
        if (interval.count() > 0 && !line.empty()) spdlog::warn("{}", line);
    }
}

void gateway_server::drain() {
    {
        std::lock_guard lk(login_mu_);
        auto expected = gateway_state::serving;
        if (!state_.compare_exchange_strong(expected, gateway_state::draining)) return;
    }
    uint64_t epoch;
    {
        // A drain moves every session: a running rebalance ends here.
        std::lock_guard lk(rebalance_mu_);
        rebalance_active_ = false;
        epoch = ++drain_epoch_;
    }
    spdlog::info("drain: no new clients; redirecting existing sessions to the dispatcher");
    daemon_control::notify_status("draining");
    close_acceptor();
    spawn(io_, redirect_loop(epoch), "gateway drain");
}

bool gateway_server::rebalance(const rebalance_request& r, size_t& sessions) {
    uint64_t epoch;
    {
        // Under login_mu_ like drain(): a rebalance never starts on a draining gateway.
        std::lock_guard lk(login_mu_);
        if (state_.load() != gateway_state::serving) return false;
        std::lock_guard rk(rebalance_mu_);
        rebalance_ = r;
        rebalance_active_ = true;
        rebalance_moved_ = 0;
        epoch = ++drain_epoch_;  // the loop of an earlier call stops at its next tick
    }
    metrics_.rebalance_requests->inc();
    sessions = live_sessions();
    spdlog::info("rebalance: {} sessions, keeping {}, moving at most {} at {}/s", sessions,
                 r.target, r.max, r.rate);
    spawn(io_, redirect_loop(epoch), "gateway rebalance");
    return true;
}

rebalance_status gateway_server::rebalance_state() const {
    std::lock_guard lk(rebalance_mu_);
    return rebalance_status{rebalance_active_, rebalance_.target, rebalance_moved_};
}

size_t gateway_server::live_sessions() {
    auto all = open_sessions();
    return size_t(std::count_if(all.begin(), all.end(),
                                [](const auto& s) { return s->logged_in() && !s->finishing(); }));
}

std::vector<std::string> gateway_server::token_fingerprints() const {
    std::vector<std::string> out;
    for (const auto& s : live_.get()->token_secrets) out.push_back(secret_fingerprint("jwt", s));
    return out;
}

asio::awaitable<gateway_server::undrain_result> gateway_server::undrain(std::string& error) {
    // On the acceptor's strand, after the close a drain posted there: no race on the acceptor.
    co_return co_await asio::co_spawn(listen_strand_, reopen_listener(&error), asio::use_awaitable);
}

asio::awaitable<gateway_server::undrain_result> gateway_server::reopen_listener(
    std::string* error) {
    auto st = state_.load();
    if (st == gateway_state::serving) co_return undrain_result::already_serving;
    if (st == gateway_state::stopping) co_return undrain_result::stopping;
    for (auto& l : listeners_) {
        if (l->acceptor.is_open()) continue;
        // The same address and port as before the drain (l->ep holds the bound port).
        boost::system::error_code ec;
        l->acceptor.open(l->ep.protocol(), ec);
        if (!ec) l->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec) l->acceptor.bind(l->ep, ec);
        if (!ec) l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) {
            boost::system::error_code ignored;
            for (auto& other : listeners_) other->acceptor.close(ignored);
            *error = std::string("cannot reopen the ") + to_string(l->kind) +
                     " client listener on " + hostport(l->ep) + ": " + ec.message();
            spdlog::error("undrain: {}; still draining", *error);
            co_return undrain_result::listen_failed;
        }
    }
    {
        std::lock_guard lk(login_mu_);
        auto expected = gateway_state::draining;
        if (!state_.compare_exchange_strong(expected, gateway_state::serving)) {
            // SIGTERM came in meanwhile: it closes the listener again after us.
            co_return expected == gateway_state::stopping ? undrain_result::stopping
                                                          : undrain_result::already_serving;
        }
        ++drain_epoch_;  // the running drain loop stops redirecting at its next tick
    }
    spdlog::info("undrain: serving again; client listeners reopened");
    daemon_control::notify_status("serving");
    for (auto& l : listeners_) spawn(listen_strand_, accept_loop(*l), "gateway accept");
    co_return undrain_result::undrained;
}

asio::awaitable<void> gateway_server::redirect_loop(uint64_t epoch) {
    asio::steady_timer t(io_);
    const auto tick = std::chrono::milliseconds(20);
    double budget = 0;
    for (;;) {
        if (drain_epoch_.load() != epoch) co_return;
        auto st = state_.load();
        if (st == gateway_state::serving) {
            if (!rebalance_tick(epoch, budget, tick)) co_return;
            t.expires_after(tick);
            auto [ec] = co_await t.async_wait(use_tuple);
            if (ec) co_return;
            continue;
        }
        if (st != gateway_state::draining) co_return;
        // Connections without a session are left alone: their LOGIN is refused with ERROR
        // draining, or the login timeout closes them.
        auto all = redirectable_sessions();
        if (all.empty()) {
            spdlog::info("drain: every session redirected");
            co_return;
        }
        uint64_t g;
        auto lim = limits(g);
        budget += lim->drain_rate * std::chrono::duration<double>(tick).count();
        size_t n = std::min(all.size(), size_t(budget));
        budget -= double(n);
        redirect_first(all, n, *lim, "drain", *metrics_.redirects);
        t.expires_after(tick);
        auto [ec] = co_await t.async_wait(use_tuple);
        if (ec) co_return;
    }
}

std::vector<std::shared_ptr<session>> gateway_server::redirectable_sessions() {
    auto all = open_sessions();
    std::erase_if(all, [](const auto& s) { return !s->logged_in() || s->finishing(); });
    return all;
}

void gateway_server::redirect_first(const std::vector<std::shared_ptr<session>>& all, size_t n,
                                    const gateway_limits& lim, const char* reason, counter& count) {
    for (size_t i = 0; i < n && i < all.size(); ++i) {
        count.inc();
        // Drawn per session: the redirected clients come back spread over the jitter.
        all[i]->finish(proto::encode(proto::redirect_msg{
            draw_hint(lim.reconnect_hint, lim.reconnect_jitter), "", 0, reason}));
    }
}

bool gateway_server::rebalance_tick(uint64_t epoch, double& budget,
                                    std::chrono::milliseconds tick) {
    rebalance_request r;
    uint64_t moved;
    {
        std::lock_guard lk(rebalance_mu_);
        if (!rebalance_active_ || drain_epoch_.load() != epoch) return false;
        r = rebalance_;
        moved = rebalance_moved_;
    }
    auto all = redirectable_sessions();
    // The live count against target: sessions that left on their own count too, and two
    // dispatchers asking the same target never move more than the excess.
    if (all.size() <= r.target || moved >= r.max) {
        std::lock_guard lk(rebalance_mu_);
        if (drain_epoch_.load() == epoch) {
            rebalance_active_ = false;
            spdlog::info("rebalance: done, {} sessions moved, {} left", rebalance_moved_,
                         all.size());
        }
        return false;
    }
    budget += r.rate * std::chrono::duration<double>(tick).count();
    size_t n = std::min({size_t(budget), all.size() - size_t(r.target), size_t(r.max - moved)});
    if (n == 0) return true;
    budget -= double(n);
    // Sessions that arrived less than rebalance_min_age ago go last: they are moved only when
    // nothing older remains.
    auto young_after = std::chrono::steady_clock::now() - rebalance_min_age;
    std::stable_partition(all.begin(), all.end(),
                          [&](const auto& s) { return s->logged_in_at() <= young_after; });
    uint64_t g;
    auto lim = limits(g);
    std::lock_guard lk(rebalance_mu_);
    // Replaced (or drained) meanwhile: the new epoch's loop decides from now on.
    if (!rebalance_active_ || drain_epoch_.load() != epoch) return false;
    redirect_first(all, n, *lim, "rebalance", *metrics_.rebalance_redirects);
    rebalance_moved_ += n;
    return true;
}

void gateway_server::stop(std::function<void()> done) {
    {
        std::lock_guard lk(login_mu_);
        state_.store(gateway_state::stopping);
    }
    daemon_control::notify_stopping();
    close_acceptor();
    asio::post(summary_timer_.get_executor(), [this] { summary_timer_.cancel(); });
    spawn(io_, stop_loop(std::move(done)), "gateway stop");
}

asio::awaitable<void> gateway_server::stop_loop(std::function<void()> done) {
    uint64_t g;
    auto lim = limits(g);
    auto all = open_sessions();
    spdlog::info("stopping: kicking {} connections (grace {} ms)", all.size(),
                 lim->shutdown_grace.count());
    for (auto& s : all) {
        count_kick(proto::kick_reason::shutdown);
        // Drawn per session: the fleet's other gateways do not get every client in one instant.
        s->finish(proto::encode(proto::kick_msg{
            proto::kick_reason::shutdown, draw_hint(lim->reconnect_hint, lim->reconnect_jitter),
            "gateway is shutting down"}));
    }
    all.clear();
    auto deadline = std::chrono::steady_clock::now() + lim->shutdown_grace;
    asio::steady_timer t(io_);
    while (connections_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        t.expires_after(std::chrono::milliseconds(20));
        co_await t.async_wait(use_tuple);
    }
    if (connections_.load() > 0) {
        spdlog::warn("stopping: {} connections still open after the grace period; closing",
                     connections_.load());
        std::lock_guard lk(conns_mu_);
        for (auto& w : conns_)
            if (auto s = w.lock()) {
                auto sp = s;
                asio::post(s->socket_executor(), [sp] { sp->close_now(); });
            }
    }
    if (events_) {
        // The logouts of the shutdown kicks, and whatever else waits: sent if Redis is there to
        // take them within a second; the rest is lost with the process (docs/events.md).
        auto flush_until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        while (events_->buffered() > 0 && events_redis_->connected() &&
               std::chrono::steady_clock::now() < flush_until) {
            t.expires_after(std::chrono::milliseconds(20));
            co_await t.async_wait(use_tuple);
        }
        events_->stop();
        events_redis_->stop();
    }
    cluster_->stop();
    admin_->stop();
    // Let the cancelled accepts, reads and timers complete before the event loop stops: their
    // handlers must not outlive the objects they belong to.
    t.expires_after(std::chrono::milliseconds(100));
    co_await t.async_wait(use_tuple);
    done();
}

bool gateway_server::reload() {
    daemon_control::notify_reloading();
    try {
        auto c = load_gateway_config(cfg_.file, cfg_.id);
        if (tls_) {
            // New handshakes get the new certificate; sessions keep the one they started with.
            if (!c.tls.enabled())
                throw config_error(
                    "tls: the certificate cannot be removed while the tls/wss "
                    "listeners run; restart without them instead");
            auto before = tls_->info();
            std::string error;
            if (!tls_->reload(c.tls, error)) throw config_error("tls: " + error);
            auto after = tls_->info();
            if (after.fingerprint != before.fingerprint)
                spdlog::info(
                    "reload: tls certificate {} (sha256 {}) replaces sha256 {}, valid "
                    "until {}",
                    after.subject, after.fingerprint, before.fingerprint, after.not_after);
        }
        apply(c);
        metrics_.reload_ok->inc();
        spdlog::info("reload: configuration applied");
        daemon_control::notify_ready("reloaded");
        return true;
    } catch (const std::exception& e) {
        metrics_.reload_failed->inc();
        spdlog::error("reload failed, keeping the running configuration: {}", e.what());
        daemon_control::notify_ready("reload failed; running the previous configuration");
        return false;
    }
}

void gateway_server::apply(const gateway_config& c) {
    const auto* old_spec = cfg_.fleet.find(cfg_.id);
    const auto* new_spec = c.fleet.find(cfg_.id);
    if (old_spec && new_spec &&
        (old_spec->client_listen != new_spec->client_listen || old_spec->admin != new_spec->admin ||
         old_spec->rpc != new_spec->rpc))
        spdlog::warn("reload: listen addresses of {} changed in the fleet; restart to apply",
                     cfg_.id);
    if (old_spec && new_spec && old_spec->node != new_spec->node)
        spdlog::warn(
            "reload: node number of {} changed in the fleet ({} -> {}); its "
            "server_msg_ids keep the old one until a restart",
            cfg_.id, old_spec->node, new_spec->node);
    if (backend_sections(c) != backend_sections(cfg_))
        spdlog::warn("reload: directory/redis/events sections changed; restart to apply");
    live_.set(live_of(c));
    router_.set_limits(c.limits);
    coalescer_.set_delay(c.limits.write_coalesce);
    admission_.set_limits(c.limits.login_rate, c.limits.login_burst, c.limits.gateway_login_rate,
                          c.limits.gateway_login_burst, std::chrono::steady_clock::now());
    apply_log_config(c.log);
    // A rotated cluster secret file counts as a change too: the cluster re-reads it on reload.
    if (!(c.fleet.gateways == cfg_.fleet.gateways) || c.cluster_secret != cfg_.cluster_secret ||
        c.fleet.cluster_secret_file != cfg_.fleet.cluster_secret_file)
        cluster_->reload(c.fleet);
    // Keep the fields start-up used (id, listen addresses); take the rest.
    auto keep_fleet = cfg_.fleet;
    cfg_.limits = c.limits;
    cfg_.log = c.log;
    cfg_.fleet = c.fleet;
    cfg_.cluster_secret = c.cluster_secret;
    if (!cfg_.fleet.find(cfg_.id)) cfg_.fleet = keep_fleet;
}

}  // namespace imgate::gw
