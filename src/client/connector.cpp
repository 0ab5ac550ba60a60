#include "client/connector.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

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

connector::connector(asio::any_io_executor ex, target_spec target, session_options opts,
                     uint64_t seed, log_fn log)
    : ex_(ex),
      target_(std::move(target)),
      opts_(std::move(opts)),
      rng_(seed),
      log_(std::move(log)) {
    // The target decides the transport; the options only carry it to each session.
    opts_.via = target_.via;
    if (!target_.tls && (is_tls(target_.via) || target_.dispatcher.tls))
        target_.tls = make_tls_client("", false);
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
            co_return out;
        }
    }
    auto s = std::make_shared<client_session>(ex_, opts_);
    std::string detail;
    auto ec = co_await s->connect(g.host, g.port, &detail, g.path);
    if (ec) {
        out.error = (g.id.empty() ? "" : g.id + ": ") + detail;
        out.cert_refused = s->certificate_refused();
        co_return out;
    }
    auto lo = co_await s->login(token);
    if (!lo.ok) {
        out.error = "login to " + g.to_string() + " failed: " + lo.detail;
        out.login_error = lo.error;
        out.fatal = lo.error && is_fatal_login_error(lo.error->status);
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
    if (first) {
        auto r = co_await try_one(*first, token);
        attempts += r.attempts;
        if (r.session || r.fatal) {
            r.attempts = attempts;
            if (r.session) backoff_.reset();
            co_return r;
        }
        log(r.error);
        last = std::move(r);
    }
    for (unsigned round = 0;; ++round) {
        if (clock::now() >= deadline) break;
        std::chrono::milliseconds floor{0};
        if (target_.gateway) {
            auto r = co_await try_one(*target_.gateway, token);
            attempts += r.attempts;
            // The only gateway: a certificate it presents now won't be trusted on a retry.
            if (r.cert_refused) r.fatal = true;
            if (r.session || r.fatal) {
                r.attempts = attempts;
                if (r.session) backoff_.reset();
                co_return r;
            }
            log(r.error);
            last = std::move(r);
        } else {
            auto d = co_await get_gateway(ex_, target_.dispatcher, user, target_.region,
                                          plan_.exclude(), target_.via, target_.tls);
            if (!d.answer) {
                last = connect_result{};
                last.error = d.error;
                floor = d.retry_after;
                log(d.error);
            } else {
                plan_.start(*d.answer);
                unsigned tried = 0, refused = 0;
                while (auto g = plan_.next()) {
                    if (clock::now() >= deadline) break;
                    auto r = co_await try_one(*g, token);
                    attempts += r.attempts;
                    if (r.session || r.fatal) {
                        r.attempts = attempts;
                        if (r.session) {
                            backoff_.reset();
                            plan_.forget_failures();
                        }
                        co_return r;
                    }
                    log(r.error);
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
        if (max_rounds && round + 1 >= max_rounds) break;
        // The first re-ask (with the failed gateways excluded) is immediate; later ones back off.
        if (round > 0 || floor.count() > 0 || target_.gateway) {
            auto delay = backoff_.next(rng_, floor);
            log("retrying in " + std::to_string(delay.count()) + " ms");
            if (!co_await sleep_until(delay, deadline)) break;
        }
    }
    if (last.error.empty())
        last.error = "gave up connecting: deadline passed";
    else
        last.error = "gave up connecting: " + last.error;
    last.attempts = attempts;
    co_return last;
}

}  // namespace imgate::client
