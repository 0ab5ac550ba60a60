#include "gateway/router.hpp"

#include <gtest/gtest.h>

#include <optional>

#include "common/frame.hpp"
#include "common/metrics.hpp"
#include "fake_session_sink.hpp"

using namespace imgate;
using namespace imgate::gw;
using imgate::test::fake_session;

namespace {

// A fleet that answers every forward at once with `answer` and records what it was asked.
class fake_cluster final : public cluster {
  public:
    forward_result answer{proto::code::offline, 0};
    std::vector<outbound_message> forwarded;
    std::vector<std::pair<std::string, proto::receipt_msg>> receipts;
    std::vector<std::string> events;

    void forward(const outbound_message& msg, std::function<void(forward_result)> done) override {
        forwarded.push_back(msg);
        done(answer);
    }
    void send_receipt(const std::string& gw, uint64_t, const proto::receipt_msg& r) override {
        receipts.emplace_back(gw, r);
    }
    void user_online(const std::string& u) override { events.push_back("online " + u); }
    void user_offline(const std::string& u) override { events.push_back("offline " + u); }
    void room_interest(const std::string& room, bool on) override {
        events.push_back((on ? "interest " : "no-interest ") + room);
    }
    void device_login(const std::string& u, const std::string& d) override {
        events.push_back("device " + u + "/" + d);
    }
    void reload(const fleet_config&) override {}
    void stop() override {}
};

frame decode_one(const std::string& bytes) {
    frame_decoder dec;
    dec.feed(bytes);
    auto f = dec.next();
    EXPECT_TRUE(f);
    return f ? *f : frame{};
}

struct fixture {
    metrics_registry registry;
    gateway_metrics metrics{registry};
    fake_cluster fleet;
    manual_clock clock{42};  // wall clock at 42 ms
    message_router router{"gw1", 3, gateway_limits{}, metrics, clock};
    fixture() { router.attach(fleet); }
    std::shared_ptr<fake_session> login(uint64_t id, std::string user, std::string device = "") {
        auto s = std::make_shared<fake_session>(id, std::move(user), std::move(device));
        router.admitted(*s, router.sessions().add(s));
        return s;
    }
    // A SEND from `from` to user `to`; the SEND_RESULT it got back.
    proto::send_result_msg send(const std::shared_ptr<fake_session>& from, std::string to,
                                uint32_t corr = 9) {
        proto::send_msg m{proto::target_kind::user, std::move(to), 77, "hi"};
        size_t before = from->owned.size();
        router.send(from, m, corr);
        EXPECT_EQ(from->owned.size(), before + 1);
        auto f = decode_one(from->owned.back());
        EXPECT_EQ(f.corr, corr);
        auto r = proto::decode<proto::send_result_msg>(f);
        EXPECT_TRUE(r);
        return r ? *r : proto::send_result_msg{};
    }
    // A backend push to user `to`: (status, reached).
    std::pair<proto::code, uint32_t> push(std::string to) {
        outbound_message msg;
        msg.kind = proto::target_kind::user;
        msg.target = std::move(to);
        msg.payload = "news";
        std::optional<std::pair<proto::code, uint32_t>> got;
        router.push(msg, [&](proto::code c, uint32_t n) { got.emplace(c, n); });
        EXPECT_TRUE(got);
        return got.value_or(std::pair{proto::code::internal, 0u});
    }
};

}  // namespace

// SEND and POST /push are two callers of one route(): local sessions first, then the cluster,
// and the same combined outcome whatever the cluster answers.
TEST(Router, SendAndPushShareOneRoute) {
    struct step {
        bool bob_here;
        forward_result fleet;
        proto::code want;
        uint32_t want_reached;
    };
    const step steps[] = {
        {true, {proto::code::unavailable, 0}, proto::code::ok, 1},
        {false, {proto::code::unavailable, 0}, proto::code::unavailable, 0},
        {false, {proto::code::offline, 0}, proto::code::offline, 0},
        {false, {proto::code::ok, 2}, proto::code::ok, 2},
        {true, {proto::code::ok, 2}, proto::code::ok, 3},
    };
    for (const auto& st : steps) {
        fixture fx;
        auto alice = fx.login(1, "alice", "phone");
        std::shared_ptr<fake_session> bob;
        if (st.bob_here) bob = fx.login(2, "bob", "tablet");
        fx.fleet.answer = st.fleet;

        auto sent = fx.send(alice, "bob");
        EXPECT_EQ(sent.status, st.want);
        EXPECT_EQ(sent.reached, st.want_reached);
        EXPECT_EQ(sent.client_msg_id, 77u);
        auto pushed = fx.push("bob");
        EXPECT_EQ(pushed.first, st.want);
        EXPECT_EQ(pushed.second, st.want_reached);

        // Both went to the fleet, stamped by the router: distinct ids of node 3, its clock, its id.
        ASSERT_EQ(fx.fleet.forwarded.size(), 2u);
        const auto& s = fx.fleet.forwarded[0];
        const auto& p = fx.fleet.forwarded[1];
        EXPECT_FALSE(s.is_push);
        EXPECT_TRUE(p.is_push);
        EXPECT_EQ(s.server_msg_id, sent.server_msg_id);
        EXPECT_NE(s.server_msg_id, p.server_msg_id);
        EXPECT_EQ(s.server_msg_id >> 48, 3u);
        EXPECT_EQ(p.server_msg_id >> 48, 3u);
        EXPECT_EQ(s.ts_ms, 42u);
        EXPECT_EQ(p.ts_ms, 42u);
        EXPECT_EQ(s.origin_gateway, "gw1");
        EXPECT_EQ(p.origin_gateway, "gw1");
        EXPECT_EQ(s.origin_session, 1u);
        EXPECT_EQ(p.origin_session, 0u);  // pushes get no receipts
        if (bob) {
            ASSERT_EQ(bob->frames.size(), 2u);
            EXPECT_EQ(decode_one(*bob->frames[0]).op, uint8_t(proto::op::deliver));
            EXPECT_EQ(decode_one(*bob->frames[1]).op, uint8_t(proto::op::push));
        }
    }
}

TEST(Router, RoomSendSkipsTheSender) {
    fixture fx;
    auto a = fx.login(1, "alice");
    auto b = fx.login(2, "bob");
    EXPECT_EQ(fx.router.join(1, "lobby", 4), proto::code::ok);
    EXPECT_EQ(fx.router.join(2, "lobby", 4), proto::code::ok);
    proto::send_msg m{proto::target_kind::room, "lobby", 5, "yo"};
    fx.router.send(a, m, 1);
    EXPECT_TRUE(a->frames.empty());
    EXPECT_EQ(b->frames.size(), 1u);
    auto r = proto::decode<proto::send_result_msg>(decode_one(a->owned.at(0)));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->reached, 1u);
}

// Each reached session's ACK becomes one RECEIPT to the sender, through session_sink (local
// sender) or the cluster (sender on another gateway).
TEST(Router, AcksBecomeOneReceiptPerReachedSession) {
    fixture fx;
    auto alice = fx.login(1, "alice");
    auto bob1 = fx.login(2, "bob", "phone");
    auto bob2 = fx.login(3, "bob", "laptop");
    auto r = fx.send(alice, "bob");
    ASSERT_EQ(r.reached, 2u);
    size_t results = alice->owned.size();
    fx.router.ack(*bob1, r.server_msg_id);
    fx.router.ack(*bob1, r.server_msg_id);   // repeated: nothing more
    fx.router.ack(*alice, r.server_msg_id);  // not a recipient
    fx.router.ack(*bob2, r.server_msg_id);
    ASSERT_EQ(alice->owned.size(), results + 2);
    auto rc = proto::decode<proto::receipt_msg>(decode_one(alice->owned.back()));
    ASSERT_TRUE(rc);
    EXPECT_EQ(rc->user, "bob");
    EXPECT_EQ(rc->device, "laptop");

    outbound_message from_peer;
    from_peer.server_msg_id = 555;
    from_peer.target = "bob";
    from_peer.origin_gateway = "gw2";
    from_peer.origin_session = 40;
    from_peer.client_msg_id = 6;
    EXPECT_EQ(fx.router.deliver_local(from_peer), 2u);
    fx.router.ack(*bob1, 555);
    ASSERT_EQ(fx.fleet.receipts.size(), 1u);
    EXPECT_EQ(fx.fleet.receipts[0].first, "gw2");
    EXPECT_EQ(fx.fleet.receipts[0].second.client_msg_id, 6u);
}

// A second login of a device, here or on a peer, ends the older session with KICK replaced
// through session_sink::finish.
TEST(Router, ReplacedDeviceIsKicked) {
    fixture fx;
    auto old = fx.login(1, "bob", "phone");
    auto other = fx.login(2, "bob", "tablet");
    auto fresh = fx.login(3, "bob", "phone");
    ASSERT_TRUE(old->finished);
    auto k = proto::decode<proto::kick_msg>(decode_one(old->last));
    ASSERT_TRUE(k);
    EXPECT_EQ(k->reason, proto::kick_reason::replaced);
    EXPECT_FALSE(other->finished);

    fx.router.device_claimed("bob", "tablet");
    EXPECT_TRUE(other->finished);
    EXPECT_FALSE(fresh->finished);
    EXPECT_NE(fx.registry.render().find("imgate_gateway_kicks_total{reason=\"replaced\"} 2"),
              std::string::npos);
    EXPECT_EQ(fx.fleet.events.front(), "online bob");
}
