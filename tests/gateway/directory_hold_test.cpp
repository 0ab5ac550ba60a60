// Issue 15, fault b: a peer whose link ended without a clean close may still serve its users
// behind a partition. The directory keeps its entries, held, for cluster_rpc.unreachable_hold
// instead of answering offline for them; a snapshot replaces them, and a hold's generation keeps
// a stale timer from dropping fresh entries. Socket-free, with the clock passed in.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <sstream>

#include "cluster_node.hpp"
#include "directory_lookup.hpp"
#include "fake_local.hpp"
#include "gateway/cluster_context.hpp"
#include "gateway/directory.hpp"
#include "gateway/peer_service.hpp"
#include "gateway/rpc_config.hpp"

using namespace imgate;
using namespace imgate::gw;
using imgate::gw::test_support::no_local;
using imgate::gw::test_support::room;
using imgate::gw::test_support::sample;
using imgate::gw::test_support::user;
using namespace std::chrono_literals;

namespace {

const hold_clock::time_point t0 = hold_clock::time_point() + 1000h;

// gw2 holds bob and a room; gw3 holds carol.
announced_directory two_peers() {
    announced_directory d;
    d.apply_presence("gw2", true, {{true, "bob@example.com"}, {true, "Zoë@例え.jp"}});
    d.apply_rooms("gw2", true, {{true, "#général"}});
    d.apply_presence("gw3", true, {{true, "carol@example.com"}});
    return d;
}

}  // namespace

TEST(DirectoryHold, HeldEntriesStayListedUntilTheHoldRunsOut) {
    auto d = two_peers();
    uint64_t gen = d.hold_peer("gw2", t0 + 2s);
    EXPECT_NE(gen, 0u);
    EXPECT_TRUE(d.held("gw2"));
    EXPECT_FALSE(d.held("gw3"));
    // Sends still go to gw2: it answers, or the missing link makes them unavailable; never a
    // made-up offline.
    EXPECT_EQ(user(d, "bob@example.com"), (peer_list{"gw2"}));
    EXPECT_EQ(user(d, "Zoë@例え.jp"), (peer_list{"gw2"}));
    EXPECT_EQ(room(d, "#général"), (peer_list{"gw2"}));
    EXPECT_EQ(d.peer_entries("gw2", proto::target_kind::user), 2u);

    // Too early: nothing happens.
    EXPECT_FALSE(d.expire_hold("gw2", gen, t0 + 1999ms));
    EXPECT_TRUE(d.held("gw2"));
    EXPECT_EQ(user(d, "bob@example.com"), (peer_list{"gw2"}));

    // At its end the peer is dropped, rooms included; the other peer is untouched.
    EXPECT_TRUE(d.expire_hold("gw2", gen, t0 + 2s));
    EXPECT_FALSE(d.held("gw2"));
    EXPECT_TRUE(user(d, "bob@example.com").empty());
    EXPECT_TRUE(room(d, "#général").empty());
    EXPECT_EQ(d.peer_entries("gw2", proto::target_kind::user), 0u);
    EXPECT_EQ(user(d, "carol@example.com"), (peer_list{"gw3"}));
    EXPECT_EQ(d.user_entries(), 1u);
    EXPECT_EQ(d.user_locations(), 1u);
    EXPECT_EQ(d.room_entries(), 0u);
    // A second expiry of the same hold is a no-op.
    EXPECT_FALSE(d.expire_hold("gw2", gen, t0 + 10s));
}

// The peer came back: its new link ends the hold, and its snapshot replaces the held entries.
// The old hold's timer fires later and must not touch the fresh ones.
TEST(DirectoryHold, ASnapshotReplacesHeldEntriesAndTheStaleTimerDropsNothing) {
    auto d = two_peers();
    uint64_t gen = d.hold_peer("gw2", t0 + 2s);
    EXPECT_TRUE(d.end_hold("gw2"));
    EXPECT_FALSE(d.held("gw2"));
    EXPECT_FALSE(d.end_hold("gw2"));  // nothing left to end
    // Until the snapshot arrives the old entries are still the best knowledge.
    EXPECT_EQ(user(d, "bob@example.com"), (peer_list{"gw2"}));
    d.apply_presence("gw2", true, {{true, "bob@example.com"}, {true, "dave@example.com"}});
    d.apply_rooms("gw2", true, {});
    EXPECT_TRUE(user(d, "Zoë@例え.jp").empty());  // gone while gw2 was away
    EXPECT_TRUE(room(d, "#général").empty());
    EXPECT_EQ(user(d, "dave@example.com"), (peer_list{"gw2"}));

    EXPECT_FALSE(d.expire_hold("gw2", gen, t0 + 1h));
    EXPECT_EQ(user(d, "bob@example.com"), (peer_list{"gw2"}));
    EXPECT_EQ(user(d, "dave@example.com"), (peer_list{"gw2"}));
    EXPECT_EQ(d.peer_entries("gw2", proto::target_kind::user), 2u);
}

// A reset snapshot ends a hold by itself too (it can only come on a live link).
TEST(DirectoryHold, AResetEndsTheHoldEvenWithoutEndHold) {
    auto d = two_peers();
    uint64_t gen = d.hold_peer("gw2", t0 + 2s);
    d.apply_rooms("gw2", true, {{true, "#new"}});
    EXPECT_FALSE(d.held("gw2"));
    EXPECT_FALSE(d.expire_hold("gw2", gen, t0 + 1h));
    EXPECT_EQ(room(d, "#new"), (peer_list{"gw2"}));
    EXPECT_EQ(user(d, "bob@example.com"), (peer_list{"gw2"}));
}

// Held, back, held again: only the latest hold's timer may drop the peer, at its own end.
TEST(DirectoryHold, OnlyTheLatestHoldsGenerationExpires) {
    auto d = two_peers();
    uint64_t first = d.hold_peer("gw2", t0 + 2s);
    d.end_hold("gw2");
    d.apply_presence("gw2", true, {{true, "bob@example.com"}});
    uint64_t second = d.hold_peer("gw2", t0 + 5s);
    EXPECT_NE(first, second);
    EXPECT_FALSE(d.expire_hold("gw2", first, t0 + 3s));
    EXPECT_TRUE(d.held("gw2"));
    EXPECT_EQ(user(d, "bob@example.com"), (peer_list{"gw2"}));
    EXPECT_FALSE(d.expire_hold("gw2", second, t0 + 4s));
    EXPECT_TRUE(d.expire_hold("gw2", second, t0 + 5s));
    EXPECT_TRUE(user(d, "bob@example.com").empty());
}

// A peer dropped outright (clean close, left the fleet) and later held again under the same id
// gets a new generation: generations are never reused, even when the slot is.
TEST(DirectoryHold, GenerationsAreNeverReusedAcrossADrop) {
    auto d = two_peers();
    uint64_t old = d.hold_peer("gw2", t0 + 2s);
    d.drop_peer("gw2");
    EXPECT_FALSE(d.held("gw2"));
    EXPECT_FALSE(d.expire_hold("gw2", old, t0 + 1h));  // nothing held: harmless
    d.apply_presence("gw2", true, {{true, "bob@example.com"}});
    uint64_t fresh = d.hold_peer("gw2", t0 + 3s);
    EXPECT_NE(fresh, old);
    EXPECT_FALSE(d.expire_hold("gw2", old, t0 + 1h));
    EXPECT_EQ(user(d, "bob@example.com"), (peer_list{"gw2"}));
    EXPECT_FALSE(d.expire_hold("gw2", 0, t0 + 1h));
    EXPECT_FALSE(d.expire_hold("gw9", fresh, t0 + 1h));  // another peer's generation
    EXPECT_TRUE(d.expire_hold("gw2", fresh, t0 + 3s));
}

// An overflowed peer that is held stays overflowed: it is still asked for every target of that
// kind, since only it knows, until its hold ends one way or the other.
TEST(DirectoryHold, AHeldOverflowedPeerIsStillAskedForUnknownTargets) {
    announced_directory d;
    d.set_limits({.max_peer_users = 1, .max_peer_rooms = 10});
    d.apply_presence("gw2", true, {{true, "a@example.com"}, {true, "b@example.com"}});
    uint64_t gen = d.hold_peer("gw2", t0 + 2s);
    EXPECT_EQ(user(d, "b@example.com"), (peer_list{"gw2"}));
    EXPECT_TRUE(d.expire_hold("gw2", gen, t0 + 2s));
    EXPECT_TRUE(user(d, "b@example.com").empty());
    EXPECT_FALSE(d.overflowed("gw2", proto::target_kind::user));
}

// imgate_rpc_directory_held{kind,peer} exists at 0 from the start, and the peer's service
// publishes the held count as its link ends (inbound_side holds before the service goes).
TEST(DirectoryHold, HeldGaugeIsRegisteredAtZeroAndPublished) {
    boost::asio::io_context io;
    fleet_config fleet = imgate::test::cluster_fleet({{"gw1", 1}, {"gw2", 1}});
    no_local local;
    metrics_registry reg;
    cluster_context ctx(io, fleet, "gw1", "hold-test-secret", rpc_config{}, local, reg);
    const std::string held_users = "imgate_rpc_directory_held{kind=\"user\",peer=\"gw2\"}";
    const std::string held_rooms = "imgate_rpc_directory_held{kind=\"room\",peer=\"gw2\"}";
    EXPECT_EQ(sample(reg, held_users), 0);
    EXPECT_EQ(sample(reg, held_rooms), 0);
    announced_directory dir;
    dir.apply_presence("gw2", true, {{true, "bob@example.com"}, {true, "Zoë@例え.jp"}});
    dir.apply_rooms("gw2", true, {{true, "#général"}});
    { peer_service svc(ctx, dir, "gw2"); }
    EXPECT_EQ(sample(reg, held_users), 0);  // not held: the link is merely gone from the test
    uint64_t gen = dir.hold_peer("gw2", t0 + 2s);
    { peer_service svc(ctx, dir, "gw2"); }
    EXPECT_EQ(sample(reg, held_users), 2);
    EXPECT_EQ(sample(reg, held_rooms), 1);
    EXPECT_EQ(sample(reg, "imgate_rpc_directory_entries{kind=\"user\",peer=\"gw2\"}"), 2);
    ASSERT_TRUE(dir.expire_hold("gw2", gen, t0 + 2s));
    { peer_service svc(ctx, dir, "gw2"); }
    EXPECT_EQ(sample(reg, held_users), 0);
    EXPECT_EQ(sample(reg, held_rooms), 0);
}

TEST(DirectoryHold, UnreachableHoldIsReadFromClusterRpc) {
    auto parse = [](const std::string& text) {
        YAML::Node doc = YAML::Load(text);
        return parse_rpc_config(yaml_map(doc, "gateway.yaml").map("cluster_rpc"));
    };
    EXPECT_EQ(parse("cluster_rpc: {}\n").unreachable_hold, 60s);
    EXPECT_EQ(parse("cluster_rpc: {unreachable_hold: 2s}\n").unreachable_hold, 2s);
    EXPECT_EQ(parse("cluster_rpc: {unreachable_hold: 5m}\n").unreachable_hold, 5min);
    EXPECT_EQ(parse("cluster_rpc: {unreachable_hold: 0}\n").unreachable_hold, 0ms);
    for (auto bad :
         {"cluster_rpc: {unreachable_hold: -1s}\n", "cluster_rpc: {unreachable_hold: forever}\n",
          "cluster_rpc: {unreachable_hold: 8d}\n", "cluster_rpc: {unreachable_hold: [1]}\n",
          "cluster_rpc: {unreachable_holds: 2s}\n"})
        EXPECT_THROW(parse(bad), config_error) << bad;
}
