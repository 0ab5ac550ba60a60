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

}  // namespace

bool wire_valid(code c) {
    for (auto& n : code_names)
        if (n.c == c) return true;
    return false;
}

const char* to_string(op o) {
    switch (o) {
        case op::login:
            return "login";
        case op::login_result:
            return "login_result";
        case op::ping:
            return "ping";
        case op::pong:
            return "pong";
        case op::send:
            return "send";
        case op::send_result:
            return "send_result";
        case op::deliver:
            return "deliver";
        case op::ack:
            return "ack";
        case op::receipt:
            return "receipt";
        case op::join:
            return "join";
        case op::leave:
            return "leave";
        case op::room_result:
            return "room_result";
        case op::push:
            return "push";
        case op::kick:
            return "kick";
        case op::redirect:
            return "redirect";
        case op::error:
            return "error";
    }
    return "unknown";
}

bool is_known_op(uint8_t o) {
    return std::string_view(to_string(static_cast<op>(o))) != "unknown";
}

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
        case kick_reason::replaced:
            return "replaced";
        case kick_reason::shutdown:
            return "shutdown";
        case kick_reason::drain:
            return "drain";
        case kick_reason::idle:
            return "idle";
        case kick_reason::slow_consumer:
            return "slow_consumer";
        case kick_reason::admin:
            return "admin";
    }
    return "unknown";
}

std::optional<send_decoded> decode_send(const frame& f) {
    if (f.op != static_cast<uint8_t>(op::send)) return std::nullopt;
    send_decoded d;
    // The kind is the only field of a SEND that can be out of range, so bad_value means just that.
    auto r = codec::read_fields(f.body, d.msg);
    if (r == codec::read_result::malformed) return std::nullopt;
    d.kind_valid = r == codec::read_result::ok;
    return d;
}

}  // namespace imgate::proto
