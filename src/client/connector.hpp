#pragma once
// Gets a logged-in session: to a fixed gateway, or through the dispatcher — try its pick, then
// its alternates without another call; when all fail, wait per the reconnect rule (contract A,
// docs/protocol.md section 5: the dispatcher's policy, server hints waited exactly) and ask again
// with exclude=<failed ids>. Login errors that a retry cannot fix (bad or expired token) end the
// attempt at once. A refused TLS certificate is fatal for that gateway only: the
// alternates are still tried, but a round in which every gateway refused ends the attempt.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "client/dispatcher_list.hpp"
#include "client/http_client.hpp"
#include "client/logic.hpp"
#include "client/session.hpp"

namespace imgate::client {

struct target_spec {
    std::optional<gateway_addr> gateway;  // fixed gateway; otherwise the dispatchers
    // Asked in turn per the fail-over rule (dispatcher_list.hpp); the first round starts at a
    // random one (the connector's seed), so clients spread over them.
    std::vector<http_url> dispatchers;
    std::string region;
    transport via = transport::tcp;  // asked of the dispatcher, used for every gateway
    // TLS trust for tls/wss gateways and an https dispatcher (null: made on demand from the
    // system store).
    std::shared_ptr<const tls_client> tls;
};

struct connect_result {
    std::shared_ptr<client_session> session;  // logged in; null on failure
    gateway_addr gateway;                     // where it is connected
    std::string error;                        // the last failure, one line
    bool fatal = false;                       // retrying cannot help (auth)
    bool cert_refused = false;                // the gateway's TLS certificate was refused
    std::optional<proto::error_msg> login_error;
    unsigned attempts = 0;   // gateways tried
    std::string dispatcher;  // the dispatcher whose answer led here ("" for a fixed gateway)
    // Why the last attempt failed, one of the load events' causes: refused, timeout,
    // rate_limited, server_busy, draining, http_503, http_error, tls, other.
    const char* cause = "";
    // The longest server hint of the last round (503 retry_after_ms / Retry-After, the REDIRECT
    // after a rate refusal): the next round waits exactly this.
    std::optional<std::chrono::milliseconds> hint;
};

// The server's reconnect hint in how a session ended: a KICK's or REDIRECT's reconnect_after_ms
// when it is > 0 (a KICK idle carries none); nullopt when the client's own jitter applies.
std::optional<std::chrono::milliseconds> server_hint(const session_end& e);

// True for login errors a retry elsewhere cannot fix.
bool is_fatal_login_error(proto::code c);

class connector {
  public:
    using log_fn = std::function<void(const std::string&)>;

    connector(asio::any_io_executor ex, target_spec target, session_options opts, uint64_t seed,
              log_fn log = {});

    // Tries until a session is logged in, a fatal error, or the deadline.
    asio::awaitable<connect_result> connect(const std::string& user, const std::string& token,
                                            std::chrono::steady_clock::time_point deadline,
                                            std::optional<gateway_addr> first = std::nullopt);

    // A validation hook for every gateway address before connecting (the load generator's
    // loopback guard); returns an error line to refuse the address.
    std::function<std::string(const gateway_addr&)> guard;
    // Rounds (one dispatcher answer, or one try of a fixed gateway) before giving up; 0: until
    // the deadline. One-shot commands use 2: the pick and its alternates, then one re-ask.
    unsigned max_rounds = 0;
    // Called for every failed attempt: the gateway id ("" for the dispatcher) and the cause.
    std::function<void(const std::string& gateway, const char* cause)> on_attempt_failed;
    // Called each time a dispatcher round moves on to the next URL (also logged).
    dispatcher_failover_fn on_dispatcher_failover;
    const failover_plan& plan() const { return plan_; }
    // The dispatcher URLs with the one the next round starts at (sticky across connect()s).
    dispatcher_list& dispatchers() { return dispatchers_; }
    // The reconnect rule with the dispatcher's latest policy (defaults until one was seen).
    reconnect_schedule& schedule() { return schedule_; }
    // Asks the next dispatcher call (the first round of the next connect()) to exclude this
    // gateway: the one just lost, which the dispatcher may still believe up.
    void exclude_once(std::string id) { exclude_once_ = std::move(id); }

  private:
    asio::awaitable<connect_result> try_one(const gateway_addr& g, const std::string& token);
    asio::awaitable<bool> sleep_until(std::chrono::milliseconds d,
                                      std::chrono::steady_clock::time_point deadline);

    asio::any_io_executor ex_;
    target_spec target_;
    session_options opts_;
    std::minstd_rand rng_;  // small: the load generator keeps one per reconnecting client
    log_fn log_;
    failover_plan plan_;
    reconnect_schedule schedule_;
    dispatcher_list dispatchers_;
    std::string exclude_once_;
};

}  // namespace imgate::client
