// Fuzz target: the internal RPC (gateway-to-gateway) decoders and the acceptor's handshake —
// what an unauthenticated peer on the RPC port can reach.
//
// Input layout: [mode][...]
//   mode 0: [type selector][body]: one RPC body decoder. A body that decodes re-encodes to the
//           same bytes (canonical codec).
//   mode 1: [chunk][stream]: frames (RPC version) fed in chunks to a frame decoder with the RPC
//           body limit, each frame given to an acceptor handshake that holds the cluster secret.
//           The fuzzer does not know the secret, so the handshake must never succeed.
//   mode 2: [secret byte][flip position u16][flip mask]: a real connector and acceptor run the
//           handshake, the connector with the right or a wrong secret, optionally with one byte
//           of the connector's AUTH frame flipped. Both reach ok iff the secrets match and the
//           proof is intact; a failed acceptor never reveals its own proof.
#include <tuple>

#include "fuzz_support.hpp"
#include "gateway/rpc_handshake.hpp"
#include "gateway/rpc_wire.hpp"

using namespace imgate;
using namespace imgate::gw;

namespace {

using rpc_messages = std::tuple<rpc::hello_msg, rpc::challenge_msg, rpc::auth_msg, rpc::auth_ok_msg,
                                rpc::auth_fail_msg, rpc::ping_msg, rpc::pong_msg, rpc::forward_msg,
                                rpc::forward_result_msg, rpc::receipt_msg, rpc::presence_msg,
                                rpc::room_interest_msg, rpc::device_claim_msg>;

template <size_t I = 0>
void check_canonical(size_t which, std::string_view body) {
    if constexpr (I < std::tuple_size_v<rpc_messages>) {
        if (which != I) return check_canonical<I + 1>(which, body);
        using M = std::tuple_element_t<I, rpc_messages>;
        M m;
        if (!rpc::read_body(body, m)) return;
        std::string re;
        byte_writer w(re);
        rpc::write_body(w, m);
        if constexpr (requires { m.skipped; }) {
            if (m.skipped > 0) {
                // Entries with an id outside the id rule are dropped on decoding (and counted),
                // so the body is not canonical; what is left must be, and must skip nothing.
                M again;
                FUZZ_CHECK(rpc::read_body(re, again));
                FUZZ_CHECK(again.skipped == 0 && again.changes == m.changes &&
                           again.reset == m.reset);
                return;
            }
        }
        FUZZ_CHECK(re == body);
    }
}

const std::string secret = "fuzz-cluster-secret-0123456789abcdef";
const std::string nonce_a(rpc::nonce_size, 'A');
const std::string nonce_c(rpc::nonce_size, 'C');
bool is_member(std::string_view id) {
    return id == "gw1" || id == "gw2";
}

bool decode_all(frame_decoder& d, std::string_view bytes, std::vector<frame>& out) {
    d.feed(bytes);
    while (auto f = d.next()) out.push_back(std::move(*f));
    return d.error() == frame_error::none;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::byte_source in(data, size);
    uint8_t mode = in.u8() % 3;
    if (mode == 0) {
        size_t which = in.u8() % std::tuple_size_v<rpc_messages>;
        std::string body(in.rest());
        check_canonical(which, body);
        return 0;
    }
    if (mode == 1) {
        size_t chunk = in.u8() % 32 + 1;
        std::string_view stream = in.rest();
        frame_decoder dec(rpc::max_body, rpc_protocol_version);
        rpc::acceptor_handshake acc("gw2", secret, is_member, nonce_a);
        bool failed = false;
        for (size_t off = 0; off < stream.size() && !failed; off += chunk) {
            dec.feed(stream.substr(off, chunk));
            while (auto f = dec.next()) {
                auto step = acc.on_frame(*f);
                FUZZ_CHECK(step.st != rpc::hs_step::state::ok);
                if (step.st == rpc::hs_step::state::failed) {
                    FUZZ_CHECK(step.error != rpc::hs_error::none);
                    failed = true;
                    break;
                }
            }
            if (dec.error() != frame_error::none) break;
        }
        return 0;
    }
    bool right = in.flag();
    uint16_t flip_at = in.u16();
    uint8_t mask = in.u8();
    rpc::connector_handshake con("gw1", "gw2", right ? secret : secret + "x", nonce_c);
    rpc::acceptor_handshake acc("gw2", secret, is_member, nonce_a);
    frame_decoder to_acc(rpc::max_body, rpc_protocol_version);
    frame_decoder to_con(rpc::max_body, rpc_protocol_version);
    std::string wire = con.hello();
    bool tampered = false;
    auto acc_state = rpc::hs_step::state::pending, con_state = rpc::hs_step::state::pending;
    for (int round = 0; round < 4 && !wire.empty(); ++round) {
        // Flip one byte of the connector's AUTH (its second flight) when asked.
        if (round == 1 && mask && flip_at < wire.size()) {
            wire[flip_at] = static_cast<char>(wire[flip_at] ^ mask);
            tampered = true;
        }
        std::vector<frame> frames;
        if (!decode_all(to_acc, wire, frames)) break;
        wire.clear();
        std::string back;
        for (auto& f : frames) {
            auto s = acc.on_frame(f);
            acc_state = s.st;
            back += s.out;
            if (s.st != rpc::hs_step::state::pending) break;
        }
        if (acc_state == rpc::hs_step::state::failed) {
            // Whatever the acceptor sent on failure must not carry its proof (AUTH_OK).
            std::vector<frame> out;
            decode_all(to_con, back, out);
            for (auto& f : out) FUZZ_CHECK(f.op != static_cast<uint8_t>(rpc::op::auth_ok));
            break;
        }
        frames.clear();
        if (!decode_all(to_con, back, frames)) break;
        for (auto& f : frames) {
            auto s = con.on_frame(f);
            con_state = s.st;
            wire += s.out;
            if (s.st != rpc::hs_step::state::pending) break;
        }
        if (con_state != rpc::hs_step::state::pending) break;
    }
    bool acc_ok = acc_state == rpc::hs_step::state::ok;
    bool con_ok = con_state == rpc::hs_step::state::ok;
    if (!right) FUZZ_CHECK(!acc_ok && !con_ok);
    if (right && !tampered) FUZZ_CHECK(acc_ok && con_ok);
    if (acc_ok) FUZZ_CHECK(acc.peer_id() == "gw1");
    return 0;
}
