#include "common/protocol.hpp"

#include <array>

namespace imgate::proto {

namespace {

struct code_name {
    code c;
    const char* name;
};

constexpr std::array code_names{
    code_name{code::ok, "delivered"},
    code_name{code::offline, "offline"},
    code_name{code::bad_frame, "bad_frame"},
    code_name{code::unsupported_version, "unsupported_version"},
    code_name{code::unknown_op, "unknown_op"},
    code_name{code::frame_too_large, "frame_too_large"},
    code_name{code::bad_request, "bad_request"},
    code_name{code::login_required, "login_required"},
    code_name{code::auth_failed, "auth_failed"},
    code_name{code::token_expired, "token_expired"},
    code_name{code::login_timeout, "login_timeout"},
    code_name{code::already_logged_in, "already_logged_in"},
    code_name{code::rate_limited, "rate_limited"},
    code_name{code::payload_too_large, "payload_too_large"},
    code_name{code::server_busy, "server_busy"},
    code_name{code::slow_consumer, "slow_consumer"},
    code_name{code::not_in_room, "not_in_room"},
    code_name{code::too_many_rooms, "too_many_rooms"},
    code_name{code::unavailable, "unavailable"},
    code_name{code::timeout, "timeout"},
    code_name{code::internal, "internal"},
    code_name{code::draining, "draining"},
};

bool valid_kind(uint8_t k) { return k == 1 || k == 2; }

bool valid_code(uint16_t c) {
    for (auto& n : code_names)
        if (static_cast<uint16_t>(n.c) == c) return true;
    return false;
}

}  // namespace

const char* to_string(op o) {
    switch (o) {
        case op::login: return "login";
        case op::login_result: return "login_result";
        case op::ping: return "ping";
        case op::pong: return "pong";
        case op::send: return "send";
        case op::send_result: return "send_result";
        case op::deliver: return "deliver";
        case op::ack: return "ack";
        case op::receipt: return "receipt";
        case op::join: return "join";
        case op::leave: return "leave";
        case op::room_result: return "room_result";
        case op::push: return "push";
        case op::kick: return "kick";
        case op::redirect: return "redirect";
        case op::error: return "error";
    }
    return "unknown";
}

bool is_known_op(uint8_t o) { return std::string_view(to_string(static_cast<op>(o))) != "unknown"; }

const char* to_string(code c) {
    for (auto& n : code_names)
        if (n.c == c) return n.name;
    return "unknown";
}

std::optional<code> code_from_string(std::string_view s) {
    for (auto& n : code_names)
        if (s == n.name) return n.c;
    return std::nullopt;
}

const char* to_string(kick_reason r) {
    switch (r) {
        case kick_reason::replaced: return "replaced";
        case kick_reason::shutdown: return "shutdown";
        case kick_reason::drain: return "drain";
        case kick_reason::idle: return "idle";
        case kick_reason::slow_consumer: return "slow_consumer";
        case kick_reason::admin: return "admin";
    }
    return "unknown";
}

void write_body(byte_writer& w, const login_msg& m) { w.str16(m.token); }
bool read_body(std::string_view b, login_msg& m) {
    byte_reader r(b);
    m.token = r.str16();
    return r.done();
}

void write_body(byte_writer& w, const login_result_msg& m) {
    w.str16(m.user);
    w.str16(m.device);
    w.str16(m.gateway_id);
    w.u32(m.heartbeat_ms);
    w.u32(m.idle_timeout_ms);
    w.u32(m.max_frame);
}
bool read_body(std::string_view b, login_result_msg& m) {
    byte_reader r(b);
    m.user = r.str16();
    m.device = r.str16();
    m.gateway_id = r.str16();
    m.heartbeat_ms = r.u32();
    m.idle_timeout_ms = r.u32();
    m.max_frame = r.u32();
    return r.done();
}

void write_body(byte_writer&, const ping_msg&) {}
bool read_body(std::string_view b, ping_msg&) { return b.empty(); }
void write_body(byte_writer&, const pong_msg&) {}
bool read_body(std::string_view b, pong_msg&) { return b.empty(); }

void write_body(byte_writer& w, const send_msg& m) {
    w.u8(static_cast<uint8_t>(m.kind));
    w.str16(m.target);
    w.u64(m.client_msg_id);
    w.blob32(m.payload);
}
namespace {
// The SEND layout without the kind check; returns the raw kind byte through k.
bool read_send_fields(std::string_view b, send_msg& m, uint8_t& k) {
    byte_reader r(b);
    k = r.u8();
    m.kind = static_cast<target_kind>(k);
    m.target = r.str16();
    m.client_msg_id = r.u64();
    m.payload = r.blob32();
    return r.done();
}
}  // namespace

bool read_body(std::string_view b, send_msg& m) {
    uint8_t k = 0;
    return read_send_fields(b, m, k) && valid_kind(k);
}

std::optional<send_decoded> decode_send(const frame& f) {
    if (f.op != static_cast<uint8_t>(op::send)) return std::nullopt;
    send_decoded d;
    uint8_t k = 0;
    if (!read_send_fields(f.body, d.msg, k)) return std::nullopt;
    d.kind_valid = valid_kind(k);
    return d;
}

void write_body(byte_writer& w, const send_result_msg& m) {
    w.u64(m.client_msg_id);
    w.u64(m.server_msg_id);
    w.u16(static_cast<uint16_t>(m.status));
    w.u32(m.reached);
}
bool read_body(std::string_view b, send_result_msg& m) {
    byte_reader r(b);
    m.client_msg_id = r.u64();
    m.server_msg_id = r.u64();
    uint16_t c = r.u16();
    m.status = static_cast<code>(c);
    m.reached = r.u32();
    return r.done() && valid_code(c);
}

void write_body(byte_writer& w, const deliver_msg& m) {
    w.u64(m.server_msg_id);
    w.u8(static_cast<uint8_t>(m.kind));
    w.str16(m.from_user);
    w.str16(m.from_device);
    w.str16(m.room);
    w.u64(m.ts_ms);
    w.blob32(m.payload);
}
bool read_body(std::string_view b, deliver_msg& m) {
    byte_reader r(b);
    m.server_msg_id = r.u64();
    uint8_t k = r.u8();
    m.kind = static_cast<target_kind>(k);
    m.from_user = r.str16();
    m.from_device = r.str16();
    m.room = r.str16();
    m.ts_ms = r.u64();
    m.payload = r.blob32();
    return r.done() && valid_kind(k);
}

void write_body(byte_writer& w, const ack_msg& m) { w.u64(m.server_msg_id); }
bool read_body(std::string_view b, ack_msg& m) {
    byte_reader r(b);
    m.server_msg_id = r.u64();
    return r.done();
}

void write_body(byte_writer& w, const receipt_msg& m) {
    w.u64(m.client_msg_id);
    w.u64(m.server_msg_id);
    w.str16(m.user);
    w.str16(m.device);
}
bool read_body(std::string_view b, receipt_msg& m) {
    byte_reader r(b);
    m.client_msg_id = r.u64();
    m.server_msg_id = r.u64();
    m.user = r.str16();
    m.device = r.str16();
    return r.done();
}

void write_body(byte_writer& w, const join_msg& m) { w.str16(m.room); }
bool read_body(std::string_view b, join_msg& m) {
    byte_reader r(b);
    m.room = r.str16();
    return r.done();
}
void write_body(byte_writer& w, const leave_msg& m) { w.str16(m.room); }
bool read_body(std::string_view b, leave_msg& m) {
    byte_reader r(b);
    m.room = r.str16();
    return r.done();
}

void write_body(byte_writer& w, const room_result_msg& m) {
    w.str16(m.room);
    w.u16(static_cast<uint16_t>(m.status));
}
bool read_body(std::string_view b, room_result_msg& m) {
    byte_reader r(b);
    m.room = r.str16();
    uint16_t c = r.u16();
    m.status = static_cast<code>(c);
    return r.done() && valid_code(c);
}

void write_body(byte_writer& w, const push_msg& m) {
    w.u64(m.server_msg_id);
    w.str16(m.room);
    w.u64(m.ts_ms);
    w.blob32(m.payload);
}
bool read_body(std::string_view b, push_msg& m) {
    byte_reader r(b);
    m.server_msg_id = r.u64();
    m.room = r.str16();
    m.ts_ms = r.u64();
    m.payload = r.blob32();
    return r.done();
}

void write_body(byte_writer& w, const kick_msg& m) {
    w.u8(static_cast<uint8_t>(m.reason));
    w.u32(m.reconnect_after_ms);
    w.str16(m.message);
}
bool read_body(std::string_view b, kick_msg& m) {
    byte_reader r(b);
    uint8_t k = r.u8();
    m.reason = static_cast<kick_reason>(k);
    m.reconnect_after_ms = r.u32();
    m.message = r.str16();
    return r.done() && k >= 1 && k <= 6;
}

void write_body(byte_writer& w, const redirect_msg& m) {
    w.u32(m.reconnect_after_ms);
    w.str16(m.host);
    w.u16(m.port);
    w.str16(m.reason);
}
bool read_body(std::string_view b, redirect_msg& m) {
    byte_reader r(b);
    m.reconnect_after_ms = r.u32();
    m.host = r.str16();
    m.port = r.u16();
    m.reason = r.str16();
    return r.done();
}

void write_body(byte_writer& w, const error_msg& m) {
    w.u16(static_cast<uint16_t>(m.status));
    w.str16(m.message);
}
bool read_body(std::string_view b, error_msg& m) {
    byte_reader r(b);
    uint16_t c = r.u16();
    m.status = static_cast<code>(c);
    m.message = r.str16();
    return r.done() && valid_code(c);
}

}  // namespace imgate::proto
