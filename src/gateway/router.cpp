#include "gateway/router.hpp"

#include <spdlog/spdlog.h>

#include "common/bytes.hpp"
#include "common/frame.hpp"

namespace imgate::gw {

proto::code combine_results(uint32_t local, const forward_result& fr, uint32_t& total) {
    total = local + fr.reached;
    if (total > 0) return proto::code::ok;
    if (fr.status == proto::code::ok || fr.status == proto::code::offline)
        return proto::code::offline;
    return fr.status;
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

message_router::message_router(std::string self_id, uint16_t node, const gateway_limits& limits,
                               gateway_metrics& metrics, const clock_source& clock)
    : self_id_(std::move(self_id)),
      metrics_(metrics),
      clock_(std::move(clock)),
      acks_(limits.max_pending_acks, limits.ack_timeout),
      seen_(limits.dedupe_window),
      ids_(node, uint64_t(clock_.wall_ms())) {}

uint32_t message_router::deliver_to_sessions(const outbound_message& msg, uint64_t exclude_sid) {
    shared_frame f = encode_delivery(msg);
    bool want_receipt =
        !msg.is_push && msg.kind == proto::target_kind::user && msg.origin_session != 0;
    uint32_t reached = 0;
    pending_acks::session_ids sids;  // the reached sessions, each of which may ack once
    auto push = [&](session_sink& s) {
        if (!s.push_frame(f)) return;
        ++reached;
        if (want_receipt) sids.push_back(s.session_id());
    };
    if (want_receipt) {
        // Registered before the frames are queued so an ack can never arrive first; dropped again
        // when nobody was reached, and once every reached session acked.
        size_t ev = acks_.add(
            msg.server_msg_id,
            ack_origin{msg.origin_gateway, msg.origin_session, msg.client_msg_id, msg.target},
            clock_.now());
        if (ev) metrics_.ack_evictions->inc(ev);
        hub_.for_user(msg.target, push);
        acks_.set_recipients(msg.server_msg_id, sids);
    } else if (msg.kind == proto::target_kind::user) {
        hub_.for_user(msg.target, push);
    } else {
        hub_.for_room(msg.target, exclude_sid, push);
    }
    metrics_.deliveries->inc(reached);
    return reached;
}

namespace {
// Turns the routed result of one SEND into its SEND_RESULT for the sending session.
struct send_reply {
    gateway_metrics* metrics;
    std::shared_ptr<session_sink> to;
    uint64_t cid, sid;
    uint32_t corr;
    proto::target_kind kind;
    void operator()(proto::code c, uint32_t total) const {
        metrics->message(kind, false, c);
        if (c != proto::code::ok && c != proto::code::offline) metrics->error(c);
        to->push_owned(proto::encode(proto::send_result_msg{cid, sid, c, total}, corr));
    }
};
}  // namespace

void message_router::send(std::shared_ptr<session_sink> from, proto::send_msg& m, uint32_t corr) {
    outbound_message msg;
    msg.server_msg_id = ids_.next();
    msg.kind = m.kind;
    msg.target = std::move(m.target);
    msg.from_user = from->user();
    msg.from_device = from->device();
    msg.ts_ms = uint64_t(clock_.wall_ms());
    msg.payload = std::move(m.payload);
    msg.origin_gateway = self_id_;
    msg.origin_session = from->session_id();
    msg.client_msg_id = m.client_msg_id;
    // The sender's own session never counts in a room's reach.
    uint64_t exclude = msg.origin_session;
    send_reply reply{&metrics_, std::move(from), msg.client_msg_id, msg.server_msg_id,
                     corr,      msg.kind};
    route(msg, exclude, std::move(reply));
}

void message_router::push(outbound_message& msg, route_done done) {
    msg.is_push = true;
    msg.server_msg_id = ids_.next();
    msg.ts_ms = uint64_t(clock_.wall_ms());
    msg.origin_gateway = self_id_;
    route(msg, 0, std::move(done));
}

void message_router::ack(const session_sink& s, uint64_t server_msg_id) {
    auto origin = acks_.on_ack(server_msg_id, s.session_id(), s.user(), clock_.now());
    if (!origin) return;  // unknown, expired or foreign ids are ignored: acks are advisory
    proto::receipt_msg r{origin->client_msg_id, server_msg_id, s.user(), s.device()};
    metrics_.receipts->inc();
    if (origin->origin_gateway == self_id_)
        receipt_local(origin->origin_session, r);
    else
        cluster_->send_receipt(origin->origin_gateway, origin->origin_session, r);
}

void message_router::kick_replaced(session_sink& s) {
    metrics_.kick(proto::kick_reason::replaced);
    s.finish(proto::encode(proto::kick_msg{proto::kick_reason::replaced, 0,
                                           std::string(proto::kick_replaced_message)}));
}

void message_router::admitted(const session_sink& s, const hub::add_result& r) {
    if (r.replaced) {
        kick_replaced(*r.replaced);
        for (auto& room : r.replaced_rooms_emptied) cluster_->room_interest(room, false);
    }
    if (r.first_of_user) cluster_->user_online(s.user());
    // The count for the presence API (redis mode records it); after user_online, as the
    // interface says.
    cluster_->user_sessions(s.user(), uint32_t(hub_.for_user(s.user(), [](session_sink&) {})));
    cluster_->device_login(s.user(), s.device());
}

void message_router::closed(uint64_t sid, const std::string& user) {
    auto r = hub_.remove(sid);
    if (!r.removed) return;
    for (auto& room : r.rooms_emptied) cluster_->room_interest(room, false);
    if (r.last_of_user) cluster_->user_offline(user);
    cluster_->user_sessions(user, uint32_t(hub_.for_user(user, [](session_sink&) {})));
}

proto::code message_router::join(uint64_t sid, const std::string& room, size_t max_rooms) {
    auto r = hub_.join(sid, room, max_rooms);
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

proto::code message_router::leave(uint64_t sid, const std::string& room) {
    auto r = hub_.leave(sid, room);
    if (!r.was_member) return proto::code::not_in_room;
    if (r.last_member) cluster_->room_interest(room, false);
    return proto::code::ok;
}

void message_router::expire_acks() {
    acks_.expire(clock_.now());
}

void message_router::set_limits(const gateway_limits& limits) {
    acks_.set_limits(limits.max_pending_acks, limits.ack_timeout);
}

uint32_t message_router::deliver_local(const outbound_message& msg) {
    if (!seen_.insert(msg.server_msg_id)) {
        metrics_.dupes->inc();
        return 0;
    }
    return deliver_to_sessions(msg, 0);
}

void message_router::receipt_local(uint64_t origin_session, const proto::receipt_msg& r) {
    auto s = hub_.find(origin_session);
    if (!s) return;  // the sender went away: receipts are best effort
    s->push_owned(proto::encode(r));
}

std::vector<std::string> message_router::local_users() const {
    return hub_.users();
}
std::vector<std::string> message_router::local_rooms() const {
    return hub_.rooms();
}

void message_router::device_claimed(const std::string& user, const std::string& device) {
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
        kick_replaced(*s);
    }
}

}  // namespace imgate::gw
