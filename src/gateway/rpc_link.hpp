#pragma once
// Socket-free pieces of one RPC link: the authenticated handshake (both roles), the table of calls
// in flight with their deadlines, and the reconnect backoff. Time and randomness are injected so
// every transition is unit-tested without a network (tests/gateway/rpc_link_test.cpp).
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/frame.hpp"
#include "gateway/cluster.hpp"

namespace imgate::gw::rpc {

using clock = std::chrono::steady_clock;

enum class hs_error : uint8_t {
    none,
    bad_frame,     // not the expected op, or a malformed body
    unknown_peer,  // the id is not a fleet member (or is ourselves / not who we dialled)
    bad_proof,     // the other side does not know the cluster secret
    refused,       // the acceptor answered AUTH_FAIL
};
const char* to_string(hs_error e);

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

// Calls in flight on one link, keyed by correlation id. Every call completes exactly once: with
// the answer, with `timeout` when its deadline passes, or with `unavailable` when the link dies.
// Callbacks run after the table is updated, so they may start new calls.
class call_table {
  public:
    using callback = std::function<void(forward_result)>;

    explicit call_table(size_t max_in_flight) : max_(max_in_flight) {}

    // The correlation id (never 0), or 0 when max_in_flight calls are already pending.
    uint32_t add(clock::time_point deadline, callback cb);
    // false: unknown id (answered after its deadline, or a duplicate), ignored.
    bool complete(uint32_t corr, forward_result r);
    size_t expire(clock::time_point now);
    size_t fail_all(proto::code c);
    // Earliest pending deadline; prunes bookkeeping of calls already answered.
    std::optional<clock::time_point> next_deadline();
    size_t size() const { return calls_.size(); }

  private:
    struct call {
        clock::time_point deadline;
        callback cb;
    };
    using slot = std::pair<clock::time_point, uint32_t>;
    size_t max_;
    uint32_t next_ = 0;
    std::unordered_map<uint32_t, call> calls_;
    // Min-heap of deadlines; entries of answered calls are skipped lazily.
    std::priority_queue<slot, std::vector<slot>, std::greater<slot>> deadlines_;
};

// Exponential reconnect backoff with jitter: the n-th delay is uniform in [base/2, base] where
// base = min(max, min * 2^n), so peers that lost a gateway together do not reconnect in lockstep.
class backoff {
  public:
    backoff(std::chrono::milliseconds min, std::chrono::milliseconds max,
            std::function<double()> random01)
        : min_(min), max_(max), random01_(std::move(random01)) {}
    std::chrono::milliseconds next();
    void reset() { attempt_ = 0; }
    uint32_t attempts() const { return attempt_; }

  private:
    std::chrono::milliseconds min_, max_;
    std::function<double()> random01_;
    uint32_t attempt_ = 0;
};

// Combines the answers of one forward sent to several peers: delivered when any peer reached a
// session; offline when every peer answered 0; otherwise the failure (timeout wins over
// unavailable, since it says more about what happened).
class result_combiner {
  public:
    void add(const forward_result& r);
    forward_result result() const;

  private:
    uint32_t reached_ = 0;
    bool timeout_ = false;
    bool failed_ = false;
};

}  // namespace imgate::gw::rpc
