#include <gtest/gtest.h>

#include <algorithm>

#include "fake_session_sink.hpp"
#include "gateway/hub.hpp"

using namespace imgate::gw;

namespace {

using imgate::test::fake_session;

std::shared_ptr<fake_session> mk(uint64_t id, std::string u, std::string d = "") {
    return std::make_shared<fake_session>(id, std::move(u), std::move(d));
}

}  // namespace

TEST(Hub, FirstAndLastSessionOfAUser) {
    hub h;
    auto a1 = mk(1, "alice", "phone");
    auto a2 = mk(2, "alice", "laptop");
    auto r1 = h.add(a1);
    EXPECT_TRUE(r1.first_of_user);
    EXPECT_FALSE(r1.replaced);
    auto r2 = h.add(a2);
    EXPECT_FALSE(r2.first_of_user);
    EXPECT_FALSE(r2.replaced);
    EXPECT_EQ(h.session_count(), 2u);
    EXPECT_EQ(h.user_count(), 1u);

    auto f = std::make_shared<const std::string>("x");
    size_t n = h.for_user("alice", [&](session_sink& s) { s.push_frame(f); });
    EXPECT_EQ(n, 2u);
    EXPECT_EQ(a1->frames.size(), 1u);
    EXPECT_EQ(a2->frames.size(), 1u);

    auto rm1 = h.remove(1);
    EXPECT_TRUE(rm1.removed);
    EXPECT_FALSE(rm1.last_of_user);
    auto rm2 = h.remove(2);
    EXPECT_TRUE(rm2.last_of_user);
    EXPECT_EQ(h.user_count(), 0u);
    EXPECT_FALSE(h.remove(2).removed);  // idempotent
    EXPECT_EQ(h.for_user("alice", [](session_sink&) {}), 0u);
}

TEST(Hub, SameUserAndDeviceReplacesAndCleansRooms) {
    hub h;
    auto old = mk(1, "bob", "phone");
    h.add(old);
    ASSERT_EQ(h.join(1, "lobby", 10).status, hub::join_status::ok);
    auto fresh = mk(2, "bob", "phone");
    auto r = h.add(fresh);
    ASSERT_TRUE(r.replaced);
    EXPECT_EQ(r.replaced->session_id(), 1u);
    EXPECT_FALSE(r.first_of_user);  // the user never went offline
    ASSERT_EQ(r.replaced_rooms_emptied.size(), 1u);
    EXPECT_EQ(r.replaced_rooms_emptied[0], "lobby");
    EXPECT_EQ(h.session_count(), 1u);
    EXPECT_EQ(h.room_count(), 0u);
    // The replaced session's own close must not unregister the new one.
    EXPECT_FALSE(h.remove(1).removed);
    EXPECT_EQ(h.find(2), fresh);
}

TEST(Hub, DifferentDevicesCoexist) {
    hub h;
    h.add(mk(1, "bob", "phone"));
    auto r = h.add(mk(2, "bob", "tablet"));
    EXPECT_FALSE(r.replaced);
    EXPECT_EQ(h.session_count(), 2u);
}

TEST(Hub, RoomsJoinLeaveAndReachExcludesSender) {
    hub h;
    auto a = mk(1, "a"), b = mk(2, "b"), c = mk(3, "c");
    h.add(a);
    h.add(b);
    h.add(c);
    auto j1 = h.join(1, "r", 10);
    EXPECT_TRUE(j1.first_member);
    EXPECT_FALSE(h.join(2, "r", 10).first_member);
    EXPECT_EQ(h.join(2, "r", 10).status, hub::join_status::already_member);
    h.join(3, "r", 10);
    size_t n = h.for_room("r", 1, [](session_sink&) {});
    EXPECT_EQ(n, 2u);
    EXPECT_EQ(h.for_room("r", 0, [](session_sink&) {}), 3u);
    EXPECT_EQ(h.for_room("nobody", 0, [](session_sink&) {}), 0u);

    EXPECT_FALSE(h.leave(1, "other").was_member);
    auto l1 = h.leave(1, "r");
    EXPECT_TRUE(l1.was_member);
    EXPECT_FALSE(l1.last_member);
    h.leave(2, "r");
    auto rm = h.remove(3);
    ASSERT_EQ(rm.rooms_emptied.size(), 1u);
    EXPECT_EQ(h.room_count(), 0u);
}

TEST(Hub, MaxRoomsPerSession) {
    hub h;
    h.add(mk(1, "a"));
    EXPECT_EQ(h.join(1, "r1", 2).status, hub::join_status::ok);
    EXPECT_EQ(h.join(1, "r2", 2).status, hub::join_status::ok);
    EXPECT_EQ(h.join(1, "r3", 2).status, hub::join_status::too_many_rooms);
    EXPECT_EQ(h.join(99, "r1", 2).status, hub::join_status::unknown_session);
    auto rooms = h.rooms_of(1);
    std::sort(rooms.begin(), rooms.end());
    EXPECT_EQ(rooms, (std::vector<std::string>{"r1", "r2"}));
}

TEST(Hub, SnapshotsForPresenceAnnouncements) {
    hub h;
    h.add(mk(1, "a"));
    h.add(mk(2, "b"));
    h.join(2, "room", 4);
    auto users = h.users();
    std::sort(users.begin(), users.end());
    EXPECT_EQ(users, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(h.rooms(), std::vector<std::string>{"room"});
    EXPECT_EQ(h.all_sessions().size(), 2u);
}

TEST(Hub, AUserOutlivesTheSessionWhoseIdItsIndexViewed) {
    // The user index holds no copy of the id: it views the first session's. Long ids (no
    // small-string storage) so a dangling view would read freed memory (the sanitizer builds).
    hub h;
    const std::string user = "zoë.ångström-long-address@example.org";
    auto a = mk(1, user, "phone"), b = mk(2, user, "laptop"), c = mk(3, user, "tablet");
    h.add(a);
    h.add(b);
    h.add(c);
    std::vector<uint64_t> seen;
    EXPECT_EQ(h.for_user(user, [&](session_sink& s) { seen.push_back(s.session_id()); }), 3u);
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3}));

    auto r = h.remove(1);  // the session whose id the index viewed
    EXPECT_TRUE(r.removed);
    EXPECT_FALSE(r.last_of_user);
    EXPECT_EQ(r.user_sessions, 2u);
    a.reset();  // its string is gone now
    EXPECT_EQ(h.user_session_count(user), 2u);
    EXPECT_EQ(h.users(), std::vector<std::string>{user});
    seen.clear();
    h.for_user(user, [&](session_sink& s) { seen.push_back(s.session_id()); });
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (std::vector<uint64_t>{2, 3}));

    // Replacing a device (same user and device) also moves the view off the replaced session.
    auto b2 = mk(4, user, "laptop");
    auto add = h.add(b2);
    EXPECT_EQ(add.replaced, b);
    EXPECT_EQ(add.user_sessions, 2u);
    b.reset();
    h.remove(3);
    c.reset();
    EXPECT_EQ(h.user_session_count(user), 1u);
    seen.clear();
    h.for_user(user, [&](session_sink& s) { seen.push_back(s.session_id()); });
    EXPECT_EQ(seen, std::vector<uint64_t>{4});
    auto last = h.remove(4);
    EXPECT_TRUE(last.last_of_user);
    EXPECT_EQ(h.user_count(), 0u);
    EXPECT_EQ(h.user_session_count(user), 0u);
}

TEST(Hub, ASessionInNoRoomKeepsNoRoomList) {
    hub h;
    auto a = mk(1, "алиса@example.org", "phone");
    h.add(a);
    EXPECT_TRUE(h.rooms_of(1).empty());
    EXPECT_EQ(h.join(1, "kitchen", 2).status, hub::join_status::ok);
    EXPECT_EQ(h.join(1, "kitchen", 2).status, hub::join_status::already_member);
    EXPECT_EQ(h.rooms_of(1), std::vector<std::string>{"kitchen"});
    EXPECT_TRUE(h.leave(1, "kitchen").was_member);
    EXPECT_FALSE(h.leave(1, "kitchen").was_member);
    EXPECT_TRUE(h.rooms_of(1).empty());
    EXPECT_EQ(h.join(1, "garden", 0).status, hub::join_status::too_many_rooms);
    EXPECT_TRUE(h.rooms_of(1).empty());
    EXPECT_EQ(h.room_count(), 0u);
}
