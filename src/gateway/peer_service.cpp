#include "gateway/peer_service.hpp"

#include <spdlog/spdlog.h>

#include "gateway/rpc_wire.hpp"

namespace imgate::gw {

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
            dir_.apply_presence(peer_, m->reset, m->changes);
            ctx_.publish_directory(dir_);
            return verdict::more;
        }
        case rpc::op::room_interest: {
            auto m = rpc::decode<rpc::room_interest_msg>(f);
            if (!m) return verdict::reject;
            if (m->skipped) skipped(rpc::op::room_interest, m->skipped);
            dir_.apply_rooms(peer_, m->reset, m->changes);
            ctx_.publish_directory(dir_);
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
