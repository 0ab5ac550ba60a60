#include <gtest/gtest.h>

#include <algorithm>

#include "gateway/directory.hpp"

using namespace imgate;
using namespace imgate::gw;

namespace {

peer_list sorted(announced_directory& d, proto::target_kind k, const std::string& t) {
    peer_list out;
    d.resolve(k, t, [&](const peer_list& p) { out = p; });
    std::sort(out.begin(), out.end());
    return out;
}

peer_list user(announced_directory& d, const std::string& u) {
    return sorted(d, proto::target_kind::user, u);
}

peer_list room(announced_directory& d, const std::string& r) {
    return sorted(d, proto::target_kind::room, r);
}

}  // namespace

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
