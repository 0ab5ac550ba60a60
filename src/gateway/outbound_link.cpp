#include "gateway/outbound_link.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/awaitable.hpp"
#include "common/daemon.hpp"
#include "gateway/rpc_handshake.hpp"

namespace imgate::gw {

namespace {

using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using rpc::clock;

}  // namespace

outbound_link::outbound_link(std::shared_ptr<cluster_context> ctx, gateway_spec spec)
    : ctx_(std::move(ctx)),
      spec_(std::move(spec)),
      calls_(ctx_->cfg.max_in_flight),
      backoff_(ctx_->cfg.backoff_min, ctx_->cfg.backoff_max,
               [c = ctx_.get()] { return c->random01(); }),
      call_timer_(ctx_->strand),
      retry_timer_(ctx_->strand) {}

void outbound_link::start() {
    ctx_->metrics.connects(spec_.id);
    imgate::spawn(ctx_->strand, run(shared_from_this()), "rpc link " + spec_.id);
    imgate::spawn(ctx_->strand, run_call_timer(shared_from_this()), "rpc call timer " + spec_.id);
}

void outbound_link::remove() {
    removed_ = true;
    retry_timer_.cancel();
    call_timer_.cancel();
    if (conn_) conn_->close();
    calls_.fail_all(proto::code::unavailable);
}

void outbound_link::retry_now() {
    if (!up_) retry_timer_.cancel();
}

uint32_t outbound_link::start_call(clock::time_point deadline, rpc::call_table::callback cb) {
    uint32_t corr = calls_.add(deadline, std::move(cb));
    if (corr == 0) {
        ctx_->metrics.in_flight_full.inc();
        return 0;
    }
    if (deadline < call_timer_.expiry()) call_timer_.cancel();
    return corr;
}

void outbound_link::send_forward(const outbound_message& msg, uint32_t corr) {
    ctx_->metrics.forward_frames.inc();
    auto enc = [&](std::string& out) { rpc::encode_forward(out, msg, corr); };
    // On overflow the connection closes and its reader fails this call (unavailable).
    conn_->send_encoded(enc);
}

void outbound_link::send_forward(std::string_view encoded, uint32_t corr) {
    ctx_->metrics.forward_frames.inc();
    conn_->send_with_corr(encoded, corr);
}

void outbound_link::send(std::string_view bytes) {
    if (conn_) conn_->send(bytes);
}

asio::awaitable<void> outbound_link::run(std::shared_ptr<outbound_link> l) {
    auto& ctx = *l->ctx_;
    while (!l->removed_ && !ctx.stopped) {
        auto c = std::make_shared<peer_conn>(ctx.strand, ctx.cfg.max_queue_bytes);
        l->conn_ = c;
        bool ok = co_await l->dial(c);
        if (ok && !l->removed_ && !ctx.stopped) co_await l->serve(c);
        // Failed attempt or lost link: "down" until the next handshake succeeds.
        if (!l->removed_ && !ctx.stopped) ctx.set_peer_state(l->spec_.id, "down");
        c->close();
        if (l->conn_ == c) l->conn_.reset();
        if (l->removed_ || ctx.stopped) break;
        l->retry_timer_.expires_after(l->backoff_.next());
        co_await l->retry_timer_.async_wait(use_tuple);
    }
}

// Connects and authenticates within connect_timeout (each of the two phases).
asio::awaitable<bool> outbound_link::dial(std::shared_ptr<peer_conn> c) {
    auto& ctx = *ctx_;
    asio::steady_timer guard(ctx.strand);
    guard.expires_after(ctx.cfg.connect_timeout);
    auto on_guard = [c](error_code ec) {
        if (!ec) c->close();
    };
    guard.async_wait(on_guard);
    error_code ec;
    auto addr = asio::ip::make_address(spec_.rpc.host, ec);
    tcp::endpoint ep;
    if (!ec) {
        ep = tcp::endpoint(addr, spec_.rpc.port);
    } else {
        tcp::resolver res(ctx.strand);
        auto host = spec_.rpc.host;
        auto port_s = std::to_string(spec_.rpc.port);
        auto [rec, eps] = co_await res.async_resolve(host, port_s, use_tuple);
        if (rec || eps.empty() || c->closed()) {
            guard.cancel();
            co_return false;
        }
        ep = eps.begin()->endpoint();
    }
    if (c->closed()) co_return false;
    auto cec = co_await c->connect(ep);
    if (cec || c->closed() || removed_) {
        guard.cancel();
        co_return false;
    }
    c->set_no_delay();
    guard.expires_after(ctx.cfg.connect_timeout);
    guard.async_wait(on_guard);
    c->start_writer();
    rpc::connector_handshake hs(ctx.self_id, spec_.id, ctx.secret, rpc::random_nonce());
    c->send(hs.hello());
    auto out = co_await run_handshake(c, hs);
    guard.cancel();
    if (out.last.st == rpc::hs_step::state::ok && !c->closed()) {
        c->set_authenticated();
        co_return true;
    }
    const char* reason = out.failure_reason(false);
    ctx.metrics.auth_failure("outbound", reason).inc();
    // A refused or unreachable peer is retried with backoff; log the first failures only.
    if (backoff_.attempts() < 3 || out.last.st == rpc::hs_step::state::failed)
        spdlog::warn("cluster rpc: handshake {} -> {} failed: {}", ctx.self_id, spec_.id, reason);
    c->close();
    co_return false;
}

// The link is up: snapshot (announced mode), watchdog, and the answers, until the connection ends.
asio::awaitable<void> outbound_link::serve(std::shared_ptr<peer_conn> c) {
    auto& ctx = *ctx_;
    up_ = true;
    ctx.metrics.links_up.set(static_cast<double>(++ctx.links_count));
    ctx.set_peer_state(spec_.id, "up");
    backoff_.reset();
    ctx.count_connect(spec_.id);
    spdlog::info("cluster rpc: link {} -> {} up", ctx.self_id, spec_.id);
    // The snapshot replaces whatever the peer knew of us; it may exceed the queue bound once,
    // which is not a slow consumer. In redis mode the peer looks us up in Redis instead.
    if (!ctx.redis_directory) {
        std::string snap;
        size_t frames = rpc::encode_snapshot<rpc::presence_msg>(snap, ctx.local.local_users());
        frames += rpc::encode_snapshot<rpc::room_interest_msg>(snap, ctx.local.local_rooms());
        ctx.metrics.announcements_sent.inc(frames);
        ctx.metrics.announcement_bytes_sent.inc(snap.size());
        c->send(snap, false);
    }
    c->start_watchdog(ctx.cfg, true, ctx.metrics.closed_for("read_timeout"),
                      ctx.metrics.closed_for("write_stall"));
    std::function<verdict(frame&)> h = [this](frame& f) { return on_frame(f); };
    auto end = co_await c->read_frames(h);
    // Counted before the close, so whoever sees the link down also sees the count.
    if (end == read_end::bad_frame || end == read_end::rejected)
        ctx.metrics.protocol_error("outbound").inc();
    if (c->overflowed()) ctx.metrics.closed_for("slow_consumer").inc();
    up_ = false;
    ctx.metrics.links_up.set(static_cast<double>(--ctx.links_count));
    c->close();
    size_t failed = calls_.fail_all(proto::code::unavailable);
    if (!ctx.stopped && !removed_)
        spdlog::warn("cluster rpc: link {} -> {} down; {} calls failed", ctx.self_id, spec_.id,
                     failed);
}

verdict outbound_link::on_frame(frame& f) {
    switch (static_cast<rpc::op>(f.op)) {
        case rpc::op::forward_result: {
            auto m = rpc::decode<rpc::forward_result_msg>(f);
            if (!m) return verdict::reject;
            if (!calls_.complete(f.corr, forward_result{m->status, m->reached}))
                ctx_->metrics.late_answers.inc();
            return verdict::more;
        }
        case rpc::op::pong:
            return verdict::more;
        case rpc::op::ping:
            conn_->send_msg(rpc::pong_msg{});
            return verdict::more;
        default:
            return verdict::reject;
    }
}

asio::awaitable<void> outbound_link::run_call_timer(std::shared_ptr<outbound_link> l) {
    while (!l->removed_ && !l->ctx_->stopped) {
        auto next = l->calls_.next_deadline();
        l->call_timer_.expires_at(next ? *next : clock::now() + std::chrono::hours(1));
        co_await l->call_timer_.async_wait(use_tuple);
        l->calls_.expire(clock::now());
    }
}

}  // namespace imgate::gw
