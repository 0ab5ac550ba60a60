// Three real imgate-gateway processes forming one fleet on loopback: cross-node 1:1 delivery with
// receipts, several devices on several gateways, rooms spanning every gateway, users moving
// between gateways, a gateway killed during traffic, and a gateway with the wrong cluster secret.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "../support/process.hpp"
#include "../support/test_client.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace std::chrono_literals;
using testing_client = imgate::test::test_client;

namespace {

const std::string token_secret = "cluster-test-token-secret-0123456789";
const std::string cluster_secret = "cluster-test-rpc-secret-0123456789";
const std::string admin_token = "cluster-test-admin-token";

// A fleet of N gateways sharing one fleet.yaml in a temp dir; each gateway is a real process.
class fleet_under_test {
  public:
    static constexpr const char* default_timers =
        "  call_timeout: 1s\n  connect_timeout: 500ms\n  ping_interval: 500ms\n"
        "  peer_timeout: 2s\n  backoff_min: 50ms\n  backoff_max: 500ms\n";

    explicit fleet_under_test(std::vector<std::string> ids, const std::string& rpc_extra = "",
                              const std::string& rpc_timers = default_timers)
        : ids_(std::move(ids)) {
        write_secret_file(dir_.file("token.secret"), token_secret + "\n");
        write_secret_file(dir_.file("cluster.secret"), cluster_secret + "\n");
        write_secret_file(dir_.file("wrong.secret"), "a-completely-different-secret-xyz\n");
        write_secret_file(dir_.file("admin.token"), admin_token + "\n");
        for (auto& id : ids_) rpc_ports_[id] = free_port();
        write_fleet("fleet.yaml", "cluster.secret");
        write_fleet("fleet-wrong.yaml", "wrong.secret");
        for (auto fleet : {"fleet.yaml", "fleet-wrong.yaml"}) {
            std::string name =
                std::string(fleet) == "fleet.yaml" ? "gateway.yaml" : "gateway-wrong.yaml";
            write_file(dir_.file(name),
                       std::string("fleet: ") + fleet +
                           "\n"
                           "workers: 1\n"
                           "auth:\n  secret_files: [token.secret]\n"
                           "admin:\n  token_file: admin.token\n"
                           "limits:\n  max_connections: 1000\n  send_rate: 100000\n"
                           "  send_burst: 100000\n"
                           "log:\n  level: info\n"
                           "cluster_rpc:\n" +
                           rpc_timers + rpc_extra);
        }
    }

    // Rewrites fleet.yaml with only these gateways (for SIGHUP tests).
    void rewrite_fleet(const std::vector<std::string>& ids) {
        auto all = ids_;
        ids_ = ids;
        write_fleet("fleet.yaml", "cluster.secret");
        ids_ = all;
    }

    // Starts gateway id (with the wrong cluster secret when asked) and waits for its ready file.
    bool start(const std::string& id, bool wrong_secret = false) {
        auto cfg = dir_.file(wrong_secret ? "gateway-wrong.yaml" : "gateway.yaml");
        procs_[id] = std::make_unique<daemon_process>(
            id, binary_path("imgate-gateway"),
            std::vector<std::string>{"--config", cfg, "--id", id}, dir_);
        return procs_[id]->wait_ready();
    }
    // Starts every gateway. A port picked by free_port() can be taken by someone else before
    // the gateway binds it; then everything is restarted on fresh ports (at most 3 attempts).
    bool start_all() {
        for (int attempt = 0; attempt < 3; ++attempt) {
            bool ok = true;
            for (auto& id : ids_)
                if (!(ok = start(id))) {
                    last_failure_ = proc(id).log();
                    break;
                }
            if (ok) return true;
            procs_.clear();  // kills and reaps
            for (auto& id : ids_) rpc_ports_[id] = free_port();
            write_fleet("fleet.yaml", "cluster.secret");
            write_fleet("fleet-wrong.yaml", "wrong.secret");
        }
        ADD_FAILURE() << "gateways did not start; last log:\n" << last_failure_;
        return false;
    }
    daemon_process& proc(const std::string& id) { return *procs_.at(id); }
    void kill(const std::string& id) {
        procs_.at(id)->signal(SIGKILL);
        procs_.at(id)->wait_exit();
    }

    // Sum of the /metrics samples whose line starts with series (name, optionally with labels).
    double metric(const std::string& id, const std::string& series) {
        auto body = http_get(proc(id).addr("admin"), "/metrics").body;
        std::istringstream in(body);
        std::string line;
        double sum = 0;
        bool found = false;
        while (std::getline(in, line)) {
            if (line.rfind(series, 0) != 0) continue;
            auto sp = line.rfind(' ');
            sum += std::stod(line.substr(sp + 1));
            found = true;
        }
        return found ? sum : -1;
    }
    // Every running gateway has an authenticated link to and from each other running one.
    bool mesh_up(size_t peers) {
        return eventually(
            [&] {
                for (auto& [id, p] : procs_) {
                    if (!p->running()) continue;
                    if (metric(id, "imgate_rpc_links_up") != double(peers)) return false;
                    if (metric(id, "imgate_rpc_inbound_links") != double(peers)) return false;
                }
                return true;
            },
            10s);
    }
    bool wait_metric(const std::string& id, const std::string& series, double value) {
        return eventually([&] { return metric(id, series) == value; }, 5s);
    }

    std::unique_ptr<testing_client> client(const std::string& gw, const std::string& user,
                                           const std::string& device = "d1") {
        auto c = std::make_unique<testing_client>();
        if (!c->connect(proc(gw).addr("client"))) return nullptr;
        if (!c->login(imgate::test::make_token(token_secret, user, device))) return nullptr;
        return c;
    }
    // Sum over the peer links of every running gateway: handshakes, and closes by reason.
    double fleet_sum(const std::string& series) {
        double sum = 0;
        for (auto& [id, p] : procs_)
            if (p->running()) sum += std::max(0.0, metric(id, series));
        return sum;
    }
    // No link of the mesh was closed, refused or re-established since `connects` handshakes,
    // and no entry a peer sent was skipped.
    void expect_mesh_untouched(double connects) {
        EXPECT_EQ(fleet_sum("imgate_rpc_links_closed_total"), 0);
        EXPECT_EQ(fleet_sum("imgate_rpc_link_connects_total"), connects);
        EXPECT_EQ(fleet_sum("imgate_rpc_protocol_errors_total"), 0);
        EXPECT_EQ(fleet_sum("imgate_rpc_entries_skipped_total"), 0);
    }

  private:
    void write_fleet(const std::string& name, const std::string& secret_file) {
        std::string y = "cluster:\n  secret_file: " + secret_file + "\ngateways:\n";
        for (auto& id : ids_)
            y += "  - id: " + id +
                 "\n    client: 127.0.0.1:0\n    admin: 127.0.0.1:0\n    rpc: 127.0.0.1:" +
                 std::to_string(rpc_ports_[id]) + "\n";
        write_file(dir_.file(name), y);
    }

    temp_dir dir_;
    std::vector<std::string> ids_;
    std::map<std::string, uint16_t> rpc_ports_;
    std::map<std::string, std::unique_ptr<daemon_process>> procs_;
    std::string last_failure_;
};

std::optional<proto::send_result_msg> send_to(testing_client& c, proto::target_kind kind,
                                              const std::string& to, uint64_t cid,
                                              const std::string& text) {
    if (!c.send(proto::send_msg{kind, to, cid, text})) return std::nullopt;
    return c.read<proto::send_result_msg>();
}

// Reads every DELIVER until `quiet` passes without one; returns their payloads.
std::vector<std::string> drain_delivers(testing_client& c,
                                        std::chrono::milliseconds quiet = 300ms) {
    std::vector<std::string> out;
    while (auto d = c.read<proto::deliver_msg>(quiet)) out.push_back(d->payload);
    return out;
}

}  // namespace

TEST(ClusterFleet, OneToOneAcrossGatewaysDeliveredWithReceipt) {
    fleet_under_test f({"gw1", "gw2", "gw3"});
    ASSERT_TRUE(f.start_all());
    ASSERT_TRUE(f.mesh_up(2));
    auto alice = f.client("gw1", "alice");
    auto bob = f.client("gw3", "bob");
    ASSERT_TRUE(alice && bob);
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_user_locations", 1));

    auto r = send_to(*alice, proto::target_kind::user, "bob", 11, "hi bob");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(r->reached, 1u);
    auto d = bob->read<proto::deliver_msg>();
    ASSERT_TRUE(d);
    EXPECT_EQ(d->payload, "hi bob");
    EXPECT_EQ(d->from_user, "alice");
    EXPECT_EQ(d->server_msg_id, r->server_msg_id);

    ASSERT_TRUE(bob->send(proto::ack_msg{d->server_msg_id}));
    auto rc = alice->read<proto::receipt_msg>();
    ASSERT_TRUE(rc);
    EXPECT_EQ(rc->client_msg_id, 11u);
    EXPECT_EQ(rc->server_msg_id, r->server_msg_id);
    EXPECT_EQ(rc->user, "bob");

    // Precise routing: gw2 holds nobody and was sent nothing.
    EXPECT_EQ(f.metric("gw2", "imgate_rpc_forwards_received_total"), 0);
    EXPECT_EQ(f.metric("gw1", "imgate_rpc_forward_frames_total"), 1);

    // A user nobody holds: offline, and no frame sent.
    r = send_to(*alice, proto::target_kind::user, "nobody", 12, "x");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::offline);
    EXPECT_EQ(f.metric("gw1", "imgate_rpc_forward_frames_total"), 1);

    // POST /push on gw2 reaches bob on gw3.
    auto p = http_request(
        f.proc("gw2").addr("admin"), boost::beast::http::verb::post, "/push",
        R"({"user":"bob","payload":"pushed"})",
        {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + admin_token}});
    auto pj = p.json();
    EXPECT_EQ(pj.value("status", ""), "delivered") << p.body;
    EXPECT_EQ(pj.value("reached", 0), 1);
    auto push = bob->read<proto::push_msg>();
    ASSERT_TRUE(push);
    EXPECT_EQ(push->payload, "pushed");
}

TEST(ClusterFleet, TwoDevicesOnTwoGatewaysGetEachMessageOncePerDevice) {
    fleet_under_test f({"gw1", "gw2", "gw3"});
    ASSERT_TRUE(f.start_all());
    ASSERT_TRUE(f.mesh_up(2));
    auto alice = f.client("gw1", "alice");
    auto phone = f.client("gw2", "bob", "phone");
    auto tab = f.client("gw3", "bob", "tab");
    ASSERT_TRUE(alice && phone && tab);
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_user_locations", 2));

    const int n = 20;
    for (int i = 0; i < n; ++i) {
        auto r = send_to(*alice, proto::target_kind::user, "bob", 100 + i, "m" + std::to_string(i));
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, proto::code::ok);
        EXPECT_EQ(r->reached, 2u);
    }
    std::vector<std::string> expect;
    for (int i = 0; i < n; ++i) expect.push_back("m" + std::to_string(i));
    EXPECT_EQ(drain_delivers(*phone), expect);
    EXPECT_EQ(drain_delivers(*tab), expect);
}

TEST(ClusterFleet, RoomSpanningThreeGatewaysReachesEveryMemberOnce) {
    fleet_under_test f({"gw1", "gw2", "gw3"});
    ASSERT_TRUE(f.start_all());
    ASSERT_TRUE(f.mesh_up(2));
    std::vector<std::pair<std::string, std::string>> members{
        {"gw1", "alice"}, {"gw1", "carol"}, {"gw2", "dave"}, {"gw3", "erin"}, {"gw3", "frank"}};
    std::map<std::string, std::unique_ptr<testing_client>> c;
    for (auto& [gw, user] : members) {
        c[user] = f.client(gw, user);
        ASSERT_TRUE(c[user]);
        ASSERT_TRUE(c[user]->send(proto::join_msg{"lobby"}));
        auto rr = c[user]->read<proto::room_result_msg>();
        ASSERT_TRUE(rr);
        EXPECT_EQ(rr->status, proto::code::ok);
    }
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_room_locations", 2));
    auto r = send_to(*c["alice"], proto::target_kind::room, "lobby", 1, "hello room");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(r->reached, 4u);  // carol locally, dave, erin, frank remotely; not the sender
    for (auto user : {"carol", "dave", "erin", "frank"})
        EXPECT_EQ(drain_delivers(*c[user]), std::vector<std::string>{"hello room"}) << user;
    EXPECT_TRUE(drain_delivers(*c["alice"], 100ms).empty());
    // Once per interested gateway, not once per member.
    EXPECT_EQ(f.metric("gw1", "imgate_rpc_forward_frames_total"), 2);
    EXPECT_EQ(f.metric("gw3", "imgate_rpc_forwards_received_total"), 1);
}

TEST(ClusterFleet, UserWhoReconnectsToAnotherGatewayKeepsReceiving) {
    fleet_under_test f({"gw1", "gw2", "gw3"});
    ASSERT_TRUE(f.start_all());
    ASSERT_TRUE(f.mesh_up(2));
    auto alice = f.client("gw1", "alice");
    auto bob = f.client("gw2", "bob");
    ASSERT_TRUE(alice && bob);
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_user_locations", 1));
    auto r = send_to(*alice, proto::target_kind::user, "bob", 1, "before");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(drain_delivers(*bob), std::vector<std::string>{"before"});

    bob->close();
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_user_locations", 0));
    r = send_to(*alice, proto::target_kind::user, "bob", 2, "while away");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::offline);

    auto bob2 = f.client("gw3", "bob");
    ASSERT_TRUE(bob2);
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_user_locations", 1));
    r = send_to(*alice, proto::target_kind::user, "bob", 3, "after");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(r->reached, 1u);
    EXPECT_EQ(drain_delivers(*bob2), std::vector<std::string>{"after"});
    EXPECT_EQ(f.metric("gw2", "imgate_rpc_forwards_received_total"), 1);  // only "before"
}

TEST(ClusterFleet, PeerKilledDuringTrafficEverySendGetsAResult) {
    fleet_under_test f({"gw1", "gw2", "gw3"});
    ASSERT_TRUE(f.start_all());
    ASSERT_TRUE(f.mesh_up(2));
    auto alice = f.client("gw1", "alice");
    auto bob = f.client("gw3", "bob");
    auto carol = f.client("gw2", "carol");
    ASSERT_TRUE(alice && bob && carol);
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_user_locations", 2));

    // Pipelined sends to bob (on gw3) and carol (on gw2); gw3 is SIGKILLed half way.
    const uint64_t n = 200;
    std::map<uint64_t, proto::code> results;
    for (uint64_t i = 1; i <= n; ++i) {
        ASSERT_TRUE(alice->send(proto::send_msg{proto::target_kind::user, i % 2 ? "bob" : "carol",
                                                i, "m" + std::to_string(i)}));
        if (i == n / 2) f.kill("gw3");
    }
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (results.size() < n && std::chrono::steady_clock::now() < deadline) {
        auto r = alice->read<proto::send_result_msg>(5s);
        if (!r) break;
        EXPECT_FALSE(results.count(r->client_msg_id)) << "two results for " << r->client_msg_id;
        results[r->client_msg_id] = r->status;
    }
    ASSERT_EQ(results.size(), n) << "some sends got no result";
    size_t carol_ok = 0;
    for (auto& [id, st] : results) {
        if (id % 2 == 0) {
            carol_ok += st == proto::code::ok;
        } else {
            EXPECT_TRUE(st == proto::code::ok || st == proto::code::offline ||
                        st == proto::code::unavailable || st == proto::code::timeout)
                << proto::to_string(st);
            // Sent after gw3 was dead: cannot have been delivered, must not claim so.
            if (id > n / 2) EXPECT_NE(st, proto::code::ok) << id;
        }
    }
    EXPECT_EQ(carol_ok, n / 2);  // the rest of the fleet is unaffected
    // gw1 is still serving and knows gw3 is gone.
    EXPECT_TRUE(f.wait_metric("gw1", "imgate_rpc_links_up", 1));
    auto r = send_to(*alice, proto::target_kind::user, "carol", 1000, "still here");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
}

TEST(ClusterFleet, GatewayWithWrongClusterSecretIsRefused) {
    fleet_under_test f({"gw1", "gw2"});
    ASSERT_TRUE(f.start("gw1")) << f.proc("gw1").log();
    ASSERT_TRUE(f.start("gw2", /*wrong_secret=*/true)) << f.proc("gw2").log();
    EXPECT_TRUE(eventually(
        [&] {
            return f.metric("gw1",
                            "imgate_rpc_auth_failures_total{direction=\"inbound\",reason=\"bad_"
                            "proof\"}") >= 1 &&
                   f.metric("gw2",
                            "imgate_rpc_auth_failures_total{direction=\"inbound\",reason=\"bad_"
                            "proof\"}") >= 1;
        },
        5s));
    EXPECT_EQ(f.metric("gw1", "imgate_rpc_links_up"), 0);
    EXPECT_EQ(f.metric("gw1", "imgate_rpc_inbound_links"), 0);
    auto alice = f.client("gw1", "alice");
    auto bob = f.client("gw2", "bob");
    ASSERT_TRUE(alice && bob);
    auto r = send_to(*alice, proto::target_kind::user, "bob", 1, "x");
    ASSERT_TRUE(r);
    EXPECT_NE(r->status, proto::code::ok);
    EXPECT_TRUE(drain_delivers(*bob, 200ms).empty());
}

TEST(ClusterFleet, SighupAddsAndRemovesAPeerWithoutDroppingClients) {
    fleet_under_test f({"gw1", "gw2", "gw3"});
    f.rewrite_fleet({"gw1", "gw2"});
    ASSERT_TRUE(f.start("gw1")) << f.proc("gw1").log();
    ASSERT_TRUE(f.start("gw2")) << f.proc("gw2").log();
    ASSERT_TRUE(f.mesh_up(1));
    auto alice = f.client("gw1", "alice");
    auto carol = f.client("gw2", "carol");
    ASSERT_TRUE(alice && carol);

    // gw3 joins: it starts with the full fleet, the others learn of it on SIGHUP.
    f.rewrite_fleet({"gw1", "gw2", "gw3"});
    ASSERT_TRUE(f.start("gw3")) << f.proc("gw3").log();
    f.proc("gw1").signal(SIGHUP);
    f.proc("gw2").signal(SIGHUP);
    ASSERT_TRUE(f.mesh_up(2));
    EXPECT_EQ(f.metric("gw1", "imgate_rpc_link_connects_total{peer=\"gw2\"}"), 1);  // untouched
    auto bob = f.client("gw3", "bob");
    ASSERT_TRUE(bob);
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_user_locations", 2));
    auto r = send_to(*alice, proto::target_kind::user, "bob", 1, "to the new gateway");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(drain_delivers(*bob), std::vector<std::string>{"to the new gateway"});

    // gw3 leaves the fleet file: gw1 and gw2 drop their links to it, keep everything else.
    f.rewrite_fleet({"gw1", "gw2"});
    f.proc("gw1").signal(SIGHUP);
    f.proc("gw2").signal(SIGHUP);
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_links_up", 1));
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_user_locations", 1));
    r = send_to(*alice, proto::target_kind::user, "carol", 2, "still connected");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(drain_delivers(*carol), std::vector<std::string>{"still connected"});
    EXPECT_EQ(f.metric("gw1", "imgate_rpc_link_connects_total{peer=\"gw2\"}"), 1);
}

// ---- Issue 11: cross-node delivery that never lies ----

namespace {

// Peer timers short enough that several peer timeouts pass within a few seconds.
const std::string short_timers =
    "  call_timeout: 1s\n  connect_timeout: 500ms\n  ping_interval: 200ms\n"
    "  peer_timeout: 600ms\n  backoff_min: 50ms\n  backoff_max: 500ms\n";

// Reads frames until one of type M arrives; returns it, or nullopt at the deadline.
template <class M>
std::optional<M> read_type(testing_client& c, std::chrono::milliseconds timeout = 3000ms) {
    return c.read<M>(timeout);
}

}  // namespace

// A link whose dialler only announces (PRESENCE, ROOM_INTEREST, RECEIPT: frames nobody answers)
// used to be closed by the dialler's own read deadline after peer_timeout, because it pinged only
// when it had written nothing; each close failed calls in flight and made the peer forget the
// dialler's users, so senders were told `offline` for users who were online.
TEST(ClusterFleet, OneWayTrafficForManyPeerTimeoutsKeepsEveryLinkAndEveryAnswerTrue) {
    fleet_under_test f({"gw1", "gw2", "gw3"}, "", short_timers);
    ASSERT_TRUE(f.start_all());
    ASSERT_TRUE(f.mesh_up(2));
    const double connects_before = f.fleet_sum("imgate_rpc_link_connects_total");
    ASSERT_EQ(connects_before, 6);

    // carol on gw1 receives 1:1 from 王伟 on gw3 and acks: RECEIPTs are all gw1's link to gw3
    // ever carries. Zoë logs in and out on gw2 (PRESENCE only); a member on gw3 joins and leaves
    // a room (ROOM_INTEREST only).
    auto carol = f.client("gw1", "carol@example.com", "phone");
    auto wang = f.client("gw3", "王伟", "android");
    auto member = f.client("gw3", "x#y", "web");
    ASSERT_TRUE(carol && wang && member);
    ASSERT_TRUE(f.wait_metric("gw3", "imgate_rpc_directory_user_locations", 1));

    // Several peer timeouts (600 ms) of traffic, about 100 sends a second, bounded in count as
    // well as in time.
    const auto until = std::chrono::steady_clock::now() + 4s;
    uint64_t sent = 0, delivered = 0, receipts = 0, logins = 0, room_ops = 0;
    while (std::chrono::steady_clock::now() < until && sent < 1000) {
        std::this_thread::sleep_for(10ms);  // pacing the traffic, not waiting for an event
        ++sent;
        auto r = send_to(*wang, proto::target_kind::user, "carol@example.com", sent,
                         "你好 carol " + std::to_string(sent));
        ASSERT_TRUE(r) << "no SEND_RESULT for send " << sent;
        ASSERT_EQ(r->status, proto::code::ok)
            << "send " << sent << " to an online user answered " << proto::to_string(r->status);
        ASSERT_EQ(r->reached, 1u);
        ++delivered;
        auto d = read_type<proto::deliver_msg>(*carol);
        ASSERT_TRUE(d);
        ASSERT_EQ(d->server_msg_id, r->server_msg_id);
        ASSERT_TRUE(carol->send(proto::ack_msg{d->server_msg_id}));
        auto rc = read_type<proto::receipt_msg>(*wang);
        ASSERT_TRUE(rc) << "no receipt for send " << sent;
        EXPECT_EQ(rc->client_msg_id, sent);
        ++receipts;
        if (sent % 8 == 0) {
            auto zoe = f.client("gw2", "Zoë", "tablet");
            ASSERT_TRUE(zoe);
            ++logins;
            zoe->close();
        }
        if (sent % 8 == 4) {
            ASSERT_TRUE(member->send(proto::join_msg{"café☕"}));
            auto j = read_type<proto::room_result_msg>(*member);
            ASSERT_TRUE(j && j->status == proto::code::ok);
            ASSERT_TRUE(member->send(proto::leave_msg{"café☕"}));
            auto l = read_type<proto::room_result_msg>(*member);
            ASSERT_TRUE(l && l->status == proto::code::ok);
            room_ops += 2;
        }
    }
    EXPECT_GT(sent, 20u) << "too little traffic to mean anything";
    EXPECT_EQ(delivered, sent);
    EXPECT_EQ(receipts, sent);
    EXPECT_GT(logins, 0u);
    EXPECT_GT(room_ops, 0u);
    // No link was closed or re-established, and no directory was dropped meanwhile.
    f.expect_mesh_untouched(connects_before);
}

// Ids an app really uses — e-mail addresses, '#', non-ASCII names — used to make the peer refuse
// the whole RPC frame and cut the link (and with it every user of the sending gateway).
TEST(ClusterFleet, RealWorldIdsCrossGatewaysWithoutCuttingTheMesh) {
    fleet_under_test f({"gw1", "gw2", "gw3"});
    ASSERT_TRUE(f.start_all());
    ASSERT_TRUE(f.mesh_up(2));
    auto carol = f.client("gw1", "carol@example.com", "iPhone-15");
    auto wang = f.client("gw2", "王伟", "华为");
    auto zoe = f.client("gw3", "Zoë", "tablet#2");
    ASSERT_TRUE(carol && wang && zoe);
    for (auto* c : {carol.get(), wang.get(), zoe.get()}) {
        ASSERT_TRUE(c->send(proto::join_msg{"x#y"}));
        auto rr = c->read<proto::room_result_msg>();
        ASSERT_TRUE(rr && rr->status == proto::code::ok);
    }
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_user_locations", 2));
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_room_locations", 2));

    auto r = send_to(*carol, proto::target_kind::user, "王伟", 1, "hi 王伟");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    auto d = wang->read<proto::deliver_msg>();
    ASSERT_TRUE(d);
    EXPECT_EQ(d->from_user, "carol@example.com");
    EXPECT_EQ(d->from_device, "iPhone-15");
    ASSERT_TRUE(wang->send(proto::ack_msg{d->server_msg_id}));
    auto rc = carol->read<proto::receipt_msg>();
    ASSERT_TRUE(rc);
    EXPECT_EQ(rc->user, "王伟");
    EXPECT_EQ(rc->device, "华为");

    r = send_to(*zoe, proto::target_kind::room, "x#y", 2, "à tous");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(r->reached, 2u);
    for (auto* c : {carol.get(), wang.get()}) {
        auto rd = c->read<proto::deliver_msg>();
        ASSERT_TRUE(rd);
        EXPECT_EQ(rd->room, "x#y");
        EXPECT_EQ(rd->from_user, "Zoë");
    }
    // The mesh stayed up all along: one handshake per link, nothing refused or skipped.
    f.expect_mesh_untouched(6);
}

// The same user+device logging in on another gateway (the normal case after a reconnect through
// the dispatcher) replaces the old session fleet-wide, as protocol.md promises.
TEST(ClusterFleet, SameDeviceOnAnotherGatewayReplacesTheOldSession) {
    fleet_under_test f({"gw1", "gw2", "gw3"});
    ASSERT_TRUE(f.start_all());
    ASSERT_TRUE(f.mesh_up(2));
    auto old_phone = f.client("gw1", "alice@example.com", "phone");
    auto tablet = f.client("gw3", "alice@example.com", "tablet");
    auto bob = f.client("gw3", "bob");
    ASSERT_TRUE(old_phone && tablet && bob);
    ASSERT_TRUE(f.wait_metric("gw2", "imgate_rpc_directory_user_locations", 3));

    auto new_phone = f.client("gw2", "alice@example.com", "phone");
    ASSERT_TRUE(new_phone);
    auto k = old_phone->read<proto::kick_msg>();
    ASSERT_TRUE(k) << "the old session on gw1 was not kicked";
    EXPECT_EQ(k->reason, proto::kick_reason::replaced);
    EXPECT_EQ(k->message, "logged in elsewhere");
    EXPECT_TRUE(old_phone->wait_closed());
    EXPECT_EQ(f.metric("gw1", "imgate_gateway_kicks_total{reason=\"replaced\"}"), 1);

    // Only the new phone and the tablet receive, once each; the tablet was not touched.
    ASSERT_TRUE(f.wait_metric("gw3", "imgate_rpc_directory_user_locations", 1));
    auto r = send_to(*bob, proto::target_kind::user, "alice@example.com", 1, "still there?");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(r->reached, 2u);
    EXPECT_EQ(drain_delivers(*new_phone), std::vector<std::string>{"still there?"});
    EXPECT_EQ(drain_delivers(*tablet), std::vector<std::string>{"still there?"});
}

// Each reached session acks exactly once and the sender gets exactly one receipt per acking
// device, however many devices (a fixed table of four used to lose and duplicate receipts).
TEST(ClusterFleet, SixDevicesAckTwiceSenderGetsOneReceiptPerDevice) {
    fleet_under_test f({"gw1", "gw2"});
    ASSERT_TRUE(f.start_all());
    ASSERT_TRUE(f.mesh_up(1));
    auto alice = f.client("gw1", "alice");
    std::vector<std::unique_ptr<testing_client>> devices;
    std::set<std::string> names;
    for (int i = 1; i <= 6; ++i) {
        std::string dev = "device-" + std::to_string(i);
        devices.push_back(f.client("gw2", "bob@example.com", dev));
        ASSERT_TRUE(devices.back()) << dev;
        names.insert(dev);
    }
    ASSERT_TRUE(f.wait_metric("gw1", "imgate_rpc_directory_user_locations", 1));
    auto r = send_to(*alice, proto::target_kind::user, "bob@example.com", 77, "hello all");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(r->reached, 6u);
    for (auto& d : devices) {
        auto del = d->read<proto::deliver_msg>();
        ASSERT_TRUE(del);
        ASSERT_TRUE(d->send(proto::ack_msg{del->server_msg_id}));
        ASSERT_TRUE(d->send(proto::ack_msg{del->server_msg_id}));  // a retried ack
    }
    std::multiset<std::string> got;
    while (auto rc = alice->read<proto::receipt_msg>(500ms)) {
        EXPECT_EQ(rc->client_msg_id, 77u);
        got.insert(rc->device);
    }
    EXPECT_EQ(got, std::multiset<std::string>(names.begin(), names.end()));
}

// server_msg_id prefixes came from a 16-bit hash of the gateway id: gw102 and gw399 issued the
// same ids, and a receiver dropped real messages as duplicates. Such a fleet file is refused.
TEST(ClusterFleet, GatewaysThatWouldShareMessageIdsAreRefusedAtStart) {
    fleet_under_test f({"gw102", "gw399"});
    EXPECT_FALSE(f.start("gw102"));
    EXPECT_NE(f.proc("gw102").log().find("would share node number"), std::string::npos)
        << f.proc("gw102").log();
}
