#pragma once
// Compile-time list of every client message type and a field visitor for each, so fuzz targets
// and the corpus generator can build, dump and compare any message without per-type code.
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/protocol.hpp"

namespace imgate::fuzz {

namespace p = imgate::proto;

using all_messages = std::tuple<p::login_msg, p::login_result_msg, p::ping_msg, p::pong_msg,
                                p::send_msg, p::send_result_msg, p::deliver_msg, p::ack_msg,
                                p::receipt_msg, p::join_msg, p::leave_msg, p::room_result_msg,
                                p::push_msg, p::kick_msg, p::redirect_msg, p::error_msg>;

// fields(m, f) calls f on every member of m, in wire order.
template <class F>
void fields(p::login_msg& m, F&& f) {
    f(m.token);
}
template <class F>
void fields(p::login_result_msg& m, F&& f) {
    f(m.user), f(m.device), f(m.gateway_id), f(m.heartbeat_ms), f(m.idle_timeout_ms),
        f(m.max_frame);
}
template <class F>
void fields(p::ping_msg&, F&&) {}
template <class F>
void fields(p::pong_msg&, F&&) {}
template <class F>
void fields(p::send_msg& m, F&& f) {
    f(m.kind), f(m.target), f(m.client_msg_id), f(m.payload);
}
template <class F>
void fields(p::send_result_msg& m, F&& f) {
    f(m.client_msg_id), f(m.server_msg_id), f(m.status), f(m.reached);
}
template <class F>
void fields(p::deliver_msg& m, F&& f) {
    f(m.server_msg_id), f(m.kind), f(m.from_user), f(m.from_device), f(m.room), f(m.ts_ms),
        f(m.payload);
}
template <class F>
void fields(p::ack_msg& m, F&& f) {
    f(m.server_msg_id);
}
template <class F>
void fields(p::receipt_msg& m, F&& f) {
    f(m.client_msg_id), f(m.server_msg_id), f(m.user), f(m.device);
}
template <class F>
void fields(p::join_msg& m, F&& f) {
    f(m.room);
}
template <class F>
void fields(p::leave_msg& m, F&& f) {
    f(m.room);
}
template <class F>
void fields(p::room_result_msg& m, F&& f) {
    f(m.room), f(m.status);
}
template <class F>
void fields(p::push_msg& m, F&& f) {
    f(m.server_msg_id), f(m.room), f(m.ts_ms), f(m.payload);
}
template <class F>
void fields(p::kick_msg& m, F&& f) {
    f(m.reason), f(m.reconnect_after_ms), f(m.message);
}
template <class F>
void fields(p::redirect_msg& m, F&& f) {
    f(m.reconnect_after_ms), f(m.host), f(m.port), f(m.reason);
}
template <class F>
void fields(p::error_msg& m, F&& f) {
    f(m.status), f(m.message);
}

// A textual dump of every field: equal dumps <=> equal messages. Independent of the wire codec.
template <class M>
std::vector<std::string> dump(M m) {
    std::vector<std::string> out;
    fields(m, [&](auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
            out.push_back("s:" + x);
        } else if constexpr (std::is_enum_v<T>) {
            out.push_back("e:" + std::to_string(static_cast<uint64_t>(x)));
        } else {
            out.push_back("i:" + std::to_string(static_cast<uint64_t>(x)));
        }
    });
    return out;
}

// Calls f(M{}) for the message type whose opcode is op; false when op is not a client op.
template <class F, size_t I = 0>
bool with_op(uint8_t op, F&& f) {
    if constexpr (I == std::tuple_size_v<all_messages>) {
        return false;
    } else {
        using M = std::tuple_element_t<I, all_messages>;
        if (static_cast<uint8_t>(M::opcode) == op) {
            f(M{});
            return true;
        }
        return with_op<F, I + 1>(op, std::forward<F>(f));
    }
}

template <class F, size_t I = 0>
void for_each_message(F&& f) {
    if constexpr (I < std::tuple_size_v<all_messages>) {
        f(std::tuple_element_t<I, all_messages>{});
        for_each_message<F, I + 1>(std::forward<F>(f));
    }
}

// The opcode of the I-th message type (selecting a type from a fuzzer byte).
inline uint8_t nth_op(size_t i) {
    uint8_t op = 0;
    size_t k = 0;
    i %= std::tuple_size_v<all_messages>;
    for_each_message([&](auto m) {
        if (k++ == i) op = static_cast<uint8_t>(decltype(m)::opcode);
    });
    return op;
}

}  // namespace imgate::fuzz
