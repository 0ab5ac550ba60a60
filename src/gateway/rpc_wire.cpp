#include "gateway/rpc_wire.hpp"

#include <algorithm>

#include "common/ids.hpp"

namespace imgate::gw::rpc {

const char* to_string(op o) {
    switch (o) {
        case op::hello:
            return "HELLO";
        case op::challenge:
            return "CHALLENGE";
        case op::auth:
            return "AUTH";
        case op::auth_ok:
            return "AUTH_OK";
        case op::auth_fail:
            return "AUTH_FAIL";
        case op::ping:
            return "PING";
        case op::pong:
            return "PONG";
        case op::forward:
            return "FORWARD";
        case op::forward_result:
            return "FORWARD_RESULT";
        case op::receipt:
            return "RECEIPT";
        case op::presence:
            return "PRESENCE";
        case op::room_interest:
            return "ROOM_INTEREST";
        case op::device_claim:
            return "DEVICE_CLAIM";
    }
    return "UNKNOWN";
}

bool is_known_op(uint8_t o) {
    switch (static_cast<op>(o)) {
        case op::hello:
        case op::challenge:
        case op::auth:
        case op::auth_ok:
        case op::auth_fail:
        case op::ping:
        case op::pong:
        case op::forward:
        case op::forward_result:
        case op::receipt:
        case op::presence:
        case op::room_interest:
        case op::device_claim:
            return true;
    }
    return false;
}

namespace {

bool known_code(uint16_t c) {
    auto s = proto::to_string(static_cast<proto::code>(c));
    return std::string_view(s) != "unknown";
}

void write_deltas(byte_writer& w, bool reset, const std::vector<delta>& d) {
    w.u8(reset ? 1 : 0);
    w.u32(static_cast<uint32_t>(d.size()));
    for (const auto& x : d) {
        w.u8(x.on ? 1 : 0);
        w.str16(x.key);
    }
}

bool read_deltas(std::string_view b, bool& reset, std::vector<delta>& d, uint32_t& skipped) {
    byte_reader r(b);
    uint8_t flags = r.u8();
    uint32_t n = r.u32();
    if (!r.ok() || flags > 1) return false;
    reset = flags == 1;
    // Each entry takes at least 3 bytes: refuse counts the body cannot hold before reserving.
    if (n > b.size() / 3) return false;
    d.clear();
    d.reserve(n);
    skipped = 0;
    for (uint32_t i = 0; i < n; ++i) {
        uint8_t on = r.u8();
        auto key = r.str16();
        if (!r.ok() || on > 1) return false;
        if (!ids::valid(key)) {
            ++skipped;
            continue;
        }
        d.push_back(delta{on == 1, std::string(key)});
    }
    return r.done();
}

}  // namespace

void write_body(byte_writer& w, const hello_msg& m) {
    w.str16(m.gateway_id);
    w.str16(m.nonce);
}
void write_body(byte_writer& w, const challenge_msg& m) {
    w.str16(m.gateway_id);
    w.str16(m.nonce);
}
void write_body(byte_writer& w, const auth_msg& m) {
    w.str16(m.proof);
}
void write_body(byte_writer& w, const auth_ok_msg& m) {
    w.str16(m.proof);
}
void write_body(byte_writer& w, const auth_fail_msg& m) {
    w.str16(m.reason);
}
void write_body(byte_writer&, const ping_msg&) {}
void write_body(byte_writer&, const pong_msg&) {}

namespace {

void write_forward(byte_writer& w, const outbound_message& m) {
    w.u64(m.server_msg_id);
    w.u8(static_cast<uint8_t>(m.kind));
    w.u8(m.is_push ? 1 : 0);
    w.str16(m.target);
    w.str16(m.from_user);
    w.str16(m.from_device);
    w.u64(m.ts_ms);
    w.str16(m.origin_gateway);
    w.u64(m.origin_session);
    w.u64(m.client_msg_id);
    w.blob32(m.payload);
}

}  // namespace

void write_body(byte_writer& w, const forward_msg& f) {
    write_forward(w, f.m);
}

void encode_forward(std::string& out, const outbound_message& m, uint32_t corr) {
    size_t start = begin_frame(out);
    byte_writer w(out);
    write_forward(w, m);
    finish_frame(out, start, rpc_protocol_version, static_cast<uint8_t>(op::forward), corr);
}
void write_body(byte_writer& w, const forward_result_msg& m) {
    w.u16(static_cast<uint16_t>(m.status));
    w.u32(m.reached);
}
void write_body(byte_writer& w, const receipt_msg& m) {
    w.u64(m.origin_session);
    w.u64(m.r.client_msg_id);
    w.u64(m.r.server_msg_id);
    w.str16(m.r.user);
    w.str16(m.r.device);
}
void write_body(byte_writer& w, const presence_msg& m) {
    write_deltas(w, m.reset, m.changes);
}
void write_body(byte_writer& w, const room_interest_msg& m) {
    write_deltas(w, m.reset, m.changes);
}
void write_body(byte_writer& w, const device_claim_msg& m) {
    w.str16(m.user);
    w.str16(m.device);
}

bool read_body(std::string_view b, hello_msg& m) {
    byte_reader r(b);
    m.gateway_id = r.str16();
    m.nonce = r.str16();
    return r.done() && ids::valid_node_id(m.gateway_id) && m.nonce.size() == nonce_size;
}
bool read_body(std::string_view b, challenge_msg& m) {
    byte_reader r(b);
    m.gateway_id = r.str16();
    m.nonce = r.str16();
    return r.done() && ids::valid_node_id(m.gateway_id) && m.nonce.size() == nonce_size;
}
bool read_body(std::string_view b, auth_msg& m) {
    byte_reader r(b);
    m.proof = r.str16();
    return r.done() && m.proof.size() == proof_size;
}
bool read_body(std::string_view b, auth_ok_msg& m) {
    byte_reader r(b);
    m.proof = r.str16();
    return r.done() && m.proof.size() == proof_size;
}
bool read_body(std::string_view b, auth_fail_msg& m) {
    byte_reader r(b);
    m.reason = r.str16();
    return r.done();
}
bool read_body(std::string_view b, ping_msg&) {
    return b.empty();
}
bool read_body(std::string_view b, pong_msg&) {
    return b.empty();
}

bool read_body(std::string_view b, forward_msg& f) {
    auto& m = f.m;
    byte_reader r(b);
    m.server_msg_id = r.u64();
    uint8_t kind = r.u8();
    uint8_t push = r.u8();
    m.target = r.str16();
    m.from_user = r.str16();
    m.from_device = r.str16();
    m.ts_ms = r.u64();
    m.origin_gateway = r.str16();
    m.origin_session = r.u64();
    m.client_msg_id = r.u64();
    m.payload = r.blob32();
    if (!r.done()) return false;
    if (kind != static_cast<uint8_t>(proto::target_kind::user) &&
        kind != static_cast<uint8_t>(proto::target_kind::room))
        return false;
    if (push > 1) return false;
    // A receipt needs somewhere to go back to.
    if (m.origin_session != 0 && !ids::valid_node_id(m.origin_gateway)) return false;
    m.kind = static_cast<proto::target_kind>(kind);
    m.is_push = push == 1;
    return true;
}
bool read_body(std::string_view b, forward_result_msg& m) {
    byte_reader r(b);
    uint16_t c = r.u16();
    m.reached = r.u32();
    if (!r.done() || !known_code(c)) return false;
    m.status = static_cast<proto::code>(c);
    return true;
}
bool read_body(std::string_view b, receipt_msg& m) {
    byte_reader r(b);
    m.origin_session = r.u64();
    m.r.client_msg_id = r.u64();
    m.r.server_msg_id = r.u64();
    m.r.user = r.str16();
    m.r.device = r.str16();
    return r.done() && m.origin_session != 0;
}
bool read_body(std::string_view b, presence_msg& m) {
    return read_deltas(b, m.reset, m.changes, m.skipped);
}
bool read_body(std::string_view b, room_interest_msg& m) {
    return read_deltas(b, m.reset, m.changes, m.skipped);
}
bool read_body(std::string_view b, device_claim_msg& m) {
    byte_reader r(b);
    m.user = r.str16();
    m.device = r.str16();
    return r.done();
}

namespace {
// Sender fields are empty for a backend push.
bool empty_or_valid(std::string_view id) {
    return id.empty() || ids::valid(id);
}
}  // namespace

bool usable(const outbound_message& m) {
    return ids::valid(m.target) && empty_or_valid(m.from_user) && empty_or_valid(m.from_device);
}
bool usable(const proto::receipt_msg& r) {
    return ids::valid(r.user) && empty_or_valid(r.device);
}
bool usable(const device_claim_msg& m) {
    return ids::valid(m.user) && ids::valid(m.device);
}

}  // namespace imgate::gw::rpc
