#pragma once
// The gateway-to-gateway RPC wire format: ops and body codecs on the shared frame layer with
// version byte rpc_protocol_version (docs/protocol.md, "Internal RPC"). Socket-free.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/frame.hpp"
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

// Largest RPC frame body: a forwarded payload plus ids, or one chunk of a snapshot.
inline constexpr uint32_t max_body = 1024 * 1024;
// Largest payload a FORWARD carries: max_body less its other fields (three client ids of at most
// ids::max_bytes, a gateway id, fixed fields). Gateway config refuses a larger max_payload_bytes.
inline constexpr uint32_t max_forward_payload = max_body - 4096;
inline constexpr size_t nonce_size = 16;
inline constexpr size_t proof_size = 32;  // HMAC-SHA256
// Snapshot chunks keep every frame far below max_body however many users a gateway holds and
// however long their ids: a chunk ends at snapshot_chunk entries or snapshot_chunk_bytes of keys.
inline constexpr size_t snapshot_chunk = 2000;
inline constexpr size_t snapshot_chunk_bytes = 256 * 1024;

struct hello_msg {
    static constexpr op opcode = op::hello;
    std::string gateway_id;
    std::string nonce;
};
struct challenge_msg {
    static constexpr op opcode = op::challenge;
    std::string gateway_id;
    std::string nonce;
};
struct auth_msg {
    static constexpr op opcode = op::auth;
    std::string proof;
};
struct auth_ok_msg {
    static constexpr op opcode = op::auth_ok;
    std::string proof;
};
struct auth_fail_msg {
    static constexpr op opcode = op::auth_fail;
    std::string reason;
};
struct ping_msg {
    static constexpr op opcode = op::ping;
};
struct pong_msg {
    static constexpr op opcode = op::pong;
};
struct forward_msg {
    static constexpr op opcode = op::forward;
    outbound_message m;
};
struct forward_result_msg {
    static constexpr op opcode = op::forward_result;
    proto::code status = proto::code::offline;
    uint32_t reached = 0;
};
struct receipt_msg {
    static constexpr op opcode = op::receipt;
    uint64_t origin_session = 0;
    proto::receipt_msg r;
};
// One presence or room-interest change; a frame carries a batch of them.
struct delta {
    bool on = false;
    std::string key;  // user id or room id
    bool operator==(const delta&) const = default;
};
// reset: the receiver drops everything it knows from this sender first (start of a snapshot).
// An entry whose key is not a valid client id is left out of `changes` and counted in `skipped`
// (decoding only): one bad entry must not cost the receiver the sender's whole directory.
struct presence_msg {
    static constexpr op opcode = op::presence;
    bool reset = false;
    std::vector<delta> changes;
    uint32_t skipped = 0;
};
struct room_interest_msg {
    static constexpr op opcode = op::room_interest;
    bool reset = false;
    std::vector<delta> changes;
    uint32_t skipped = 0;
};
struct device_claim_msg {
    static constexpr op opcode = op::device_claim;
    std::string user;
    std::string device;
};

void write_body(byte_writer& w, const hello_msg& m);
void write_body(byte_writer& w, const challenge_msg& m);
void write_body(byte_writer& w, const auth_msg& m);
void write_body(byte_writer& w, const auth_ok_msg& m);
void write_body(byte_writer& w, const auth_fail_msg& m);
void write_body(byte_writer& w, const ping_msg& m);
void write_body(byte_writer& w, const pong_msg& m);
void write_body(byte_writer& w, const forward_msg& m);
void write_body(byte_writer& w, const forward_result_msg& m);
void write_body(byte_writer& w, const receipt_msg& m);
void write_body(byte_writer& w, const presence_msg& m);
void write_body(byte_writer& w, const room_interest_msg& m);
void write_body(byte_writer& w, const device_claim_msg& m);

// Fail on a missing field, trailing bytes, an out-of-range enum or an invalid gateway id or
// nonce/proof size: structural faults, which close the link. Client ids (users, devices, rooms)
// are not checked here except in PRESENCE/ROOM_INTEREST entries (skipped): the receiver checks
// them with usable() and refuses just that message.
bool read_body(std::string_view b, hello_msg& m);
bool read_body(std::string_view b, challenge_msg& m);
bool read_body(std::string_view b, auth_msg& m);
bool read_body(std::string_view b, auth_ok_msg& m);
bool read_body(std::string_view b, auth_fail_msg& m);
bool read_body(std::string_view b, ping_msg& m);
bool read_body(std::string_view b, pong_msg& m);
bool read_body(std::string_view b, forward_msg& m);
bool read_body(std::string_view b, forward_result_msg& m);
bool read_body(std::string_view b, receipt_msg& m);
bool read_body(std::string_view b, presence_msg& m);
bool read_body(std::string_view b, room_interest_msg& m);
bool read_body(std::string_view b, device_claim_msg& m);

// Whether every client id of a decoded message passes the id rule (ids::valid).
bool usable(const outbound_message& m);
bool usable(const proto::receipt_msg& r);
bool usable(const device_claim_msg& m);

template <class M>
void encode(std::string& out, const M& m, uint32_t corr = 0) {
    size_t start = begin_frame(out);
    byte_writer w(out);
    write_body(w, m);
    finish_frame(out, start, rpc_protocol_version, static_cast<uint8_t>(M::opcode), corr);
}

template <class M>
std::string encode(const M& m, uint32_t corr = 0) {
    std::string out;
    encode(out, m, corr);
    return out;
}

template <class M>
std::optional<M> decode(const frame& f) {
    if (f.op != static_cast<uint8_t>(M::opcode)) return std::nullopt;
    M m;
    if (!read_body(f.body, m)) return std::nullopt;
    return m;
}

// FORWARD straight from the message, without copying it into a forward_msg first.
void encode_forward(std::string& out, const outbound_message& m, uint32_t corr);

// A snapshot of keys as reset-first chunks of at most snapshot_chunk entries (at least one frame,
// so an empty snapshot still clears the receiver).
template <class M>
void encode_snapshot(std::string& out, const std::vector<std::string>& keys) {
    size_t i = 0;
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
    } while (i < keys.size());
}

}  // namespace imgate::gw::rpc
