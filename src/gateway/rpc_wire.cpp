#include "gateway/rpc_wire.hpp"

#include <vector>

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

bool hello_msg::validate() const {
    return ids::valid_node_id(gateway_id) && nonce.size() == nonce_size;
}
bool challenge_msg::validate() const {
    return ids::valid_node_id(gateway_id) && nonce.size() == nonce_size;
}
// A receipt needs somewhere to go back to.
bool forward_msg::validate() const {
    return m.origin_session == 0 || ids::valid_node_id(m.origin_gateway);
}

void skip_invalid_keys(std::vector<delta>& changes, uint32_t& skipped) {
    skipped = static_cast<uint32_t>(
        std::erase_if(changes, [](const delta& d) { return !ids::valid(d.key); }));
}

namespace {
// FORWARD's fields over the caller's message: the same list as forward_msg, no copy.
struct forward_view {
    static constexpr op opcode = op::forward;
    const outbound_message& m;
    static auto fields(auto& v) { return forward_fields(v.m); }
};
}  // namespace

void encode_forward(std::string& out, const outbound_message& m, uint32_t corr) {
    encode(out, forward_view{m}, corr);
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
