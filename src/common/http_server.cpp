#include "common/http_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/http/parser.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/daemon.hpp"

namespace imgate {

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}

struct http_server::conn {
    explicit conn(asio::ip::tcp::socket s) : stream(std::move(s)) {}
    beast::tcp_stream stream;
};

http_response http_response::json(http::status s, std::string body) {
    http_response r;
    r.status = s;
    r.body = std::move(body);
    return r;
}

http_response http_response::error(http::status s, const std::string& code,
                                   const std::string& message) {
    nlohmann::json j = {{"error", code}};
    if (!message.empty()) j["message"] = message;
    return json(s, j.dump());
}

http_response http_response::text(std::string body, std::string content_type) {
    http_response r;
    r.content_type = std::move(content_type);
    r.body = std::move(body);
    return r;
}

bool is_fd_exhaustion(const boost::system::error_code& ec) {
    return ec == boost::system::errc::too_many_files_open ||
           ec == boost::system::errc::too_many_files_open_in_system ||
           ec == boost::system::errc::not_enough_memory ||
           ec == boost::system::errc::no_buffer_space;
}

http_server::http_server(asio::any_io_executor ex, http_server_options opts,
                         metrics_registry& metrics)
    : ex_(ex), opts_(std::move(opts)), metrics_(metrics), acceptor_(ex) {
    limits_.store(opts_);
    label_set l{{"server", opts_.name}};
    rejected_busy_ = &metrics_.get_counter("imgate_http_rejected_total",
                                           "HTTP connections or requests refused",
                                           {{"server", opts_.name}, {"reason", "max_connections"}});
    rejected_limit_ = &metrics_.get_counter("imgate_http_rejected_total",
                                            "HTTP connections or requests refused",
                                            {{"server", opts_.name}, {"reason", "limits"}});
    read_timeouts_ = &metrics_.get_counter("imgate_http_read_timeouts_total",
                                           "HTTP connections closed at their read deadline", l);
    latency_ = &metrics_.get_histogram("imgate_http_request_duration_seconds",
                                       "Time from a complete request to its response",
                                       metrics_registry::latency_buckets_seconds(), l);
    metrics_.gauge_fn("imgate_http_connections", "Open HTTP connections", l,
                      [this] { return static_cast<double>(active_.load()); });
}

void http_server::set_options(const http_server_options& o) {
    // Only numeric limits change; readers take a copy per request.
    limits_.store(o);
}

counter& http_server::requests_counter(unsigned status) {
    // The registry lookup (lock + label sort) runs once per status code, not once per request.
    if (status >= by_status_.size()) status = 0;
    counter* c = by_status_[status].load(std::memory_order_acquire);
    if (!c) {
        c = &metrics_.get_counter("imgate_http_requests_total", "HTTP requests answered, by status",
                                  {{"server", opts_.name}, {"code", std::to_string(status)}});
        by_status_[status].store(c, std::memory_order_release);
    }
    return *c;
}

void http_server::route(http::verb method, const std::string& path, http_handler h) {
    routes_[path][method] = std::move(h);
}

void http_server::route(http::verb method, const std::string& path, http_sync_handler h) {
    auto wrapped = [h = std::move(h)](http_request_ctx ctx) -> asio::awaitable<http_response> {
        co_return h(ctx);
    };
    routes_[path][method] = std::move(wrapped);
}

void http_server::listen(const endpoint& ep) {
    auto addr = asio::ip::make_address(ep.host);
    asio::ip::tcp::endpoint tep(addr, ep.port);
    acceptor_.open(tep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(tep);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    spawn(ex_, accept_loop(), "http accept " + opts_.name);
}

asio::ip::tcp::endpoint http_server::local_endpoint() const {
    boost::system::error_code ec;
    return acceptor_.local_endpoint(ec);
}

void http_server::stop() {
    stopped_ = true;
    asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
        boost::system::error_code ec;
        self->acceptor_.close(ec);
    });
    std::lock_guard lk(conns_mu_);
    for (auto& [id, w] : conns_) {
        if (auto c = w.lock()) {
            asio::post(c->stream.get_executor(), [c] {
                boost::system::error_code ec;
                c->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
                c->stream.close();
            });
        }
    }
}

asio::awaitable<void> http_server::accept_loop() {
    auto self = shared_from_this();
    asio::steady_timer backoff(ex_);
    while (!stopped_) {
        auto [ec, sock] = co_await acceptor_.async_accept(asio::make_strand(ex_), use_tuple);
        if (ec) {
            if (ec == asio::error::operation_aborted || stopped_) co_return;
            if (is_fd_exhaustion(ec)) {
                spdlog::warn("{} listener: accept failed ({}); backing off 100ms", opts_.name,
                             ec.message());
                backoff.expires_after(std::chrono::milliseconds(100));
                co_await backoff.async_wait(use_tuple);
            }
            continue;
        }
        if (active_.load() >= limits_.max_connections.load(std::memory_order_relaxed)) {
            rejected_busy_->inc();
            // Best effort: a short 503 without reading, then close. Non-blocking write of a few
            // bytes into an empty socket buffer never stalls the accept loop.
            static const std::string busy =
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                "Retry-After: 1\r\nConnection: close\r\nContent-Length: 26\r\n\r\n"
                "{\"error\":\"server_busy\"}\r\n\r\n";
            sock.non_blocking(true, ec);
            sock.write_some(asio::buffer(busy.data(), busy.size() - 4), ec);
            sock.close(ec);
            continue;
        }
        auto c = std::make_shared<conn>(std::move(sock));
        {
            std::lock_guard lk(conns_mu_);
            conns_[next_conn_id_++] = c;
        }
        active_++;
        spawn(c->stream.get_executor(), session(c), "http session " + opts_.name);
    }
}

asio::awaitable<http_response> http_server::dispatch(http_request_ctx ctx) {
    auto it = routes_.find(std::string(ctx.path));
    if (it == routes_.end())
        co_return http_response::error(http::status::not_found, "not_found");
    auto m = it->second.find(ctx.req.method());
    if (m == it->second.end()) {
        auto r = http_response::error(http::status::method_not_allowed, "method_not_allowed");
        std::string allow;
        for (auto& [v, h] : it->second) {
            if (!allow.empty()) allow += ", ";
            allow += std::string(http::to_string(v));
        }
        r.headers.emplace_back("Allow", allow);
        co_return r;
    }
    co_return co_await m->second(ctx);
}

asio::awaitable<void> http_server::session(std::shared_ptr<conn> c) {
    auto self = shared_from_this();
    struct guard {
        http_server* s;
        conn* c;
        ~guard() {
            s->active_--;
            std::lock_guard lk(s->conns_mu_);
            for (auto it = s->conns_.begin(); it != s->conns_.end(); ++it) {
                if (it->second.expired() || it->second.lock().get() == c) {
                    s->conns_.erase(it);
                    break;
                }
            }
        }
    } g{this, c.get()};

    boost::system::error_code ec;
    asio::ip::address remote = c->stream.socket().remote_endpoint(ec).address();
    beast::flat_buffer buf(limits_.header_limit.load(std::memory_order_relaxed) + 1024);
    while (!stopped_) {
        auto lim = limits_.load();
        http::request_parser<http::string_body> parser;
        parser.header_limit(lim.header_limit);
        parser.body_limit(lim.body_limit);
        c->stream.expires_after(lim.read_timeout);
        auto [rec, n] = co_await http::async_read(c->stream, buf, parser, use_tuple);
        if (rec) {
            http::status st{};
            if (rec == beast::error::timeout) {
                read_timeouts_->inc();
            } else if (rec == http::error::header_limit) {
                st = http::status::request_header_fields_too_large;
            } else if (rec == http::error::body_limit) {
                st = http::status::payload_too_large;
            } else if (rec != http::error::end_of_stream && rec != asio::error::eof &&
                       rec != asio::error::operation_aborted &&
                       rec != asio::error::connection_reset && rec != asio::error::bad_descriptor &&
                       rec.category() == http::make_error_code(http::error::end_of_stream).category()) {
                st = http::status::bad_request;
            }
            if (st != http::status{}) {
                rejected_limit_->inc();
                http::response<http::string_body> res{st, 11};
                res.set(http::field::content_type, "application/json");
                res.set(http::field::connection, "close");
                res.body() = http_response::error(st, st == http::status::bad_request
                                                          ? "bad_request"
                                                          : "request_too_large")
                                 .body;
                res.prepare_payload();
                c->stream.expires_after(lim.write_timeout);
                co_await http::async_write(c->stream, res, use_tuple);
            }
            break;
        }
        auto started = std::chrono::steady_clock::now();
        const auto& req = parser.get();
        std::string_view target(req.target().data(), req.target().size());
        auto q = target.find('?');
        http_request_ctx ctx{req, remote, target.substr(0, q),
                             q == std::string_view::npos ? std::string_view{}
                                                         : target.substr(q + 1)};
        http_response r = co_await dispatch(ctx);

        http::response<http::string_body> res{r.status, req.version()};
        res.set(http::field::server, "imgate");
        res.set(http::field::content_type, r.content_type);
        res.set(http::field::cache_control, "no-store");
        for (auto& [k, v] : r.headers) res.set(k, v);
        res.body() = std::move(r.body);
        bool keep = req.keep_alive() && !stopped_;
        res.keep_alive(keep);
        res.prepare_payload();
        requests_counter(res.result_int()).inc();
        c->stream.expires_after(lim.write_timeout);
        auto [wec, wn] = co_await http::async_write(c->stream, res, use_tuple);
        latency_->observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        if (wec || !keep) break;
    }
    c->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    c->stream.close();
}

std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%') {
            if (i + 2 >= s.size()) return std::nullopt;
            auto hex = [](char h) -> int {
                if (h >= '0' && h <= '9') return h - '0';
                if (h >= 'a' && h <= 'f') return h - 'a' + 10;
                if (h >= 'A' && h <= 'F') return h - 'A' + 10;
                return -1;
            };
            int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else {
            out += c;
        }
    }
    return out;
}

std::optional<std::map<std::string, std::string>> parse_query(std::string_view q,
                                                              std::string* err,
                                                              size_t max_params) {
    std::map<std::string, std::string> out;
    auto fail = [&](std::string m) -> std::optional<std::map<std::string, std::string>> {
        if (err) *err = std::move(m);
        return std::nullopt;
    };
    size_t count = 0;
    while (!q.empty()) {
        auto amp = q.find('&');
        auto part = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
        if (part.empty()) continue;
        if (++count > max_params) return fail("too many query parameters");
        auto eq = part.find('=');
        auto k = percent_decode(part.substr(0, eq));
        auto v = percent_decode(eq == std::string_view::npos ? std::string_view{}
                                                             : part.substr(eq + 1));
        if (!k || !v) return fail("bad percent-encoding in query");
        if (k->empty()) return fail("empty query parameter name");
        if (!out.emplace(std::move(*k), std::move(*v)).second)
            return fail("repeated query parameter");
    }
    return out;
}

}  // namespace imgate
