#pragma once
// An imgate::http_server on 127.0.0.1:0 with its own io_context, metrics and threads, for tests
// that stand in for a daemon's listener (a fake gateway admin, a fake dispatcher) or test the
// server itself. Add routes through server() before start().
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/http_server.hpp"
#include "common/metrics.hpp"

namespace imgate::test {

class loopback_http {
  public:
    explicit loopback_http(http_server_options o = {})
        : server_(std::make_shared<http_server>(io_, std::move(o), metrics_)) {}
    ~loopback_http() {
        server_->stop();
        work_.reset();
        io_.stop();
        for (auto& t : threads_) t.join();
    }
    loopback_http(const loopback_http&) = delete;
    loopback_http& operator=(const loopback_http&) = delete;

    http_server& server() { return *server_; }
    metrics_registry& metrics() { return metrics_; }

    // Listens and runs the io_context on `threads` threads.
    void start(int threads = 1) {
        server_->listen(endpoint{"127.0.0.1", 0});
        for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { io_.run(); });
    }
    uint16_t port() const { return server_->local_endpoint().port(); }
    std::string addr() const { return "127.0.0.1:" + std::to_string(port()); }

  private:
    // Destroyed after io_: pending handlers keep the server, and with it pointers into the
    // registry, until the io_context goes.
    metrics_registry metrics_;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    std::shared_ptr<http_server> server_;
    std::vector<std::thread> threads_;
};

// A gateway admin listener answering GET /status as a healthy, empty gateway.
class status_only_gateway {
  public:
    explicit status_only_gateway(std::string id) : id_(std::move(id)) {
        http_sync_handler h = [this](const http_request_ctx&) {
            nlohmann::json s = {{"id", id_},         {"state", "serving"},
                                {"connections", 0},  {"max_connections", 10000},
                                {"sessions", 0},     {"full", false},
                                {"load", 0.0},       {"pid", 4242},
                                {"version", "fake"}, {"uptime_s", 100.0}};
            return http_response::json(boost::beast::http::status::ok, s.dump());
        };
        http_.server().route(boost::beast::http::verb::get, "/status", h);
        http_.start();
    }
    std::string admin() const { return http_.addr(); }

  private:
    std::string id_;
    loopback_http http_;
};

}  // namespace imgate::test
