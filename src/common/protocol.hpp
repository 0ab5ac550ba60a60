#pragma once
// The client wire protocol: ops, status codes and message bodies (docs/protocol.md is the spec).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/codec.hpp"
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

// What the codec (common/codec.hpp) asks of this protocol: its frame version and which enum
// values a body may carry.
constexpr uint8_t frame_version(op) {
    return client_protocol_version;
}
bool wire_valid(code c);
constexpr bool wire_valid(kick_reason r) {
    return r >= kick_reason::replaced && r <= kick_reason::admin;
}
constexpr bool wire_valid(target_kind k) {
    return k == target_kind::user || k == target_kind::room;
}

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
    static auto fields(auto& m) { return codec::list(m.token); }
    bool operator==(const login_msg&) const = default;
};
struct login_result_msg {
    static constexpr op opcode = op::login_result;
    std::string user;
    std::string device;
    std::string gateway_id;
    uint32_t heartbeat_ms = 0;
    uint32_t idle_timeout_ms = 0;
    uint32_t max_frame = 0;
    static auto fields(auto& m) {
        return codec::list(m.user, m.device, m.gateway_id, m.heartbeat_ms, m.idle_timeout_ms,
                           m.max_frame);
    }
    bool operator==(const login_result_msg&) const = default;
};
struct ping_msg {
    static constexpr op opcode = op::ping;
    static auto fields(auto&) { return codec::list(); }
    bool operator==(const ping_msg&) const = default;
};
struct pong_msg {
    static constexpr op opcode = op::pong;
    static auto fields(auto&) { return codec::list(); }
    bool operator==(const pong_msg&) const = default;
};
struct send_msg {
    static constexpr op opcode = op::send;
    target_kind kind = target_kind::user;
    std::string target;
    uint64_t client_msg_id = 0;
    std::string payload;
    static auto fields(auto& m) {
        return codec::list(m.kind, m.target, m.client_msg_id, codec::blob32(m.payload));
    }
    bool operator==(const send_msg&) const = default;
};
struct send_result_msg {
    static constexpr op opcode = op::send_result;
    uint64_t client_msg_id = 0;
    uint64_t server_msg_id = 0;
    code status = code::ok;
    uint32_t reached = 0;  // sessions the message reached
    static auto fields(auto& m) {
        return codec::list(m.client_msg_id, m.server_msg_id, m.status, m.reached);
    }
    bool operator==(const send_result_msg&) const = default;
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
    static auto fields(auto& m) {
        return codec::list(m.server_msg_id, m.kind, m.from_user, m.from_device, m.room, m.ts_ms,
                           codec::blob32(m.payload));
    }
    bool operator==(const deliver_msg&) const = default;
};
struct ack_msg {
    static constexpr op opcode = op::ack;
    uint64_t server_msg_id = 0;
    static auto fields(auto& m) { return codec::list(m.server_msg_id); }
    bool operator==(const ack_msg&) const = default;
};
struct receipt_msg {
    static constexpr op opcode = op::receipt;
    uint64_t client_msg_id = 0;
    uint64_t server_msg_id = 0;
    std::string user;  // who acked
    std::string device;
    static auto fields(auto& m) {
        return codec::list(m.client_msg_id, m.server_msg_id, m.user, m.device);
    }
    bool operator==(const receipt_msg&) const = default;
};
struct join_msg {
    static constexpr op opcode = op::join;
    std::string room;
    static auto fields(auto& m) { return codec::list(m.room); }
    bool operator==(const join_msg&) const = default;
};
struct leave_msg {
    static constexpr op opcode = op::leave;
    std::string room;
    static auto fields(auto& m) { return codec::list(m.room); }
    bool operator==(const leave_msg&) const = default;
};
struct room_result_msg {
    static constexpr op opcode = op::room_result;
    std::string room;
    code status = code::ok;
    static auto fields(auto& m) { return codec::list(m.room, m.status); }
    bool operator==(const room_result_msg&) const = default;
};
struct push_msg {
    static constexpr op opcode = op::push;
    uint64_t server_msg_id = 0;
    std::string room;  // empty: pushed to the user
    uint64_t ts_ms = 0;
    std::string payload;
    static auto fields(auto& m) {
        return codec::list(m.server_msg_id, m.room, m.ts_ms, codec::blob32(m.payload));
    }
    bool operator==(const push_msg&) const = default;
};
struct kick_msg {
    static constexpr op opcode = op::kick;
    kick_reason reason = kick_reason::admin;
    uint32_t reconnect_after_ms = 0;
    std::string message;
    static auto fields(auto& m) { return codec::list(m.reason, m.reconnect_after_ms, m.message); }
    bool operator==(const kick_msg&) const = default;
};
struct redirect_msg {
    static constexpr op opcode = op::redirect;
    uint32_t reconnect_after_ms = 0;
    std::string host;  // empty: ask the dispatcher
    uint16_t port = 0;
    std::string reason;
    static auto fields(auto& m) {
        return codec::list(m.reconnect_after_ms, m.host, m.port, m.reason);
    }
    bool operator==(const redirect_msg&) const = default;
};
struct error_msg {
    static constexpr op opcode = op::error;
    code status = code::internal;
    std::string message;
    static auto fields(auto& m) { return codec::list(m.status, m.message); }
    bool operator==(const error_msg&) const = default;
};

// The body codecs and whole-frame encode/decode: common/codec.hpp, driven by each message's
// fields(). read_body fails on a missing field, trailing bytes or an out-of-range enum.
using codec::decode;
using codec::encode;
using codec::read_body;
using codec::write_body;

// A SEND whose body parses but whose kind byte is not a target_kind: still a SEND, because the
// client waits for the SEND_RESULT of its client_msg_id, so the gateway must be able to answer
// it (bad_request) instead of refusing the frame as malformed.
struct send_decoded {
    send_msg msg;
    bool kind_valid = false;
};
std::optional<send_decoded> decode_send(const frame& f);

}  // namespace imgate::proto
