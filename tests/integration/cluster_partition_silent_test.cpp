// Issue 15, fault b, with real gateway processes: a peer that goes silent (SIGSTOP: its sockets
// stay open and nothing comes out, as with a host behind a partition) has its users held by the
// other gateway for cluster_rpc.unreachable_hold. Sends to them answer timeout/unavailable —
// never offline — while held, offline after the hold; when the peer is back its snapshot
// replaces the held entries and sends are delivered again. A killed peer (the kernel closes its
// sockets) is offline at once, as before. The real partition in network namespaces is tested
// elsewhere; this needs none.
#include <gtest/gtest.h>
#include <signal.h>

#include "fault_fixture.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace imgate::test::fault;
using namespace std::chrono_literals;
namespace proto = imgate::proto;

namespace {

// Fast watchdog timings, so a silent peer is noticed within a second.
const std::string fast_pings = "  ping_interval: 250ms\n  peer_timeout: 1s\n";
// A kill while the victim has unread bytes in a socket (a PONG just arrived) makes its kernel
// send a reset instead of a FIN, which is held like any unknown end. The kill test wants the
// clean close every idle link gives, so its links carry no pings in the few seconds it runs.
const std::string quiet_pings = "  ping_interval: 10s\n  peer_timeout: 30s\n";

std::string rpc_yaml(const std::string& hold, const std::string& pings) {
    return "cluster_rpc:\n  call_timeout: 1s\n  connect_timeout: 500ms\n" + pings +
           "  backoff_min: 50ms\n  backoff_max: 300ms\n  unreachable_hold: " + hold + "\n";
}

const std::string alice = "alice@example.com";  // on gw1
const std::string bob = "böb@example.com";      // on gw2

// gw1 and gw2 in a mesh, alice on gw1 and bob on gw2, and gw1 knows where bob is.
struct two_gateways {
    two_gateways(const std::string& hold, const std::string& pings)
        : f(fleet::options{.gateways = 2, .cluster = true, .gateway_yaml = rpc_yaml(hold, pings)}) {
    }

    bool up() {
        if (!f.start() || !f.mesh_up()) return false;
        a = f.client("gw1", alice);
        b = f.client("gw2", bob);
        if (!a || !b) return false;
        return eventually([&] { return users_known() == 1; });
    }
    // Sends alice -> bob and returns the SEND_RESULT status (internal: no result at all).
    proto::code send(const std::string& text) {
        if (!a->send(proto::send_msg{proto::target_kind::user, bob, ++cid, text}))
            return proto::code::internal;
        for (;;) {
            auto r = a->read<proto::send_result_msg>(5s);
            if (!r) return proto::code::internal;
            if (r->client_msg_id == cid) return r->status;
        }
    }
    bool bob_reads(const std::string& text) {
        for (;;) {
            auto d = b->read<proto::deliver_msg>(3s);
            if (!d) return false;
            if (d->payload == text) return true;
        }
    }
    double held() {
        return f.gw_metric("gw1", R"(imgate_rpc_directory_held{kind="user",peer="gw2"})");
    }
    double users_known() { return f.gw_metric("gw1", "imgate_rpc_directory_users"); }

    fleet f;
    std::unique_ptr<test_client> a, b;
    uint64_t cid = 0;
};

bool failed_honestly(proto::code c) {
    return c == proto::code::unavailable || c == proto::code::timeout;
}

}  // namespace

// (i) A silent peer: timeout/unavailable and never offline while held; offline once the hold
// has run out; and once it is back, its snapshot brings bob back and he is reached again.
TEST(ClusterPartition, SilentPeerIsUnavailableWhileHeldThenOfflineThenBack) {
    two_gateways t("2s", fast_pings);
    ASSERT_TRUE(t.up());
    ASSERT_EQ(t.send("before"), proto::code::ok);
    ASSERT_TRUE(t.bob_reads("before"));

    t.f.gw("gw2").signal(SIGSTOP);
    bool held_seen = false;
    size_t honest = 0;
    proto::code last = proto::code::ok;
    // Every answer until the hold is over is an honest failure; offline only after gw1 has
    // dropped gw2's entries (the gauge is set before any send can see the empty directory).
    bool offline = eventually(
        [&] {
            last = t.send("during " + std::to_string(t.cid));
            if (last == proto::code::offline) {
                EXPECT_EQ(t.held(), 0);
                EXPECT_EQ(t.users_known(), 0);
                return true;
            }
            EXPECT_TRUE(failed_honestly(last)) << proto::to_string(last);
            ++honest;
            held_seen = held_seen || t.held() == 1;
            return false;
        },
        20s, 50ms);
    ASSERT_TRUE(offline) << "last answer " << proto::to_string(last);
    EXPECT_TRUE(held_seen) << "gw1 never reported bob's entry as held";
    EXPECT_GT(honest, 0u);
    auto log = t.f.gw("gw1").log();
    EXPECT_NE(log.find("holding its 1 users and 0 rooms"), std::string::npos) << log;
    EXPECT_NE(log.find("did not come back within cluster_rpc.unreachable_hold"), std::string::npos)
        << log;

    // gw2 wakes up: its link comes back with a snapshot, and bob is reached again.
    t.f.gw("gw2").signal(SIGCONT);
    ASSERT_TRUE(eventually([&] { return t.users_known() == 1; }, 10s));
    ASSERT_EQ(t.send("after"), proto::code::ok);
    EXPECT_TRUE(t.bob_reads("after"));
}

// (iii) The silent peer comes back within the hold: the held entry is replaced by its
// snapshot (not dropped), and sends are delivered again.
TEST(ClusterPartition, SilentPeerBackWithinTheHoldIsReachedAgain) {
    two_gateways t("60s", fast_pings);
    ASSERT_TRUE(t.up());
    t.f.gw("gw2").signal(SIGSTOP);
    ASSERT_TRUE(eventually([&] { return t.held() == 1; }, 10s));
    auto during = t.send("during");
    EXPECT_TRUE(failed_honestly(during)) << proto::to_string(during);
    t.f.gw("gw2").signal(SIGCONT);
    ASSERT_TRUE(eventually([&] { return t.held() == 0; }, 10s));
    EXPECT_EQ(t.users_known(), 1);
    EXPECT_NE(t.f.gw("gw1").log().find("is back; its 1 held users"), std::string::npos);
    std::string text;
    auto delivered = [&] {
        text = "after " + std::to_string(t.cid);
        return t.send(text) == proto::code::ok;
    };
    ASSERT_TRUE(eventually(delivered, 5s));
    EXPECT_TRUE(t.bob_reads(text));
}

// (ii) A killed peer's kernel closes its sockets: gw1 reads EOF, and bob, whose session died
// with it, is offline at once — not after a 60 s hold.
TEST(ClusterPartition, KilledPeerIsOfflineAtOnce) {
    two_gateways t("60s", quiet_pings);
    ASSERT_TRUE(t.up());
    t.f.gw("gw2").signal(SIGKILL);
    ASSERT_TRUE(t.f.gw("gw2").wait_exit());
    ASSERT_TRUE(eventually([&] { return t.users_known() == 0; }, 5s));
    EXPECT_EQ(t.held(), 0);
    EXPECT_EQ(t.send("to the dead"), proto::code::offline);
}
