#include "gateway/server.hpp"

#include <spdlog/spdlog.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/daemon.hpp"
#include "common/ids.hpp"
#include "common/logging.hpp"
#include "gateway/session.hpp"

#ifndef IMGATE_VERSION
#define IMGATE_VERSION "dev"
#endif

namespace imgate::gw {

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

uint64_t now_ms() {
    return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count());
}

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

constexpr proto::code all_codes[] = {
    proto::code::bad_frame,     proto::code::unsupported_version,
    proto::code::unknown_op,    proto::code::frame_too_large,
    proto::code::bad_request,   proto::code::login_required,
    proto::code::auth_failed,   proto::code::token_expired,
    proto::code::login_timeout, proto::code::already_logged_in,
    proto::code::rate_limited,  proto::code::payload_too_large,
    proto::code::server_busy,   proto::code::slow_consumer,
    proto::code::not_in_room,   proto::code::too_many_rooms,
    proto::code::unavailable,   proto::code::timeout,
    proto::code::internal,      proto::code::draining,
};
constexpr proto::kick_reason all_kicks[] = {
    proto::kick_reason::replaced, proto::kick_reason::shutdown,      proto::kick_reason::drain,
    proto::kick_reason::idle,     proto::kick_reason::slow_consumer, proto::kick_reason::admin,
};
}  // namespace

proto::code combine_results(uint32_t local, const forward_result& fr, uint32_t& total) {
    total = local + fr.reached;
    if (total > 0) return proto::code::ok;
    if (fr.status == proto::code::ok || fr.status == proto::code::offline)
        return proto::code::offline;
    return fr.status;
}

const char* to_string(gateway_state s) {
    switch (s) {
        case gateway_state::serving:
            return "serving";
        case gateway_state::draining:
            return "draining";
        case gateway_state::stopping:
            return "stopping";
    }
    return "?";
}

gateway_server::gateway_server(asio::io_context& io, gateway_config cfg, metrics_registry& metrics)
    : io_(io),
      cfg_(std::move(cfg)),
      metrics_(metrics),
      acceptor_(asio::make_strand(io)),
      acks_(cfg_.limits.max_pending_acks, cfg_.limits.ack_timeout),
      seen_(cfg_.limits.dedupe_window),
      ids_(cfg_.fleet.find(cfg_.id)->node, now_ms()),
      started_(std::chrono::steady_clock::now()) {
    limits_ = std::make_shared<const gateway_limits>(cfg_.limits);
    secrets_ = cfg_.token_secrets;
    leeway_s_ = cfg_.token_leeway_s;
    admin_token_ = cfg_.admin_token;

    auto& m = metrics_;
    for (auto c : all_codes)
        errors_[size_t(c) & 63] = &m.get_counter("imgate_gateway_errors_total",
                                                 "Error codes sent to clients (error frames and "
                                                 "failed results)",
                                                 {{"code", proto::to_string(c)}});
    for (auto k : all_kicks)
        kicks_[size_t(k) & 7] =
            &m.get_counter("imgate_gateway_kicks_total", "Sessions kicked, by reason",
                           {{"reason", proto::to_string(k)}});
    login_limiter_.set_limits(cfg_.limits.login_rate, cfg_.limits.login_burst);
    for (const char* r : {"ok", "auth_failed", "token_expired", "login_required", "login_timeout",
                          "bad_frame", "bad_identity", "draining", "rate_limited"})
        logins_[r] = &m.get_counter("imgate_gateway_logins_total", "Login attempts by result",
                                    {{"result", r}});
    const char* kinds[] = {"user", "room", "push"};
    const char* results[] = {"delivered", "offline", "error"};
    for (int k = 0; k < 3; ++k)
        for (int r = 0; r < 3; ++r)
            msgs_[k][r] = &m.get_counter("imgate_gateway_messages_total",
                                         "Messages routed by this gateway, by kind and outcome",
                                         {{"kind", kinds[k]}, {"result", results[r]}});
    accepted_ = &m.get_counter("imgate_gateway_accepted_total", "Client connections accepted");
    busy_ = &m.get_counter("imgate_gateway_rejected_total", "Client connections refused at accept",
                           {{"reason", "server_busy"}});
    slow_ = &m.get_counter("imgate_gateway_slow_consumer_total",
                           "Sessions closed because their outbound queue or a write stalled");
    idle_ = &m.get_counter("imgate_gateway_idle_timeout_total",
                           "Sessions closed for no frame within idle_timeout");
    dupes_ = &m.get_counter("imgate_gateway_duplicate_forwards_total",
                            "Forwarded messages dropped as already delivered (retries)");
    receipts_ = &m.get_counter("imgate_gateway_receipts_total", "Delivery receipts routed");
    deliveries_ = &m.get_counter("imgate_gateway_deliveries_total",
                                 "Frames queued to local sessions (DELIVER and PUSH copies)");
    writes_ =
        &m.get_counter("imgate_gateway_socket_writes_total",
                       "Gathered socket writes to clients (frames_written/writes = batching)");
    frames_written_ =
        &m.get_counter("imgate_gateway_frames_written_total", "Frames written to clients");
    ack_evictions_ = &m.get_counter("imgate_gateway_pending_ack_evictions_total",
                                    "Pending-ack entries evicted before their ack (table full)");
    admin_unauthorized_ = &m.get_counter("imgate_gateway_admin_unauthorized_total",
                                         "Admin requests refused for a missing or wrong token");
    redirects_ = &m.get_counter("imgate_gateway_redirects_total", "Sessions redirected by drain");
    reload_ok_ =
        &m.get_counter("imgate_gateway_reloads_total", "Configuration reloads", {{"result", "ok"}});
    reload_failed_ = &m.get_counter("imgate_gateway_reloads_total", "Configuration reloads",
                                    {{"result", "failed"}});
    m.gauge_fn("imgate_gateway_connections", "Open client connections", {},
               [this] { return double(connections_.load()); });
    m.gauge_fn("imgate_gateway_sessions", "Logged-in sessions", {},
               [this] { return double(hub_.session_count()); });
    m.gauge_fn("imgate_gateway_users", "Distinct users with a local session", {},
               [this] { return double(hub_.user_count()); });
    m.gauge_fn("imgate_gateway_rooms", "Rooms with a local member", {},
               [this] { return double(hub_.room_count()); });
    m.gauge_fn("imgate_gateway_pending_acks", "Deliveries waiting for an ack", {},
               [this] { return double(acks_.size()); });
    m.gauge_fn("imgate_gateway_event_loop_lag_seconds", "Timer lateness of the event loop", {},
               [this] { return lag_ms_.load() / 1000.0; });
    m.gauge_fn("imgate_gateway_max_connections", "Configured max_connections", {}, [this] {
        uint64_t g;
        return double(limits(g)->max_connections);
    });
}

gateway_server::~gateway_server() = default;

std::shared_ptr<const gateway_limits> gateway_server::limits(uint64_t& gen) const {
    std::lock_guard lk(cfg_mu_);
    gen = limits_gen_.load();
    return limits_;
}

void gateway_server::start() {
    const gateway_spec* spec = cfg_.fleet.find(cfg_.id);
    cluster_ =
        make_cluster(cfg_.fleet, cfg_.id, cfg_.cluster_secret, cfg_.rpc, *this, io_, metrics_);

    auto ep_str = spec->client_listen.to_string();
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(spec->client_listen.host, ec);
    if (ec) throw config_error("client_listen " + ep_str + ": host must be an IP address");
    asio::ip::tcp::endpoint ep(addr, spec->client_listen.port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep, ec);
    if (ec) throw std::runtime_error("cannot bind client listener " + ep_str + ": " + ec.message());
    acceptor_.listen(asio::socket_base::max_listen_connections);
    client_ep_ = acceptor_.local_endpoint();

    setup_admin();
    admin_->listen(spec->admin);

    // The accept loop and close_acceptor() share the acceptor's strand: no race on close.
    spawn(acceptor_.get_executor(), accept_loop(), "gateway accept");
    spawn(io_, lag_probe(), "gateway lag probe");
    spawn(io_, housekeeping(), "gateway housekeeping");
    spdlog::info(
        "gateway {} serving clients on {}, admin on {}", cfg_.id,
        client_ep_.address().to_string() + ":" + std::to_string(client_ep_.port()),
        admin_endpoint().address().to_string() + ":" + std::to_string(admin_endpoint().port()));
}

asio::ip::tcp::endpoint gateway_server::client_endpoint() const {
    return client_ep_;
}
asio::ip::tcp::endpoint gateway_server::admin_endpoint() const {
    return admin_->local_endpoint();
}
std::string gateway_server::rpc_endpoint() const {
    return cfg_.fleet.find(cfg_.id)->rpc.to_string();
}

asio::awaitable<void> gateway_server::accept_loop() {
    for (;;) {
        auto [ec, strand_sock] = co_await acceptor_.async_accept(asio::make_strand(io_), use_tuple);
        if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
            if (is_fd_exhaustion(ec)) {
                spdlog::warn("accept: {}: backing off", ec.message());
                asio::steady_timer t(io_, std::chrono::milliseconds(100));
                co_await t.async_wait(use_tuple);
            }
            continue;
        }
        // Type-erase the strand executor; the socket keeps running on its strand.
        asio::ip::tcp::socket sock(std::move(strand_sock));
        // Accepted in the moment between a drain and the listener's close: served like any
        // connection opened before the drain (its LOGIN gets ERROR draining, docs/protocol.md).
        if (state_.load() == gateway_state::stopping) {
            boost::system::error_code ignored;
            sock.close(ignored);
            continue;
        }
        uint64_t g;
        if (connections_.load() >= limits(g)->max_connections) {
            refuse_busy(sock);
            continue;
        }
        accepted_->inc();
        connections_.fetch_add(1);
        uint64_t sid = next_session_id_.fetch_add(1);
        auto s = std::make_shared<session>(*this, std::move(sock), sid);
        {
            std::lock_guard lk(conns_mu_);
            conns_[sid] = s;
        }
        s->start();
    }
}

void gateway_server::refuse_busy(asio::ip::tcp::socket& sock) {
    busy_->inc();
    count_error(proto::code::server_busy);
    // Best effort, non-blocking: the error frame fits any socket buffer.
    static const std::string frame =
        proto::encode(proto::error_msg{proto::code::server_busy, "gateway is full"});
    boost::system::error_code ec;
    sock.non_blocking(true, ec);
    sock.write_some(asio::buffer(frame), ec);
    sock.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    // Let the peer read the frame before the close: a short linger on a detached timer.
    auto s = std::make_shared<asio::ip::tcp::socket>(std::move(sock));
    auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(200));
    t->async_wait([s, t](const boost::system::error_code&) {
        boost::system::error_code e;
        s->close(e);
    });
}

bool gateway_server::allow_login(const asio::ip::address& remote) {
    return login_limiter_.allow(remote.to_string(), std::chrono::steady_clock::now());
}

jwt::verify_result gateway_server::verify_token(std::string_view token) const {
    std::vector<std::string> secrets;
    int64_t leeway;
    {
        std::lock_guard lk(cfg_mu_);
        secrets = secrets_;
        leeway = leeway_s_;
    }
    return jwt::verify(token, secrets, jwt::now_seconds(), leeway);
}

bool gateway_server::on_login(const std::shared_ptr<session>& s) {
    hub::add_result r;
    {
        std::lock_guard lk(login_mu_);
        if (state_.load() != gateway_state::serving) return false;
        r = hub_.add(s);
        s->set_logged_in();
    }
    if (r.replaced) {
        count_kick(proto::kick_reason::replaced);
        auto old = std::static_pointer_cast<session>(r.replaced);
        old->finish(proto::encode(proto::kick_msg{proto::kick_reason::replaced, 0,
                                                  std::string(proto::kick_replaced_message)}));
        for (auto& room : r.replaced_rooms_emptied) cluster_->room_interest(room, false);
    }
    if (r.first_of_user) cluster_->user_online(s->user());
    cluster_->device_login(s->user(), s->device());
    return true;
}

void gateway_server::on_closed(session& s) {
    auto r = hub_.remove(s.session_id());
    if (r.removed) {
        for (auto& room : r.rooms_emptied) cluster_->room_interest(room, false);
        if (r.last_of_user) cluster_->user_offline(s.user());
    }
    {
        std::lock_guard lk(conns_mu_);
        conns_.erase(s.session_id());
    }
    connections_.fetch_sub(1);
}

shared_frame encode_delivery(const outbound_message& msg) {
    // Written field by field (the layout of proto::write_body for DELIVER/PUSH, checked by
    // tests/gateway/delivery_encoding_test.cpp) into one buffer reserved up front: one allocation
    // for the bytes, one for the shared_ptr, and no copies of the strings.
    std::string buf;
    buf.reserve(frame_header_size + 40 + msg.from_user.size() + msg.from_device.size() +
                msg.target.size() + msg.payload.size());
    size_t start = begin_frame(buf);
    byte_writer w(buf);
    std::string_view room =
        msg.kind == proto::target_kind::room ? std::string_view(msg.target) : std::string_view();
    proto::op op;
    if (msg.is_push) {
        op = proto::op::push;
        w.u64(msg.server_msg_id);
        w.str16(room);
        w.u64(msg.ts_ms);
        w.blob32(msg.payload);
    } else {
        op = proto::op::deliver;
        w.u64(msg.server_msg_id);
        w.u8(static_cast<uint8_t>(msg.kind));
        w.str16(msg.from_user);
        w.str16(msg.from_device);
        w.str16(room);
        w.u64(msg.ts_ms);
        w.blob32(msg.payload);
    }
    finish_frame(buf, start, client_protocol_version, static_cast<uint8_t>(op), 0);
    return std::make_shared<const std::string>(std::move(buf));
}

uint32_t gateway_server::deliver_to_sessions(const outbound_message& msg, uint64_t exclude_sid) {
    shared_frame f = encode_delivery(msg);
    bool want_receipt =
        !msg.is_push && msg.kind == proto::target_kind::user && msg.origin_session != 0;
    uint32_t reached = 0;
    auto push = [&](session_sink& s) {
        if (s.push_frame(f)) ++reached;
    };
    if (want_receipt) {
        // Registered before the frames are queued so an ack can never arrive first; dropped again
        // when nobody was reached, and once every reached session acked.
        auto now = std::chrono::steady_clock::now();
        size_t ev = acks_.add(
            msg.server_msg_id,
            ack_origin{msg.origin_gateway, msg.origin_session, msg.client_msg_id, msg.target}, now);
        if (ev) ack_evictions_->inc(ev);
        pending_acks::session_ids sids;
        auto push_tracked = [&](session_sink& s) {
            if (!s.push_frame(f)) return;
            ++reached;
            sids.push_back(s.session_id());
        };
        hub_.for_user(msg.target, push_tracked);
        acks_.set_recipients(msg.server_msg_id, sids);
    } else if (msg.kind == proto::target_kind::user) {
        hub_.for_user(msg.target, push);
    } else {
        hub_.for_room(msg.target, exclude_sid, push);
    }
    deliveries_->inc(reached);
    return reached;
}

void gateway_server::route(const outbound_message& msg, uint64_t exclude_sid,
                           std::function<void(proto::code, uint32_t)> done) {
    uint32_t local = deliver_to_sessions(msg, exclude_sid);
    cluster_->forward(msg, [local, done = std::move(done)](forward_result fr) {
        uint32_t total = 0;
        proto::code c = combine_results(local, fr, total);
        done(c, total);
    });
}

void gateway_server::on_send(session& s, proto::send_msg& m, uint32_t corr) {
    outbound_message msg;
    msg.server_msg_id = ids_.next();
    msg.kind = m.kind;
    msg.target = std::move(m.target);
    msg.from_user = s.user();
    msg.from_device = s.device();
    msg.ts_ms = now_ms();
    msg.payload = std::move(m.payload);
    msg.origin_gateway = cfg_.id;
    msg.origin_session = s.session_id();
    msg.client_msg_id = m.client_msg_id;
    // Local sessions first (the sender's own session never counts in a room's reach), then the
    // rest of the fleet; one callback object carries everything the send result needs.
    uint32_t local = deliver_to_sessions(msg, s.session_id());
    struct result_cb {
        gateway_server* srv;
        std::shared_ptr<session> self;
        uint64_t cid, sid;
        uint32_t corr;
        uint32_t local;
        proto::target_kind kind;
        void operator()(forward_result fr) const {
            uint32_t total = 0;
            proto::code c = combine_results(local, fr, total);
            srv->count_message(kind, false, c);
            if (c != proto::code::ok && c != proto::code::offline) srv->count_error(c);
            self->push_owned(proto::encode(proto::send_result_msg{cid, sid, c, total}, corr));
        }
    };
    cluster_->forward(msg, result_cb{this, s.shared_from_this(), msg.client_msg_id,
                                     msg.server_msg_id, corr, local, msg.kind});
}

void gateway_server::on_ack(session& s, uint64_t server_msg_id) {
    auto origin =
        acks_.on_ack(server_msg_id, s.session_id(), s.user(), std::chrono::steady_clock::now());
    if (!origin) return;  // unknown, expired or foreign ids are ignored: acks are advisory
    proto::receipt_msg r{origin->client_msg_id, server_msg_id, s.user(), s.device()};
    receipts_->inc();
    if (origin->origin_gateway == cfg_.id)
        receipt_local(origin->origin_session, r);
    else
        cluster_->send_receipt(origin->origin_gateway, origin->origin_session, r);
}

proto::code gateway_server::on_join(session& s, const std::string& room) {
    uint64_t g;
    auto r = hub_.join(s.session_id(), room, limits(g)->max_rooms_per_session);
    switch (r.status) {
        case hub::join_status::ok:
            if (r.first_member) cluster_->room_interest(room, true);
            return proto::code::ok;
        case hub::join_status::already_member:
            return proto::code::ok;
        case hub::join_status::too_many_rooms:
            return proto::code::too_many_rooms;
        case hub::join_status::unknown_session:
            return proto::code::login_required;
    }
    return proto::code::internal;
}

proto::code gateway_server::on_leave(session& s, const std::string& room) {
    auto r = hub_.leave(s.session_id(), room);
    if (!r.was_member) return proto::code::not_in_room;
    if (r.last_member) cluster_->room_interest(room, false);
    return proto::code::ok;
}

uint32_t gateway_server::deliver_local(const outbound_message& msg) {
    if (!seen_.insert(msg.server_msg_id)) {
        dupes_->inc();
        return 0;
    }
    return deliver_to_sessions(msg, 0);
}

void gateway_server::receipt_local(uint64_t origin_session, const proto::receipt_msg& r) {
    auto s = hub_.find(origin_session);
    if (!s) return;  // the sender went away: receipts are best effort
    static_cast<session&>(*s).push_owned(proto::encode(r));
}

std::vector<std::string> gateway_server::local_users() const {
    return hub_.users();
}
std::vector<std::string> gateway_server::local_rooms() const {
    return hub_.rooms();
}

void gateway_server::device_claimed(const std::string& user, const std::string& device) {
    // Collected first: the hub's visit runs under its lock, and a finishing session calls back
    // into the hub when it closes.
    std::vector<uint64_t> older;
    hub_.for_user(user, [&](session_sink& s) {
        if (s.device() == device) older.push_back(s.session_id());
    });
    for (uint64_t sid : older) {
        auto s = hub_.find(sid);
        if (!s) continue;
        spdlog::debug("session {} ({} / {}): the same device logged in on another gateway", sid,
                      user, device);
        count_kick(proto::kick_reason::replaced);
        static_cast<session&>(*s).finish(proto::encode(proto::kick_msg{
            proto::kick_reason::replaced, 0, std::string(proto::kick_replaced_message)}));
    }
}

void gateway_server::count_error(proto::code c) {
    if (auto* p = errors_[size_t(c) & 63]) p->inc();
}
void gateway_server::count_login(const char* result) {
    auto it = logins_.find(result);
    if (it != logins_.end()) it->second->inc();
}
void gateway_server::count_kick(proto::kick_reason r) {
    if (auto* p = kicks_[size_t(r) & 7]) p->inc();
}
void gateway_server::count_slow_consumer() {
    slow_->inc();
    count_error(proto::code::slow_consumer);
}
void gateway_server::count_idle_close() {
    idle_->inc();
}
void gateway_server::count_message(proto::target_kind kind, bool push, proto::code status) {
    int k = push ? 2 : (kind == proto::target_kind::room ? 1 : 0);
    int r = status == proto::code::ok ? 0 : status == proto::code::offline ? 1 : 2;
    msgs_[k][r]->inc();
}

void gateway_server::close_acceptor() {
    boost::system::error_code ec;
    asio::post(acceptor_.get_executor(), [this] {
        boost::system::error_code e;
        acceptor_.close(e);
    });
}

double gateway_server::load() const {
    uint64_t g;
    double conn =
        double(connections_.load()) / double(std::max<uint32_t>(1, limits(g)->max_connections));
    // 100 ms of event-loop lag counts as fully loaded even with few connections.
    return std::max(conn, lag_ms_.load() / 100.0);
}

asio::awaitable<void> gateway_server::lag_probe() {
    asio::steady_timer t(io_);
    const auto period = std::chrono::milliseconds(250);
    double ema = 0;
    for (;;) {
        auto due = std::chrono::steady_clock::now() + period;
        t.expires_at(due);
        auto [ec] = co_await t.async_wait(use_tuple);
        if (ec) co_return;
        double late =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - due)
                .count();
        ema = ema * 0.7 + std::max(0.0, late) * 0.3;
        lag_ms_.store(ema);
        if (state_.load() == gateway_state::stopping) co_return;
    }
}

asio::awaitable<void> gateway_server::housekeeping() {
    asio::steady_timer t(io_);
    for (;;) {
        t.expires_after(std::chrono::seconds(1));
        auto [ec] = co_await t.async_wait(use_tuple);
        if (ec || state_.load() == gateway_state::stopping) co_return;
        acks_.expire(std::chrono::steady_clock::now());
    }
}

void gateway_server::drain() {
    {
        std::lock_guard lk(login_mu_);
        auto expected = gateway_state::serving;
        if (!state_.compare_exchange_strong(expected, gateway_state::draining)) return;
    }
    spdlog::info("drain: no new clients; redirecting existing sessions to the dispatcher");
    daemon_control::notify_status("draining");
    close_acceptor();
    spawn(io_, drain_loop(), "gateway drain");
}

asio::awaitable<void> gateway_server::drain_loop() {
    asio::steady_timer t(io_);
    const auto tick = std::chrono::milliseconds(20);
    double budget = 0;
    for (;;) {
        if (state_.load() != gateway_state::draining) co_return;
        std::vector<std::shared_ptr<session>> all;
        {
            std::lock_guard lk(conns_mu_);
            for (auto& [id, w] : conns_)
                // Connections without a session are left alone: their LOGIN is refused with
                // ERROR draining, or the login timeout closes them.
                if (auto s = w.lock(); s && s->logged_in() && !s->finishing())
                    all.push_back(std::move(s));
        }
        if (all.empty()) {
            spdlog::info("drain: every session redirected");
            co_return;
        }
        uint64_t g;
        auto lim = limits(g);
        budget += lim->drain_rate * std::chrono::duration<double>(tick).count();
        size_t n = std::min(all.size(), size_t(budget));
        budget -= double(n);
        for (size_t i = 0; i < n; ++i) {
            redirects_->inc();
            all[i]->finish(proto::encode(
                proto::redirect_msg{uint32_t(lim->reconnect_hint.count()), "", 0, "drain"}));
        }
        t.expires_after(tick);
        auto [ec] = co_await t.async_wait(use_tuple);
        if (ec) co_return;
    }
}

void gateway_server::stop(std::function<void()> done) {
    {
        std::lock_guard lk(login_mu_);
        state_.store(gateway_state::stopping);
    }
    daemon_control::notify_stopping();
    close_acceptor();
    spawn(io_, stop_loop(std::move(done)), "gateway stop");
}

asio::awaitable<void> gateway_server::stop_loop(std::function<void()> done) {
    uint64_t g;
    auto lim = limits(g);
    std::vector<std::shared_ptr<session>> all;
    {
        std::lock_guard lk(conns_mu_);
        for (auto& [id, w] : conns_)
            if (auto s = w.lock()) all.push_back(std::move(s));
    }
    spdlog::info("stopping: kicking {} connections (grace {} ms)", all.size(),
                 lim->shutdown_grace.count());
    auto kick = proto::encode(proto::kick_msg{proto::kick_reason::shutdown,
                                              uint32_t(lim->reconnect_hint.count()),
                                              "gateway is shutting down"});
    for (auto& s : all) {
        count_kick(proto::kick_reason::shutdown);
        s->finish(kick);
    }
    all.clear();
    auto deadline = std::chrono::steady_clock::now() + lim->shutdown_grace;
    asio::steady_timer t(io_);
    while (connections_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        t.expires_after(std::chrono::milliseconds(20));
        co_await t.async_wait(use_tuple);
    }
    if (connections_.load() > 0) {
        spdlog::warn("stopping: {} connections still open after the grace period; closing",
                     connections_.load());
        std::lock_guard lk(conns_mu_);
        for (auto& [id, w] : conns_)
            if (auto s = w.lock()) {
                auto sp = s;
                asio::post(s->socket_executor(), [sp] { sp->close_now(); });
            }
    }
    cluster_->stop();
    admin_->stop();
    // Let the cancelled accepts, reads and timers complete before the event loop stops: their
    // handlers must not outlive the objects they belong to.
    t.expires_after(std::chrono::milliseconds(100));
    co_await t.async_wait(use_tuple);
    done();
}

bool gateway_server::reload() {
    daemon_control::notify_reloading();
    try {
        auto c = load_gateway_config(cfg_.file, cfg_.id);
        apply(c);
        reload_ok_->inc();
        spdlog::info("reload: configuration applied");
        daemon_control::notify_ready("reloaded");
        return true;
    } catch (const std::exception& e) {
        reload_failed_->inc();
        spdlog::error("reload failed, keeping the running configuration: {}", e.what());
        daemon_control::notify_ready("reload failed; running the previous configuration");
        return false;
    }
}

void gateway_server::apply(const gateway_config& c) {
    const auto* old_spec = cfg_.fleet.find(cfg_.id);
    const auto* new_spec = c.fleet.find(cfg_.id);
    if (old_spec && new_spec &&
        (old_spec->client_listen != new_spec->client_listen || old_spec->admin != new_spec->admin ||
         old_spec->rpc != new_spec->rpc))
        spdlog::warn("reload: listen addresses of {} changed in the fleet; restart to apply",
                     cfg_.id);
    if (old_spec && new_spec && old_spec->node != new_spec->node)
        spdlog::warn(
            "reload: node number of {} changed in the fleet ({} -> {}); its "
            "server_msg_ids keep the old one until a restart",
            cfg_.id, old_spec->node, new_spec->node);
    {
        std::lock_guard lk(cfg_mu_);
        limits_ = std::make_shared<const gateway_limits>(c.limits);
        secrets_ = c.token_secrets;
        leeway_s_ = c.token_leeway_s;
        admin_token_ = c.admin_token;
        limits_gen_.fetch_add(1, std::memory_order_release);
    }
    acks_.set_limits(c.limits.max_pending_acks, c.limits.ack_timeout);
    login_limiter_.set_limits(c.limits.login_rate, c.limits.login_burst);
    apply_log_config(c.log);
    // A rotated cluster secret file counts as a change too: the cluster re-reads it on reload.
    if (!(c.fleet.gateways == cfg_.fleet.gateways) || c.cluster_secret != cfg_.cluster_secret ||
        c.fleet.cluster_secret_file != cfg_.fleet.cluster_secret_file)
        cluster_->reload(c.fleet);
    // Keep the fields start-up used (id, listen addresses); take the rest.
    auto keep_fleet = cfg_.fleet;
    cfg_.limits = c.limits;
    cfg_.log = c.log;
    cfg_.fleet = c.fleet;
    cfg_.cluster_secret = c.cluster_secret;
    if (!cfg_.fleet.find(cfg_.id)) cfg_.fleet = keep_fleet;
}

// ---- admin API ----

bool gateway_server::admin_authorized(const http_request_ctx& ctx) {
    std::string token;
    {
        std::lock_guard lk(cfg_mu_);
        token = admin_token_;
    }
    auto it = ctx.req.find(http::field::authorization);
    bool ok = false;
    if (!token.empty() && it != ctx.req.end()) {
        std::string_view v(it->value().data(), it->value().size());
        constexpr std::string_view bearer = "Bearer ";
        if (v.size() == bearer.size() + token.size() && v.substr(0, bearer.size()) == bearer)
            ok = CRYPTO_memcmp(v.data() + bearer.size(), token.data(), token.size()) == 0;
    }
    if (!ok) admin_unauthorized_->inc();
    return ok;
}

http_response gateway_server::handle_status() {
    uint64_t g;
    auto lim = limits(g);
    size_t conns = connections_.load();
    nlohmann::json j;
    j["id"] = cfg_.id;
    j["state"] = to_string(state_.load());
    j["connections"] = conns;
    j["max_connections"] = lim->max_connections;
    j["sessions"] = hub_.session_count();
    j["users"] = hub_.user_count();
    j["rooms"] = hub_.room_count();
    j["full"] = conns >= lim->max_connections;
    j["load"] = load();
    j["event_loop_lag_ms"] = lag_ms_.load();
    j["pending_acks"] = acks_.size();
    j["pid"] = ::getpid();
    j["version"] = IMGATE_VERSION;
    j["uptime_s"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    j["client"] = client_ep_.address().to_string() + ":" + std::to_string(client_ep_.port());
    return http_response::json(http::status::ok, j.dump());
}

asio::awaitable<http_response> gateway_server::handle_push(http_request_ctx ctx) {
    if (!admin_authorized(ctx))
        co_return http_response::error(http::status::unauthorized, "unauthorized",
                                       "missing or wrong admin bearer token");
    auto j = nlohmann::json::parse(ctx.req.body(), nullptr, false);
    if (j.is_discarded() || !j.is_object())
        co_return http_response::error(http::status::bad_request, "bad_request",
                                       "body must be a JSON object");
    outbound_message msg;
    msg.is_push = true;
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
    auto lim = limits(g);
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
    msg.server_msg_id = ids_.next();
    msg.ts_ms = now_ms();
    msg.origin_gateway = cfg_.id;

    // The cluster may answer on another thread: hand the result to this strand and wake up.
    struct waiter {
        asio::steady_timer timer;
        bool done = false;
        proto::code status = proto::code::internal;
        uint32_t reached = 0;
    };
    auto ex = co_await asio::this_coro::executor;
    auto w = std::make_shared<waiter>(waiter{asio::steady_timer(ex), false});
    w->timer.expires_after(cfg_.rpc.call_timeout + std::chrono::seconds(5));
    auto on_done = [w, ex](proto::code c, uint32_t reached) {
        asio::post(ex, [w, c, reached] {
            w->done = true;
            w->status = c;
            w->reached = reached;
            w->timer.cancel();
        });
    };
    route(msg, 0, on_done);
    if (!w->done) co_await w->timer.async_wait(use_tuple);
    if (!w->done)
        co_return http_response::error(http::status::gateway_timeout, "timeout",
                                       "cluster did not answer");
    count_message(msg.kind, true, w->status);
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

void gateway_server::setup_admin() {
    http_server_options o;
    o.name = "admin";
    o.body_limit = 1 << 20;
    admin_ = std::make_shared<http_server>(io_, o, metrics_);
    admin_->route(http::verb::get, "/status",
                  http_sync_handler([this](const http_request_ctx&) { return handle_status(); }));
    admin_->route(http::verb::get, "/metrics", http_sync_handler([this](const http_request_ctx&) {
                      return http_response::text(metrics_.render(), "text/plain; version=0.0.4");
                  }));
    admin_->route(http::verb::get, "/healthz", http_sync_handler([this](const http_request_ctx&) {
                      nlohmann::json j{{"status", "ok"}, {"state", to_string(state_.load())}};
                      return http_response::json(http::status::ok, j.dump());
                  }));
    admin_->route(http::verb::post, "/drain",
                  http_sync_handler([this](const http_request_ctx& ctx) {
                      if (!admin_authorized(ctx))
                          return http_response::error(http::status::unauthorized, "unauthorized",
                                                      "missing or wrong admin bearer token");
                      drain();
                      nlohmann::json j{{"state", to_string(state_.load())},
                                       {"connections", connections_.load()}};
                      return http_response::json(http::status::ok, j.dump());
                  }));
    admin_->route(http::verb::post, "/push",
                  http_handler([this](http_request_ctx ctx) { return handle_push(ctx); }));
}

}  // namespace imgate::gw
