#pragma once
// The authenticated handshake of one RPC link, both roles, without a socket: each side is a state
// machine fed the frames it receives, answering the frames to write and whether it is done. The
// nonces are injected, so every transition is unit-tested (tests/gateway/rpc_handshake_test.cpp).
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/frame.hpp"

namespace imgate::gw::rpc {

enum class hs_error : uint8_t {
    none,
    bad_frame,     // not the expected op, or a malformed body
    unknown_peer,  // the id is not a fleet member (or is ourselves / not who we dialled)
    bad_proof,     // the other side does not know the cluster secret
    refused,       // the acceptor answered AUTH_FAIL
};
const char* to_string(hs_error e);

// A fresh random nonce of nonce_size bytes for one handshake (throws if the system RNG fails).
std::string random_nonce();

// Proof that the sender knows the secret, bound to both fresh nonces, both ids and its role, so a
// proof can be neither replayed on another link nor reflected back to its author.
std::string handshake_proof(std::string_view secret, std::string_view role,
                            std::string_view connector_id, std::string_view acceptor_id,
                            std::string_view connector_nonce, std::string_view acceptor_nonce);

struct hs_step {
    enum class state : uint8_t { pending, ok, failed } st = state::pending;
    std::string out;  // frames to write now (may be non-empty on failure: AUTH_FAIL)
    hs_error error = hs_error::none;
};

// The dialling side: HELLO, CHALLENGE in, our proof out (AUTH), then check the acceptor's proof
// carried by AUTH_OK. Both proofs cover both fresh nonces, so each side proves itself to the other.
class connector_handshake {
  public:
    connector_handshake(std::string self_id, std::string peer_id, std::string secret,
                        std::string nonce);
    std::string hello() const;
    hs_step on_frame(const frame& f);

  private:
    enum class phase : uint8_t { await_challenge, await_ok, done };
    std::string self_, peer_, secret_, nonce_, peer_nonce_;
    phase phase_ = phase::await_challenge;
};

// The listening side: HELLO from a fleet member, CHALLENGE out, check AUTH, then AUTH_OK with our
// proof (or AUTH_FAIL).
class acceptor_handshake {
  public:
    acceptor_handshake(std::string self_id, std::string secret,
                       std::function<bool(std::string_view)> is_member, std::string nonce);
    hs_step on_frame(const frame& f);
    const std::string& peer_id() const { return peer_; }

  private:
    hs_step fail(hs_error e, const char* reason);
    enum class phase : uint8_t { await_hello, await_auth, done };
    std::string self_, secret_, nonce_;
    std::function<bool(std::string_view)> is_member_;
    std::string peer_, peer_nonce_;
    phase phase_ = phase::await_hello;
};

}  // namespace imgate::gw::rpc
