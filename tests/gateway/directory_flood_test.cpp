// Issue 12 item 3: a peer holding the cluster secret floods this gateway's directory. In-process
// rpc_cluster nodes on loopback (their own io threads, a fake local_delivery), and a raw peer that
// does the real handshake with the secret and then writes PRESENCE frames of its own making.
#include <gtest/gtest.h>

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "../support/process.hpp"
#include "../support/raw_conn.hpp"
#include "cluster_node.hpp"
#include "fake_local.hpp"
#include "gateway/rpc_cluster.hpp"
#include "gateway/rpc_handshake.hpp"
#include "gateway/rpc_wire.hpp"

using namespace imgate;
using namespace imgate::gw;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using imgate::gw::test_support::fake_local;

namespace {

const std::string secret = "directory-flood-test-cluster-secret";

// Flooding 100k entries through a sanitizer build takes a while: a longer default wait.
bool eventually(const std::function<bool()>& cond) {
    return test::eventually(cond, 10s);
}

fleet_config make_fleet(const std::map<std::string, uint16_t>& ports) {
    return test::cluster_fleet(ports);
}

rpc_config capped_config(uint32_t max_users) {
    rpc_config c;
    c.call_timeout = 1000ms;
    c.connect_timeout = 500ms;
    c.ping_interval = 500ms;
    c.peer_timeout = 30000ms;  // the raw peer never pings: no read deadline mid-test
    c.backoff_min = 20ms;
    c.backoff_max = 200ms;
    c.max_peer_users = max_users;
    return c;
}

// One gateway's cluster layer with its own io thread and metrics, holding the cluster secret.
struct node : test::cluster_node<fake_local> {
    node(const fleet_config& fleet, const std::string& id, rpc_config cfg)
        : cluster_node(fleet, id, secret, cfg) {}
};

// A peer made of bytes: the connector side of the real handshake, then whatever frames the test
// writes. Holds the cluster secret, as the attacker does.
class raw_peer {
  public:
    bool connect(uint16_t port, const std::string& self_id, const std::string& acceptor_id) {
        if (!conn_.connect("127.0.0.1:" + std::to_string(port))) return false;
        rpc::connector_handshake hs(self_id, acceptor_id, secret, rpc::random_nonce());
        if (!conn_.send(hs.hello())) return false;
        size_t used = 0;
        auto deadline = std::chrono::steady_clock::now() + 5s;
        while (std::chrono::steady_clock::now() < deadline) {
            conn_.pump();
            auto fs = conn_.frames(rpc_protocol_version);
            for (; used < fs.size(); ++used) {
                auto step = hs.on_frame(fs[used]);
                if (!step.out.empty() && !conn_.send(step.out)) return false;
                if (step.st == rpc::hs_step::state::ok) return true;
                if (step.st == rpc::hs_step::state::failed) return false;
            }
            if (conn_.is_closed()) return false;
            std::this_thread::sleep_for(2ms);
        }
        return false;
    }
    bool send_presence(bool reset, const std::string& prefix, size_t from, size_t n) {
        rpc::presence_msg m;
        m.reset = reset;
        m.changes.reserve(n);
        for (size_t i = from; i < from + n; ++i)
            m.changes.push_back({true, prefix + std::to_string(i) + "@example.com"});
        return conn_.send(rpc::encode(m), 5000ms);
    }
    void close() { conn_.close(); }

  private:
    test::raw_conn conn_;
};

// Resident set of this process, in bytes (/proc/self/statm, second field, in pages).
size_t rss_bytes() {
    std::ifstream in("/proc/self/statm");
    size_t size = 0, resident = 0;
    in >> size >> resident;
    return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

// gw2 (a raw peer with the secret) announces 5× gw1's cap in 2000-entry frames, as fast as
// loopback takes them. gw1 stores exactly the cap, counts the rest, keeps the link, answers sends
// to users it never recorded by asking gw2, and gives everything back when the link closes.
TEST(DirectoryFlood, PeerPastItsCapIsBoundedCountedAndFreedOnClose) {
    constexpr uint32_t cap = 100000;
    constexpr size_t flood = 5 * cap;
    constexpr size_t per_frame = rpc::snapshot_chunk;
    // gw2 never listens (port 1): gw1's own link to it stays down, so a forward to gw2 fails.
    node gw1(make_fleet({{"gw1", 0}, {"gw2", 1}}), "gw1", capped_config(cap));
    ASSERT_TRUE(eventually([&] { return gw1.cluster->rpc_port() != 0; }));
    const size_t rss_before = rss_bytes();

    raw_peer gw2;
    ASSERT_TRUE(gw2.connect(gw1.cluster->rpc_port(), "gw2", "gw1"));
    ASSERT_TRUE(eventually([&] { return gw1.cluster->inbound_up() == 1; }));
    const auto started = std::chrono::steady_clock::now();
    for (size_t i = 0; i < flood; i += per_frame) {
        ASSERT_TRUE(gw2.send_presence(i == 0, "flood-user-", i, per_frame)) << "at entry " << i;
        ASSERT_LT(std::chrono::steady_clock::now() - started, 60s) << "flood took too long";
    }
    const std::string refused = "imgate_rpc_directory_refused_total{kind=\"user\"}";
    ASSERT_TRUE(eventually([&] { return gw1.metric(refused) == double(flood - cap); }))
        << gw1.metric(refused);
    EXPECT_EQ(gw1.cluster->directory_users(), cap);
    EXPECT_EQ(gw1.metric("imgate_rpc_directory_entries{kind=\"user\",peer=\"gw2\"}"), cap);
    EXPECT_EQ(gw1.metric("imgate_rpc_directory_overflowed{kind=\"user\",peer=\"gw2\"}"), 1);
    EXPECT_EQ(gw1.metric("imgate_rpc_directory_refused_total{kind=\"room\"}"), 0);
    EXPECT_EQ(gw1.cluster->inbound_up(), 1u) << "the link is kept";
    EXPECT_EQ(gw1.metric("imgate_rpc_protocol_errors_total"), 0);
    const size_t rss_full = rss_bytes();
    // 100k entries are ~15 MB; the 500k announced would be ~75 MB more. Generous bound.
    if (test::rss_is_meaningful)
        EXPECT_LT(rss_full, rss_before + 60 * 1024 * 1024)
            << "before " << rss_before << " full " << rss_full;

    // A recorded user goes to gw2; so does one whose entry was refused (only gw2 knows it), which
    // is unavailable here because gw1's own link to gw2 is down — not a false "offline".
    EXPECT_EQ(gw1.cluster->lookup(proto::target_kind::user, "flood-user-7@example.com"),
              peer_list{"gw2"});
    EXPECT_EQ(gw1.cluster->lookup(proto::target_kind::user, "flood-user-499999@example.com"),
              peer_list{"gw2"});
    EXPECT_EQ(gw1.forward_sync("flood-user-499999@example.com").status, proto::code::unavailable);

    gw2.close();
    ASSERT_TRUE(eventually([&] { return gw1.cluster->inbound_up() == 0; }));
    ASSERT_TRUE(eventually([&] { return gw1.cluster->directory_users() == 0; }));
    EXPECT_TRUE(eventually([&] {
        return gw1.metric("imgate_rpc_directory_entries{kind=\"user\",peer=\"gw2\"}") == 0 &&
               gw1.metric("imgate_rpc_directory_overflowed{kind=\"user\",peer=\"gw2\"}") == 0;
    }));
    EXPECT_TRUE(gw1.cluster->lookup(proto::target_kind::user, "flood-user-7@example.com").empty());
    EXPECT_EQ(gw1.forward_sync("flood-user-499999@example.com").status, proto::code::offline);
    const size_t rss_after = rss_bytes();
    std::printf("[ rss ] before %zu KiB, %u entries %zu KiB, after close %zu KiB\n",
                rss_before / 1024, cap, rss_full / 1024, rss_after / 1024);
    // Most of what the entries took is given back to the system.
    if (test::rss_is_meaningful)
        EXPECT_LT(rss_after, rss_before + (rss_full - rss_before) / 2 + 4 * 1024 * 1024)
            << "before " << rss_before << " full " << rss_full << " after " << rss_after;
}

// Two real nodes: gw1 holds at most 20 of gw2's users. Sends to users past the cap still reach
// them (gw2 answers for itself); a user nobody holds is offline, as gw2 says.
TEST(DirectoryFlood, SendsToUsersPastTheCapAreAskedOfTheOverflowedPeer) {
    auto unbound = make_fleet({{"gw1", 0}, {"gw2", 0}});
    node gw1(unbound, "gw1", capped_config(20));
    node gw2(unbound, "gw2", capped_config(20));
    auto fleet = make_fleet({{"gw1", gw1.cluster->rpc_port()}, {"gw2", gw2.cluster->rpc_port()}});
    {
        std::lock_guard lk(gw2.local.mu);
        for (int i = 0; i < 50; ++i)
            gw2.local.users.insert("zoë" + std::to_string(i) + "@example.com");
    }
    gw1.cluster->reload(fleet);
    gw2.cluster->reload(fleet);
    ASSERT_TRUE(eventually([&] {
        return gw1.cluster->links_up() == 1 && gw1.cluster->inbound_up() == 1 &&
               gw2.cluster->links_up() == 1;
    }));
    // gw2's link-up snapshot carried its 50 users.
    ASSERT_TRUE(eventually([&] { return gw1.cluster->directory_users() == 20; }));
    ASSERT_TRUE(eventually(
        [&] { return gw1.metric("imgate_rpc_directory_refused_total{kind=\"user\"}") == 30; }));
    size_t delivered = 0;
    for (int i = 0; i < 50; ++i) {
        auto r = gw1.forward_sync("zoë" + std::to_string(i) + "@example.com");
        EXPECT_EQ(r.status, proto::code::ok) << i;
        delivered += r.reached;
    }
    EXPECT_EQ(delivered, 50u);
    EXPECT_EQ(gw1.forward_sync("nobody@example.com").status, proto::code::offline);
    // gw2 stops: its entries and its overflow go with the link; nothing is asked of it any more.
    gw2.cluster->stop();  // closes its links: gw1 reads EOF
    ASSERT_TRUE(eventually([&] { return gw1.cluster->directory_users() == 0; }));
    EXPECT_TRUE(gw1.cluster->lookup(proto::target_kind::user, "zoë40@example.com").empty());
}
