#pragma once
// The gateway's admin API (docs/protocol.md, "Admin API"): GET /status /metrics /healthz for the
// dispatcher and Prometheus, POST /drain, POST /undrain,
// POST /rebalance, POST /push and GET/POST /presence (bearer token) for operators
// and backends.
#include <memory>

#include <boost/asio/io_context.hpp>

#include "common/config.hpp"
#include "common/http_server.hpp"
#include "common/metrics.hpp"

namespace imgate::gw {

class gateway_server;
class gateway_metrics;
class message_router;

// Owns the admin HTTP listener and its handlers. Reads the gateway through gateway_server's
// public accessors; a push goes through message_router::push like any message.
class admin_api {
  public:
    admin_api(asio::io_context& io, gateway_server& gw, message_router& router,
              gateway_metrics& metrics, metrics_registry& registry);

    void listen(const endpoint& at);  // throws on bind failure
    asio::ip::tcp::endpoint local_endpoint() const;
    void stop();

  private:
    // The bearer token check, run by the server on the header of /drain, /undrain and /push.
    bool authorized(const http_request_ctx& ctx);
    http_response status();
    http_response drain();
    http_response rebalance(const http_request_ctx& ctx);
    asio::awaitable<http_response> push(http_request_ctx ctx);
    asio::awaitable<http_response> undrain(http_request_ctx ctx);
    // GET /presence?user=A[&user=B...] and POST /presence {"users":[...]}.
    asio::awaitable<http_response> presence(http_request_ctx ctx);
    http_response presence_refused(std::string message);

    gateway_server& gw_;
    message_router& router_;
    gateway_metrics& metrics_;
    metrics_registry& registry_;
    std::shared_ptr<http_server> http_;
    counter* presence_ok_;
    counter* presence_bad_;
};

}  // namespace imgate::gw
