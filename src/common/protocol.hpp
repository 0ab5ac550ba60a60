#pragma once
// The client wire protocol: ops, status codes and message bodies (docs/protocol.md is the spec).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/frame.hpp"

namespace imgate::proto {

enum class op : uint8_t {
    login = 0x01,
    login_result = 0x02,
    ping = 0x03,
    pong = 0x04,
    send = 0x10,
    send_result = 0x11,
    deliver = 0x12,
    ack = 0x13,
    receipt = 0x14,
    join = 0x20,
    leave = 0x21,
    room_result = 0x22,
    push = 0x30,
    kick = 0x40,
    redirect = 0x41,
    error = 0x7f,
};

// Status/error codes. 0 and 1 are the two good send outcomes; the rest are errors.
enum class code : uint16_t {
    ok = 0,  // "delivered" for a send result
    offline = 1,
    bad_frame = 10,
    unsupported_version = 11,
    unknown_op = 12,
    frame_too_large = 13,
    bad_request = 14,
    login_required = 20,
    auth_failed = 21,
    token_expired = 22,
    login_timeout = 23,
    already_logged_in = 24,
    rate_limited = 30,
    payload_too_large = 31,
    server_busy = 32,
    slow_consumer = 33,
    not_in_room = 40,
    too_many_rooms = 41,
    unavailable = 50,
    timeout = 51,
    internal = 52,
    draining = 53,
};

enum class kick_reason : uint8_t {
    replaced = 1,
    shutdown = 2,
    drain = 3,
    idle = 4,
    slow_consumer = 5,
    admin = 6,
};

enum class target_kind : uint8_t { user = 1, room = 2 };

// The one text of KICK `replaced` (docs/protocol.md shows its bytes), for a replacement on this
// gateway and on another one alike.
inline constexpr std::string_view kick_replaced_message = "logged in elsewhere";
// The device of a session whose token has no `dev` claim (or an empty one).
inline constexpr std::string_view default_device = "default";

const char* to_string(op o);
const char* to_string(code c);
const char* to_string(kick_reason r);
std::optional<code> code_from_string(std::string_view s);
bool is_known_op(uint8_t o);

struct login_msg {
    static constexpr op opcode = op::login;
    std::string token;
};
struct login_result_msg {
    static constexpr op opcode = op::login_result;
    std::string user;
    std::string device;
    std::string gateway_id;
    uint32_t heartbeat_ms = 0;
    uint32_t idle_timeout_ms = 0;
    uint32_t max_frame = 0;
};
struct ping_msg {
    static constexpr op opcode = op::ping;
};
struct pong_msg {
    static constexpr op opcode = op::pong;
};
struct send_msg {
    static constexpr op opcode = op::send;
    target_kind kind = target_kind::user;
    std::string target;
    uint64_t client_msg_id = 0;
    std::string payload;
};
struct send_result_msg {
    static constexpr op opcode = op::send_result;
    uint64_t client_msg_id = 0;
    uint64_t server_msg_id = 0;
    code status = code::ok;
    uint32_t reached = 0;  // sessions the message reached
};
struct deliver_msg {
    static constexpr op opcode = op::deliver;
    uint64_t server_msg_id = 0;
    target_kind kind = target_kind::user;
    std::string from_user;
    std::string from_device;
    std::string room;  // empty for 1:1
    uint64_t ts_ms = 0;
    std::string payload;
};
struct ack_msg {
    static constexpr op opcode = op::ack;
    uint64_t server_msg_id = 0;
};
struct receipt_msg {
    static constexpr op opcode = op::receipt;
    uint64_t client_msg_id = 0;
    uint64_t server_msg_id = 0;
    std::string user;  // who acked
    std::string device;
};
struct join_msg {
    static constexpr op opcode = op::join;
    std::string room;
};
struct leave_msg {
    static constexpr op opcode = op::leave;
    std::string room;
};
struct room_result_msg {
    static constexpr op opcode = op::room_result;
    std::string room;
    code status = code::ok;
};
struct push_msg {
    static constexpr op opcode = op::push;
    uint64_t server_msg_id = 0;
    std::string room;  // empty: pushed to the user
    uint64_t ts_ms = 0;
    std::string payload;
};
struct kick_msg {
    static constexpr op opcode = op::kick;
    kick_reason reason = kick_reason::admin;
    uint32_t reconnect_after_ms = 0;
    std::string message;
};
struct redirect_msg {
    static constexpr op opcode = op::redirect;
    uint32_t reconnect_after_ms = 0;
    std::string host;  // empty: ask the dispatcher
    uint16_t port = 0;
    std::string reason;
};
struct error_msg {
    static constexpr op opcode = op::error;
    code status = code::internal;
    std::string message;
};

// Body codecs. read_body fails on a missing field, trailing bytes or an out-of-range enum.
void write_body(byte_writer& w, const login_msg& m);
void write_body(byte_writer& w, const login_result_msg& m);
void write_body(byte_writer& w, const ping_msg& m);
void write_body(byte_writer& w, const pong_msg& m);
void write_body(byte_writer& w, const send_msg& m);
void write_body(byte_writer& w, const send_result_msg& m);
void write_body(byte_writer& w, const deliver_msg& m);
void write_body(byte_writer& w, const ack_msg& m);
void write_body(byte_writer& w, const receipt_msg& m);
void write_body(byte_writer& w, const join_msg& m);
void write_body(byte_writer& w, const leave_msg& m);
void write_body(byte_writer& w, const room_result_msg& m);
void write_body(byte_writer& w, const push_msg& m);
void write_body(byte_writer& w, const kick_msg& m);
void write_body(byte_writer& w, const redirect_msg& m);
void write_body(byte_writer& w, const error_msg& m);

bool read_body(std::string_view b, login_msg& m);
bool read_body(std::string_view b, login_result_msg& m);
bool read_body(std::string_view b, ping_msg& m);
bool read_body(std::string_view b, pong_msg& m);
bool read_body(std::string_view b, send_msg& m);
bool read_body(std::string_view b, send_result_msg& m);
bool read_body(std::string_view b, deliver_msg& m);
bool read_body(std::string_view b, ack_msg& m);
bool read_body(std::string_view b, receipt_msg& m);
bool read_body(std::string_view b, join_msg& m);
bool read_body(std::string_view b, leave_msg& m);
bool read_body(std::string_view b, room_result_msg& m);
bool read_body(std::string_view b, push_msg& m);
bool read_body(std::string_view b, kick_msg& m);
bool read_body(std::string_view b, redirect_msg& m);
bool read_body(std::string_view b, error_msg& m);

// A SEND whose body parses but whose kind byte is not a target_kind: still a SEND, because the
// client waits for the SEND_RESULT of its client_msg_id, so the gateway must be able to answer
// it (bad_request) instead of refusing the frame as malformed.
struct send_decoded {
    send_msg msg;
    bool kind_valid = false;
};
std::optional<send_decoded> decode_send(const frame& f);

// Appends a whole client frame for m to out.
template <class M>
void encode(std::string& out, const M& m, uint32_t corr = 0) {
    size_t start = begin_frame(out);
    byte_writer w(out);
    write_body(w, m);
    finish_frame(out, start, client_protocol_version, static_cast<uint8_t>(M::opcode), corr);
}

template <class M>
std::string encode(const M& m, uint32_t corr = 0) {
    std::string out;
    encode(out, m, corr);
    return out;
}

// Decodes f's body as M; nullopt when the op differs or the body is malformed.
template <class M>
std::optional<M> decode(const frame& f) {
    if (f.op != static_cast<uint8_t>(M::opcode)) return std::nullopt;
    M m;
    if (!read_body(f.body, m)) return std::nullopt;
    return m;
}

}  // namespace imgate::proto
