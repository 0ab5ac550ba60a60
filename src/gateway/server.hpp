#pragma once
// The gateway core's lifecycle: the client listeners (one per transport) and the registry of open
// connections, login admission (the drain contract), drain, graceful stop and reload. Messages are
// the router's (router.hpp), the admin API is admin_api.hpp, metrics are gateway_metrics.hpp; the
// io_context, threads and signals belong to gateway_app (app.hpp).
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/jwt.hpp"
#include "common/live_config.hpp"
#include "common/metrics.hpp"
#include "common/redis.hpp"
#include "common/tls.hpp"
#include "gateway/admission.hpp"
#include "gateway/cluster.hpp"
#include "gateway/event_sink.hpp"
#include "gateway/flood_penalty.hpp"
#include "gateway/gateway_config.hpp"
#include "gateway/gateway_metrics.hpp"
#include "gateway/hub.hpp"
#include "gateway/login_summary.hpp"
#include "gateway/router.hpp"
#include "gateway/write_coalescer.hpp"

namespace imgate::gw {

namespace asio = boost::asio;
class session;
class session_io;
class admin_api;

enum class gateway_state { serving, draining, stopping };
const char* to_string(gateway_state s);

// What SIGHUP replaces at once; sessions, logins and the admin API read snapshots of it.
struct gateway_live {
    gateway_limits limits;
    std::vector<std::string> token_secrets;
    int64_t token_leeway_s = 0;
    std::string admin_token;
    std::chrono::milliseconds handshake_timeout{10000};
    uint32_t max_handshakes = 1000;
};

// POST /rebalance's parameters (docs/admin-api.md).
struct rebalance_request {
    uint64_t target = 0;  // logged-in sessions to keep
    double rate = 1;      // sessions redirected per second
    uint64_t max = 1;     // sessions this call moves at most
};
// GET /status "rebalance": the last call's parameters and progress.
struct rebalance_status {
    bool active = false;
    uint64_t target = 0;
    uint64_t moved = 0;
};
// A rebalance leaves sessions that logged in less than this ago alone while others remain: a
// client just moved here must not be moved on again.
inline constexpr std::chrono::seconds rebalance_min_age{10};

// Owns everything of one running gateway except the io_context and its threads: the listeners,
// the connection registry, the router, the cluster, the admin API and the live configuration.
class gateway_server final {
  public:
    gateway_server(asio::io_context& io, gateway_config cfg, metrics_registry& metrics);
    ~gateway_server();

    // Start-up (throws on bind failure or a bad certificate): builds the cluster, binds a client
    // listener per transport the fleet file gives this gateway, and the admin listener.
    void start();
    // The tcp listener's bound address (the first listener's when the gateway has no tcp).
    asio::ip::tcp::endpoint client_endpoint() const;
    // The bound address of one transport's listener; nullopt when the gateway does not serve it.
    std::optional<asio::ip::tcp::endpoint> client_endpoint(transport t) const;
    // The serving certificate (tls and wss), if any.
    std::optional<tls_cert_info> tls_info() const;
    asio::ip::tcp::endpoint admin_endpoint() const;
    std::string rpc_endpoint() const;  // as configured in the fleet
    const std::string& id() const { return cfg_.id; }

    // SIGTERM: kick every client with `shutdown`, wait up to shutdown_grace, then call done().
    void stop(std::function<void()> done);
    // SIGHUP: re-read the config file; a bad file keeps the running configuration.
    bool reload();
    // POST /drain.
    void drain();
    // POST /rebalance: replaces the running rebalance (if any). False while draining or stopping.
    // sessions: the live logged-in count at the call.
    bool rebalance(const rebalance_request& r, size_t& sessions);
    rebalance_status rebalance_state() const;
    // Logged-in sessions that are not being closed (what a rebalance counts against target).
    size_t live_sessions();
    // POST /undrain: a draining gateway serves again (stops redirecting, reopens the client
    // listeners on their old ports, accepts logins). Runs the reopen on the listeners' strand.
    enum class undrain_result { undrained, already_serving, stopping, listen_failed };
    asio::awaitable<undrain_result> undrain(std::string& error);
    gateway_state state() const { return state_.load(); }

    // --- used by sessions (a facade over the router, the live config and the metrics) ---
    std::shared_ptr<const gateway_limits> limits(uint64_t& gen) const;
    // Raises RLIMIT_NOFILE's soft limit to the hard one; returns the soft limit in force.
    static uint64_t raise_fd_limit();
    // Descriptors kept back from client connections for a fleet of `gateways`.
    static uint64_t fd_reserve(size_t gateways) { return 64 + 2 * uint64_t(gateways); }
    // Lingering busy refusals allowed for a descriptor limit: 1/16 of it, 8 to 256.
    static uint32_t linger_budget(uint64_t fd_limit) {
        return uint32_t(std::clamp<uint64_t>(fd_limit / 16, 8, 256));
    }
    uint64_t limits_generation() const { return live_.generation(); }
    jwt::verify_result verify_token(std::string_view token) const;
    // The LOGIN rate buckets: per source address (limits.login_rate/login_burst; none when the
    // address is unknown), then gateway-wide (limits.gateway_login_rate/burst).
    admission admit_login(const std::optional<asio::ip::address>& remote);
    // base + uniform[0, jitter] ms, drawn per call (one per client told to reconnect).
    uint32_t draw_hint(std::chrono::milliseconds base, std::chrono::milliseconds jitter) {
        return hints_.draw(base, jitter);
    }
    void count_retry_hint(std::string_view reason) { metrics_.retry_hint(reason); }
    // Registers a logged-in session (replacing one with the same user+device) and marks it logged
    // in. False when the gateway is no longer serving (draining or stopping).
    bool on_login(const std::shared_ptr<session>& s);
    void on_closed(session& s);
    // Moves the target and payload out of m; the SEND_RESULT echoes corr.
    void on_send(session& s, proto::send_msg& m, uint32_t corr);
    void on_ack(session& s, uint64_t server_msg_id);
    proto::code on_join(session& s, const std::string& room);
    proto::code on_leave(session& s, const std::string& room);
    void count_error(proto::code c) { metrics_.error(c); }
    void count_login(const char* result) { metrics_.login(result); }
    // A LOGIN that did not succeed (result as in count_login), for the periodic summary line.
    void login_failed(std::string_view result, std::string_view source) {
        login_summary_.failed(result, source);
    }
    // limits.flood_penalty: user was closed for flooding and may not log in before `until`.
    void penalise_user(const std::string& user, std::chrono::steady_clock::time_point until) {
        flood_penalty_.penalise(user, until, std::chrono::steady_clock::now());
    }
    std::optional<std::chrono::steady_clock::time_point> penalty_until(
        const std::string& user, std::chrono::steady_clock::time_point now) {
        return flood_penalty_.until(user, now);
    }
    void count_kick(proto::kick_reason r) { metrics_.kick(r); }
    void count_slow_consumer();
    void count_idle_close() { metrics_.idle->inc(); }
    void count_rate_limited(proto::op o) { metrics_.rate_limited(o); }
    void count_flood_close() { metrics_.flood_closes->inc(); }
    void count_write(size_t frames) { metrics_.write(frames); }
    // A session's write was started at once (waited = false) or left to the coalescer's flush.
    void count_write_start(bool waited) {
        (waited ? metrics_.writes_waited : metrics_.writes_at_once)->inc();
    }
    // timeouts.write_coalesce: where a session whose queue was empty waits for the next flush.
    basic_write_coalescer<session>& coalescer() { return coalescer_; }
    void count_message(proto::target_kind kind, bool push, proto::code status) {
        metrics_.message(kind, push, status);
    }
    const std::string& self_id() const { return cfg_.id; }

    // --- read by the admin API ---
    size_t connections() const { return connections_.load(); }
    // limits.max_connections, capped by what the descriptor limit leaves after the reserve
    // (listeners, admin, RPC links, files): a gateway past its descriptors could not accept, and
    // clients would wait in the kernel's queue until they time out, the admin API unreachable.
    uint32_t max_connections() const;
    uint64_t fd_limit() const { return fd_limit_; }
    double load() const;
    double lag_ms() const { return lag_ms_.load(); }
    double uptime_s() const;
    std::string admin_token() const { return live_.get()->admin_token; }
    // Fingerprints (common/fingerprint.hpp) of the JWT secrets, current first; the mesh.
    std::vector<std::string> token_fingerprints() const;
    mesh_status mesh() const { return cluster_ ? cluster_->mesh() : mesh_status{}; }
    // How long POST /push waits for the cluster's answer.
    std::chrono::milliseconds push_timeout() const;

    message_router& router() { return router_; }
    // The cluster, for the presence API (never null once start() ran).
    cluster& fleet() { return *cluster_; }
    hub& sessions_hub() { return router_.sessions(); }

  private:
    // One client listener: its transport, acceptor and the handshakes it has in flight.
    struct client_listener {
        transport kind;
        asio::ip::tcp::acceptor acceptor;
        asio::ip::tcp::endpoint ep;  // bound (the port stays the same across drain/undrain)
        std::atomic<uint32_t> handshakes{0};
        client_listener(transport k, asio::any_io_executor ex) : kind(k), acceptor(ex) {}
    };

    asio::awaitable<void> accept_loop(client_listener& l);
    asio::awaitable<void> handshake_and_start(client_listener& l, asio::ip::tcp::socket sock);
    void start_session(std::unique_ptr<session_io> io);
    void bind_listener(client_listener& l, const endpoint& where);
    void start_events();
    // Redirects logged-in sessions at a rate: all of them at drain.rate while draining, or the
    // excess over a rebalance's target at its rate while serving. One loop per epoch.
    asio::awaitable<void> redirect_loop(uint64_t epoch);
    // One rebalance tick: false when the rebalance is over (or replaced).
    bool rebalance_tick(uint64_t epoch, double& budget, std::chrono::milliseconds tick);
    asio::awaitable<undrain_result> reopen_listener(std::string* error);
    asio::awaitable<void> stop_loop(std::function<void()> done);
    asio::awaitable<void> lag_probe();
    asio::awaitable<void> housekeeping();
    asio::awaitable<void> login_summary_loop();
    void refuse_busy(asio::ip::tcp::socket& sock, transport t);
    void apply(const gateway_config& c);
    void close_acceptor();
    std::vector<std::shared_ptr<session>> open_sessions();
    // Logged-in sessions not already closing: the ones a drain or a rebalance may redirect.
    std::vector<std::shared_ptr<session>> redirectable_sessions();
    // Sends REDIRECT (empty host, spread hint, `reason`) to the first n of `all`, counted.
    void redirect_first(const std::vector<std::shared_ptr<session>>& all, size_t n,
                        const gateway_limits& lim, const char* reason, counter& count);

    asio::io_context& io_;
    gateway_config cfg_;  // the running configuration (id and listen addresses never change)
    metrics_registry& registry_;
    gateway_metrics metrics_;
    live_config<gateway_live> live_;
    message_router router_;
    std::unique_ptr<cluster> cluster_;  // after router_: it delivers into the router
    // events.enabled: the upstream events and their own Redis connection (docs/events.md).
    std::shared_ptr<redis::connection> events_redis_;
    std::shared_ptr<event_sink> events_;
    std::unique_ptr<admin_api> admin_;
    // Every acceptor runs on this strand: accept loops, drain's close and undrain's reopen.
    asio::strand<asio::io_context::executor_type> listen_strand_;
    // Several threads run the io_context: accepted connections take these strands in turn (a
    // strand per connection would cost each idle session a heap block). Empty with workers: 1,
    // where the io_context's own executor serialises everything. Used by the accept loops only.
    std::vector<asio::strand<asio::io_context::executor_type>> session_strands_;
    size_t next_strand_ = 0;
    std::vector<std::unique_ptr<client_listener>> listeners_;
    std::unique_ptr<tls_context_holder> tls_;  // set when tls.cert_file is configured
    std::chrono::steady_clock::time_point started_;
    login_admission admission_;
    hint_source hints_;
    flood_penalty flood_penalty_;
    login_summary login_summary_;
    asio::steady_timer summary_timer_;  // login_summary_loop's; cancelled by stop()
    basic_write_coalescer<session> coalescer_;

    std::atomic<gateway_state> state_{gateway_state::serving};
    // Bumped by every drain, undrain and rebalance: the redirect loop of an earlier one stops.
    std::atomic<uint64_t> drain_epoch_{0};
    mutable std::mutex rebalance_mu_;  // guards the three below and their epoch check
    rebalance_request rebalance_;
    bool rebalance_active_ = false;
    uint64_t rebalance_moved_ = 0;
    // Orders state changes against on_login: once drain() returns, every session is either
    // logged in (and will be redirected) or will be refused.
    std::mutex login_mu_;
    std::atomic<size_t> connections_{0};
    uint64_t fd_limit_ = 0;  // RLIMIT_NOFILE soft limit at start-up
    uint64_t fd_cap_ = 0;    // fd_limit_ minus the reserve: most client connections
    // Busy refusals keep their socket 200 ms so the client reads ERROR + REDIRECT before the
    // close; at most this many at once (their descriptors are part of the reserve), the rest
    // are closed at once after reading what the client already sent.
    uint32_t linger_max_ = 16;
    std::shared_ptr<std::atomic<uint32_t>> lingering_ = std::make_shared<std::atomic<uint32_t>>(0);
    std::atomic<uint64_t> next_session_id_{1};
    std::mutex conns_mu_;
    // Every open session, by slot (session::conn_slot()); freed slots are reused. A table of
    // 16-byte slots rather than a hash map: no node and no bucket per connection.
    std::vector<std::weak_ptr<session>> conns_;
    std::vector<uint32_t> free_conn_slots_;
    std::atomic<double> lag_ms_{0};
};

}  // namespace imgate::gw
