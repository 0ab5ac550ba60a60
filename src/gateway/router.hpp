#pragma once
// The message router of one gateway: who is where (the hub), delivery to local sessions, the
// cluster for everyone else, acks and receipts, server message ids and dedupe of retried
// forwards. Socket-free: sessions are session_sinks and the fleet is the cluster seam, so the
// whole path of a message is unit-tested with fakes.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/protocol.hpp"
#include "gateway/cluster.hpp"
#include "gateway/event_sink.hpp"
#include "gateway/gateway_config.hpp"
#include "gateway/gateway_metrics.hpp"
#include "gateway/hub.hpp"
#include "gateway/message_ids.hpp"
#include "gateway/pending_acks.hpp"

namespace imgate::gw {

// The DELIVER (or PUSH for backend pushes) frame of msg, encoded once for every recipient.
shared_frame encode_delivery(const outbound_message& msg);
// One send result from the local reach and the cluster's answer: delivered when anyone was
// reached, offline when nobody was and the cluster said so, else the cluster's error.
proto::code combine_results(uint32_t local, const forward_result& fr, uint32_t& total);

// Owns the hub, the pending acks, the recent ids and the id source. Implements local_delivery for
// traffic from peers. Thread-safe: called from every session strand and the cluster's.
class message_router final : public local_delivery {
  public:
    // done(status, reached) of one routed message: exactly once, possibly on another thread.
    using route_done = std::function<void(proto::code, uint32_t)>;

    message_router(std::string self_id, uint16_t node, const gateway_limits& limits,
                   gateway_metrics& metrics, const clock_source& clock = real_clock());

    // The cluster is built after the router (the router is its local_delivery); attach it before
    // anything is routed. The cluster must outlive every call.
    void attach(cluster& c) { cluster_ = &c; }
    // Upstream events (events.enabled): SENDs and pushes are recorded before delivery, and
    // refused `unavailable` when the sink refuses them (events.overflow refuse). Attach before
    // anything is routed; the sink must outlive every call.
    void attach_events(event_sink* e) { events_ = e; }
    hub& sessions() { return hub_; }
    const hub& sessions() const { return hub_; }

    // --- the one path of a message ---
    // Local sessions (except exclude_sid) first, then the cluster; done(status, reached) once.
    // Both SEND (send()) and backend pushes (push()) come through here.
    // A template so that a SEND's result callback is stored once, inside the cluster's callback.
    template <class Done>
    void route(const outbound_message& msg, uint64_t exclude_sid, Done done) {
        uint32_t local = deliver_to_sessions(msg, exclude_sid);
        cluster_->forward(msg, with_local<Done>{local, std::move(done)});
    }
    // A client's SEND from `from`: moves target and payload out of m; the SEND_RESULT (echoing
    // corr) goes back to `from` through push_owned.
    void send(std::shared_ptr<session_sink> from, proto::send_msg& m, uint32_t corr);
    // A backend push (POST /push): msg carries kind, target and payload; the router stamps its
    // id, time and origin (read them from msg once this returns). Refused (done(unavailable, 0)
    // at once, nothing delivered) when the event sink refuses it.
    void push(outbound_message& msg, route_done done);
    // An ACK from session s: at most one RECEIPT per reached session to the sender.
    void ack(const session_sink& s, uint64_t server_msg_id);

    // --- presence: the hub's changes and what the fleet must hear of them ---
    // After s was added to the hub (r: what the add did): kicks the replaced session, announces.
    void admitted(const session_sink& s, const hub::add_result& r);
    // Unregisters session sid of user, announcing what went away.
    void closed(uint64_t sid, const std::string& user);
    proto::code join(uint64_t sid, const std::string& room, size_t max_rooms);
    proto::code leave(uint64_t sid, const std::string& room);

    // --- housekeeping and reload ---
    void expire_acks();
    size_t pending_ack_count() const { return acks_.size(); }
    void set_limits(const gateway_limits& limits);

    // --- local_delivery (calls from the cluster layer, any thread) ---
    uint32_t deliver_local(const outbound_message& msg) override;
    void receipt_local(uint64_t origin_session, const proto::receipt_msg& r) override;
    std::vector<std::string> local_users() const override;
    std::vector<std::string> local_rooms() const override;
    void device_claimed(const std::string& user, const std::string& device) override;

  private:
    // The cluster's answer for one message, completed with what local delivery reached.
    template <class Done>
    struct with_local {
        uint32_t local;
        Done done;
        void operator()(forward_result fr) {
            uint32_t total = 0;
            proto::code c = combine_results(local, fr, total);
            done(c, total);
        }
    };
    uint32_t deliver_to_sessions(const outbound_message& msg, uint64_t exclude_sid);
    void kick_replaced(session_sink& s);

    std::string self_id_;
    gateway_metrics& metrics_;
    // The monotonic clock ages pending acks, the wall clock stamps messages; tests pass their own.
    const clock_source& clock_;
    cluster* cluster_ = nullptr;
    event_sink* events_ = nullptr;
    hub hub_;
    pending_acks acks_;
    recent_ids seen_;
    msg_id_source ids_;
};

}  // namespace imgate::gw
