#pragma once
// The gateway core: client listener, session registry and hub, message routing (local first, then
// the cluster seam), receipts, the admin API (/status /metrics /healthz /drain /push), drain,
// graceful stop and reload. Implements local_delivery for traffic arriving from peers.
#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/http_server.hpp"
#include "common/jwt.hpp"
#include "common/metrics.hpp"
#include "gateway/cluster.hpp"
#include "gateway/gateway_config.hpp"
#include "gateway/hub.hpp"
#include "gateway/login_limiter.hpp"
#include "gateway/routing.hpp"

namespace imgate::gw {

class session;

enum class gateway_state { serving, draining, stopping };

// The DELIVER (or PUSH for backend pushes) frame of msg, encoded once for every recipient.
shared_frame encode_delivery(const outbound_message& msg);
// One send result from the local reach and the cluster's answer: delivered when anyone was
// reached, offline when nobody was and the cluster said so, else the cluster's error.
proto::code combine_results(uint32_t local, const forward_result& fr, uint32_t& total);
const char* to_string(gateway_state s);

// Owns everything of one running gateway except the io_context and its threads.
class gateway_server final : public local_delivery {
  public:
    gateway_server(asio::io_context& io, gateway_config cfg, metrics_registry& metrics);
    ~gateway_server() override;

    // Start-up (throws on bind failure): builds the cluster, binds the client and admin listeners.
    void start();
    asio::ip::tcp::endpoint client_endpoint() const;
    asio::ip::tcp::endpoint admin_endpoint() const;
    std::string rpc_endpoint() const;  // as configured in the fleet
    const std::string& id() const { return cfg_.id; }

    // SIGTERM: kick every client with `shutdown`, wait up to shutdown_grace, then call done().
    void stop(std::function<void()> done);
    // SIGHUP: re-read the config file; a bad file keeps the running configuration.
    bool reload();
    // POST /drain.
    void drain();
    gateway_state state() const { return state_.load(); }

    // --- used by sessions ---
    std::shared_ptr<const gateway_limits> limits(uint64_t& gen) const;
    uint64_t limits_generation() const { return limits_gen_.load(std::memory_order_acquire); }
    jwt::verify_result verify_token(std::string_view token) const;
    // Per-source-address LOGIN rate (limits.login_rate/login_burst); false: refuse this attempt.
    bool allow_login(const asio::ip::address& remote);
    // Registers a logged-in session (replacing one with the same user+device) and marks it logged
    // in. False when the gateway is no longer serving (draining or stopping).
    bool on_login(const std::shared_ptr<session>& s);
    void on_closed(session& s);
    // Moves the target and payload out of m; the SEND_RESULT echoes corr.
    void on_send(session& s, proto::send_msg& m, uint32_t corr);
    void on_ack(session& s, uint64_t server_msg_id);
    proto::code on_join(session& s, const std::string& room);
    proto::code on_leave(session& s, const std::string& room);
    void count_error(proto::code c);
    void count_login(const char* result);
    void count_kick(proto::kick_reason r);
    void count_slow_consumer();
    void count_idle_close();
    void count_write(size_t frames) {
        writes_->inc();
        frames_written_->inc(frames);
    }
    void count_message(proto::target_kind kind, bool push, proto::code status);
    const std::string& self_id() const { return cfg_.id; }

    // --- local_delivery (calls from the cluster layer, any thread) ---
    uint32_t deliver_local(const outbound_message& msg) override;
    void receipt_local(uint64_t origin_session, const proto::receipt_msg& r) override;
    std::vector<std::string> local_users() const override;
    std::vector<std::string> local_rooms() const override;
    void device_claimed(const std::string& user, const std::string& device) override;

    // Routes msg: local sessions (except exclude_sid) first, then the cluster; done(status,
    // reached) exactly once, possibly on another thread.
    void route(const outbound_message& msg, uint64_t exclude_sid,
               std::function<void(proto::code, uint32_t)> done);

    size_t connections() const { return connections_.load(); }
    hub& sessions_hub() { return hub_; }

  private:
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> drain_loop();
    asio::awaitable<void> stop_loop(std::function<void()> done);
    asio::awaitable<void> lag_probe();
    asio::awaitable<void> housekeeping();
    uint32_t deliver_to_sessions(const outbound_message& msg, uint64_t exclude_sid);
    void refuse_busy(asio::ip::tcp::socket& sock);
    void setup_admin();
    bool admin_authorized(const http_request_ctx& ctx);
    asio::awaitable<http_response> handle_push(http_request_ctx ctx);
    http_response handle_status();
    void apply(const gateway_config& c);
    void close_acceptor();
    double load() const;

    asio::io_context& io_;
    gateway_config cfg_;  // the running configuration (id and listen addresses never change)
    metrics_registry& metrics_;
    std::unique_ptr<cluster> cluster_;
    std::shared_ptr<http_server> admin_;
    asio::ip::tcp::acceptor acceptor_;
    asio::ip::tcp::endpoint client_ep_;
    hub hub_;
    pending_acks acks_;
    recent_ids seen_;
    msg_id_source ids_;
    std::chrono::steady_clock::time_point started_;

    mutable std::mutex cfg_mu_;  // guards limits_, secrets_, admin_token_
    std::shared_ptr<const gateway_limits> limits_;
    std::vector<std::string> secrets_;
    int64_t leeway_s_ = 0;
    std::string admin_token_;
    std::atomic<uint64_t> limits_gen_{1};
    login_limiter login_limiter_{0, 1};

    std::atomic<gateway_state> state_{gateway_state::serving};
    // Orders state changes against on_login: once drain() returns, every session is either
    // logged in (and will be redirected) or will be refused.
    std::mutex login_mu_;
    std::atomic<size_t> connections_{0};
    std::atomic<uint64_t> next_session_id_{1};
    std::mutex conns_mu_;
    std::unordered_map<uint64_t, std::weak_ptr<session>> conns_;
    std::atomic<double> lag_ms_{0};

    // Metrics looked up once.
    std::array<counter*, 64> errors_{};
    std::array<counter*, 8> kicks_{};
    counter* accepted_;
    counter* busy_;
    counter* slow_;
    counter* idle_;
    counter* dupes_;
    counter* receipts_;
    counter* deliveries_;
    counter* writes_;
    counter* frames_written_;
    counter* ack_evictions_;
    counter* admin_unauthorized_;
    counter* redirects_;
    counter* reload_ok_;
    counter* reload_failed_;
    std::map<std::string, counter*> logins_;  // filled in the constructor, read-only after
    counter* msgs_[3][3] = {};                // [user|room|push][delivered|offline|error]
};

}  // namespace imgate::gw
