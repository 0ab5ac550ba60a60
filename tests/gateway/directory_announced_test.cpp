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
#include "rpc_frames.hpp"

using namespace imgate;
using namespace imgate::gw;
using imgate::gw::test_support::no_local;
using imgate::gw::test_support::room;
using imgate::gw::test_support::sample;
using imgate::gw::test_support::sorted_peers;
using imgate::gw::test_support::user;

TEST(AnnouncedDirectory, UserOnlyOnTheGatewaysThatAnnouncedIt) {
    announced_directory d;
    d.apply_presence("gw2", false, {{true, "bob"}});
    d.apply_presence("gw3", false, {{true, "bob"}, {true, "carol"}});
    EXPECT_EQ(user(d, "bob"), (peer_list{"gw2", "gw3"}));
    EXPECT_EQ(user(d, "carol"), (peer_list{"gw3"}));
    EXPECT_TRUE(user(d, "dave").empty());
    d.apply_presence("gw2", false, {{false, "bob"}});
    EXPECT_EQ(user(d, "bob"), (peer_list{"gw3"}));
    EXPECT_EQ(d.user_entries(), 2u);
    EXPECT_EQ(d.user_locations(), 2u);
}

TEST(AnnouncedDirectory, RepeatedDeltasAreIdempotent) {
    announced_directory d;
    d.apply_presence("gw2", false, {{true, "bob"}, {true, "bob"}});
    EXPECT_EQ(user(d, "bob"), (peer_list{"gw2"}));
    d.apply_presence("gw2", false, {{false, "bob"}, {false, "bob"}, {false, "nobody"}});
    EXPECT_TRUE(user(d, "bob").empty());
    EXPECT_EQ(d.user_entries(), 0u);
}

TEST(AnnouncedDirectory, UserMovingBetweenGateways) {
    announced_directory d;
    d.apply_presence("gw2", false, {{true, "bob"}});
    // gw3's online announcement may arrive before gw2's offline one: both are kept until then.
    d.apply_presence("gw3", false, {{true, "bob"}});
    EXPECT_EQ(user(d, "bob"), (peer_list{"gw2", "gw3"}));
    EXPECT_EQ(d.user_locations(), 2u);
    d.apply_presence("gw2", false, {{false, "bob"}});
    EXPECT_EQ(d.user_locations(), 1u);
    EXPECT_EQ(user(d, "bob"), (peer_list{"gw3"}));
}

TEST(AnnouncedDirectory, SnapshotReplacesWhatAPeerSaidBefore) {
    announced_directory d;
    d.apply_presence("gw2", false, {{true, "a"}, {true, "b"}});
    d.apply_presence("gw3", false, {{true, "a"}});
    d.apply_rooms("gw2", false, {{true, "r1"}});
    // gw2 restarted: its first presence frame is a reset snapshot.
    d.apply_presence("gw2", true, {{true, "c"}});
    EXPECT_EQ(user(d, "a"), (peer_list{"gw3"}));
    EXPECT_TRUE(user(d, "b").empty());
    EXPECT_EQ(user(d, "c"), (peer_list{"gw2"}));
    EXPECT_EQ(room(d, "r1"), (peer_list{"gw2"}));  // rooms have their own snapshot
    d.apply_rooms("gw2", true, {});
    EXPECT_TRUE(room(d, "r1").empty());
}

TEST(AnnouncedDirectory, DroppedPeerIsForgottenAndItsSlotReused) {
    announced_directory d;
    d.apply_presence("gw2", false, {{true, "a"}});
    d.apply_rooms("gw2", false, {{true, "r"}});
    d.apply_rooms("gw3", false, {{true, "r"}});
    d.drop_peer("gw2");
    EXPECT_TRUE(user(d, "a").empty());
    EXPECT_EQ(room(d, "r"), (peer_list{"gw3"}));
    d.apply_presence("gw4", false, {{true, "a"}});
    EXPECT_EQ(user(d, "a"), (peer_list{"gw4"}));
    EXPECT_EQ(room(d, "r"), (peer_list{"gw3"}));
    d.drop_peer("unknown");  // harmless
    EXPECT_EQ(d.room_entries(), 1u);
    EXPECT_EQ(d.room_locations(), 1u);
    EXPECT_EQ(d.user_locations(), 1u);
}

TEST(AnnouncedDirectory, UsersAndRoomsAreSeparateNamespaces) {
    announced_directory d;
    d.apply_presence("gw2", false, {{true, "x"}});
    EXPECT_TRUE(room(d, "x").empty());
    d.apply_rooms("gw3", false, {{true, "x"}});
    EXPECT_EQ(user(d, "x"), (peer_list{"gw2"}));
    EXPECT_EQ(room(d, "x"), (peer_list{"gw3"}));
}

namespace {

// n presence (or room) entries with real-looking, distinct ids.
std::vector<rpc::delta> entries(const std::string& prefix, size_t n, bool on = true) {
    std::vector<rpc::delta> v;
    v.reserve(n);
    for (size_t i = 0; i < n; ++i) v.push_back({on, prefix + std::to_string(i) + "@example.com"});
    return v;
}

}  // namespace

TEST(AnnouncedDirectoryCaps, EntriesPastThePeersCapAreRefusedAndCounted) {
    announced_directory d;
    d.set_limits({.max_peer_users = 3, .max_peer_rooms = 2});
    auto r = d.apply_presence("gw2", true, entries("zoë", 5));
    EXPECT_EQ(r.refused, 2u);
    EXPECT_EQ(d.peer_entries("gw2", proto::target_kind::user), 3u);
    EXPECT_EQ(d.user_entries(), 3u);
    EXPECT_TRUE(d.overflowed("gw2", proto::target_kind::user));
    EXPECT_FALSE(d.overflowed("gw2", proto::target_kind::room));
    // Repeating a stored entry is not a new one: never refused.
    EXPECT_EQ(d.apply_presence("gw2", false, {{true, "zoë0@example.com"}}).refused, 0u);
    // The cap is per peer: another peer still gets its own three.
    EXPECT_EQ(d.apply_presence("gw3", false, entries("王伟", 3)).refused, 0u);
    EXPECT_FALSE(d.overflowed("gw3", proto::target_kind::user));
    EXPECT_EQ(d.user_locations(), 6u);
    // Rooms have their own cap.
    EXPECT_EQ(d.apply_rooms("gw2", false, entries("#room", 4)).refused, 2u);
    EXPECT_EQ(d.room_entries(), 2u);
    // An offline entry frees room under the cap for the next one.
    d.apply_presence("gw2", false, {{false, "zoë0@example.com"}});
    EXPECT_EQ(d.apply_presence("gw2", false, {{true, "late@example.com"}}).refused, 0u);
    EXPECT_EQ(d.apply_presence("gw2", false, {{true, "later@example.com"}}).refused, 1u);
}

// A user whose entry was refused was never recorded: instead of answering offline for it, the
// directory lists the overflowed peer for every user (it alone knows), until a snapshot fits.
TEST(AnnouncedDirectoryCaps, AnOverflowedPeerIsAskedForTargetsTheDirectoryDoesNotKnow) {
    announced_directory d;
    d.set_limits({.max_peer_users = 2, .max_peer_rooms = 10});
    d.apply_presence("gw3", false, {{true, "carol@example.com"}});
    d.apply_presence("gw2", true, entries("user", 3));  // user2@ refused
    EXPECT_EQ(user(d, "user2@example.com"), (peer_list{"gw2"}));
    EXPECT_EQ(user(d, "nobody@example.com"), (peer_list{"gw2"}));
    EXPECT_EQ(user(d, "carol@example.com"), (peer_list{"gw2", "gw3"}));
    EXPECT_EQ(user(d, "user0@example.com"), (peer_list{"gw2"}));  // listed once
    EXPECT_TRUE(room(d, "#general").empty());                     // only the overflowed kind
    // A snapshot that fits ends the overflow.
    d.apply_presence("gw2", true, entries("user", 2));
    EXPECT_FALSE(d.overflowed("gw2", proto::target_kind::user));
    EXPECT_TRUE(user(d, "nobody@example.com").empty());
    EXPECT_EQ(user(d, "carol@example.com"), (peer_list{"gw3"}));
    // So does the end of its link.
    d.apply_presence("gw2", false, entries("more", 1));
    EXPECT_TRUE(d.overflowed("gw2", proto::target_kind::user));
    d.drop_peer("gw2");
    EXPECT_FALSE(d.overflowed("gw2", proto::target_kind::user));
    EXPECT_TRUE(user(d, "nobody@example.com").empty());
}

// The issue: a peer's million entries were not given back when its link closed. The entries
// go, and so does the bucket array that held them.
TEST(AnnouncedDirectoryCaps, ADroppedPeerGivesItsEntriesAndBucketsBack) {
    announced_directory d;
    d.apply_presence("gw3", false, entries("stays", 10));
    d.apply_rooms("gw3", false, entries("#stays", 10));
    const size_t buckets_before = d.bucket_count();
    d.apply_presence("gw2", true, entries("flood", 100000));
    d.apply_rooms("gw2", true, entries("#flood", 50000));
    ASSERT_EQ(d.user_entries(), 100010u);
    ASSERT_GT(d.bucket_count(), 150000u);
    d.drop_peer("gw2");
    EXPECT_EQ(d.user_entries(), 10u);
    EXPECT_EQ(d.room_entries(), 10u);
    EXPECT_EQ(d.user_locations(), 10u);
    EXPECT_EQ(d.peer_entries("gw2", proto::target_kind::user), 0u);
    EXPECT_LE(d.bucket_count(), 4 * buckets_before + 64);
    EXPECT_EQ(user(d, "stays3@example.com"), (peer_list{"gw3"}));
    // A snapshot that replaces a big one shrinks too.
    d.apply_presence("gw3", true, entries("flood", 100000));
    d.apply_presence("gw3", true, entries("small", 5));
    EXPECT_EQ(d.user_entries(), 5u);
    EXPECT_LE(d.bucket_count(), 4 * buckets_before + 64);
}

namespace {

frame presence_frame(bool reset, const std::vector<rpc::delta>& changes) {
    rpc::presence_msg m;
    m.reset = reset;
    m.changes = changes;
    return test::rpc_frames_of(rpc::encode(m)).at(0);
}

}  // namespace

// The path a peer's PRESENCE takes (peer_service, socket-free): the cap from cluster_rpc, the
// refused entries counted, the per-peer gauges, and the gauges back at 0 once the link's entries
// are dropped.
TEST(AnnouncedDirectoryCaps, PeerServiceAppliesTheConfiguredCapAndPublishesMetrics) {
    boost::asio::io_context io;
    fleet_config fleet = imgate::test::cluster_fleet({{"gw1", 1}, {"gw2", 1}});
    rpc_config cfg;
    cfg.max_peer_users = 4;
    cfg.max_peer_rooms = 1;
    no_local local;
    metrics_registry reg;
    cluster_context ctx(io, fleet, "gw1", "peer-service-test-secret", cfg, local, reg);
    const std::string refused_users = "imgate_rpc_directory_refused_total{kind=\"user\"}";
    const std::string entries_users = "imgate_rpc_directory_entries{kind=\"user\",peer=\"gw2\"}";
    const std::string overflowed_users =
        "imgate_rpc_directory_overflowed{kind=\"user\",peer=\"gw2\"}";
    // Registered at 0 before anything happens (an increase() alert needs the first sample).
    EXPECT_EQ(sample(reg, refused_users), 0);
    EXPECT_EQ(sample(reg, entries_users), 0);
    announced_directory dir;
    {
        peer_service svc(ctx, dir, "gw2");
        std::string reply;
        EXPECT_EQ(svc.on_frame(presence_frame(true, entries("ana", 10)), reply), verdict::more);
        EXPECT_TRUE(reply.empty());
        EXPECT_EQ(dir.user_entries(), 4u);
        EXPECT_EQ(sample(reg, refused_users), 6);
        EXPECT_EQ(sample(reg, entries_users), 4);
        EXPECT_EQ(sample(reg, overflowed_users), 1);
        EXPECT_EQ(sample(reg, "imgate_rpc_directory_users"), 4);
        EXPECT_EQ(ctx.users_count.load(), 4u);
        // Flooding on: each frame is counted, nothing more stored, the link kept.
        for (int i = 0; i < 50; ++i)
            ASSERT_EQ(
                svc.on_frame(presence_frame(false, entries("more" + std::to_string(i), 20)), reply),
                verdict::more);
        EXPECT_EQ(sample(reg, refused_users), 6 + 50 * 20);
        EXPECT_EQ(dir.user_entries(), 4u);
        // The link ends: inbound_side drops the peer's entries before the service goes.
        dir.drop_peer("gw2");
    }
    EXPECT_EQ(sample(reg, entries_users), 0);
    EXPECT_EQ(sample(reg, overflowed_users), 0);
}

TEST(AnnouncedDirectoryCaps, CapsAreReadFromClusterRpcWithDefaultsAndBounds) {
    auto parse = [](const std::string& text) {
        YAML::Node doc = YAML::Load(text);
        return parse_rpc_config(yaml_map(doc, "gateway.yaml").map("cluster_rpc"));
    };
    auto d = parse("cluster_rpc: {}\n");
    EXPECT_EQ(d.max_peer_users, 500000u);
    EXPECT_EQ(d.max_peer_rooms, 500000u);
    auto c = parse("cluster_rpc: {max_peer_users: 120000, max_peer_rooms: 3000}\n");
    EXPECT_EQ(c.max_peer_users, 120000u);
    EXPECT_EQ(c.max_peer_rooms, 3000u);
    for (auto bad :
         {"cluster_rpc: {max_peer_users: 0}\n", "cluster_rpc: {max_peer_rooms: -5}\n",
          "cluster_rpc: {max_peer_users: 10000001}\n", "cluster_rpc: {max_peer_rooms: many}\n"})
        EXPECT_THROW(parse(bad), config_error) << bad;
}
