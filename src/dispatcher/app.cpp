#include "dispatcher/app.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "common/log_throttle.hpp"
#include "common/logging.hpp"
#include "dispatcher/dashboard.hpp"
#include "dispatcher/query.hpp"

namespace imgate::disp {

namespace {

health_params to_health(const dispatcher_config& c) {
    health_params p;
    p.rise = c.poll.rise;
    p.fall = c.poll.fall;
    p.slow_start = c.poll.slow_start;
    p.high_water = c.overload.high_water;
    p.low_water = c.overload.low_water;
    p.degraded_after = c.poll.degraded_after;
    return p;
}

http_server_options public_options(const dispatcher_config& c) {
    http_server_options o;
    o.name = "public";
    o.max_connections = c.http.max_connections;
    o.read_timeout = c.http.read_timeout;
    o.write_timeout = c.http.write_timeout;
    o.header_limit = c.http.header_limit;
    o.body_limit = 0;
    return o;
}

// The HTTPS listener takes the public listener's limits; its own name labels its metrics.
http_server_options https_options(const dispatcher_config& c) {
    http_server_options o = public_options(c);
    o.name = "https";
    return o;
}

http_server_options admin_options(const dispatcher_config& c) {
    http_server_options o;
    o.name = "admin";
    o.max_connections = 256;
    o.read_timeout = c.http.read_timeout;
    o.write_timeout = c.http.write_timeout;
    o.header_limit = c.http.header_limit;
    o.body_limit = 0;
    return o;
}

// The HTTPS certificate and key are part of what --check-config validates: listed with the
// secret files, a broken certificate deployed on disk turns imgate_config_file_valid to 0 and
// the reload diff names a rotated file by fingerprint.
std::vector<std::string> https_files(const dispatcher_config& c) {
    if (!c.https.enabled()) return {};
    return {c.https.tls.cert_file, c.https.tls.key_file};
}

endpoint to_endpoint(const asio::ip::tcp::endpoint& e) {
    return endpoint{e.address().to_string(), e.port()};
}

// Bumped by every install() of any dispatcher_app in the process: a thread's cached runtime is
// current while the number it was taken at still is.
std::atomic<uint64_t> runtime_generation{0};

constexpr const char* admin_actions[] = {"weight", "disable", "enable"};

// One query parameter's raw value (the admin API's ids and numbers need no percent-decoding:
// gateway ids are [A-Za-z0-9._-]); nullopt when absent.
std::optional<std::string_view> query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        auto amp = query.find('&');
        auto part = query.substr(0, amp);
        auto eq = part.find('=');
        if (part.substr(0, eq) == name)
            return eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

}  // namespace

dispatcher_app::dispatcher_app(dispatcher_config cfg)
    : cfg_(std::move(cfg)),
      io_(1),
      config_info_(metrics_, {cfg_.file, cfg_.fleet_file, https_files(cfg_)},
                   [file = cfg_.file] {
                       auto c = load_dispatcher_config(file);
                       if (c.https.enabled()) make_server_tls_context(c.https.tls, nullptr);
                       return config_files{c.file, c.fleet_file, https_files(c)};
                   }),
      fleet_(clock_, std::random_device{}(), &metrics_),
      poller_(io_.get_executor(), fleet_, metrics_),
      rebalancer_(io_.get_executor(), fleet_, metrics_, clock_),
      control_(
          io_, [this] { stop(); }, [this] { reload(); }),
      rng_(std::random_device{}()),
      started_(std::chrono::steady_clock::now()) {
    no_gateway_ = &metrics_.get_counter("imgate_dispatcher_no_gateway_total",
                                        "GET /get-tcp-ip answered 503: no gateway available");
    reloads_ok_ =
        &metrics_.get_counter("imgate_dispatcher_reloads_total", "Configuration reloads applied");
    not_ready_ = &metrics_.get_counter(
        "imgate_dispatcher_not_ready_total",
        "GET /healthz answered 503: no gateway could be handed out at that moment");
    for (const char* a : admin_actions)
        metrics_.get_counter("imgate_dispatcher_admin_changes_total",
                             "Runtime changes applied through the admin API, by action",
                             {{"action", a}});
    reload_failures_ = &metrics_.get_counter(
        "imgate_dispatcher_reload_failures_total",
        "Configuration reloads refused (invalid file; the old configuration stays)");
    metrics_.gauge_fn("imgate_dispatcher_uptime_seconds", "Seconds since start-up", {}, [this] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    });
    for (uint32_t i = 1; i < cfg_.threads; ++i)
        shards_.push_back(std::make_unique<boost::asio::io_context>(1));
    fleet_.apply(cfg_.fleet, to_health(cfg_), true);
    install(cfg_);
    last_reload_ms_ = clock_.wall_ms();
}

dispatcher_app::~dispatcher_app() {
    poller_.stop();
    rebalancer_.stop();
}

void dispatcher_app::install(const dispatcher_config& c) {
    auto r = std::make_shared<runtime>();
    r->regions = c.regions;
    r->known_regions.insert(c.regions.default_region());
    for (auto& g : c.fleet.gateways) r->known_regions.insert(g.region);
    r->max_uid_length = c.max_uid_length;
    r->max_exclude = c.max_exclude;
    r->alternates = c.alternates;
    r->retry_base_ms = 1000 * std::max<int64_t>(1, (c.poll.interval.count() + 999) / 1000);
    r->reconnect = {c.reconnect.base.count(), c.reconnect.jitter.count(), c.reconnect.max.count()};
    r->admin_token = c.admin.token;
    r->decision_log = c.decision_log;
    // Regions named only in the CIDR table are valid to ask for (they may gain gateways later).
    for (auto& name : c.regions.regions()) r->known_regions.insert(name);
    rebalancer_.configure(c.rebalance, c.rebalance.token);
    std::lock_guard lk(mu_);
    rt_ = std::move(r);
    runtime_generation.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<const dispatcher_app::runtime> dispatcher_app::rt() const {
    std::lock_guard lk(mu_);
    return rt_;
}

const dispatcher_app::runtime& dispatcher_app::hot_rt() const {
    // Per thread: the hot path reads the runtime without the mutex and without touching the
    // shared_ptr's count, a cache line every serving thread would otherwise write per request.
    // The copy kept here holds a replaced runtime until this thread's next request.
    thread_local const dispatcher_app* owner = nullptr;
    thread_local uint64_t generation = 0;
    thread_local std::shared_ptr<const runtime> cached;
    auto g = runtime_generation.load(std::memory_order_acquire);
    if (owner != this || generation != g || !cached) {
        cached = rt();
        owner = this;
        generation = g;
    }
    return *cached;
}

// The public routes, on the plain listener and (when configured) the HTTPS one alike.
void dispatcher_app::add_public_routes(http_server& s) {
    http_sync_handler tcp_ip = [this](const http_request_ctx& ctx) { return get_tcp_ip(ctx); };
    s.route(http::verb::get, "/get-tcp-ip", tcp_ip);
    // Readiness: 200 only while /get-tcp-ip can hand out a gateway; liveness is /livez.
    http_sync_handler ready = [this](const http_request_ctx&) { return healthz(); };
    s.route(http::verb::get, "/healthz", ready);
    http_sync_handler livez = [](const http_request_ctx&) {
        return http_response::json(http::status::ok, R"({"status":"alive"})");
    };
    s.route(http::verb::get, "/livez", livez);
}

void dispatcher_app::start() {
    public_ = std::make_shared<http_server>(io_, public_options(cfg_), metrics_);
    admin_ = std::make_shared<http_server>(io_, admin_options(cfg_), metrics_);
    if (cfg_.https.enabled()) {
        // Throws config_error naming the file and OpenSSL's reason: start-up fails.
        certs_ = std::make_shared<tls_context_holder>(cfg_.https.tls);
        https_ = std::make_shared<http_server>(io_, https_options(cfg_), metrics_);
        https_->enable_tls(certs_);
    }
    // The answers of the public API that alerts divide by each other exist at 0 from start-up
    // (a rate over a series born with its first 5xx misses that 5xx). Same name, labels and help
    // as the server's own per-status counter and the 400 counter of get_tcp_ip.
    for (const char* server : {"public", "https"}) {
        if (std::string_view(server) == "https" && !https_) continue;
        for (const char* code : {"200", "400", "404", "405", "413", "431", "500", "503"})
            metrics_.get_counter("imgate_http_requests_total", "HTTP requests answered, by status",
                                 {{"server", server}, {"code", code}});
    }
    for (const char* reason : {"bad_query", "bad_uid", "bad_exclude", "bad_region", "bad_transport",
                               "unknown_parameter", "unknown_region"})
        metrics_.get_counter("imgate_dispatcher_bad_requests_total",
                             "GET /get-tcp-ip refused with 400, by reason", {{"reason", reason}});

    add_public_routes(*public_);
    if (https_) add_public_routes(*https_);
    http_sync_handler ready = [this](const http_request_ctx&) { return healthz(); };
    admin_->route(http::verb::get, "/healthz", ready);
    http_sync_handler livez = [](const http_request_ctx&) {
        return http_response::json(http::status::ok, R"({"status":"alive"})");
    };
    admin_->route(http::verb::get, "/livez", livez);
    for (const char* action : admin_actions) {
        http_sync_handler h = [this, action](const http_request_ctx& ctx) {
            return admin_change(ctx, action);
        };
        admin_->route(http::verb::post, std::string("/gateways/") + action, h);
    }
    http_sync_handler status = [this](const http_request_ctx&) {
        return http_response::json(http::status::ok, status_body());
    };
    admin_->route(http::verb::get, "/status", status);
    http_sync_handler metrics = [this](const http_request_ctx&) {
        return http_response::text(metrics_.render(), "text/plain; version=0.0.4");
    };
    admin_->route(http::verb::get, "/metrics", metrics);
    http_sync_handler dashboard = [](const http_request_ctx&) {
        return http_response::text(dashboard_html(), "text/html; charset=utf-8");
    };
    admin_->route(http::verb::get, "/", dashboard);

    public_->listen(cfg_.listen, listener_shards());
    admin_->listen(cfg_.admin_listen);
    if (https_) https_->listen(*cfg_.https.listen, listener_shards());
    poller_.set_settings(cfg_.poll);
    poller_.sync();
    rebalancer_.start();
    control_.start();
    std::string https = "off";
    if (https_) {
        auto info = certs_->info();
        https = https_endpoint()->to_string() + " (certificate " + info.subject + ", not after " +
                info.not_after + ", sha256 " + info.fingerprint + ")";
    }
    spdlog::info("imgate-dispatcher {} listening: public {} admin {} https {}; {} gateways from {}",
                 IMGATE_VERSION, public_endpoint().to_string(), admin_endpoint().to_string(), https,
                 cfg_.fleet.gateways.size(), cfg_.fleet_file);
}

bool dispatcher_app::reload_certificate(const dispatcher_config& next, std::string& error) {
    auto before = certs_->info();
    if (!certs_->reload(next.https.tls, error)) {
        spdlog::error(
            "https: certificate reload failed, keeping the running certificate ({}, not after {}, "
            "sha256 {}): {}",
            before.subject, before.not_after, before.fingerprint, error);
        return false;
    }
    https_->set_tls_limits(next.https.tls);
    auto now = certs_->info();
    if (now.fingerprint == before.fingerprint)
        spdlog::info("https: certificate unchanged ({}, not after {}, sha256 {})", now.subject,
                     now.not_after, now.fingerprint);
    else
        spdlog::info(
            "https: certificate reloaded: {}, not after {}, sha256 {} (was sha256 {}); new "
            "handshakes use it, open connections keep theirs",
            now.subject, now.not_after, now.fingerprint, before.fingerprint);
    return true;
}

std::vector<boost::asio::io_context*> dispatcher_app::listener_shards() {
    std::vector<boost::asio::io_context*> v{&io_};
    for (auto& s : shards_) v.push_back(s.get());
    return v;
}

void dispatcher_app::run() {
    std::vector<std::thread> extra;
    for (auto& s : shards_) {
        // Nothing but connections runs there: kept running between them.
        extra.emplace_back([io = s.get()] {
            auto work = boost::asio::make_work_guard(*io);
            io->run();
        });
    }
    io_.run();
    for (auto& s : shards_) s->stop();
    for (auto& t : extra) t.join();
}

void dispatcher_app::stop() {
    daemon_control::notify_stopping();
    poller_.stop();
    rebalancer_.stop();
    if (public_) public_->stop();
    if (https_) https_->stop();
    if (admin_) admin_->stop();
    control_.stop_watching();
    // Dispatcher requests are tiny and clients retry: no need to wait for in-flight ones.
    io_.stop();
    for (auto& s : shards_) s->stop();
}

bool dispatcher_app::reload() {
    daemon_control::notify_reloading();
    auto refuse = [this](const std::string& why) {
        reload_failures_->inc();
        {
            std::lock_guard lk(mu_);
            last_reload_ms_ = clock_.wall_ms();
            last_reload_ok_ = false;
            last_reload_error_ = why;
        }
        spdlog::error("reload refused, keeping the running configuration: {}", why);
        daemon_control::notify_ready("reload failed: " + why);
        return false;
    };
    dispatcher_config next;
    try {
        next = load_dispatcher_config(cfg_.file);
    } catch (const std::exception& e) {
        return refuse(e.what());
    }
    if (!(next.listen == cfg_.listen) || !(next.admin_listen == cfg_.admin_listen) ||
        next.threads != cfg_.threads || next.https.listen != cfg_.https.listen)
        spdlog::warn(
            "reload: listen, admin_listen, https.listen (adding or removing `https:`) and threads "
            "changes need a restart; keeping the current ones");
    next.listen = cfg_.listen;
    next.admin_listen = cfg_.admin_listen;
    next.threads = cfg_.threads;
    next.https.listen = cfg_.https.listen;
    if (!https_) {
        next.https = cfg_.https;
    } else {
        if (!next.https.tls.enabled()) next.https.tls = cfg_.https.tls;  // `https:` removed
        // The certificate first: a reload whose certificate does not load applies nothing (like
        // an invalid file), so the configuration and the certificate never disagree.
        std::string error;
        if (!reload_certificate(next, error)) return refuse("https: " + error);
    }
    auto sum = fleet_.apply(next.fleet, to_health(next), false);
    install(next);
    poller_.set_settings(next.poll);
    poller_.sync();
    if (public_) public_->set_options(public_options(next));
    if (admin_) admin_->set_options(admin_options(next));
    apply_log_config(next.log);
    {
        std::lock_guard lk(mu_);
        cfg_ = std::move(next);
        last_reload_ms_ = clock_.wall_ms();
        last_reload_ok_ = true;
        last_reload_error_.clear();
    }
    reloads_ok_->inc();
    config_info_.reloaded();
    auto join = [](const std::vector<std::string>& v) {
        std::string s;
        for (auto& x : v) s += (s.empty() ? "" : ",") + x;
        return s.empty() ? std::string("-") : s;
    };
    spdlog::info(
        "reload applied: added [{}] removed [{}] changed [{}] unchanged [{}]; runtime overrides "
        "dropped [{}]",
        join(sum.added), join(sum.removed), join(sum.changed), join(sum.kept),
        join(sum.overrides_dropped));
    daemon_control::notify_ready("reloaded");
    return true;
}

http_response dispatcher_app::get_tcp_ip(const http_request_ctx& ctx) {
    const runtime& r = hot_rt();
    auto parsed = parse_tcp_ip_query(ctx.query, {r.max_uid_length, r.max_exclude});
    auto bad = [this](const std::string& code, const std::string& message) {
        metrics_
            .get_counter("imgate_dispatcher_bad_requests_total",
                         "GET /get-tcp-ip refused with 400, by reason", {{"reason", code}})
            .inc();
        return http_response::error(http::status::bad_request, code, message);
    };
    if (auto* e = std::get_if<query_error>(&parsed)) return bad(e->code, e->message);
    auto& q = std::get<tcp_ip_query>(parsed);
    pick_request req;
    if (q.region) {
        if (!r.known_regions.count(*q.region))
            return bad("unknown_region", "unknown region \"" + *q.region + "\"");
        req.region = *q.region;
    } else {
        req.region = r.regions.lookup(ctx.remote);
    }
    req.exclude = std::move(q.exclude);
    req.alternates = r.alternates;
    req.via = q.via;
    bool log = r.decision_log.enabled && fleet_.sample(r.decision_log.sample);
    pick_explanation why;
    auto targets = fleet_.pick(req, log ? &why : nullptr);
    if (log) log_decision(ctx, q.uid, req.region, req.via, targets, why);
    if (targets.empty()) {
        no_gateway_->inc();
        // Spread per answer, so that the clients refused together do not come back together.
        int64_t retry_ms = 0;
        {
            std::lock_guard lk(rng_mu_);
            retry_ms = spread_retry_ms(r.retry_base_ms, r.reconnect.jitter_ms, rng_);
        }
        auto res =
            http_response::json(http::status::service_unavailable, render_no_gateway(retry_ms));
        res.headers.emplace_back("Retry-After", std::to_string(retry_after_seconds(retry_ms)));
        return res;
    }
    spdlog::debug("get-tcp-ip uid={} region={} transport={} -> {}", q.uid, req.region,
                  to_string(req.via), targets.front().id);
    return http_response::json(http::status::ok, render_pick(targets, req.via, &r.reconnect));
}

void dispatcher_app::log_decision(const http_request_ctx& ctx, const std::string& uid,
                                  const std::string& region, transport via,
                                  const std::vector<pick_target>& targets,
                                  const pick_explanation& why) const {
    std::string alternates, skipped;
    for (size_t i = 1; i < targets.size(); ++i)
        alternates += (alternates.empty() ? "" : ",") + targets[i].id;
    for (auto& [id, reason] : why.skipped)
        skipped += (skipped.empty() ? "" : ",") + id + ":" + reason;
    spdlog::info(
        "decision: client={} uid={} region={} transport={} pool={} chosen={} ({}) "
        "alternates=[{}] skipped=[{}]",
        ctx.remote.to_string(), uid.empty() ? "-" : uid, region.empty() ? "-" : region,
        to_string(via), why.pool, targets.empty() ? "none" : targets.front().id,
        targets.empty() ? "no candidate" : why.chosen_why, alternates, skipped);
}

http_response dispatcher_app::healthz() const {
    size_t available = fleet_.available();
    if (available > 0) {
        nlohmann::json j = {{"status", "ok"}, {"available_gateways", available}};
        return http_response::json(http::status::ok, j.dump());
    }
    not_ready_->inc();
    size_t configured = fleet_.size();
    nlohmann::json j = {
        {"status", "unavailable"},
        {"reason", "no_gateway_available"},
        {"message", configured == 0
                        ? "the fleet file lists no gateway"
                        : "none of the " + std::to_string(configured) +
                              " configured gateways can take clients now (down, draining, "
                              "overloaded, degraded or disabled; see the admin /status)"},
        {"available_gateways", 0},
        {"configured_gateways", configured}};
    return http_response::json(http::status::service_unavailable, j.dump());
}

http_response dispatcher_app::admin_change(const http_request_ctx& ctx, const char* action) {
    auto r = rt();
    auto refuse = [&](http::status st, const std::string& code, const std::string& msg) {
        metrics_
            .get_counter("imgate_dispatcher_admin_refused_total",
                         "Admin API changes refused, by action and reason",
                         {{"action", action}, {"reason", code}})
            .inc();
        // A stranger can send these in a loop: throttled, unlike the audit of applied changes.
        IMGATE_LOG_THROTTLED(info, "audit: {} {}?{} from {} token {}: refused ({}: {})", "POST",
                             ctx.path, ctx.query, ctx.remote.to_string(), bearer_fingerprint(ctx),
                             code, msg);
        return http_response::error(st, code, msg);
    };
    if (r->admin_token.empty())
        return refuse(http::status::forbidden, "no_admin_token",
                      "runtime changes are off: set admin.token_file in dispatcher.yaml and "
                      "reload");
    bool ok = bearer_matches(ctx, r->admin_token);
    if (!ok)
        return refuse(http::status::unauthorized, "unauthorized",
                      "missing or wrong admin bearer token");
    auto id = query_param(ctx.query, "id");
    if (!id || id->empty())
        return refuse(http::status::bad_request, "bad_request", "give the gateway as ?id=<id>");
    std::string gid(*id);
    std::string by = ctx.remote.to_string() + " token " + bearer_fingerprint(ctx);
    std::string action_s = action;
    bool found = false;
    std::string what;
    if (action_s == "weight") {
        auto v = query_param(ctx.query, "value");
        uint64_t w = 0;
        bool valid = v && !v->empty() && v->size() <= 6;
        if (valid)
            for (char c : *v) {
                if (c < '0' || c > '9') {
                    valid = false;
                    break;
                }
                w = w * 10 + uint64_t(c - '0');
            }
        if (!valid || w > 10000)
            return refuse(http::status::bad_request, "bad_value",
                          "value must be an integer 0..10000 (0: hand out no clients)");
        found = fleet_.set_weight(gid, static_cast<uint32_t>(w), by);
        what = "weight=" + std::to_string(w);
    } else {
        bool disable = action_s == "disable";
        found = fleet_.set_disabled(gid, disable, by);
        what = disable ? "disabled" : "enabled";
    }
    if (!found)
        return refuse(http::status::not_found, "unknown_gateway",
                      "no gateway \"" + gid + "\" in the fleet");
    metrics_
        .get_counter("imgate_dispatcher_admin_changes_total",
                     "Runtime changes applied through the admin API, by action",
                     {{"action", action}})
        .inc();
    spdlog::info("audit: gateway {} {} by {}: ok (kept until the next reload)", gid, what, by);
    nlohmann::json j{{"id", gid},
                     {"action", action_s},
                     {"state", to_string(fleet_.state_of(gid))},
                     {"note",
                      "kept until the next reload of the configuration; then the fleet "
                      "file wins"}};
    auto ov = fleet_.override_of(gid);
    j["override"] = ov ? nlohmann::json{{"weight", ov->weight ? nlohmann::json(*ov->weight)
                                                              : nlohmann::json(nullptr)},
                                        {"disabled", ov->disabled},
                                        {"by", ov->by},
                                        {"at_ms", ov->at_ms}}
                       : nlohmann::json(nullptr);
    return http_response::json(http::status::ok, j.dump());
}

std::string dispatcher_app::status_body() const {
    nlohmann::json j;
    {
        std::lock_guard lk(mu_);
        j["id"] = cfg_.id;
        j["version"] = IMGATE_VERSION;
        j["pid"] = static_cast<int64_t>(::getpid());
        j["config_file"] = cfg_.file;
        j["fleet_file"] = cfg_.fleet_file;
        j["poll_interval_ms"] = cfg_.poll.interval.count();
        j["poll_timeout_ms"] = cfg_.poll.timeout.count();
        j["poll_fast_interval_ms"] = std::min(cfg_.poll.fast_interval, cfg_.poll.interval).count();
        j["rise"] = cfg_.poll.rise;
        j["fall"] = cfg_.poll.fall;
        j["slow_start_ms"] = cfg_.poll.slow_start.count();
        j["high_water"] = cfg_.overload.high_water;
        j["low_water"] = cfg_.overload.low_water;
        j["last_reload"] = {{"ms", last_reload_ms_},
                            {"ok", last_reload_ok_},
                            {"error", last_reload_ok_ ? nlohmann::json(nullptr)
                                                      : nlohmann::json(last_reload_error_)}};
    }
    j["uptime_s"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    j["now_ms"] = clock_.wall_ms();
    j["reloads"] = reloads_ok_->value();
    j["reload_failures"] = reload_failures_->value();
    j["no_gateway_total"] = no_gateway_->value();
    j["config"] = config_info_.status_json();
    j["available"] = fleet_.available();
    j["ready"] = fleet_.available() > 0;
    auto maj = fleet_.jwt_majority();
    j["jwt_majority"] = maj ? nlohmann::json(*maj) : nlohmann::json(nullptr);
    j["jwt_secret_split"] = fleet_.jwt_split();
    j["admin_token"] = !rt()->admin_token.empty();
    if (certs_) {
        auto info = certs_->info();
        j["https"] = {{"listen", https_endpoint()->to_string()},
                      {"subject", info.subject},
                      {"not_after", info.not_after},
                      {"sha256", info.fingerprint}};
    } else {
        j["https"] = nullptr;
    }
    {
        auto rc = rt()->reconnect;
        j["reconnect"] = {
            {"base_ms", rc.base_ms}, {"jitter_ms", rc.jitter_ms}, {"max_ms", rc.max_ms}};
    }
    j["rebalance"] = rebalancer_.status_json();
    j["gateways"] = fleet_.status_json();
    auto balance = rebalancer_.gateway_json();
    for (auto& g : j["gateways"]) {
        auto b = balance.find(g["id"].get<std::string>());
        g["fair_share"] = b == balance.end() ? nlohmann::json(nullptr) : b->second["fair_share"];
        g["last_rebalance"] =
            b == balance.end() ? nlohmann::json(nullptr) : b->second["last_rebalance"];
    }
    uint64_t picks = 0;
    double rate = 0;
    for (auto& g : j["gateways"]) {
        picks += g["picks"].get<uint64_t>();
        rate += g["picks_per_s"].get<double>();
    }
    j["picks"] = picks;
    j["picks_per_s"] = rate;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

endpoint dispatcher_app::public_endpoint() const {
    return to_endpoint(public_->local_endpoint());
}
endpoint dispatcher_app::admin_endpoint() const {
    return to_endpoint(admin_->local_endpoint());
}

std::optional<endpoint> dispatcher_app::https_endpoint() const {
    if (!https_) return std::nullopt;
    return to_endpoint(https_->local_endpoint());
}

std::string dispatcher_app::ready_json() const {
    nlohmann::json j = {{"public", public_endpoint().to_string()},
                        {"admin", admin_endpoint().to_string()},
                        {"pid", static_cast<int64_t>(::getpid())}};
    if (https_) j["https"] = https_endpoint()->to_string();
    return j.dump();
}

}  // namespace imgate::disp
