// Issue 15, fault b: a partition between two gateways that both stay up. Three in-process
// rpc_cluster nodes on loopback; gw1 and gw2 reach each other only through silent_relays, which
// a test cuts (no byte and no close crosses, as when a path drops packets) and heals. gw3 is
// wired directly to both. Sends across the cut answer timeout/unavailable and never offline
// while the far side's entries are held (cluster_rpc.unreachable_hold); offline after the hold;
// a peer that comes back replaces its held entries with its snapshot; a peer that closes its
// links (stopped, killed) is dropped at once, as before.
#include <gtest/gtest.h>

#include <mutex>
#include <set>

#include "../support/process.hpp"
#include "cluster_node.hpp"
#include "fake_local.hpp"
#include "gateway/rpc_cluster.hpp"
#include "silent_relay.hpp"

using namespace imgate;
using namespace imgate::gw;
using namespace std::chrono_literals;
using imgate::gw::test_support::fake_local;

namespace {

const std::string secret = "partition-test-cluster-secret";

// quiet: no pings for the length of a test. A node stopped while a PONG sits unread in one of
// its sockets resets that link instead of closing it (held, as any unknown end); the tests of a
// clean close want the FIN that an idle link gives.
rpc_config fast_config(std::chrono::milliseconds hold, bool quiet = false) {
    rpc_config c;
    c.call_timeout = 500ms;
    c.connect_timeout = 300ms;
    c.ping_interval = quiet ? 10s : 200ms;
    c.peer_timeout = quiet ? 30s : 1000ms;
    c.backoff_min = 20ms;
    c.backoff_max = 200ms;
    c.unreachable_hold = hold;
    return c;
}

struct node : test::cluster_node<fake_local> {
    node(const fleet_config& fleet, const std::string& id, rpc_config cfg)
        : cluster_node(fleet, id, secret, cfg) {}

    // A session of user logs in here (the core announces its first session).
    void login(const std::string& user) {
        {
            std::lock_guard lk(local.mu);
            local.users.insert(user);
        }
        cluster->user_online(user);
    }
    void logout(const std::string& user) {
        {
            std::lock_guard lk(local.mu);
            local.users.erase(user);
        }
        cluster->user_offline(user);
    }

    // imgate_rpc_directory_held{kind="user",peer=...}
    double held_users(const std::string& peer) const {
        return metric("imgate_rpc_directory_held{kind=\"user\",peer=\"" + peer + "\"}");
    }
};

const std::string bob = "bob@example.com";      // on gw2
const std::string zoe = "Zoë@例え.jp";          // on gw2, leaves during the partition
const std::string carol = "carol@example.com";  // on gw3
const std::string alice = "alice@example.com";  // on gw1

// gw1 <-relay-> gw2, both wired straight to gw3.
class Partition : public ::testing::Test {
  protected:
    void start(std::chrono::milliseconds hold, bool quiet = false) {
        auto unbound = test::cluster_fleet({{"gw1", 0}, {"gw2", 0}, {"gw3", 0}});
        for (auto id : {"gw1", "gw2", "gw3"})
            nodes[id] = std::make_unique<node>(unbound, id, fast_config(hold, quiet));
        std::map<std::string, uint16_t> port;
        for (auto& [id, nd] : nodes) port[id] = nd->cluster->rpc_port();
        to_gw2 = std::make_unique<test::silent_relay>(port["gw2"]);  // gw1 dials gw2 through it
        to_gw1 = std::make_unique<test::silent_relay>(port["gw1"]);  // gw2 dials gw1 through it
        // Each node's fleet file as it would be on that host: the other side behind the relay.
        // A reload is how the ports, bound only now, reach the nodes (as SIGHUP would).
        auto direct = test::cluster_fleet(port);
        auto as_gw1 = port, as_gw2 = port;
        as_gw1["gw2"] = to_gw2->port();
        as_gw2["gw1"] = to_gw1->port();
        fleet1 = test::cluster_fleet(as_gw1);
        n("gw1").cluster->reload(fleet1);
        n("gw2").cluster->reload(test::cluster_fleet(as_gw2));
        n("gw3").cluster->reload(direct);
        ASSERT_TRUE(mesh_up()) << "mesh did not come up";

        n("gw1").login(alice);
        n("gw2").login(bob);
        n("gw2").login(zoe);
        n("gw3").login(carol);
        ASSERT_TRUE(test::eventually([&] {
            return n("gw1").cluster->directory_users() == 3 &&
                   n("gw2").cluster->directory_users() == 2 &&
                   n("gw3").cluster->directory_users() == 3;
        }));
        ASSERT_EQ(n("gw1").forward_sync(bob).status, proto::code::ok);
        ASSERT_EQ(n("gw2").forward_sync(alice).status, proto::code::ok);
    }
    bool mesh_up() {
        return test::eventually([&] {
            for (auto& [id, nd] : nodes)
                if (nd->cluster->links_up() != 2 || nd->cluster->inbound_up() != 2) return false;
            return true;
        });
    }
    void cut() {
        to_gw1->cut();
        to_gw2->cut();
    }
    void heal() {
        to_gw1->heal();
        to_gw2->heal();
    }
    // Both sides have noticed the cut: each holds the other's entries.
    bool both_hold() {
        return test::eventually(
            [&] { return n("gw1").held_users("gw2") == 2 && n("gw2").held_users("gw1") == 1; });
    }
    node& n(const std::string& id) { return *nodes.at(id); }

    std::map<std::string, std::unique_ptr<node>> nodes;
    std::unique_ptr<test::silent_relay> to_gw1, to_gw2;
    fleet_config fleet1;
};

bool failed_honestly(proto::code c) {
    return c == proto::code::unavailable || c == proto::code::timeout;
}

}  // namespace

// (i) While held, every send across the cut fails honestly (timeout before the links notice,
// unavailable after) and never says offline; the rest of the fleet is untouched. When the hold
// runs out the far side's users are dropped, and only then is the answer offline.
TEST_F(Partition, SendsAcrossACutAreUnavailableWhileHeldAndOfflineAfterTheHold) {
    start(2s);
    cut();
    // The links have not noticed yet: the call waits for its deadline.
    auto first = n("gw1").forward_sync(bob);
    EXPECT_TRUE(failed_honestly(first.status)) << proto::to_string(first.status);
    ASSERT_TRUE(both_hold()) << n("gw1").held_users("gw2");
    EXPECT_EQ(n("gw1").metric("imgate_rpc_directory_held{kind=\"room\",peer=\"gw2\"}"), 0);
    EXPECT_EQ(n("gw1").held_users("gw3"), 0);
    EXPECT_EQ(n("gw1").cluster->lookup(proto::target_kind::user, bob), peer_list{"gw2"});
    // Both sides keep serving each other's users honestly, and gw3 both of them.
    ASSERT_TRUE(test::eventually([&] { return n("gw1").cluster->links_up() == 1; }));
    auto r = n("gw1").forward_sync(bob);
    EXPECT_EQ(r.status, proto::code::unavailable) << proto::to_string(r.status);
    r = n("gw2").forward_sync(alice);
    EXPECT_TRUE(failed_honestly(r.status)) << proto::to_string(r.status);
    EXPECT_EQ(n("gw1").forward_sync(carol).status, proto::code::ok);
    EXPECT_EQ(n("gw3").forward_sync(bob).status, proto::code::ok);
    EXPECT_EQ(n("gw3").forward_sync(alice).status, proto::code::ok);
    EXPECT_EQ(n("gw2").forward_sync(carol).status, proto::code::ok);
    // Nobody ever announced this user: offline is the truth, held entries or not.
    EXPECT_EQ(n("gw1").forward_sync("nobody@example.com").status, proto::code::offline);

    // Keep sending until the hold runs out. An offline answer is only allowed once gw1 has
    // dropped gw2's entries (gauge and directory, published on the strand before the send saw
    // the empty directory).
    bool offline_seen = false;
    size_t honest = 0;
    ASSERT_TRUE(test::eventually(
        [&] {
            auto res = n("gw1").forward_sync(bob);
            if (res.status == proto::code::offline) {
                EXPECT_EQ(n("gw1").held_users("gw2"), 0);
                EXPECT_TRUE(n("gw1").cluster->lookup(proto::target_kind::user, bob).empty());
                offline_seen = true;
            } else {
                EXPECT_TRUE(failed_honestly(res.status)) << proto::to_string(res.status);
                ++honest;
            }
            return offline_seen;
        },
        10s));
    EXPECT_GT(honest, 0u);
    EXPECT_EQ(n("gw1").metric("imgate_rpc_directory_entries{kind=\"user\",peer=\"gw2\"}"), 0);
    EXPECT_EQ(n("gw1").cluster->directory_users(), 1u);  // carol, on gw3
    ASSERT_TRUE(test::eventually([&] { return n("gw2").held_users("gw1") == 0; }));
    EXPECT_EQ(n("gw2").forward_sync(alice).status, proto::code::offline);
}

// (iii) The partition heals within the hold: the new links' snapshots replace the held
// entries (a user who left meanwhile is gone, one who arrived is there), later sends are
// delivered, and the old hold's timer, firing after, drops none of the fresh entries.
TEST_F(Partition, APeerThatComesBackReplacesItsHeldEntriesWithItsSnapshot) {
    const auto hold = 3s;
    start(hold);
    cut();
    ASSERT_TRUE(both_hold());
    const auto held_at = std::chrono::steady_clock::now();
    n("gw2").logout(zoe);  // not heard by gw1 during the cut
    n("gw2").login("dave@example.com");
    EXPECT_EQ(n("gw1").cluster->lookup(proto::target_kind::user, zoe), peer_list{"gw2"});
    EXPECT_TRUE(failed_honestly(n("gw1").forward_sync(zoe).status));

    heal();
    ASSERT_TRUE(mesh_up()) << "links did not come back through the healed relays";
    ASSERT_TRUE(test::eventually([&] {
        return n("gw1").held_users("gw2") == 0 && n("gw2").held_users("gw1") == 0 &&
               n("gw1").cluster->lookup(proto::target_kind::user, zoe).empty();
    }));
    EXPECT_EQ(n("gw1").forward_sync(bob).status, proto::code::ok);
    EXPECT_EQ(n("gw1").forward_sync("dave@example.com").status, proto::code::ok);
    EXPECT_EQ(n("gw1").forward_sync(zoe).status, proto::code::offline);
    EXPECT_EQ(n("gw2").forward_sync(alice).status, proto::code::ok);

    // Past the moment the first hold would have ended: its timer must find a newer generation.
    std::this_thread::sleep_until(held_at + hold + 1s);
    EXPECT_EQ(n("gw1").cluster->lookup(proto::target_kind::user, bob), peer_list{"gw2"});
    EXPECT_EQ(n("gw1").metric("imgate_rpc_directory_entries{kind=\"user\",peer=\"gw2\"}"), 2);
    EXPECT_EQ(n("gw1").forward_sync(bob).status, proto::code::ok);
    EXPECT_EQ(n("gw2").forward_sync(alice).status, proto::code::ok);
    std::lock_guard lk(n("gw2").local.mu);
    EXPECT_GE(std::count(n("gw2").local.delivered.begin(), n("gw2").local.delivered.end(), bob), 3);
}

// (ii) A peer that closes its links (stops; a killed process's kernel does the same) is gone
// for sure: its users answer offline at once, long before any hold would end.
TEST_F(Partition, APeerThatClosesItsLinksIsDroppedAtOnce) {
    start(60s, true);
    nodes["gw3"]->shutdown();
    ASSERT_TRUE(test::eventually(
        [&] { return n("gw1").forward_sync(carol).status == proto::code::offline; }));
    EXPECT_EQ(n("gw1").held_users("gw3"), 0);
    EXPECT_EQ(n("gw2").forward_sync(carol).status, proto::code::offline);
    EXPECT_EQ(n("gw1").forward_sync(bob).status, proto::code::ok);  // the rest keeps working
}

// unreachable_hold 0: today's behaviour, the cut side's users dropped as the link times out.
TEST_F(Partition, AZeroHoldDropsAtOnceAsBefore) {
    start(0ms);
    cut();
    ASSERT_TRUE(test::eventually([&] { return n("gw1").cluster->directory_users() == 1; }));
    EXPECT_EQ(n("gw1").held_users("gw2"), 0);
    EXPECT_EQ(n("gw1").forward_sync(bob).status, proto::code::offline);
}

// A held peer removed from the fleet (SIGHUP) is not coming back to this fleet: its entries go.
TEST_F(Partition, AHeldPeerRemovedByAReloadIsDropped) {
    start(60s);
    cut();
    ASSERT_TRUE(both_hold());
    auto without_gw2 = fleet1;
    std::erase_if(without_gw2.gateways, [](const gateway_spec& g) { return g.id == "gw2"; });
    n("gw1").cluster->reload(without_gw2);
    ASSERT_TRUE(test::eventually(
        [&] { return n("gw1").cluster->lookup(proto::target_kind::user, bob).empty(); }));
    EXPECT_EQ(n("gw1").forward_sync(bob).status, proto::code::offline);
    EXPECT_EQ(n("gw1").held_users("gw2"), -1);  // its series went with it
    EXPECT_EQ(n("gw1").forward_sync(carol).status, proto::code::ok);
}
