#include "gateway/rpc_link.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cmath>

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

uint32_t call_table::add(clock::time_point deadline, callback cb) {
    if (calls_.size() >= max_) return 0;
    do {
        ++next_;
    } while (next_ == 0 || calls_.count(next_));
    calls_.emplace(next_, call{deadline, std::move(cb)});
    deadlines_.emplace(deadline, next_);
    return next_;
}

bool call_table::complete(uint32_t corr, forward_result r) {
    auto it = calls_.find(corr);
    if (it == calls_.end()) return false;
    auto cb = std::move(it->second.cb);
    calls_.erase(it);
    if (calls_.empty()) deadlines_ = {};
    cb(r);
    return true;
}

size_t call_table::expire(clock::time_point now) {
    std::vector<callback> due;
    while (!deadlines_.empty() && deadlines_.top().first <= now) {
        auto [deadline, corr] = deadlines_.top();
        deadlines_.pop();
        auto it = calls_.find(corr);
        // The id may have been answered, or reused by a later call with a later deadline.
        if (it == calls_.end() || it->second.deadline != deadline) continue;
        due.push_back(std::move(it->second.cb));
        calls_.erase(it);
    }
    for (auto& cb : due) cb(forward_result{proto::code::timeout, 0});
    return due.size();
}

size_t call_table::fail_all(proto::code c) {
    std::vector<callback> all;
    all.reserve(calls_.size());
    for (auto& [id, c2] : calls_) all.push_back(std::move(c2.cb));
    calls_.clear();
    deadlines_ = {};
    for (auto& cb : all) cb(forward_result{c, 0});
    return all.size();
}

std::optional<clock::time_point> call_table::next_deadline() {
    while (!deadlines_.empty()) {
        auto [deadline, corr] = deadlines_.top();
        auto it = calls_.find(corr);
        if (it != calls_.end() && it->second.deadline == deadline) return deadline;
        deadlines_.pop();
    }
    return std::nullopt;
}

std::chrono::milliseconds backoff::next() {
    double base = static_cast<double>(min_.count()) * std::pow(2.0, std::min(attempt_, 30u));
    base = std::min(base, static_cast<double>(max_.count()));
    ++attempt_;
    double r = std::clamp(random01_(), 0.0, 1.0);
    return std::chrono::milliseconds(static_cast<int64_t>(base / 2 + r * base / 2));
}

void result_combiner::add(const forward_result& r) {
    if (r.status == proto::code::ok || r.status == proto::code::offline) {
        reached_ += r.reached;
    } else if (r.status == proto::code::timeout) {
        timeout_ = true;
    } else {
        failed_ = true;
    }
}

forward_result result_combiner::result() const {
    if (reached_ > 0) return {proto::code::ok, reached_};
    if (timeout_) return {proto::code::timeout, 0};
    if (failed_) return {proto::code::unavailable, 0};
    return {proto::code::offline, 0};
}

}  // namespace imgate::gw::rpc
