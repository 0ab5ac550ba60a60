#include "gateway/peer_service.hpp"

#include <spdlog/spdlog.h>

#include "common/log_throttle.hpp"
#include "gateway/rpc_wire.hpp"

namespace imgate::gw {

peer_service::peer_service(cluster_context& ctx, session_directory& dir, std::string peer)
    : ctx_(ctx), dir_(dir), peer_(std::move(peer)) {
    // The directory is built before any link; the caps come from the same configuration every
    // link shares, so setting them again here is idempotent.
    dir_.set_limits({ctx_.cfg.max_peer_users, ctx_.cfg.max_peer_rooms});
}

peer_service::~peer_service() {
    // Stopping: the coroutine holding this service may be destroyed with the io_context, after
    // the metrics registry is gone. A peer a reload removed has had its series deleted: do not
    // bring them back.
    if (ctx_.stopping.load() || !ctx_.is_member(peer_)) return;
    publish(proto::target_kind::user);
    publish(proto::target_kind::room);
}

void peer_service::publish(proto::target_kind kind) {
    size_t n = dir_.peer_entries(peer_, kind);
    ctx_.metrics.set_peer_directory(peer_, kind, n, dir_.overflowed(peer_, kind),
                                    dir_.held(peer_) ? n : 0);
}

// Entries past the peer's cap: not stored, counted, and the peer's sends fall back to asking it
// (session_directory::set_limits). Warned about through a throttle: a flooding peer sends one
// frame after another.
void peer_service::applied(proto::target_kind kind, const apply_result& r) {
    publish(kind);
    ctx_.publish_directory(dir_);
    if (r.refused == 0) return;
    ctx_.metrics.directory_refused(kind).inc(r.refused);
    bool users = kind == proto::target_kind::user;
    IMGATE_LOG_THROTTLED(warn,
                         "cluster rpc: peer {} is at its directory cap of {} {} "
                         "(cluster_rpc.max_peer_{}); refused {} more; sends of that kind are "
                         "also forwarded to it until its next snapshot fits",
                         peer_, users ? ctx_.cfg.max_peer_users : ctx_.cfg.max_peer_rooms,
                         users ? "users" : "rooms", users ? "users" : "rooms", r.refused);
}

// Entries a peer sent that this gateway cannot use (an id outside the id rule — a peer running
// another version, or a bug): skipped and counted, never a reason to drop the link and with it
// everything the peer announced.
void peer_service::skipped(rpc::op o, uint32_t n) {
    ctx_.metrics.entry_skipped(o).inc(n);
    if (!std::exchange(skipped_logged_, true))
        spdlog::warn(
            "cluster rpc: skipped {} {} entr{} from {} with an id outside the id rule "
            "(further ones on this link are only counted in "
            "imgate_rpc_entries_skipped_total)",
            n, rpc::to_string(o), n == 1 ? "y" : "ies", peer_);
}

verdict peer_service::on_frame(const frame& f, std::string& reply) {
    switch (static_cast<rpc::op>(f.op)) {
        case rpc::op::forward: {
            rpc::forward_msg m;
            if (!rpc::read_body(f.body, m)) return verdict::reject;
            ctx_.metrics.forwards_received.inc();
            if (!rpc::usable(m.m)) {
                // Answered, so the sender's call completes now instead of at its deadline.
                skipped(rpc::op::forward, 1);
                rpc::encode(reply, rpc::forward_result_msg{proto::code::bad_request, 0}, f.corr);
                return verdict::more;
            }
            uint32_t n = ctx_.stopping.load() ? 0 : ctx_.local.deliver_local(m.m);
            rpc::encode(reply,
                        rpc::forward_result_msg{n > 0 ? proto::code::ok : proto::code::offline, n},
                        f.corr);
            return verdict::more;
        }
        case rpc::op::receipt: {
            auto m = rpc::decode<rpc::receipt_msg>(f);
            if (!m) return verdict::reject;
            if (!rpc::usable(m->r)) {
                skipped(rpc::op::receipt, 1);
                return verdict::more;
            }
            if (!ctx_.stopping.load()) ctx_.local.receipt_local(m->origin_session, m->r);
            return verdict::more;
        }
        case rpc::op::presence: {
            auto m = rpc::decode<rpc::presence_msg>(f);
            if (!m) return verdict::reject;
            if (m->skipped) skipped(rpc::op::presence, m->skipped);
            applied(proto::target_kind::user, dir_.apply_presence(peer_, m->reset, m->changes));
            return verdict::more;
        }
        case rpc::op::room_interest: {
            auto m = rpc::decode<rpc::room_interest_msg>(f);
            if (!m) return verdict::reject;
            if (m->skipped) skipped(rpc::op::room_interest, m->skipped);
            applied(proto::target_kind::room, dir_.apply_rooms(peer_, m->reset, m->changes));
            return verdict::more;
        }
        case rpc::op::device_claim: {
            auto m = rpc::decode<rpc::device_claim_msg>(f);
            if (!m) return verdict::reject;
            if (!rpc::usable(*m)) {
                skipped(rpc::op::device_claim, 1);
                return verdict::more;
            }
            ctx_.metrics.claims_received.inc();
            if (!ctx_.stopping.load()) ctx_.local.device_claimed(m->user, m->device);
            return verdict::more;
        }
        case rpc::op::ping:
            rpc::encode(reply, rpc::pong_msg{});
            return verdict::more;
        default:
            return verdict::reject;
    }
}

}  // namespace imgate::gw
