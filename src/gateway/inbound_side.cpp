#include "gateway/inbound_side.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/awaitable.hpp"
#include "common/daemon.hpp"
#include "common/log_throttle.hpp"
#include "gateway/peer_service.hpp"
#include "gateway/rpc_handshake.hpp"

namespace imgate::gw {

namespace {

using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

}  // namespace

inbound_side::inbound_side(std::shared_ptr<cluster_context> ctx,
                           std::unique_ptr<session_directory> dir)
    : ctx_(std::move(ctx)),
      dir_(dir ? std::move(dir) : std::make_unique<announced_directory>()),
      announced_(dynamic_cast<announced_directory*>(dir_.get())),
      acceptor_(ctx_->strand) {}

void inbound_side::bind(const fleet_config& fleet) {
    const gateway_spec* me = fleet.find(ctx_->self_id);
    if (!me) throw std::runtime_error("gateway " + ctx_->self_id + " is not in the fleet");
    tcp::resolver res(ctx_->io);
    error_code ec;
    auto eps = res.resolve(me->rpc.host, std::to_string(me->rpc.port), ec);
    if (ec || eps.empty())
        throw std::runtime_error("rpc address " + me->rpc.to_string() + ": " + ec.message());
    tcp::endpoint ep = eps.begin()->endpoint();
    acceptor_.open(ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep, ec);
    if (ec)
        throw std::runtime_error("cannot bind rpc " + me->rpc.to_string() + ": " + ec.message());
    acceptor_.listen();
    ctx_->port = acceptor_.local_endpoint().port();
}

void inbound_side::start(std::function<void(const std::string&)> on_peer_up) {
    on_peer_up_ = std::move(on_peer_up);
    imgate::spawn(ctx_->strand, accept_loop(shared_from_this()), "rpc accept loop");
}

void inbound_side::stop() {
    error_code ec;
    acceptor_.close(ec);
    for (auto& [id, c] : inbound_) c->close();
    for (auto& c : handshaking_) c->close();
    for (auto& [id, t] : hold_timers_) t->cancel();
    hold_timers_.clear();
}

void inbound_side::close_non_members() {
    for (auto& [id, c] : inbound_)
        if (!ctx_->is_member(id)) c->close();
    // A removed peer is not coming back on this fleet: what it announced is dropped now, whether
    // its link is still up (the close above ends it as clean) or its entries were held.
    std::vector<std::string> gone;
    for (auto& [id, t] : hold_timers_)
        if (!ctx_->is_member(id)) gone.push_back(id);
    for (auto& id : gone) {
        spdlog::info("cluster rpc: {} left the fleet; dropped its held directory entries", id);
        drop(id);
    }
}

void inbound_side::publish_peer(const std::string& peer) {
    ctx_->publish_directory(*dir_);
    // A peer a reload removed has had its series deleted: do not bring them back.
    if (ctx_->stopping.load() || !ctx_->is_member(peer)) return;
    bool held = dir_->held(peer);
    for (auto k : {proto::target_kind::user, proto::target_kind::room}) {
        size_t n = dir_->peer_entries(peer, k);
        ctx_->metrics.set_peer_directory(peer, k, n, dir_->overflowed(peer, k), held ? n : 0);
    }
}

void inbound_side::drop(const std::string& peer) {
    if (auto t = hold_timers_.find(peer); t != hold_timers_.end()) {
        t->second->cancel();
        hold_timers_.erase(t);
    }
    dir_->drop_peer(peer);
    publish_peer(peer);
}

void inbound_side::link_ended(const std::string& peer, const peer_conn& c) {
    auto& ctx = *ctx_;
    size_t users = dir_->peer_entries(peer, proto::target_kind::user);
    size_t rooms = dir_->peer_entries(peer, proto::target_kind::room);
    bool overflowed = dir_->overflowed(peer, proto::target_kind::user) ||
                      dir_->overflowed(peer, proto::target_kind::room);
    if (ctx.stopped || c.closed_by_peer() || !ctx.is_member(peer) ||
        ctx.cfg.unreachable_hold.count() == 0 || (users + rooms == 0 && !overflowed)) {
        // Its sessions are gone (or it is no longer ours to ask, or it announced nothing to
        // hold): offline is now the truth.
        if (!ctx.stopped && users + rooms > 0)
            spdlog::info("cluster rpc: link from {} ended ({}); dropped its {} users and {} rooms",
                         peer, c.end_reason().empty() ? "closed" : c.end_reason(), users, rooms);
        drop(peer);
        return;
    }
    hold(peer, c.end_reason().empty() ? std::string("closed") : c.end_reason());
}

// The peer may be alive behind a broken path (a partition) and still serving its users: saying
// "offline" for them would be a lie. Its entries stay, so sends to them go to the peer's own
// link (unavailable while that is down too) until the peer is back or the hold runs out.
void inbound_side::hold(const std::string& peer, const std::string& why) {
    auto& ctx = *ctx_;
    auto until = hold_clock::now() + ctx.cfg.unreachable_hold;
    uint64_t gen = dir_->hold_peer(peer, until);
    auto& t = hold_timers_[peer];
    t = std::make_unique<asio::steady_timer>(ctx.strand);  // replaces (cancels) an older hold's
    t->expires_at(until);
    auto self = shared_from_this();
    auto on_timer = [self, peer, gen](error_code ec) {
        if (!ec) self->on_hold_timer(peer, gen);
    };
    t->async_wait(on_timer);
    spdlog::warn(
        "cluster rpc: link from {} ended ({}); holding its {} users and {} rooms for {} ms "
        "(cluster_rpc.unreachable_hold): sends to them go to {} or fail unavailable, not offline",
        peer, why, dir_->peer_entries(peer, proto::target_kind::user),
        dir_->peer_entries(peer, proto::target_kind::room), ctx.cfg.unreachable_hold.count(), peer);
    publish_peer(peer);
}

void inbound_side::on_hold_timer(const std::string& peer, uint64_t generation) {
    if (ctx_->stopped) return;
    size_t users = dir_->peer_entries(peer, proto::target_kind::user);
    size_t rooms = dir_->peer_entries(peer, proto::target_kind::room);
    if (!dir_->expire_hold(peer, generation, hold_clock::now())) return;  // superseded
    hold_timers_.erase(peer);
    spdlog::warn(
        "cluster rpc: {} did not come back within cluster_rpc.unreachable_hold ({} ms); dropped "
        "its {} held users and {} rooms: sends to them now answer offline",
        peer, ctx_->cfg.unreachable_hold.count(), users, rooms);
    publish_peer(peer);
}

void inbound_side::end_hold(const std::string& peer) {
    if (auto t = hold_timers_.find(peer); t != hold_timers_.end()) {
        t->second->cancel();
        hold_timers_.erase(t);
    }
    if (!dir_->end_hold(peer)) return;
    spdlog::info(
        "cluster rpc: {} is back; its {} held users and {} rooms are replaced by its snapshot",
        peer, dir_->peer_entries(peer, proto::target_kind::user),
        dir_->peer_entries(peer, proto::target_kind::room));
    publish_peer(peer);
}

asio::awaitable<void> inbound_side::accept_loop(std::shared_ptr<inbound_side> self) {
    auto& ctx = *self->ctx_;
    while (!ctx.stopped) {
        tcp::socket s(ctx.strand);
        auto [ec] = co_await self->acceptor_.async_accept(s, use_tuple);
        if (ctx.stopped || ec == asio::error::operation_aborted) break;
        if (ec) {
            // Out of descriptors and the like: pause instead of spinning (and log a few lines a
            // second, not one per pause).
            IMGATE_LOG_THROTTLED(warn, "cluster rpc: accept failed: {}; backing off 100ms",
                                 ec.message());
            asio::steady_timer t(ctx.strand);
            t.expires_after(std::chrono::milliseconds(100));
            co_await t.async_wait(use_tuple);
            continue;
        }
        if (self->handshaking_.size() >= ctx.cfg.max_handshakes) {
            // Unauthenticated connections are bounded in number as well as in time.
            ctx.metrics.auth_failure("inbound", "too_many_handshakes").inc();
            if (!self->handshake_cap_logged_) {
                spdlog::warn(
                    "cluster rpc: {} inbound handshakes in progress (cluster_rpc."
                    "max_handshakes); closing new connections until they finish",
                    self->handshaking_.size());
                self->handshake_cap_logged_ = true;
            }
            error_code cec;
            s.close(cec);
            continue;
        }
        self->handshake_cap_logged_ = false;
        auto c = std::make_shared<peer_conn>(ctx.strand, std::move(s), ctx.cfg.max_queue_bytes);
        self->handshaking_.insert(c);
        imgate::spawn(ctx.strand, serve(self, c), "rpc inbound");
    }
}

asio::awaitable<void> inbound_side::serve(std::shared_ptr<inbound_side> self,
                                          std::shared_ptr<peer_conn> c) {
    auto& ctx = *self->ctx_;
    c->set_no_delay();
    asio::steady_timer guard(ctx.strand);
    guard.expires_after(ctx.cfg.connect_timeout);
    bool timed_out = false;
    std::string from = c->remote_address();
    // Counted before the close, so whoever sees the close also sees the count.
    auto on_guard = [&ctx, c, &timed_out](error_code ec) {
        if (ec) return;
        timed_out = true;
        ctx.metrics.auth_failure("inbound", "timeout").inc();
        c->close();
    };
    guard.async_wait(on_guard);
    c->start_writer();
    auto is_member = [&ctx](std::string_view id) { return ctx.is_member(id); };
    rpc::acceptor_handshake hs(ctx.self_id, ctx.secret, is_member, rpc::random_nonce());
    auto out = co_await run_handshake(c, hs);
    guard.cancel();
    self->handshaking_.erase(c);
    if (out.last.st != rpc::hs_step::state::ok || c->closed() || ctx.stopped) {
        const char* reason = out.failure_reason(timed_out);
        if (!timed_out) ctx.metrics.auth_failure("inbound", reason).inc();
        // Anyone who can reach the port can cause this in a loop: throttled.
        IMGATE_LOG_THROTTLED(warn, "cluster rpc: refused inbound link from {} ({}): {}", from,
                             hs.peer_id().empty() ? "no id" : hs.peer_id(), reason);
        c->close_when_flushed();
        co_await self->guard_close(c);
        co_return;
    }
    c->set_authenticated();
    std::string peer = hs.peer_id();
    auto& inbound = self->inbound_;
    if (auto old = inbound.find(peer); old != inbound.end()) old->second->close();
    inbound[peer] = c;
    ctx.metrics.inbound_links.set(static_cast<double>(inbound.size()));
    ctx.inbound_count = inbound.size();
    self->end_hold(peer);
    self->on_peer_up_(peer);
    c->start_watchdog(ctx.cfg, false, ctx.metrics.closed_for("read_timeout"),
                      ctx.metrics.closed_for("write_stall"));
    peer_service service(ctx, *self->dir_, peer);
    std::string reply;
    std::function<verdict(frame&)> h = [&service, &reply, c](frame& f) {
        reply.clear();
        auto v = service.on_frame(f, reply);
        if (!reply.empty()) c->send(reply);
        return v;
    };
    auto end = co_await c->read_frames(h);
    if (end == read_end::bad_frame || end == read_end::rejected) {
        ctx.metrics.protocol_error("inbound").inc();
        c->close("protocol error");
    }
    if (c->overflowed()) ctx.metrics.closed_for("slow_consumer").inc();
    c->close();
    auto it = inbound.find(peer);
    if (it != inbound.end() && it->second == c) {
        // The peer's announcement stream ended: what it told us may no longer be true.
        inbound.erase(it);
        self->link_ended(peer, *c);
        ctx.metrics.inbound_links.set(static_cast<double>(inbound.size()));
        ctx.inbound_count = inbound.size();
    }
}

// Gives a refused connection a moment to receive AUTH_FAIL (the writer closes it once the queue
// is flushed), bounded by connect_timeout for a peer that does not read.
asio::awaitable<void> inbound_side::guard_close(std::shared_ptr<peer_conn> c) {
    if (c->closed()) co_return;
    asio::steady_timer t(ctx_->strand);
    t.expires_after(ctx_->cfg.connect_timeout);
    co_await t.async_wait(use_tuple);
    c->close();
}

}  // namespace imgate::gw
