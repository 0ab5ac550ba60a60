#include "dispatcher/poller.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include "common/awaitable.hpp"
#include "common/daemon.hpp"
#include "dispatcher/admin_http.hpp"

namespace imgate::disp {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct poller::loop {
    loop(asio::any_io_executor ex, pull_target t)
        : target(std::move(t)), timer(ex), conn(ex), rng(std::random_device{}()) {}
    pull_target target;
    asio::steady_timer timer;
    admin_connection conn;  // kept alive between pulls
    std::atomic<bool> stopped{false};
    std::mt19937_64 rng;
};

poller::poller(asio::any_io_executor ex, fleet_state& fleet, metrics_registry& metrics)
    : ex_(std::move(ex)), fleet_(fleet) {
    latency_ = &metrics.get_histogram("imgate_dispatcher_pull_duration_seconds",
                                      "Round trip of a gateway /status pull (failed ones too)",
                                      metrics_registry::latency_buckets_seconds());
}

poller::~poller() {
    stop();
}

void poller::set_settings(const poll_settings& s) {
    interval_ms_ = s.interval.count();
    fast_interval_ms_ = std::min(s.fast_interval, s.interval).count();
    timeout_ms_ = s.timeout.count();
    jitter_ = s.jitter;
}

void poller::sync() {
    auto targets = fleet_.pull_targets();
    std::lock_guard lk(mu_);
    for (auto it = loops_.begin(); it != loops_.end();) {
        auto t = std::find_if(targets.begin(), targets.end(),
                              [&](const pull_target& x) { return x.id == it->first; });
        if (t == targets.end() || !(*t == it->second->target)) {
            stop_loop(it->second);
            it = loops_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto& t : targets) {
        if (loops_.count(t.id)) continue;
        auto l = std::make_shared<loop>(asio::make_strand(ex_), t);
        loops_[t.id] = l;
        spawn(l->timer.get_executor(), run(l), "pull " + t.id);
    }
}

void poller::stop_loop(const std::shared_ptr<loop>& l) {
    l->stopped = true;
    asio::post(l->timer.get_executor(), [l] {
        l->timer.cancel();
        l->conn.close();
    });
}

void poller::stop() {
    std::lock_guard lk(mu_);
    for (auto& [id, l] : loops_) stop_loop(l);
    loops_.clear();
}

asio::awaitable<std::string> poller::pull_once(loop& l, std::string& body) {
    auto timeout = std::chrono::milliseconds(timeout_ms_.load());
    admin_request req{http::verb::get, "/status", 11};
    req.set(http::field::host, l.target.admin.to_string());
    req.set(http::field::user_agent, "imgate-dispatcher");
    req.keep_alive(true);
    admin_response res;
    std::string err =
        co_await admin_exchange(l.conn, l.target.admin, req, res, timeout, max_status_body);
    if (!err.empty()) co_return err.starts_with("body ") ? "status " + err : err;
    if (res.result() != http::status::ok)
        co_return "GET /status answered HTTP " + std::to_string(res.result_int());
    body = std::move(res.body());
    co_return std::string();
}

asio::awaitable<void> poller::run(std::shared_ptr<loop> l) {
    const auto& id = l->target.id;
    while (!l->stopped) {
        auto started = std::chrono::steady_clock::now();
        uint64_t token = fleet_.pull_started(id);
        std::string body;
        std::string err = co_await pull_once(*l, body);
        if (l->stopped) break;
        double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
                .count();
        latency_->observe(ms / 1000);
        if (err.empty()) {
            auto parsed = parse_gateway_status(body);
            if (auto* s = std::get_if<gateway_status>(&parsed))
                fleet_.pull_succeeded(id, token, *s, ms);
            else
                fleet_.pull_failed(id, token, std::get<std::string>(parsed), ms);
        } else {
            fleet_.pull_failed(id, token, err, ms);
        }
        // Interval measured from the start of the pull, jittered so that several dispatchers
        // (and the gateways of one dispatcher) do not pull in lock-step.
        double j = jitter_.load();
        double factor = std::uniform_real_distribution<double>(1.0 - j, 1.0 + j)(l->rng);
        auto base = fleet_.in_transition(id) ? fast_interval_ms_.load() : interval_ms_.load();
        auto wait =
            std::chrono::milliseconds(static_cast<int64_t>(static_cast<double>(base) * factor)) -
            (std::chrono::steady_clock::now() - started);
        l->timer.expires_after(wait);
        co_await l->timer.async_wait(use_tuple);
    }
    l->conn.close();
}

}  // namespace imgate::disp
