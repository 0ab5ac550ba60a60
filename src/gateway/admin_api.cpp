#include "gateway/admin_api.hpp"

#include <openssl/evp.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/awaitable.hpp"
#include "common/config_info.hpp"
#include "common/ids.hpp"
#include "gateway/gateway_metrics.hpp"
#include "gateway/router.hpp"
#include "gateway/server.hpp"

#ifndef IMGATE_VERSION
#define IMGATE_VERSION "dev"
#endif

namespace imgate::gw {

namespace {

// Standard base64 (RFC 4648 section 4, with padding) for /push "payload_b64". Strict: OpenSSL's
// decoder skips surrounding whitespace and accepts '=' in odd places, so the alphabet and the
// padding are checked here first and a sloppy backend hears about it instead of pushing garbage.
std::optional<std::string> decode_base64(std::string_view in) {
    if (in.size() % 4 != 0) return std::nullopt;
    size_t pad = 0;
    while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
    for (size_t i = 0; i < in.size() - pad; ++i) {
        char c = in[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/';
        if (!ok) return std::nullopt;
    }
    std::string out(in.size() / 4 * 3, '\0');
    if (in.empty()) return out;
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()), int(in.size()));
    if (n < 0 || size_t(n) < pad) return std::nullopt;
    out.resize(size_t(n) - pad);  // EVP_DecodeBlock counts the padding as zero bytes
    return out;
}

http_response unauthorized() {
    return http_response::error(http::status::unauthorized, "unauthorized",
                                "missing or wrong admin bearer token");
}

// The largest /push body: a JSON object around a payload of at most max_payload_bytes.
constexpr uint64_t max_push_body = 1 << 20;

// Users in one GET or POST /presence.
constexpr size_t max_presence_users = 1000;
// The largest POST /presence body: 1000 ids of the longest kind, JSON-escaped.
constexpr uint64_t max_presence_body = 1 << 20;

std::string hostport(const asio::ip::tcp::endpoint& ep) {
    return ep.address().to_string() + ":" + std::to_string(ep.port());
}
}  // namespace

admin_api::admin_api(asio::io_context& io, gateway_server& gw, message_router& router,
                     gateway_metrics& metrics, metrics_registry& registry)
    : gw_(gw), router_(router), metrics_(metrics), registry_(registry) {
    http_server_options o;
    o.name = "admin";
    o.body_limit = max_push_body;
    http_ = std::make_shared<http_server>(io, o, registry_);
    http_->route(http::verb::get, "/status",
                 http_sync_handler([this](const http_request_ctx&) { return status(); }));
    http_->route(http::verb::get, "/metrics", http_sync_handler([this](const http_request_ctx&) {
                     return http_response::text(registry_.render(), "text/plain; version=0.0.4");
                 }));
    http_->route(http::verb::get, "/healthz", http_sync_handler([this](const http_request_ctx&) {
                     nlohmann::json j{{"status", "ok"}, {"state", to_string(gw_.state())}};
                     return http_response::json(http::status::ok, j.dump());
                 }));
    // The token is checked on the header, before any body byte is read: a stranger costs at
    // most the header limit (docs/admin-api.md, "Authentication").
    auto authorize = [this](const http_request_ctx& ctx) -> std::optional<http_response> {
        if (authorized(ctx)) return std::nullopt;
        return unauthorized();
    };
    http_->route(http::verb::post, "/drain",
                 http_sync_handler([this](const http_request_ctx&) { return drain(); }),
                 route_options{.authorize = authorize, .audit = true});
    http_->route(http::verb::post, "/rebalance",
                 http_sync_handler([this](const http_request_ctx& ctx) { return rebalance(ctx); }),
                 route_options{.authorize = authorize, .body_limit = 4096, .audit = true});
    http_->route(http::verb::post, "/push",
                 http_handler([this](http_request_ctx ctx) { return push(std::move(ctx)); }),
                 route_options{.authorize = authorize, .body_limit = max_push_body, .audit = true});
    http_->route(http::verb::post, "/undrain",
                 http_handler([this](http_request_ctx ctx) { return undrain(std::move(ctx)); }),
                 route_options{.authorize = authorize, .audit = true});
    // Presence is private data: the same token as /push.
    auto on_presence =
        http_handler([this](http_request_ctx ctx) { return presence(std::move(ctx)); });
    http_->route(http::verb::get, "/presence", on_presence, route_options{.authorize = authorize});
    http_->route(http::verb::post, "/presence", on_presence,
                 route_options{.authorize = authorize, .body_limit = max_presence_body});
    presence_ok_ =
        &registry_.get_counter("imgate_gateway_presence_requests_total",
                               "GET/POST /presence calls, by result", {{"result", "ok"}});
    presence_bad_ =
        &registry_.get_counter("imgate_gateway_presence_requests_total",
                               "GET/POST /presence calls, by result", {{"result", "bad_request"}});
    for (const char* r : {"undrained", "already_serving", "stopping", "listen_failed"})
        registry_.get_counter("imgate_gateway_undrains_total", "POST /undrain calls, by result",
                              {{"result", r}});
}

void admin_api::listen(const endpoint& at) {
    http_->listen(at);
}
asio::ip::tcp::endpoint admin_api::local_endpoint() const {
    return http_->local_endpoint();
}
void admin_api::stop() {
    http_->stop();
}

bool admin_api::authorized(const http_request_ctx& ctx) {
    bool ok = bearer_matches(ctx, gw_.admin_token());
    if (!ok) metrics_.admin_unauthorized->inc();
    return ok;
}

http_response admin_api::status() {
    uint64_t g;
    auto lim = gw_.limits(g);
    size_t conns = gw_.connections();
    const hub& h = router_.sessions();
    nlohmann::json j;
    j["id"] = gw_.id();
    j["state"] = to_string(gw_.state());
    j["connections"] = conns;
    j["max_connections"] = gw_.max_connections();
    j["max_connections_configured"] = lim->max_connections;
    j["fd_limit"] = gw_.fd_limit();
    j["sessions"] = h.session_count();
    j["users"] = h.user_count();
    j["rooms"] = h.room_count();
    j["full"] = conns >= gw_.max_connections();
    j["load"] = gw_.load();
    j["event_loop_lag_ms"] = gw_.lag_ms();
    j["pending_acks"] = router_.pending_ack_count();
    j["pid"] = ::getpid();
    j["version"] = IMGATE_VERSION;
    j["uptime_s"] = gw_.uptime_s();
    j["client"] = hostport(gw_.client_endpoint());
    // Mesh and secrets: what a dispatcher needs to tell a gateway that is up but useless (no
    // links, or a JWT secret other than the fleet's) from a healthy one. Fingerprints only.
    auto m = gw_.mesh();
    auto peers = nlohmann::json::array();
    for (const auto& p : m.peers) {
        nlohmann::json pj{{"id", p.id}, {"state", p.state}};
        if (p.since_ms) pj["since_ms"] = *p.since_ms;
        peers.push_back(std::move(pj));
    }
    j["mesh"] = {{"peers_expected", m.peers_expected}, {"links_up", m.links_up}, {"peers", peers}};
    j["secrets"] = {
        {"jwt", gw_.token_fingerprints()},
        {"cluster", m.secret_fingerprint.empty() ? nlohmann::json(nullptr)
                                                 : nlohmann::json(m.secret_fingerprint)}};
    auto rb = gw_.rebalance_state();
    j["rebalance"] = {{"active", rb.active}, {"target", rb.target}, {"moved", rb.moved}};
    if (auto* ci = config_info::current()) j["config"] = ci->status_json();
    return http_response::json(http::status::ok, j.dump());
}

http_response admin_api::drain() {
    gw_.drain();
    nlohmann::json j{{"state", to_string(gw_.state())}, {"connections", gw_.connections()}};
    return http_response::json(http::status::ok, j.dump());
}

// Authorized by the server on the header (route_options), like /drain. Every key is required and
// checked strictly: a dispatcher sending something else has a bug that should be seen, not
// guessed around.
http_response admin_api::rebalance(const http_request_ctx& ctx) {
    auto bad = [](std::string m) {
        return http_response::error(http::status::bad_request, "bad_request", std::move(m));
    };
    auto j = nlohmann::json::parse(ctx.req.body(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return bad("body must be a JSON object");
    for (const auto& item : j.items()) {
        const auto& k = item.key();
        if (k != "target" && k != "rate" && k != "max") return bad("unknown key \"" + k + "\"");
    }
    // Unsigned integers only (not 2.0, not -1, not "3").
    auto uint_of = [&](const char* k) -> std::optional<uint64_t> {
        if (!j.contains(k) || !j[k].is_number_integer()) return std::nullopt;
        if (j[k].is_number_unsigned()) return j[k].get<uint64_t>();
        auto v = j[k].get<int64_t>();
        if (v < 0) return std::nullopt;
        return uint64_t(v);
    };
    rebalance_request r;
    auto target = uint_of("target");
    if (!target) return bad("\"target\" must be an unsigned integer");
    auto max = uint_of("max");
    if (!max || *max < 1) return bad("\"max\" must be an integer >= 1");
    if (!j.contains("rate") || !j["rate"].is_number()) return bad("\"rate\" must be a number");
    r.rate = j["rate"].get<double>();
    if (!(r.rate > 0) || r.rate > 1e7) return bad("\"rate\" must be > 0 and at most 1e7");
    r.target = *target;
    r.max = *max;
    size_t sessions = 0;
    if (!gw_.rebalance(r, sessions))
        return http_response::error(http::status::conflict, "draining",
                                    std::string("the gateway is ") + to_string(gw_.state()));
    uint64_t excess = sessions > r.target ? sessions - r.target : 0;
    nlohmann::json out{{"sessions", sessions},
                       {"target", r.target},
                       {"to_move", std::min<uint64_t>(r.max, excess)}};
    return http_response::json(http::status::ok, out.dump());
}

// Authorized by the server on the header (route_options), like /drain.
asio::awaitable<http_response> admin_api::undrain(http_request_ctx) {
    std::string error;
    auto r = co_await gw_.undrain(error);
    using ur = gateway_server::undrain_result;
    const char* result = r == ur::undrained         ? "undrained"
                         : r == ur::already_serving ? "already_serving"
                         : r == ur::stopping        ? "stopping"
                                                    : "listen_failed";
    registry_
        .get_counter("imgate_gateway_undrains_total", "POST /undrain calls, by result",
                     {{"result", result}})
        .inc();
    if (r == ur::stopping)
        co_return http_response::error(http::status::conflict, "stopping",
                                       "the gateway is shutting down (SIGTERM)");
    if (r == ur::listen_failed)
        co_return http_response::error(http::status::internal_server_error, "listen_failed", error);
    nlohmann::json j{{"state", to_string(gw_.state())},
                     {"connections", gw_.connections()},
                     {"changed", r == ur::undrained}};
    co_return http_response::json(http::status::ok, j.dump());
}

asio::awaitable<http_response> admin_api::push(http_request_ctx ctx) {
    auto j = nlohmann::json::parse(ctx.req.body(), nullptr, false);
    if (j.is_discarded() || !j.is_object())
        co_return http_response::error(http::status::bad_request, "bad_request",
                                       "body must be a JSON object");
    outbound_message msg;
    bool has_user = j.contains("user"), has_room = j.contains("room");
    if (has_user == has_room)
        co_return http_response::error(http::status::bad_request, "bad_request",
                                       "give exactly one of \"user\" or \"room\"");
    auto& t = has_user ? j["user"] : j["room"];
    bool has_text = j.contains("payload"), has_b64 = j.contains("payload_b64");
    if (has_text == has_b64)
        co_return http_response::error(http::status::bad_request, "bad_request",
                                       "give exactly one of \"payload\" or \"payload_b64\"");
    auto& p = has_text ? j["payload"] : j["payload_b64"];
    if (!t.is_string() || !p.is_string())
        co_return http_response::error(
            http::status::bad_request, "bad_request",
            "\"user\"/\"room\" and \"payload\"/\"payload_b64\" must be strings");
    uint64_t g;
    auto lim = gw_.limits(g);
    msg.target = t.get<std::string>();
    if (auto e = ids::check(msg.target, lim->max_id_length); e != ids::id_error::none)
        co_return http_response::error(http::status::bad_request, "bad_request",
                                       std::string("target id is ") + ids::to_string(e));
    if (has_text) {
        msg.payload = p.get<std::string>();
    } else {
        auto bytes = decode_base64(p.get_ref<const std::string&>());
        if (!bytes)
            co_return http_response::error(
                http::status::bad_request, "bad_request",
                "\"payload_b64\" is not standard base64 (A-Z a-z 0-9 + /, '=' padding to a "
                "multiple of 4 characters)");
        msg.payload = std::move(*bytes);
    }
    if (msg.payload.size() > lim->max_payload_bytes)
        co_return http_response::error(http::status::payload_too_large, "payload_too_large",
                                       "payload exceeds max_payload_bytes");
    msg.kind = has_user ? proto::target_kind::user : proto::target_kind::room;

    // The cluster may answer on another thread: hand the result to this strand and wake up.
    struct waiter {
        asio::steady_timer timer;
        bool done = false;
        proto::code status = proto::code::internal;
        uint32_t reached = 0;
    };
    auto ex = co_await asio::this_coro::executor;
    auto w = std::make_shared<waiter>(waiter{asio::steady_timer(ex), false});
    w->timer.expires_after(gw_.push_timeout());
    auto on_done = [w, ex](proto::code c, uint32_t reached) {
        asio::post(ex, [w, c, reached] {
            w->done = true;
            w->status = c;
            w->reached = reached;
            w->timer.cancel();
        });
    };
    router_.push(msg, on_done);
    if (!w->done) co_await w->timer.async_wait(use_tuple);
    if (!w->done)
        co_return http_response::error(http::status::gateway_timeout, "timeout",
                                       "cluster did not answer");
    metrics_.message(msg.kind, true, w->status);
    nlohmann::json out;
    out["server_msg_id"] = msg.server_msg_id;
    out["reached"] = w->reached;
    if (w->status == proto::code::ok)
        out["status"] = "delivered";
    else if (w->status == proto::code::offline)
        out["status"] = "offline";
    else {
        out["status"] = "error";
        out["error"] = proto::to_string(w->status);
        co_return http_response::json(http::status::bad_gateway, out.dump());
    }
    co_return http_response::json(http::status::ok, out.dump());
}

}  // namespace imgate::gw

namespace imgate::gw {

http_response admin_api::presence_refused(std::string message) {
    presence_bad_->inc();
    return http_response::error(http::status::bad_request, "bad_request", std::move(message));
}

// Authorized by the server on the header (route_options), like /push. This gateway's own
// sessions come from the hub (exact), the rest of the fleet from the cluster's directory.
asio::awaitable<http_response> admin_api::presence(http_request_ctx ctx) {
    std::vector<std::string> users;
    bool batch = ctx.req.method() == http::verb::post;
    if (!batch) {
        // Not parse_query: user= repeats.
        std::string_view q = ctx.query;
        while (!q.empty()) {
            auto amp = q.find('&');
            auto part = q.substr(0, amp);
            q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
            if (part.empty()) continue;
            auto eq = part.find('=');
            if (eq == std::string_view::npos || part.substr(0, eq) != "user")
                co_return presence_refused("the only query parameter is user=ID (repeatable)");
            auto v = percent_decode(part.substr(eq + 1));
            if (!v) co_return presence_refused("bad percent-encoding in query");
            if (users.size() == max_presence_users)
                co_return presence_refused("at most " + std::to_string(max_presence_users) +
                                           " users per request");
            users.push_back(std::move(*v));
        }
        batch = users.size() > 1;
    } else {
        auto j = nlohmann::json::parse(ctx.req.body(), nullptr, false);
        if (j.is_discarded() || !j.is_object() || j.size() != 1 || !j.contains("users") ||
            !j["users"].is_array())
            co_return presence_refused(
                "body must be a JSON object {\"users\": [\"id\", ...]} and nothing else");
        if (j["users"].size() > max_presence_users)
            co_return presence_refused("at most " + std::to_string(max_presence_users) +
                                       " users per request");
        for (auto& u : j["users"]) {
            if (!u.is_string()) co_return presence_refused("\"users\" must hold strings only");
            users.push_back(u.get<std::string>());
        }
    }
    if (users.empty()) co_return presence_refused("give at least one user");
    uint64_t g;
    auto lim = gw_.limits(g);
    for (size_t i = 0; i < users.size(); ++i)
        if (auto e = ids::check(users[i], lim->max_id_length); e != ids::id_error::none)
            co_return presence_refused("user " + std::to_string(i + 1) + " of " +
                                       std::to_string(users.size()) + ": id is " +
                                       ids::to_string(e));

    // The cluster may answer on another thread: hand the answers to this strand and wake up.
    struct waiter {
        asio::steady_timer timer;
        bool done = false;
        std::vector<presence_answer> answers;
    };
    auto ex = co_await asio::this_coro::executor;
    auto w = std::make_shared<waiter>(waiter{asio::steady_timer(ex), false, {}});
    w->timer.expires_after(gw_.push_timeout());
    auto on_done = [w, ex](std::vector<presence_answer> a) {
        asio::post(ex, [w, a = std::move(a)]() mutable {
            w->done = true;
            w->answers = std::move(a);
            w->timer.cancel();
        });
    };
    gw_.fleet().presence(users, on_done);
    if (!w->done) co_await w->timer.async_wait(use_tuple);
    // No answer in time (or a short one): the rest of the fleet is unknown, as with Redis down.
    if (!w->done || w->answers.size() != users.size()) {
        w->answers.assign(users.size(), presence_answer{});
        for (auto& a : w->answers) a.known = false;
    }

    const hub& h = router_.sessions();
    auto out = nlohmann::json::array();
    for (size_t i = 0; i < users.size(); ++i) {
        const auto& a = w->answers[i];
        size_t local = h.user_session_count(users[i]);
        auto gws = nlohmann::json::array();
        bool counts_known = true;
        uint64_t devices = local;
        if (local > 0) gws.push_back({{"id", gw_.id()}, {"devices", local}, {"held", false}});
        for (const auto& p : a.peers) {
            if (p.gateway == gw_.id()) continue;
            nlohmann::json pj{{"id", p.gateway}, {"devices", nullptr}, {"held", p.held}};
            if (p.devices) {
                pj["devices"] = *p.devices;
                devices += *p.devices;
            } else {
                counts_known = false;  // announced mode: "online there", no count
            }
            gws.push_back(std::move(pj));
        }
        nlohmann::json u{{"user", users[i]}, {"gateways", gws}, {"known", a.known}};
        if (!gws.empty())
            u["online"] = true;
        else if (a.known)
            u["online"] = false;
        else
            u["online"] = nullptr;  // nowhere here, and the directory could not say for the rest
        u["devices"] = counts_known && a.known ? nlohmann::json(devices) : nlohmann::json(nullptr);
        out.push_back(std::move(u));
    }
    presence_ok_->inc();
    if (!batch) co_return http_response::json(http::status::ok, out[0].dump());
    nlohmann::json body{{"users", std::move(out)}};
    co_return http_response::json(http::status::ok, body.dump());
}

}  // namespace imgate::gw
