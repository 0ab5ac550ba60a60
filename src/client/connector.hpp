#pragma once
// Gets a logged-in session: to a fixed gateway, or through the dispatcher — try its pick, then
// its alternates without another call; when all fail, ask again with exclude=<failed ids> and
// back off (honouring Retry-After). Login errors that a retry cannot fix (bad or expired token)
// end the attempt at once. A refused TLS certificate is fatal for that gateway only: the
// alternates are still tried, but a round in which every gateway refused ends the attempt.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "client/http_client.hpp"
#include "client/logic.hpp"
#include "client/session.hpp"

namespace imgate::client {

struct target_spec {
    std::optional<gateway_addr> gateway;  // fixed gateway; otherwise the dispatcher
    http_url dispatcher;
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
    unsigned attempts = 0;  // gateways tried
};

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
    // Called with each dispatcher answer (get-gateway prints nothing; listen logs it).
    const failover_plan& plan() const { return plan_; }

  private:
    asio::awaitable<connect_result> try_one(const gateway_addr& g, const std::string& token);
    asio::awaitable<bool> sleep_until(std::chrono::milliseconds d,
                                      std::chrono::steady_clock::time_point deadline);

    asio::any_io_executor ex_;
    target_spec target_;
    session_options opts_;
    std::mt19937_64 rng_;
    log_fn log_;
    failover_plan plan_;
    backoff backoff_{std::chrono::milliseconds(200), std::chrono::milliseconds(10000)};
};

}  // namespace imgate::client
