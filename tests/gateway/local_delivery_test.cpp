#include <gtest/gtest.h>

#include "common/frame.hpp"
#include "common/metrics.hpp"
#include "fake_session_sink.hpp"
#include "gateway/router.hpp"

using namespace imgate;
using namespace imgate::gw;

namespace {
using imgate::test::fake_session;
}  // namespace

// Traffic from peers (the cluster calling deliver_local): a retried forward with the same
// server_msg_id must never reach a session twice.
TEST(LocalDelivery, RetriedForwardIsDeliveredOnce) {
    metrics_registry metrics;
    gateway_metrics gm(metrics);
    message_router srv("gw1", 1, gateway_limits{}, gm);
    auto bob = std::make_shared<fake_session>(7, "bob");
    srv.sessions().add(bob);

    outbound_message m;
    m.server_msg_id = 1234;
    m.kind = proto::target_kind::user;
    m.target = "bob";
    m.from_user = "alice";
    m.payload = "hi";
    m.origin_gateway = "gw2";
    m.origin_session = 99;
    m.client_msg_id = 5;
    EXPECT_EQ(srv.deliver_local(m), 1u);
    EXPECT_EQ(srv.deliver_local(m), 0u);  // the retry
    ASSERT_EQ(bob->frames.size(), 1u);
    frame_decoder dec;
    dec.feed(*bob->frames[0]);
    auto f = dec.next();
    ASSERT_TRUE(f);
    auto d = proto::decode<proto::deliver_msg>(*f);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->server_msg_id, 1234u);
    EXPECT_EQ(d->from_user, "alice");

    // A different id is delivered; nobody local: 0 reached.
    m.server_msg_id = 1235;
    EXPECT_EQ(srv.deliver_local(m), 1u);
    m.server_msg_id = 1236;
    m.target = "carol";
    EXPECT_EQ(srv.deliver_local(m), 0u);
    EXPECT_NE(metrics.render().find("imgate_gateway_duplicate_forwards_total 1"),
              std::string::npos);
}

TEST(LocalDelivery, SnapshotsForPeers) {
    metrics_registry metrics;
    gateway_metrics gm(metrics);
    message_router srv("gw1", 1, gateway_limits{}, gm);
    srv.sessions().add(std::make_shared<fake_session>(1, "bob"));
    srv.sessions().join(1, "lobby", 4);
    EXPECT_EQ(srv.local_users(), std::vector<std::string>{"bob"});
    EXPECT_EQ(srv.local_rooms(), std::vector<std::string>{"lobby"});
}
