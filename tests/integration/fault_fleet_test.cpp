// Fault and abuse tests on the fleet level, real processes on loopback: slowloris and a
// connection flood on the dispatcher's public API, SIGHUP with a broken dispatcher.yaml under
// load, strangers and garbage on a gateway's internal RPC port, and SIGTERM of a gateway under
// load (clients follow the kick back through the dispatcher to the other gateway). kill -9 and
// SIGSTOP scenarios live in cluster_fleet_test.cpp and dispatcher_fake_fleet_test.cpp.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "common/jwt.hpp"
#include "fault_fixture.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace imgate::test::fault;
using namespace std::chrono_literals;
namespace proto = imgate::proto;
using client_t = imgate::test::test_client;

namespace {

// Reads one HTTP response (headers + Content-Length body) from a keep-alive raw connection.
std::optional<int> http_on(raw_conn& c, const std::string& target,
                           std::chrono::milliseconds timeout = 2000ms) {
    size_t start = c.received().size();
    if (!c.send("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")) return std::nullopt;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        c.pump();
        std::string_view r(c.received());
        r.remove_prefix(start);
        auto end = r.find("\r\n\r\n");
        if (end != std::string_view::npos) {
            auto cl = r.find("Content-Length: ");
            size_t len = cl < end ? std::stoul(std::string(r.substr(cl + 16, 12))) : 0;
            if (r.size() >= end + 4 + len) return std::stoi(std::string(r.substr(9, 3)));
        }
        if (c.is_closed()) return std::nullopt;
        std::this_thread::sleep_for(2ms);  // polling a socket we own; no event to wait on
    }
    return std::nullopt;
}

size_t open_fds(pid_t pid) {
    size_t n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        ++n;
    return n;
}

}  // namespace

// 200 connections trickle request headers at the public API: each is closed at the 1 s read
// deadline (counted), while real GET /get-tcp-ip requests keep getting answers.
TEST(FaultDispatcher, SlowlorisClosedAtReadDeadlineRequestsStillAnswered) {
    fleet f({.dispatcher = true,
             .dispatcher_yaml = "http: {max_connections: 1000, read_timeout: 1s}\n"});
    ASSERT_TRUE(f.start()) << f.dispatcher().log();
    constexpr int n = 200;
    std::vector<raw_conn> slow(n);
    for (auto& c : slow) {
        ASSERT_TRUE(c.connect(f.public_addr()));
        c.send("GET /get-tcp-ip?uid=slow HTTP/1.1\r\n");
    }
    auto started = std::chrono::steady_clock::now();
    int answered = 0, asked = 0, open = n;
    for (int round = 0; open > 0 && std::chrono::steady_clock::now() - started < 8s; ++round) {
        open = 0;
        for (auto& c : slow)
            if (!c.is_closed()) {
                ++open;
                c.send("X-Slow-" + std::to_string(round) + ": 1\r\n", 100ms);
            }
        ++asked;
        if (http_get(f.public_addr(), "/get-tcp-ip?uid=good" + std::to_string(round), 2s).status ==
            200)
            ++answered;
        std::this_thread::sleep_for(100ms);  // the trickle rate, not a synchronisation
    }
    auto took = std::chrono::steady_clock::now() - started;
    int closed = 0;
    for (auto& c : slow)
        if (c.wait_closed(1s)) ++closed;
    EXPECT_EQ(closed, n);
    EXPECT_LT(took, 8s);
    EXPECT_EQ(answered, asked);
    EXPECT_GE(metric(f.disp_admin(), "imgate_http_read_timeouts_total{server=\"public\""), n);
}

// A flood past http.max_connections: the excess is answered 503 and closed (counted), a
// keep-alive client already connected keeps being served, and new clients get in after.
TEST(FaultDispatcher, ConnectionFloodPastMaxRefusedKeepAliveServed) {
    fleet f({.dispatcher = true,
             .dispatcher_yaml = "http: {max_connections: 40, read_timeout: 10s}\n"});
    ASSERT_TRUE(f.start()) << f.dispatcher().log();
    raw_conn keep;
    ASSERT_TRUE(keep.connect(f.public_addr()));
    ASSERT_EQ(http_on(keep, "/get-tcp-ip?uid=k0"), 200);
    std::vector<raw_conn> fill(39), flood(300);
    for (auto& c : fill) ASSERT_TRUE(c.connect(f.public_addr()));
    ASSERT_TRUE(eventually([&] {
        return metric(f.disp_admin(), "imgate_http_connections{server=\"public\"") >= 40;
    })) << "metric: "
        << metric(f.disp_admin(), "imgate_http_connections{server=\"public\"");
    for (auto& c : flood) ASSERT_TRUE(c.connect(f.public_addr()));
    int refused = 0;
    for (auto& c : flood)
        if (c.wait_closed(3s) && c.received().rfind("HTTP/1.1 503", 0) == 0) ++refused;
    EXPECT_EQ(refused, 300);
    EXPECT_GE(metric(f.disp_admin(),
                     "imgate_http_rejected_total{server=\"public\",reason=\"max_connections\""),
              300);
    for (int i = 1; i <= 5; ++i)
        EXPECT_EQ(http_on(keep, "/get-tcp-ip?uid=k" + std::to_string(i)), 200);
    for (auto& c : fill) c.close();
    EXPECT_TRUE(eventually([&] { return http_get(f.public_addr(), "/get-tcp-ip").status == 200; }));
}

// SIGHUP with a broken dispatcher.yaml while 4 threads ask for gateways: every request is
// answered 200, the failure is counted, and the old settings stay (still 2 alternates, although
// the broken file asks for none).
TEST(FaultDispatcher, SighupWithInvalidYamlUnderLoadZeroFailures) {
    fleet f({.gateways = 3, .dispatcher = true, .dispatcher_yaml = "alternates: 2\n"});
    ASSERT_TRUE(f.start()) << f.dispatcher().log();
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, failed{0};
    std::vector<std::thread> load;
    for (int w = 0; w < 4; ++w)
        load.emplace_back([&, w] {
            for (int i = 0; i < 5000 && !stop; ++i) {
                auto r = http_get(f.public_addr(),
                                  "/get-tcp-ip?uid=u" + std::to_string(w * 10000 + i), 2s);
                bool good =
                    r.status == 200 && r.json().is_object() && r.json()["alternates"].size() == 2;
                (good ? ok : failed)++;
            }
        });
    ASSERT_TRUE(eventually([&] { return ok.load() > 50; }));
    double before = metric(f.disp_admin(), "imgate_dispatcher_reload_failures_total");
    write_file(f.dir().file("dispatcher.yaml"),
               "id: fault-disp\nfleet: fleet.yaml\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"
               "alternates: 0\npoll: {interval: [\n");
    f.dispatcher().signal(SIGHUP);
    EXPECT_TRUE(eventually([&] {
        return metric(f.disp_admin(), "imgate_dispatcher_reload_failures_total") >
               std::max(0.0, before);
    })) << f.dispatcher().log();
    int at = ok.load();
    EXPECT_TRUE(eventually([&] { return ok.load() > at + 100; }));
    stop = true;
    for (auto& t : load) t.join();
    EXPECT_EQ(failed.load(), 0);
    EXPECT_TRUE(f.dispatcher().running());
}

// Strangers on a gateway's internal RPC port — HTTP garbage, a client LOGIN, a 4 GiB RPC header,
// a fleet member's id with a forged proof, an unknown id, and silent connections — are all
// closed, the refusals are counted, descriptors are given back, and the authenticated mesh
// keeps carrying cross-node messages.
TEST(FaultCluster, GarbageAndWrongSecretOnRpcPortRefusedMeshUnaffected) {
    fleet f({.gateways = 2,
             .cluster = true,
             .gateway_yaml = "cluster_rpc: {connect_timeout: 1s, ping_interval: 500ms,\n"
                             "  peer_timeout: 3s, backoff_min: 50ms, backoff_max: 500ms,\n"
                             "  max_handshakes: 1000}\n"});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    ASSERT_TRUE(f.mesh_up()) << f.gw("gw1").log();
    pid_t pid = f.gw("gw1").pid();
    size_t fds_before = open_fds(pid);

    auto rpc_header = [](uint32_t len, uint8_t op) {
        return frame_header(len, rpc_protocol_version, op);
    };
    // HELLO from a real member id with a fresh nonce, then an AUTH whose proof is made up.
    auto hello = [](const std::string& id) { return rpc_hello_from(id); };
    std::string forged_auth;
    {
        std::string body;
        byte_writer w(body);
        w.str16(std::string(32, 'p'));
        append_frame(forged_auth, rpc_protocol_version, 0x03, 0, body);
    }
    struct kind {
        std::string name;
        std::string bytes;
    };
    std::vector<kind> kinds{
        {"http", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"},
        {"client login", proto::encode(proto::login_msg{token("eve")})},
        {"4 GiB frame", rpc_header(0xffffffffu, 0x01) + std::string(100, 'x')},
        {"forged proof", hello("gw2") + forged_auth},
        {"unknown id", hello("gw9")},
        {"silent", ""},
    };
    double refused_before = std::max(0.0, f.gw_metric("gw1", "imgate_rpc_auth_failures_total"));
    constexpr int per_kind = 30;
    std::vector<raw_conn> conns(per_kind * kinds.size());
    for (size_t k = 0; k < kinds.size(); ++k)
        for (int i = 0; i < per_kind; ++i) {
            auto& c = conns[k * per_kind + i];
            ASSERT_TRUE(c.connect(f.rpc_addr("gw1")));
            if (!kinds[k].bytes.empty()) c.send(kinds[k].bytes);
        }
    for (size_t k = 0; k < kinds.size(); ++k) {
        int closed = 0;
        for (int i = 0; i < per_kind; ++i)
            if (conns[k * per_kind + i].wait_closed(4s)) ++closed;
        EXPECT_EQ(closed, per_kind) << kinds[k].name;
    }
    // The forged proofs got AUTH_FAIL (op 0x05), never AUTH_OK (0x04).
    for (int i = 0; i < per_kind; ++i) {
        auto frames = conns[3 * per_kind + i].frames(rpc_protocol_version);
        bool fail = false;
        for (auto& fr : frames) {
            EXPECT_NE(fr.op, 0x04);
            if (fr.op == 0x05) fail = true;
        }
        EXPECT_TRUE(fail) << "forged proof " << i << " got no AUTH_FAIL";
    }
    EXPECT_GE(f.gw_metric("gw1", "imgate_rpc_auth_failures_total") - refused_before,
              double(per_kind * kinds.size()));
    for (auto& c : conns) c.close();
    EXPECT_TRUE(eventually([&] { return open_fds(pid) <= fds_before + 2; }, 5s))
        << open_fds(pid) << " descriptors open, " << fds_before << " before";
    // The mesh is intact: a cross-node message is delivered with its receipt path.
    EXPECT_EQ(f.gw_metric("gw1", "imgate_rpc_links_up"), 1);
    auto alice = f.client("gw1", "alice");
    auto bob = f.client("gw2", "bob");
    ASSERT_TRUE(alice && bob);
    ASSERT_TRUE(eventually(
        [&] {
            static uint64_t id = 0;
            if (!alice->send(proto::send_msg{proto::target_kind::user, "bob", ++id, "hi"}))
                return false;
            auto r = alice->read<proto::send_result_msg>(2s);
            return r && r->status == proto::code::ok && r->reached == 1;
        },
        5s));
    EXPECT_TRUE(bob->read<proto::deliver_msg>(2s));
}

// Connections that never authenticate are bounded in number, not only in time: past
// cluster_rpc.max_handshakes the RPC port closes new ones at once (counted), the ones within the
// cap are closed at connect_timeout, descriptors come back, and the established link stays up.
TEST(FaultCluster, HandshakesPastTheCapClosedAtOnceLinkStaysUp) {
    fleet f({.gateways = 2,
             .cluster = true,
             .gateway_yaml = "cluster_rpc: {connect_timeout: 3s, ping_interval: 500ms,\n"
                             "  peer_timeout: 5s, max_handshakes: 8}\n"});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    ASSERT_TRUE(f.mesh_up()) << f.gw("gw1").log();
    pid_t pid = f.gw("gw1").pid();
    size_t fds_before = open_fds(pid);
    const std::string series =
        "imgate_rpc_auth_failures_total{direction=\"inbound\",reason=\"too_many_handshakes\"}";
    // The kernel hands connections to accept() in arrival order: the first 8 take the slots.
    std::vector<raw_conn> held(8), extra(20);
    for (auto& c : held) ASSERT_TRUE(c.connect(f.rpc_addr("gw1")));
    auto t0 = std::chrono::steady_clock::now();
    for (auto& c : extra) ASSERT_TRUE(c.connect(f.rpc_addr("gw1")));
    int closed_early = 0;
    for (auto& c : extra)
        if (c.wait_closed(2s)) ++closed_early;
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(closed_early, int(extra.size()));
    EXPECT_LT(took, 2500ms);  // well before the 3 s handshake deadline
    EXPECT_TRUE(eventually([&] { return f.gw_metric("gw1", series) == double(extra.size()); }, 2s))
        << f.gw_metric("gw1", series);
    int still_open = 0;
    for (auto& c : held)
        if (!c.is_closed()) ++still_open;
    EXPECT_EQ(still_open, int(held.size()));
    // The slots are given back at the deadline.
    for (auto& c : held) EXPECT_TRUE(c.wait_closed(5s));
    EXPECT_TRUE(eventually([&] { return open_fds(pid) <= fds_before + 2; }, 5s));
    EXPECT_EQ(f.gw_metric("gw1", "imgate_rpc_links_up"), 1);
    EXPECT_EQ(f.gw_metric("gw2", "imgate_rpc_links_up"), 1);
}

// SIGTERM of a gateway while its clients ping: every client gets a KICK(shutdown) or REDIRECT,
// asks the dispatcher again excluding the stopped gateway, and logs in on the other one; the
// stopped gateway exits 0.
TEST(FaultFleet, SigtermUnderLoadClientsReconnectThroughDispatcher) {
    fleet f({.gateways = 2,
             .dispatcher = true,
             .gateway_yaml = "timeouts: {shutdown_grace: 2s}\n"
                             "drain: {reconnect_after: 100ms}\n"});
    ASSERT_TRUE(f.start()) << f.dispatcher().log();
    constexpr int n = 20;
    std::vector<std::unique_ptr<client_t>> on_gw1;
    for (int i = 0; on_gw1.size() < n && i < 20 * n; ++i) {
        std::string user = "u" + std::to_string(i);
        auto r = http_get(f.public_addr(), "/get-tcp-ip?uid=" + user);
        ASSERT_EQ(r.status, 200);
        if (r.json()["id"] != "gw1") continue;
        auto c = std::make_unique<client_t>();
        ASSERT_TRUE(
            c->connect(r.json()["host"].get<std::string>(), r.json()["port"].get<uint16_t>()));
        ASSERT_TRUE(c->login(token(user)));
        on_gw1.push_back(std::move(c));
    }
    ASSERT_EQ(on_gw1.size(), size_t(n));
    for (auto& c : on_gw1) ASSERT_TRUE(ping_ok(*c, 1));

    f.gw("gw1").signal(SIGTERM);
    int told = 0, moved = 0;
    for (int i = 0; i < n; ++i) {
        auto& c = on_gw1[i];
        // Keep pinging until the gateway says goodbye (or the connection ends).
        bool got = false;
        for (int k = 0; k < 50 && !got; ++k) {
            c->send(proto::ping_msg{}, uint32_t(100 + k));
            while (auto fr = c->read_frame(100ms)) {
                if (fr->op == uint8_t(proto::op::kick)) {
                    auto kick = proto::decode<proto::kick_msg>(*fr);
                    got = kick && kick->reason == proto::kick_reason::shutdown;
                } else if (fr->op == uint8_t(proto::op::redirect)) {
                    got = true;
                }
            }
            if (c->closed()) break;
        }
        if (got) ++told;
        // Back through the dispatcher, excluding the gateway that sent us away.
        auto r =
            http_get(f.public_addr(), "/get-tcp-ip?uid=u" + std::to_string(i) + "&exclude=gw1");
        if (r.status != 200 || r.json()["id"] != "gw2") continue;
        client_t again;
        if (again.connect(r.json()["host"].get<std::string>(), r.json()["port"].get<uint16_t>()) &&
            again.login(token("u" + std::to_string(i) + "b")) && ping_ok(again, 1))
            ++moved;
    }
    EXPECT_EQ(told, n);
    EXPECT_EQ(moved, n);
    auto st = f.gw("gw1").wait_exit(10s);
    ASSERT_TRUE(st.has_value());
    EXPECT_EQ(f.gw("gw1").exit_code(), 0);
    // The dispatcher stops handing out the stopped gateway without being told to.
    EXPECT_TRUE(eventually(
        [&] {
            auto r = http_get(f.public_addr(), "/get-tcp-ip?uid=x");
            return r.status == 200 && r.json()["id"] == "gw2";
        },
        5s));
}

// Rotating the cluster secret: the file is rewritten and both gateways get SIGHUP. The
// authenticated links stay up (no reconnect), messages keep flowing, and the new secret is in
// force: a gateway restarted with the old secret is refused by the others.
TEST(FaultCluster, ClusterSecretRotationOnSighupKeepsLinksRefusesOldSecret) {
    fleet f({.gateways = 2,
             .cluster = true,
             .gateway_yaml = "cluster_rpc: {connect_timeout: 1s, ping_interval: 500ms,\n"
                             "  peer_timeout: 3s, backoff_min: 50ms, backoff_max: 200ms}\n"});
    ASSERT_TRUE(f.start()) << f.gw("gw1").log();
    auto mesh = [&](double n) {
        return eventually(
            [&] {
                return f.gw_metric("gw1", "imgate_rpc_links_up") == n &&
                       f.gw_metric("gw2", "imgate_rpc_links_up") == n;
            },
            10s);
    };
    ASSERT_TRUE(mesh(1)) << f.gw("gw1").log();
    double connects = f.gw_metric("gw1", "imgate_rpc_link_connects_total");

    write_secret_file(f.dir().file("old.secret"), cluster_secret + "\n");
    write_secret_file(f.dir().file("cluster.secret"), "rotated-cluster-secret-abcdef0123456789\n");
    for (auto id : {"gw1", "gw2"}) {
        f.gw(id).signal(SIGHUP);
        ASSERT_TRUE(eventually([&] {
            return f.gw_metric(id, "imgate_gateway_reloads_total{result=\"ok\"") >= 1;
        })) << f.gw(id).log();
    }
    EXPECT_EQ(f.gw_metric("gw1", "imgate_rpc_links_up"), 1);
    EXPECT_EQ(f.gw_metric("gw1", "imgate_rpc_link_connects_total"), connects);
    {
        auto alice = f.client("gw1", "alice");
        auto bob = f.client("gw2", "bob");
        ASSERT_TRUE(alice && bob);
        EXPECT_TRUE(eventually(
            [&] {
                static uint64_t id = 0;
                if (!alice->send(proto::send_msg{proto::target_kind::user, "bob", ++id, "x"}))
                    return false;
                auto r = alice->read<proto::send_result_msg>(2s);
                return r && r->reached == 1;
            },
            5s));
    }

    // gw2 comes back with the old secret (its own copy of the fleet file points at it).
    f.gw("gw2").signal(SIGKILL);
    ASSERT_TRUE(f.gw("gw2").wait_exit());
    auto fleet_text = read_file(f.dir().file("fleet.yaml"));
    auto pos = fleet_text.find("secret_file: cluster.secret");
    ASSERT_NE(pos, std::string::npos);
    fleet_text.replace(pos, 27, "secret_file: old.secret");
    write_file(f.dir().file("fleet-old.yaml"), fleet_text);
    auto gw_text = read_file(f.dir().file("gateway.yaml"));
    gw_text.replace(gw_text.find("fleet: fleet.yaml"), 17, "fleet: fleet-old.yaml");
    write_file(f.dir().file("gateway-old.yaml"), gw_text);
    double refused = std::max(0.0, f.gw_metric("gw1", "imgate_rpc_auth_failures_total"));
    daemon_process old_gw2("gw2-old", binary_path("imgate-gateway"),
                           {"--config", f.dir().file("gateway-old.yaml"), "--id", "gw2"}, f.dir());
    ASSERT_TRUE(old_gw2.wait_ready()) << old_gw2.log();
    EXPECT_TRUE(eventually(
        [&] { return f.gw_metric("gw1", "imgate_rpc_auth_failures_total") > refused; }, 5s))
        << f.gw("gw1").log();
    EXPECT_EQ(metric(old_gw2.addr("admin"), "imgate_rpc_links_up"), 0);
    EXPECT_EQ(f.gw_metric("gw1", "imgate_rpc_links_up"), 0);
}
