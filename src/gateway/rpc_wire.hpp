#pragma once
// The gateway-to-gateway RPC wire format: ops and body codecs on the shared frame layer with
// version byte rpc_protocol_version (docs/protocol.md, "Internal RPC"). Socket-free.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/codec.hpp"
#include "common/frame.hpp"
#include "common/ids.hpp"
#include "common/protocol.hpp"
#include "gateway/cluster.hpp"

namespace imgate::gw::rpc {

enum class op : uint8_t {
    hello = 0x01,      // connector -> acceptor: my id, my nonce
    challenge = 0x02,  // acceptor -> connector: my id, my nonce
    auth = 0x03,       // connector -> acceptor: proof that the connector knows the secret
    auth_ok = 0x04,    // acceptor -> connector: proof that the acceptor knows it too
    auth_fail = 0x05,
    ping = 0x06,
    pong = 0x07,
    forward = 0x10,         // corr = call id
    forward_result = 0x11,  // corr = call id of the forward it answers
    receipt = 0x12,
    presence = 0x20,
    room_interest = 0x21,
    device_claim = 0x22,  // a user+device logged in on the sender: older sessions of it must go
};

const char* to_string(op o);
bool is_known_op(uint8_t o);
constexpr uint8_t frame_version(op) {
    return rpc_protocol_version;
}

// Largest RPC frame body: a forwarded payload plus ids, or one chunk of a snapshot.
inline constexpr uint32_t max_body = 1024 * 1024;
// Largest payload a FORWARD carries: max_body less its other fields (three client ids of at most
// ids::max_bytes, a gateway id, fixed fields). Gateway config refuses a larger max_payload_bytes.
inline constexpr uint32_t max_forward_payload = max_body - 4096;
inline constexpr size_t nonce_size = 16;
inline constexpr size_t proof_size = 32;  // HMAC-SHA256
// Largest body of a handshake frame: HELLO/CHALLENGE carry a node id and a nonce, each behind a
// u16 length; AUTH/AUTH_OK a proof; AUTH_FAIL one of our short reasons. Until its handshake has
// completed a connection's decoder refuses any larger frame, so a stranger can make the gateway
// buffer at most this much (plus one read) instead of max_body
// (tests/gateway/rpc_handshake_test.cpp checks the largest valid HELLO fits exactly).
inline constexpr uint32_t max_handshake_body = 2 + ids::max_node_id_bytes + 2 + nonce_size;
static_assert(2 + proof_size <= max_handshake_body);
// Snapshot chunks keep every frame far below max_body however many users a gateway holds and
// however long their ids: a chunk ends at snapshot_chunk entries or snapshot_chunk_bytes of keys.
inline constexpr size_t snapshot_chunk = 2000;
inline constexpr size_t snapshot_chunk_bytes = 256 * 1024;

struct hello_msg {
    static constexpr op opcode = op::hello;
    std::string gateway_id;
    std::string nonce;
    static auto fields(auto& m) { return codec::list(m.gateway_id, m.nonce); }
    bool validate() const;  // a valid node id and a nonce_size nonce
    bool operator==(const hello_msg&) const = default;
};
struct challenge_msg {
    static constexpr op opcode = op::challenge;
    std::string gateway_id;
    std::string nonce;
    static auto fields(auto& m) { return codec::list(m.gateway_id, m.nonce); }
    bool validate() const;  // as hello_msg
    bool operator==(const challenge_msg&) const = default;
};
struct auth_msg {
    static constexpr op opcode = op::auth;
    std::string proof;
    static auto fields(auto& m) { return codec::list(m.proof); }
    bool validate() const { return proof.size() == proof_size; }
    bool operator==(const auth_msg&) const = default;
};
struct auth_ok_msg {
    static constexpr op opcode = op::auth_ok;
    std::string proof;
    static auto fields(auto& m) { return codec::list(m.proof); }
    bool validate() const { return proof.size() == proof_size; }
    bool operator==(const auth_ok_msg&) const = default;
};
struct auth_fail_msg {
    static constexpr op opcode = op::auth_fail;
    std::string reason;
    static auto fields(auto& m) { return codec::list(m.reason); }
    bool operator==(const auth_fail_msg&) const = default;
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
// FORWARD's body in wire order, over an outbound_message (const or not): forward_msg and the
// copy-free encode_forward share it.
auto forward_fields(auto& m) {
    return codec::list(m.server_msg_id, m.kind, m.is_push, m.target, m.from_user, m.from_device,
                       m.ts_ms, m.origin_gateway, m.origin_session, m.client_msg_id,
                       codec::blob32(m.payload));
}
struct forward_msg {
    static constexpr op opcode = op::forward;
    outbound_message m;
    static auto fields(auto& f) { return forward_fields(f.m); }
    bool validate() const;  // origin_session != 0 needs a valid origin_gateway
};
struct forward_result_msg {
    static constexpr op opcode = op::forward_result;
    proto::code status = proto::code::offline;
    uint32_t reached = 0;
    static auto fields(auto& m) { return codec::list(m.status, m.reached); }
    bool operator==(const forward_result_msg&) const = default;
};
struct receipt_msg {
    static constexpr op opcode = op::receipt;
    uint64_t origin_session = 0;
    proto::receipt_msg r;
    static auto fields(auto& m) { return codec::list(m.origin_session, m.r); }
    bool validate() const { return origin_session != 0; }
    bool operator==(const receipt_msg&) const = default;
};
// One presence or room-interest change; a frame carries a batch of them.
struct delta {
    bool on = false;
    std::string key;  // user id or room id
    static auto fields(auto& d) { return codec::list(d.on, d.key); }
    bool operator==(const delta&) const = default;
};
// Drops the entries whose key is not a valid client id, counting them in skipped; never refuses.
void skip_invalid_keys(std::vector<delta>& changes, uint32_t& skipped);
// reset: the receiver drops everything it knows from this sender first (start of a snapshot).
// An entry whose key is not a valid client id is left out of `changes` and counted in `skipped`
// (decoding only): one bad entry must not cost the receiver the sender's whole directory.
struct presence_msg {
    static constexpr op opcode = op::presence;
    bool reset = false;
    std::vector<delta> changes;
    uint32_t skipped = 0;
    static auto fields(auto& m) { return codec::list(m.reset, m.changes); }
    bool validate() {
        skip_invalid_keys(changes, skipped);
        return true;
    }
    bool operator==(const presence_msg&) const = default;
};
struct room_interest_msg {
    static constexpr op opcode = op::room_interest;
    bool reset = false;
    std::vector<delta> changes;
    uint32_t skipped = 0;
    static auto fields(auto& m) { return codec::list(m.reset, m.changes); }
    bool validate() {
        skip_invalid_keys(changes, skipped);
        return true;
    }
    bool operator==(const room_interest_msg&) const = default;
};
struct device_claim_msg {
    static constexpr op opcode = op::device_claim;
    std::string user;
    std::string device;
    static auto fields(auto& m) { return codec::list(m.user, m.device); }
    bool operator==(const device_claim_msg&) const = default;
};

// The body codecs and whole-frame encode/decode: common/codec.hpp, driven by each message's
// fields() and validate(). read_body fails on a missing field, trailing bytes, an out-of-range
// enum or an invalid gateway id or nonce/proof size: structural faults, which close the link.
// Client ids (users, devices, rooms) are not checked here except in PRESENCE/ROOM_INTEREST
// entries (skipped): the receiver checks them with usable() and refuses just that message.
using codec::decode;
using codec::encode;
using codec::read_body;
using codec::write_body;

// Whether every client id of a decoded message passes the id rule (ids::valid).
bool usable(const outbound_message& m);
bool usable(const proto::receipt_msg& r);
bool usable(const device_claim_msg& m);

// FORWARD straight from the message, without copying it into a forward_msg first.
void encode_forward(std::string& out, const outbound_message& m, uint32_t corr);

// A snapshot of keys as reset-first chunks of at most snapshot_chunk entries (at least one frame,
// so an empty snapshot still clears the receiver). Returns the number of frames appended.
template <class M>
size_t encode_snapshot(std::string& out, const std::vector<std::string>& keys) {
    size_t i = 0, frames = 0;
    bool first = true;
    do {
        M m;
        m.reset = first;
        first = false;
        size_t bytes = 0;
        while (i < keys.size() && m.changes.size() < snapshot_chunk &&
               bytes + keys[i].size() + 3 <= snapshot_chunk_bytes) {
            bytes += keys[i].size() + 3;
            m.changes.push_back(delta{true, keys[i++]});
        }
        // A single key longer than a chunk cannot come from a session (ids are bounded far
        // below it); skip it rather than loop forever.
        if (m.changes.empty() && i < keys.size()) ++i;
        encode(out, m);
        ++frames;
    } while (i < keys.size());
    return frames;
}

}  // namespace imgate::gw::rpc
