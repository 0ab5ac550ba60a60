#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "common/metrics.hpp"
#include "gateway/server.hpp"

using namespace imgate;
using namespace imgate::gw;

namespace {

class fake_session : public session_sink {
  public:
    fake_session(uint64_t id, std::string user) : id_(id), user_(std::move(user)) {}
    uint64_t session_id() const override { return id_; }
    const std::string& user() const override { return user_; }
    const std::string& device() const override { return device_; }
    bool push_frame(const shared_frame& f) override {
        frames.push_back(f);
        return true;
    }
    std::vector<shared_frame> frames;

  private:
    uint64_t id_;
    std::string user_, device_;
};

gateway_config test_config() {
    gateway_config c;
    c.id = "gw1";
    c.fleet.gateways.push_back(gateway_spec{
        "gw1", {"127.0.0.1", 0}, {"127.0.0.1", 0}, {"127.0.0.1", 0}, {"127.0.0.1", 0}});
    c.token_secrets = {"0123456789abcdef0123"};
    return c;
}

}  // namespace

// Traffic from peers (the cluster calling deliver_local): a retried forward with the same
// server_msg_id must never reach a session twice.
TEST(LocalDelivery, RetriedForwardIsDeliveredOnce) {
    boost::asio::io_context io;
    metrics_registry metrics;
    gateway_server srv(io, test_config(), metrics);
    auto bob = std::make_shared<fake_session>(7, "bob");
    srv.sessions_hub().add(bob);

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
    boost::asio::io_context io;
    metrics_registry metrics;
    gateway_server srv(io, test_config(), metrics);
    srv.sessions_hub().add(std::make_shared<fake_session>(1, "bob"));
    srv.sessions_hub().join(1, "lobby", 4);
    EXPECT_EQ(srv.local_users(), std::vector<std::string>{"bob"});
    EXPECT_EQ(srv.local_rooms(), std::vector<std::string>{"lobby"});
}
