#include "gateway/rpc_handshake.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "common/bytes.hpp"
#include "common/jwt.hpp"
#include "gateway/rpc_wire.hpp"

namespace imgate::gw::rpc {

const char* to_string(hs_error e) {
    switch (e) {
        case hs_error::none:
            return "none";
        case hs_error::bad_frame:
            return "bad_frame";
        case hs_error::unknown_peer:
            return "unknown_peer";
        case hs_error::bad_proof:
            return "bad_proof";
        case hs_error::refused:
            return "refused";
    }
    return "unknown";
}

std::string random_nonce() {
    std::string n(nonce_size, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(n.data()), static_cast<int>(n.size())) != 1)
        throw std::runtime_error("RAND_bytes failed");
    return n;
}

std::string handshake_proof(std::string_view secret, std::string_view role,
                            std::string_view connector_id, std::string_view acceptor_id,
                            std::string_view connector_nonce, std::string_view acceptor_nonce) {
    // Length-prefixed fields: no two different inputs serialise to the same bytes.
    std::string input = "imgate-rpc-v1";
    byte_writer w(input);
    w.str16(role);
    w.str16(connector_id);
    w.str16(acceptor_id);
    w.str16(connector_nonce);
    w.str16(acceptor_nonce);
    return jwt::hmac_sha256(secret, input);
}

namespace {

bool same_mac(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

hs_step failed(hs_error e) {
    hs_step s;
    s.st = hs_step::state::failed;
    s.error = e;
    return s;
}

}  // namespace

connector_handshake::connector_handshake(std::string self_id, std::string peer_id,
                                         std::string secret, std::string nonce)
    : self_(std::move(self_id)),
      peer_(std::move(peer_id)),
      secret_(std::move(secret)),
      nonce_(std::move(nonce)) {}

std::string connector_handshake::hello() const {
    return encode(hello_msg{self_, nonce_});
}

hs_step connector_handshake::on_frame(const frame& f) {
    if (phase_ == phase::await_challenge) {
        phase_ = phase::done;
        if (f.op == static_cast<uint8_t>(op::auth_fail)) return failed(hs_error::refused);
        auto c = decode<challenge_msg>(f);
        if (!c) return failed(hs_error::bad_frame);
        if (c->gateway_id != peer_) return failed(hs_error::unknown_peer);
        peer_nonce_ = c->nonce;
        hs_step s;
        s.out = encode(
            auth_msg{handshake_proof(secret_, "connector", self_, peer_, nonce_, peer_nonce_)});
        phase_ = phase::await_ok;
        return s;
    }
    if (phase_ == phase::await_ok) {
        phase_ = phase::done;
        if (f.op == static_cast<uint8_t>(op::auth_fail)) return failed(hs_error::refused);
        auto ok = decode<auth_ok_msg>(f);
        if (!ok) return failed(hs_error::bad_frame);
        auto expect = handshake_proof(secret_, "acceptor", self_, peer_, nonce_, peer_nonce_);
        if (!same_mac(expect, ok->proof)) return failed(hs_error::bad_proof);
        hs_step s;
        s.st = hs_step::state::ok;
        return s;
    }
    return failed(hs_error::bad_frame);
}

acceptor_handshake::acceptor_handshake(std::string self_id, std::string secret,
                                       std::function<bool(std::string_view)> is_member,
                                       std::string nonce)
    : self_(std::move(self_id)),
      secret_(std::move(secret)),
      nonce_(std::move(nonce)),
      is_member_(std::move(is_member)) {}

hs_step acceptor_handshake::fail(hs_error e, const char* reason) {
    phase_ = phase::done;
    auto s = failed(e);
    s.out = encode(auth_fail_msg{reason});
    return s;
}

hs_step acceptor_handshake::on_frame(const frame& f) {
    if (phase_ == phase::await_hello) {
        auto h = decode<hello_msg>(f);
        if (!h) return fail(hs_error::bad_frame, "expected HELLO");
        if (h->gateway_id == self_ || !is_member_(h->gateway_id))
            return fail(hs_error::unknown_peer, "not a fleet member");
        peer_ = h->gateway_id;
        peer_nonce_ = h->nonce;
        hs_step s;
        s.out = encode(challenge_msg{self_, nonce_});
        phase_ = phase::await_auth;
        return s;
    }
    if (phase_ == phase::await_auth) {
        auto a = decode<auth_msg>(f);
        if (!a) return fail(hs_error::bad_frame, "expected AUTH");
        auto expect = handshake_proof(secret_, "connector", peer_, self_, peer_nonce_, nonce_);
        if (!same_mac(expect, a->proof)) return fail(hs_error::bad_proof, "bad proof");
        phase_ = phase::done;
        hs_step s;
        s.st = hs_step::state::ok;
        // Our own proof only goes to a peer that has proven itself: no oracle for strangers.
        s.out = encode(
            auth_ok_msg{handshake_proof(secret_, "acceptor", peer_, self_, peer_nonce_, nonce_)});
        return s;
    }
    return failed(hs_error::bad_frame);
}

}  // namespace imgate::gw::rpc
