#include "client/connector.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

#include "common/awaitable.hpp"

namespace imgate::client {

using clock = std::chrono::steady_clock;

bool is_fatal_login_error(proto::code c) {
    switch (c) {
        case proto::code::auth_failed:
        case proto::code::token_expired:
        case proto::code::bad_request:
        case proto::code::login_required:
        case proto::code::unsupported_version:
        case proto::code::bad_frame:
        case proto::code::frame_too_large:
            return true;
        default:
            return false;
    }
}

std::optional<std::chrono::milliseconds> server_hint(const session_end& e) {
    uint32_t ms = 0;
    if (e.kick && e.kick->reason != proto::kick_reason::idle) ms = e.kick->reconnect_after_ms;
    if (e.redirect) ms = e.redirect->reconnect_after_ms;
    // A zero hint is not spread by anyone: the client's own jitter does that better.
    if (ms == 0) return std::nullopt;
    return std::chrono::milliseconds(ms);
}

namespace {

const char* connect_cause(const boost::system::error_code& ec, bool cert_refused,
                          const std::string& detail) {
    if (cert_refused) return "tls";
    if (ec == asio::error::timed_out) return "timeout";
    if (ec == asio::error::connection_refused) return "refused";
    if (detail.find("TLS") != std::string::npos || detail.find("certificate") != std::string::npos)
        return "tls";
    return "other";
}

const char* login_cause(const login_outcome& lo) {
    if (lo.error) {
        switch (lo.error->status) {
            case proto::code::rate_limited:
                return "rate_limited";
            case proto::code::server_busy:
                return "server_busy";
            case proto::code::draining:
                return "draining";
            case proto::code::timeout:
            case proto::code::login_timeout:
                return "timeout";
            default:
                return "other";
        }
    }
    if (lo.ec == asio::error::timed_out) return "timeout";
    return "other";
}

}  // namespace

connector::connector(asio::any_io_executor ex, target_spec target, session_options opts,
                     uint64_t seed, log_fn log)
    : ex_(ex),
      target_(std::move(target)),
      opts_(std::move(opts)),
      rng_(static_cast<std::minstd_rand::result_type>(seed ^ (seed >> 32))),
      log_(std::move(log)),
      schedule_([this] { return std::uniform_real_distribution<double>(0, 1)(rng_); }) {
    // The target decides the transport; the options only carry it to each session.
    opts_.via = target_.via;
    bool https = any_https(target_.dispatchers);
    if (!target_.tls && (is_tls(target_.via) || https)) target_.tls = make_tls_client("", false);
    if (!target_.gateway && !target_.dispatchers.empty()) {
        auto n = target_.dispatchers.size();
        auto urls = std::make_shared<const std::vector<http_url>>(std::move(target_.dispatchers));
        target_.dispatchers.clear();
        dispatchers_ =
            dispatcher_list(std::move(urls), dispatcher_list::draw_start(n, [this] {
                                return std::uniform_real_distribution<double>(0, 1)(rng_);
                            }));
    }
    if (target_.tls) opts_.tls = target_.tls;
}

asio::awaitable<bool> connector::sleep_until(std::chrono::milliseconds d,
                                             clock::time_point deadline) {
    auto until = clock::now() + d;
    if (until > deadline) until = deadline;
    asio::steady_timer t(ex_);
    t.expires_at(until);
    co_await t.async_wait(use_tuple);
    co_return clock::now() < deadline;
}

asio::awaitable<connect_result> connector::try_one(const gateway_addr& g,
                                                   const std::string& token) {
    connect_result out;
    out.gateway = g;
    out.attempts = 1;
    if (guard) {
        if (auto e = guard(g); !e.empty()) {
            out.error = e;
            out.fatal = true;
            out.cause = "other";
            co_return out;
        }
    }
    auto s = std::make_shared<client_session>(ex_, opts_);
    std::string detail;
    auto ec = co_await s->connect(g.host, g.port, &detail, g.path);
    if (ec) {
        out.error = (g.id.empty() ? "" : g.id + ": ") + detail;
        out.cert_refused = s->certificate_refused();
        out.cause = connect_cause(ec, out.cert_refused, detail);
        co_return out;
    }
    auto lo = co_await s->login(token);
    if (!lo.ok) {
        out.error = "login to " + g.to_string() + " failed: " + lo.detail;
        out.login_error = lo.error;
        out.fatal = lo.error && is_fatal_login_error(lo.error->status);
        out.cause = login_cause(lo);
        if (lo.retry_redirect) {
            out.hint = std::chrono::milliseconds(lo.retry_redirect->reconnect_after_ms);
            out.error += " (retry in " + std::to_string(out.hint->count()) + " ms)";
        }
        co_return out;
    }
    out.session = std::move(s);
    co_return out;
}

asio::awaitable<connect_result> connector::connect(const std::string& user,
                                                   const std::string& token,
                                                   clock::time_point deadline,
                                                   std::optional<gateway_addr> first) {
    connect_result last;
    unsigned attempts = 0;
    auto log = [&](const std::string& m) {
        if (log_) log_(m);
    };
    auto failed = [&](const connect_result& r) {
        if (on_attempt_failed) on_attempt_failed(r.gateway.id, r.cause);
    };
    auto succeeded = [&] {
        schedule_.reset();
        plan_.forget_failures();
    };
    if (first) {
        auto r = co_await try_one(*first, token);
        attempts += r.attempts;
        if (r.session || r.fatal) {
            r.attempts = attempts;
            if (r.session) succeeded();
            if (!r.session) failed(r);
            co_return r;
        }
        failed(r);
        log(r.error);
        last = std::move(r);
    }
    for (unsigned round = 0;; ++round) {
        if (clock::now() >= deadline) break;
        // The longest server hint of this round: the next round waits exactly that.
        std::optional<std::chrono::milliseconds> hint;
        auto note_hint = [&](std::optional<std::chrono::milliseconds> h) {
            if (h && (!hint || *h > *hint)) hint = h;
        };
        if (target_.gateway) {
            auto r = co_await try_one(*target_.gateway, token);
            attempts += r.attempts;
            // The only gateway: a certificate it presents now won't be trusted on a retry.
            if (r.cert_refused) r.fatal = true;
            if (r.session || r.fatal) {
                r.attempts = attempts;
                if (r.session) succeeded();
                if (!r.session) failed(r);
                co_return r;
            }
            failed(r);
            log(r.error);
            note_hint(r.hint);
            last = std::move(r);
        } else {
            std::vector<std::string> exclude = plan_.exclude();
            if (!exclude_once_.empty() &&
                std::find(exclude.begin(), exclude.end(), exclude_once_) == exclude.end())
                exclude.push_back(exclude_once_);
            exclude_once_.clear();
            dispatcher_failover_fn on_failover =
                [this](const http_url& from, const std::string& cause, const http_url& to) {
                    if (log_) log_(failover_line(from, cause, to));
                    if (on_dispatcher_failover) on_dispatcher_failover(from, cause, to);
                };
            auto d = co_await get_gateway_round(ex_, dispatchers_, user, target_.region, exclude,
                                                target_.via, target_.tls, on_failover);
            if (!d.answer) {
                last = connect_result{};
                last.error = d.error;
                last.cause = d.status == 503 ? "http_503" : "http_error";
                if (d.retry_after.count() > 0) note_hint(d.retry_after);
                failed(last);
                log(d.error);
            } else {
                if (d.answer->reconnect) schedule_.set_policy(*d.answer->reconnect);
                plan_.start(*d.answer);
                unsigned tried = 0, refused = 0;
                while (auto g = plan_.next()) {
                    if (clock::now() >= deadline) break;
                    auto r = co_await try_one(*g, token);
                    attempts += r.attempts;
                    r.dispatcher = d.dispatcher;
                    if (r.session || r.fatal) {
                        r.attempts = attempts;
                        if (r.session) succeeded();
                        if (!r.session) failed(r);
                        co_return r;
                    }
                    failed(r);
                    log(r.error);
                    note_hint(r.hint);
                    plan_.mark_failed(*g);
                    ++tried;
                    if (r.cert_refused) ++refused;
                    last = std::move(r);
                }
                // Every gateway of the answer refused our trust: asking again won't change it.
                if (tried > 0 && refused == tried) {
                    last.fatal = true;
                    last.attempts = attempts;
                    co_return last;
                }
            }
        }
        last.hint = hint;
        if (max_rounds && round + 1 >= max_rounds) break;
        // Rule A: min(max, base * 2^(n-1)) + uniform [0, jitter] after the n-th failed round,
        // or exactly the server's hint when the round got one.
        auto delay = schedule_.after_failed_round(hint);
        log("retrying in " + std::to_string(delay.count()) + " ms");
        if (!co_await sleep_until(delay, deadline)) break;
    }
    if (last.error.empty())
        last.error = "gave up connecting: deadline passed";
    else
        last.error = "gave up connecting: " + last.error;
    last.attempts = attempts;
    co_return last;
}

}  // namespace imgate::client
