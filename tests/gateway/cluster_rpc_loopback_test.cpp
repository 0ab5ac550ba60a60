// Two or three in-process rpc_cluster instances on loopback, each with its own io_context thread
// and a fake local_delivery: no gateway core involved.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "cluster_node.hpp"
#include "gateway/rpc_cluster.hpp"

using namespace imgate;
using namespace imgate::gw;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

const std::string secret = "loopback-test-cluster-secret";

// Polls cond every few milliseconds until it holds or the deadline passes.
bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit = 5s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return cond();
}

// Stands in for the gateway core: a set of local users (sessions per user) and rooms.
class fake_local final : public local_delivery {
  public:
    uint32_t deliver_local(const outbound_message& m) override {
        std::function<void()> hook;
        uint32_t n = 0;
        {
            std::lock_guard lk(mu);
            delivered.push_back(m);
            hook = on_deliver;
            if (m.kind == proto::target_kind::user) {
                auto it = users.find(m.target);
                n = it == users.end() ? 0 : it->second;
            } else {
                auto it = rooms.find(m.target);
                n = it == rooms.end() ? 0 : it->second;
            }
        }
        if (hook) hook();
        return n;
    }
    void receipt_local(uint64_t origin_session, const proto::receipt_msg& r) override {
        std::lock_guard lk(mu);
        receipts.emplace_back(origin_session, r);
    }
    std::vector<std::string> local_users() const override {
        std::lock_guard lk(mu);
        std::vector<std::string> v;
        for (auto& [u, n] : users) v.push_back(u);
        return v;
    }
    std::vector<std::string> local_rooms() const override {
        std::lock_guard lk(mu);
        std::vector<std::string> v;
        for (auto& [r, n] : rooms) v.push_back(r);
        return v;
    }
    void device_claimed(const std::string& user, const std::string& device) override {
        std::lock_guard lk(mu);
        claims.emplace_back(user, device);
    }
    size_t delivered_count() const {
        std::lock_guard lk(mu);
        return delivered.size();
    }
    size_t receipt_count() const {
        std::lock_guard lk(mu);
        return receipts.size();
    }

    mutable std::mutex mu;
    std::map<std::string, uint32_t> users;
    std::map<std::string, uint32_t> rooms;
    std::vector<outbound_message> delivered;
    std::vector<std::pair<uint64_t, proto::receipt_msg>> receipts;
    std::vector<std::pair<std::string, std::string>> claims;
    std::function<void()> on_deliver;
};

fleet_config make_fleet(const std::map<std::string, uint16_t>& ports) {
    return test::cluster_fleet(ports);
}

rpc_config fast_config() {
    return test::fast_rpc_config();
}

// One gateway's cluster layer with its own io thread and metrics, in the fast test timings.
struct node : test::cluster_node<fake_local> {
    node(const fleet_config& fleet, const std::string& id, const std::string& sec,
         rpc_config cfg = fast_config())
        : cluster_node(fleet, id, sec, cfg) {}
    uint64_t counter_value(const std::string& needle) const {
        return static_cast<uint64_t>(std::max(0.0, metric(needle)));
    }
};

// The nodes were started with every rpc port 0, so each bound a port of its own choosing; the
// fleet with those ports reaches every node as a reload would (SIGHUP), and their links come up.
// No port is picked before it is bound, so none can be taken in between.
fleet_config learn_ports(const std::map<std::string, node*>& nodes) {
    std::map<std::string, uint16_t> ports;
    for (auto& [id, nd] : nodes) ports[id] = nd->cluster->rpc_port();
    auto fleet = make_fleet(ports);
    for (auto& [id, nd] : nodes) nd->cluster->reload(fleet);
    return fleet;
}

outbound_message to_user(const std::string& u, uint64_t id = 1) {
    outbound_message m;
    m.server_msg_id = id;
    m.kind = proto::target_kind::user;
    m.target = u;
    m.from_user = "alice";
    m.from_device = "d1";
    m.payload = "hello";
    m.origin_gateway = "gw1";
    m.origin_session = 5;
    m.client_msg_id = 9;
    return m;
}

outbound_message to_room(const std::string& r, uint64_t id = 1) {
    auto m = to_user(r, id);
    m.kind = proto::target_kind::room;
    return m;
}

class ThreeNodes : public ::testing::Test {
  protected:
    void SetUp() override {
        auto unbound = make_fleet({{"gw1", 0}, {"gw2", 0}, {"gw3", 0}});
        for (auto id : {"gw1", "gw2", "gw3"})
            nodes[id] = std::make_unique<node>(unbound, id, secret);
        fleet = learn_ports({{"gw1", &n("gw1")}, {"gw2", &n("gw2")}, {"gw3", &n("gw3")}});
        for (auto& g : fleet.gateways) ports[g.id] = g.rpc.port;
        ASSERT_TRUE(eventually([&] {
            for (auto& [id, n] : nodes)
                if (n->cluster->links_up() != 2 || n->cluster->inbound_up() != 2) return false;
            return true;
        })) << "mesh did not come up";
    }
    node& n(const std::string& id) { return *nodes.at(id); }

    std::map<std::string, uint16_t> ports;
    fleet_config fleet;
    std::map<std::string, std::unique_ptr<node>> nodes;
};

}  // namespace

TEST_F(ThreeNodes, OneToOneGoesOnlyToTheGatewayHoldingTheUser) {
    {
        std::lock_guard lk(n("gw3").local.mu);
        n("gw3").local.users["bob"] = 1;
    }
    n("gw3").cluster->user_online("bob");
    ASSERT_TRUE(eventually([&] { return n("gw1").cluster->directory_users() == 1; }));

    auto r = n("gw1").forward_sync(to_user("bob", 100));
    EXPECT_EQ(r.status, proto::code::ok);
    EXPECT_EQ(r.reached, 1u);
    EXPECT_EQ(n("gw3").local.delivered_count(), 1u);
    EXPECT_EQ(n("gw2").local.delivered_count(), 0u);  // no broadcast
    EXPECT_EQ(n("gw1").counter_value("imgate_rpc_forward_frames_total"), 1u);
    {
        std::lock_guard lk(n("gw3").local.mu);
        EXPECT_EQ(n("gw3").local.delivered[0].server_msg_id, 100u);
        EXPECT_EQ(n("gw3").local.delivered[0].payload, "hello");
    }

    // Unknown user: answered offline without any traffic.
    r = n("gw1").forward_sync(to_user("nobody"));
    EXPECT_EQ(r.status, proto::code::offline);
    EXPECT_EQ(n("gw1").counter_value("imgate_rpc_forward_frames_total"), 1u);

    // Offline announcement: the directory forgets bob.
    {
        std::lock_guard lk(n("gw3").local.mu);
        n("gw3").local.users.erase("bob");
    }
    n("gw3").cluster->user_offline("bob");
    ASSERT_TRUE(eventually([&] { return n("gw1").cluster->directory_users() == 0; }));
    r = n("gw1").forward_sync(to_user("bob"));
    EXPECT_EQ(r.status, proto::code::offline);
}

TEST_F(ThreeNodes, UserOnTwoGatewaysReachesBothAndStaleEntryAnswersOffline) {
    for (auto id : {"gw2", "gw3"}) {
        {
            std::lock_guard lk(n(id).local.mu);
            n(id).local.users["bob"] = 1;
        }
        n(id).cluster->user_online("bob");
    }
    ASSERT_TRUE(eventually(
        [&] { return n("gw1").cluster->lookup(proto::target_kind::user, "bob").size() == 2; }));
    auto r = n("gw1").forward_sync(to_user("bob"));
    EXPECT_EQ(r.status, proto::code::ok);
    EXPECT_EQ(r.reached, 2u);
    EXPECT_EQ(n("gw2").local.delivered_count(), 1u);
    EXPECT_EQ(n("gw3").local.delivered_count(), 1u);

    // bob left gw2 but its offline announcement is not out yet: gw2 answers 0, gw3 delivers.
    {
        std::lock_guard lk(n("gw2").local.mu);
        n("gw2").local.users.erase("bob");
    }
    r = n("gw1").forward_sync(to_user("bob"));
    EXPECT_EQ(r.status, proto::code::ok);
    EXPECT_EQ(r.reached, 1u);
}

TEST_F(ThreeNodes, RoomMessageGoesOnceToEachInterestedGateway) {
    {
        std::lock_guard lk(n("gw2").local.mu);
        n("gw2").local.rooms["r1"] = 2;
    }
    {
        std::lock_guard lk(n("gw3").local.mu);
        n("gw3").local.rooms["r1"] = 3;
    }
    n("gw2").cluster->room_interest("r1", true);
    n("gw3").cluster->room_interest("r1", true);
    ASSERT_TRUE(eventually([&] {
        return n("gw1").cluster->lookup(proto::target_kind::room, "r1").size() == 2 &&
               n("gw2").cluster->lookup(proto::target_kind::room, "r1").size() == 1;
    }));
    auto r = n("gw1").forward_sync(to_room("r1"));
    EXPECT_EQ(r.status, proto::code::ok);
    EXPECT_EQ(r.reached, 5u);
    EXPECT_EQ(n("gw2").local.delivered_count(), 1u);
    EXPECT_EQ(n("gw3").local.delivered_count(), 1u);
    EXPECT_EQ(n("gw1").counter_value("imgate_rpc_forward_frames_total"), 2u);

    // From gw2 the room is only on gw3 (its own members are the gateway core's business).
    r = n("gw2").forward_sync(to_room("r1"));
    EXPECT_EQ(r.reached, 3u);
    EXPECT_EQ(n("gw1").local.delivered_count(), 0u);
    EXPECT_EQ(n("gw3").local.delivered_count(), 2u);
}

TEST_F(ThreeNodes, ReceiptTravelsBackToTheOriginGateway) {
    proto::receipt_msg rc{9, 100, "bob", "phone"};
    n("gw3").cluster->send_receipt("gw1", 5, rc);
    ASSERT_TRUE(eventually([&] { return n("gw1").local.receipt_count() == 1; }));
    std::lock_guard lk(n("gw1").local.mu);
    EXPECT_EQ(n("gw1").local.receipts[0].first, 5u);
    EXPECT_EQ(n("gw1").local.receipts[0].second.server_msg_id, 100u);
    EXPECT_EQ(n("gw1").local.receipts[0].second.user, "bob");
    EXPECT_EQ(n("gw2").local.receipt_count(), 0u);
}

TEST_F(ThreeNodes, SnapshotOnLinkUpAndDirectoryDroppedWhenPeerStops) {
    // A restarted gw3 that already has users announces them in its link-up snapshot.
    nodes["gw3"]->shutdown();
    ASSERT_TRUE(eventually([&] { return n("gw1").cluster->links_up() == 1; }));
    nodes["gw3"].reset();
    auto fresh = std::make_unique<node>(fleet, "gw3", secret);
    {
        std::lock_guard lk(fresh->local.mu);
        fresh->local.users["carol"] = 1;
        fresh->local.rooms["r9"] = 1;
    }
    nodes["gw3"] = std::move(fresh);
    ASSERT_TRUE(eventually([&] {
        return n("gw1").cluster->directory_users() == 1 &&
               n("gw1").cluster->directory_rooms() == 1 && n("gw1").cluster->links_up() == 2;
    }));
    EXPECT_EQ(n("gw1").forward_sync(to_user("carol")).status, proto::code::ok);

    // gw3 goes away: its entries are dropped once its link is gone.
    nodes["gw3"]->shutdown();
    ASSERT_TRUE(eventually([&] { return n("gw1").cluster->directory_users() == 0; }));
    EXPECT_EQ(n("gw1").forward_sync(to_user("carol")).status, proto::code::offline);
}

TEST_F(ThreeNodes, PeerStoppingMidCallYieldsUnavailableNotSilence) {
    {
        std::lock_guard lk(n("gw3").local.mu);
        n("gw3").local.users["bob"] = 1;
        // gw3 dies while handling the forward: it never answers.
        n("gw3").local.on_deliver = [c = n("gw3").cluster.get()] { c->stop(); };
    }
    n("gw3").cluster->user_online("bob");
    ASSERT_TRUE(eventually([&] { return n("gw1").cluster->directory_users() == 1; }));
    auto r = n("gw1").forward_sync(to_user("bob"));
    // unavailable, not timeout: the call failed because its link went down, before the deadline.
    EXPECT_EQ(r.status, proto::code::unavailable);
    EXPECT_EQ(n("gw3").local.delivered_count(), 1u);
}

TEST_F(ThreeNodes, StalledPeerYieldsTimeoutAtTheCallDeadline) {
    std::promise<void> release;
    auto released = release.get_future().share();
    {
        std::lock_guard lk(n("gw2").local.mu);
        n("gw2").local.users["bob"] = 1;
        n("gw2").local.on_deliver = [released] { released.wait_for(3s); };
    }
    n("gw2").cluster->user_online("bob");
    ASSERT_TRUE(eventually([&] { return n("gw1").cluster->directory_users() == 1; }));
    auto t0 = std::chrono::steady_clock::now();
    auto r = n("gw1").forward_sync(to_user("bob"));
    auto took = std::chrono::steady_clock::now() - t0;
    release.set_value();
    EXPECT_EQ(r.status, proto::code::timeout);
    EXPECT_GE(took, 450ms);
    // The late answer is counted and ignored, never reported twice.
    EXPECT_TRUE(
        eventually([&] { return n("gw1").counter_value("imgate_rpc_late_answers_total") == 1; }));
}

TEST_F(ThreeNodes, ReloadRemovesAndAddsAPeerWithoutTouchingOthers) {
    auto before = n("gw1").cluster->connects("gw2");
    EXPECT_EQ(before, 1u);
    auto two = make_fleet({{"gw1", ports["gw1"]}, {"gw2", ports["gw2"]}});
    n("gw1").cluster->reload(two);
    ASSERT_TRUE(eventually(
        [&] { return n("gw1").cluster->links_up() == 1 && n("gw1").cluster->inbound_up() == 1; }));
    // gw3 can no longer get in to gw1 (not a member): refused and counted.
    EXPECT_TRUE(eventually([&] {
        return n("gw1").counter_value(
                   "imgate_rpc_auth_failures_total{direction=\"inbound\",reason=\"unknown_"
                   "peer\"}") >= 1;
    }));
    // Adding it back brings the link up again; gw2's link was never replaced.
    n("gw1").cluster->reload(fleet);
    ASSERT_TRUE(eventually(
        [&] { return n("gw1").cluster->links_up() == 2 && n("gw1").cluster->inbound_up() == 2; }));
    EXPECT_EQ(n("gw1").cluster->connects("gw2"), before);
    EXPECT_GE(n("gw1").cluster->connects("gw3"), 2u);
}

TEST(ClusterRpc, WrongSecretIsRefusedAndCounted) {
    auto unbound = make_fleet({{"gw1", 0}, {"gw2", 0}});
    node a(unbound, "gw1", secret);
    node b(unbound, "gw2", "a-different-secret-entirely");
    learn_ports({{"gw1", &a}, {"gw2", &b}});
    EXPECT_TRUE(eventually([&] {
        return a.counter_value(
                   "imgate_rpc_auth_failures_total{direction=\"inbound\",reason=\"bad_proof\"}") >=
                   1 &&
               b.counter_value(
                   "imgate_rpc_auth_failures_total{direction=\"inbound\",reason=\"bad_proof\"}") >=
                   1;
    }));
    EXPECT_EQ(a.cluster->links_up(), 0u);
    EXPECT_EQ(a.cluster->inbound_up(), 0u);
    EXPECT_EQ(b.cluster->links_up(), 0u);
    // Nothing can be forwarded: the directory never learnt anything from b.
    EXPECT_EQ(a.forward_sync(to_user("bob")).status, proto::code::offline);
}

TEST(ClusterRpc, GarbageAndClientProtocolOnTheRpcPortAreRefused) {
    // gw2 never runs: gw1's link to it keeps failing to connect.
    node a(make_fleet({{"gw1", 0}, {"gw2", 0}}), "gw1", secret);
    asio::io_context io;
    for (std::string junk : {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                             proto::encode(proto::login_msg{"token"})}) {
        asio::ip::tcp::socket s(io);
        s.connect({asio::ip::make_address("127.0.0.1"), a.cluster->rpc_port()});
        asio::write(s, asio::buffer(junk));
        // The gateway closes the connection: the read ends (EOF or reset), it does not hang.
        char buf[64];
        boost::system::error_code ec;
        s.read_some(asio::buffer(buf), ec);
        EXPECT_TRUE(ec);
    }
    EXPECT_TRUE(eventually([&] {
        return a.counter_value(
                   "imgate_rpc_auth_failures_total{direction=\"inbound\",reason=\"bad_frame\"}") ==
               2;
    }));
}

// Issue 11: a dialler that only announces (frames nobody answers) writes all the time but reads
// nothing; it used to ping only when it had written nothing, so its own read deadline closed a
// healthy link every peer_timeout and the peer forgot all its users each time.
TEST(ClusterRpc, OneWayAnnouncementsForManyPeerTimeoutsKeepTheLink) {
    auto unbound = make_fleet({{"gw1", 0}, {"gw2", 0}});
    auto cfg = fast_config();
    cfg.ping_interval = 100ms;
    cfg.peer_timeout = 300ms;
    node a(unbound, "gw1", secret, cfg);
    node b(unbound, "gw2", secret, cfg);
    learn_ports({{"gw1", &a}, {"gw2", &b}});
    ASSERT_TRUE(
        eventually([&] { return a.cluster->links_up() == 1 && b.cluster->links_up() == 1; }));
    // gw1 announces a presence change every 20 ms for 2 s (nearly 7 peer timeouts); gw2 starts
    // nothing on its own link, so the only frames gw1 could read are PONGs.
    const auto until = std::chrono::steady_clock::now() + 2s;
    int n = 0;
    while (std::chrono::steady_clock::now() < until && n < 1000) {
        if (n % 2 == 0)
            a.cluster->user_online("carol@example.com");
        else
            a.cluster->user_offline("carol@example.com");
        ++n;
        std::this_thread::sleep_for(20ms);  // pacing the traffic, not waiting for an event
    }
    a.cluster->user_online("carol@example.com");
    EXPECT_TRUE(eventually([&] { return b.cluster->directory_users() == 1; }));
    EXPECT_EQ(a.counter_value("imgate_rpc_links_closed_total"), 0u);
    EXPECT_EQ(b.counter_value("imgate_rpc_links_closed_total"), 0u);
    EXPECT_EQ(a.cluster->connects("gw2"), 1u);
    EXPECT_EQ(b.cluster->connects("gw1"), 1u);
}

// An entry with an id outside the id rule costs that entry, not the link and the directory.
TEST_F(ThreeNodes, UnusableEntriesAreSkippedAndCountedLinkAndDirectoryStay) {
    n("gw1").cluster->user_online("carol@example.com");
    n("gw1").cluster->user_online("has space");        // not an id: skipped by each peer
    n("gw1").cluster->room_interest("bad\xff", true);  // not UTF-8: skipped
    n("gw1").cluster->user_online("王伟");
    ASSERT_TRUE(eventually([&] { return n("gw2").cluster->directory_users() == 2; }));
    ASSERT_TRUE(eventually([&] {
        return n("gw2").counter_value("imgate_rpc_entries_skipped_total{op=\"PRESENCE\"}") == 1 &&
               n("gw2").counter_value("imgate_rpc_entries_skipped_total{op=\"ROOM_INTEREST\"}") ==
                   1;
    }));
    EXPECT_EQ(n("gw2").cluster->lookup(proto::target_kind::user, "王伟"), peer_list{"gw1"});
    // The link was never replaced and nothing counted as a protocol error.
    EXPECT_EQ(n("gw1").cluster->connects("gw2"), 1u);
    EXPECT_EQ(n("gw2").counter_value("imgate_rpc_protocol_errors_total"), 0u);
    EXPECT_EQ(n("gw1").forward_sync(to_user("nobody")).status, proto::code::offline);
    // The non-ASCII user is routed to gw1, which holds it (the fake reaches 0 sessions).
    EXPECT_EQ(n("gw2").forward_sync(to_user("王伟")).status, proto::code::offline);
    EXPECT_EQ(n("gw1").local.delivered_count(), 1u);
}

// A login of user+device on one gateway tells the peers holding the user, and only them.
TEST_F(ThreeNodes, DeviceLoginIsClaimedOnlyWhereTheUserIs) {
    n("gw1").cluster->user_online("Zoë");
    ASSERT_TRUE(eventually([&] { return n("gw2").cluster->directory_users() == 1; }));
    n("gw2").cluster->device_login("Zoë", "phone");
    n("gw2").cluster->device_login("nobody-here", "phone");
    ASSERT_TRUE(eventually([&] {
        std::lock_guard lk(n("gw1").local.mu);
        return n("gw1").local.claims.size() == 1;
    }));
    {
        std::lock_guard lk(n("gw1").local.mu);
        EXPECT_EQ(n("gw1").local.claims[0], (std::pair<std::string, std::string>{"Zoë", "phone"}));
    }
    EXPECT_EQ(n("gw2").counter_value("imgate_rpc_device_claims_sent_total"), 1u);
    std::lock_guard lk(n("gw3").local.mu);
    EXPECT_TRUE(n("gw3").local.claims.empty());
}
