// Host-level faults in a fleet of hosts (network namespaces, config/hosts/run-hosts.sh): a host
// that goes silent, a partition between two gateways, latency on one gateway's link, a dead
// dispatcher. What a kill -9 on loopback cannot show: nothing is refused or closed, packets just
// stop. Skipped, with the reason, where namespaces cannot be made (not root, no iproute2).
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../support/tool_process.hpp"
#include "hosts_fixture.hpp"

using namespace std::chrono_literals;
using namespace imgate;
using namespace imgate::test;
using hosts::fleet;
using clock_type = std::chrono::steady_clock;

namespace {

// The dispatchers' detection bound of the test template: the first failing pull starts within
// interval × (1 + jitter) and fails after timeout, the next `fall - 1` follow fast_interval
// apart: 330 + 200 + 100 + 200 ms. The waits below add 2 s for a loaded 2-core machine.
constexpr auto dispatcher_bound = 830ms;
// The peers' bound: peer_timeout (1.5 s) plus one ping_interval (0.5 s) for the watchdog's tick.
constexpr auto peer_bound = 2000ms;

double ms_since(clock_type::time_point t) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

// One SEND and its SEND_RESULT; nullopt when no result came within `wait` (silence).
std::optional<proto::send_result_msg> send_and_wait(test_client& c, const std::string& to,
                                                    uint64_t id, const std::string& text,
                                                    std::chrono::milliseconds wait = 3000ms) {
    if (!c.send(proto::send_msg{proto::target_kind::user, to, id, text})) return std::nullopt;
    auto deadline = clock_type::now() + wait;
    while (clock_type::now() < deadline) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
        auto r = c.read<proto::send_result_msg>(left);
        if (!r) return std::nullopt;
        if (r->client_msg_id == id) return r;
    }
    return std::nullopt;
}

// Every DELIVER payload until `quiet` passes without one.
std::vector<std::string> delivered(test_client& c, std::chrono::milliseconds quiet = 500ms) {
    std::vector<std::string> out;
    while (auto d = c.read<proto::deliver_msg>(quiet)) out.push_back(d->payload);
    return out;
}

}  // namespace

// (a) A gateway host goes silent (its link cut at the bridge: no RST, no FIN, nothing).
TEST(HostsFault, SilentGatewayHostIsCaughtByBothDispatchersAndPeersAndSendsNeverGoUnanswered) {
    IMGATE_REQUIRE_HOSTS();
    fleet::options o;
    // A short hold, so the test sees the end of the story: offline once the hold is over.
    o.gateway_yaml = hosts::test_gateway_yaml("  unreachable_hold: 3s\n");
    fleet f(o);
    ASSERT_TRUE(f.up()) << f.last_output();
    ASSERT_TRUE(f.settled()) << f.log("d1");
    auto alice = f.client("gw1", "alice@example.com");
    auto bob = f.client("gw4", "björn.andersson@example.se");
    ASSERT_TRUE(alice && bob);
    ASSERT_TRUE(eventually(
        [&] { return f.gw_metric("gw1", "imgate_rpc_directory_user_locations") >= 1; }, 5s));
    auto r = send_and_wait(*alice, "björn.andersson@example.se", 1, "före");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, proto::code::ok);

    auto t0 = clock_type::now();
    f.fault("silence gw4");

    // Both dispatchers take gw4 out, each on its own failed pulls, within the bound; the pulls
    // failed by timing out (a silent host refuses nothing).
    std::map<std::string, double> down_after;
    ASSERT_TRUE(eventually(
        [&] {
            for (auto d : {"d1", "d2"})
                if (!down_after.count(d) && f.state(d, "gw4") == "down")
                    down_after[d] = ms_since(t0);
            return down_after.size() == 2;
        },
        dispatcher_bound + 2000ms, 20ms))
        << "gw4 as seen by d1: " << f.view("d1", "gw4").dump()
        << " d2: " << f.view("d2", "gw4").dump();
    for (auto d : {"d1", "d2"}) {
        auto err = f.view(d, "gw4").value("last_error", "");
        EXPECT_NE(err.find("timeout"), std::string::npos) << d << ": " << err;
        EXPECT_EQ(f.state(d, "gw1"), "up") << d;
    }

    // Meanwhile and after, every send to bob gets an answer: timeout or unavailable while gw1
    // cannot know, offline once the hold is over; never delivered, never silence.
    std::vector<std::string> seen;
    std::map<std::string, double> peers_down_after;
    auto until = clock_type::now() + peer_bound + 3000ms + 3000ms;  // watchdog + hold + margin
    uint64_t id = 10;
    bool offline_seen = false;
    while (clock_type::now() < until && !offline_seen) {
        auto res = send_and_wait(*alice, "björn.andersson@example.se", ++id, "efter");
        ASSERT_TRUE(res) << "send " << id << " got no SEND_RESULT: silence";
        auto st = proto::to_string(res->status);
        EXPECT_TRUE(res->status == proto::code::timeout ||
                    res->status == proto::code::unavailable || res->status == proto::code::offline)
            << "send " << id << ": " << st;
        if (seen.empty() || seen.back() != st) seen.push_back(st);
        offline_seen = res->status == proto::code::offline;
        for (auto gw : {"gw1", "gw2", "gw3"})
            if (!peers_down_after.count(gw) && f.gw_metric(gw, "imgate_rpc_links_up") == 2)
                peers_down_after[gw] = ms_since(t0);
        std::this_thread::sleep_for(100ms);  // pacing, inside the per-session send rate
    }
    std::string story;
    for (auto& s : seen) story += s + " ";
    EXPECT_TRUE(offline_seen) << "answers seen: " << story;
    EXPECT_NE(seen.front(), "offline") << "offline before the hold: " << story;
    // Every peer closed its link to gw4 on its own watchdog.
    EXPECT_TRUE(eventually(
        [&] {
            for (auto gw : {"gw1", "gw2", "gw3"})
                if (!peers_down_after.count(gw) && f.gw_metric(gw, "imgate_rpc_links_up") == 2)
                    peers_down_after[gw] = ms_since(t0);
            return peers_down_after.size() == 3;
        },
        peer_bound + 2000ms));
    std::printf(
        "[ silent  ] dispatchers down after d1 %.0f ms, d2 %.0f ms; peers' links closed "
        "after gw1 %.0f, gw2 %.0f, gw3 %.0f ms; answers: %s\n",
        down_after["d1"], down_after["d2"], peers_down_after["gw1"], peers_down_after["gw2"],
        peers_down_after["gw3"], story.c_str());

    // The rest of the fleet is untouched: a new client gets a gateway other than gw4.
    for (int i = 0; i < 20; ++i) {
        auto a =
            http_get(f.public_addr(i % 2 ? "d1" : "d2"), "/get-tcp-ip?uid=u" + std::to_string(i));
        ASSERT_EQ(a.status, 200) << a.body;
        EXPECT_NE(a.json().value("id", ""), "gw4") << a.body;
    }

    // Healed: both dispatchers and every peer take gw4 back.
    f.fault("heal gw4");
    EXPECT_TRUE(f.settled(20s));
}

// (b) A partition between gw1 and gw2; both stay up and reachable from clients and the rest.
TEST(HostsFault, PartitionBetweenTwoGatewaysAnswersUnavailableAndHeals) {
    IMGATE_REQUIRE_HOSTS();
    fleet::options o;
    o.gateway_yaml = hosts::test_gateway_yaml("  unreachable_hold: 60s\n");
    fleet f(o);
    ASSERT_TRUE(f.up()) << f.last_output();
    ASSERT_TRUE(f.settled()) << f.log("d1");
    auto alice = f.client("gw1", "alice@example.com");
    auto bob = f.client("gw2", "bob.müller@example.de");
    auto carol = f.client("gw3", "carol@example.com");
    ASSERT_TRUE(alice && bob && carol);
    ASSERT_TRUE(eventually(
        [&] { return f.gw_metric("gw1", "imgate_rpc_directory_user_locations") >= 2; }, 5s));

    f.fault("partition gw1 gw2");
    // Past the watchdog: gw1 and gw2 have each closed their links to the other.
    ASSERT_TRUE(eventually(
        [&] {
            return f.gw_metric("gw1", "imgate_rpc_links_up") == 2 &&
                   f.gw_metric("gw2", "imgate_rpc_links_up") == 2;
        },
        peer_bound + 2000ms));

    // Sends across the partition: answered, and `unavailable` (the far side's users are not
    // known to be offline), in both directions, for longer than every timeout.
    // Paced at 10 sends a second each, well inside the per-session send rate.
    auto until = clock_type::now() + 4s;
    uint64_t id = 100;
    std::map<std::string, int> answers;
    while (clock_type::now() < until) {
        auto r1 = send_and_wait(*alice, "bob.müller@example.de", ++id, "über die Grenze");
        ASSERT_TRUE(r1) << "send " << id << " got no SEND_RESULT: silence";
        ++answers[std::string("alice→bob ") + proto::to_string(r1->status)];
        auto r2 = send_and_wait(*bob, "alice@example.com", ++id, "zurück");
        ASSERT_TRUE(r2) << "send " << id << " got no SEND_RESULT: silence";
        ++answers[std::string("bob→alice ") + proto::to_string(r2->status)];
        std::this_thread::sleep_for(100ms);
    }
    std::string summary;
    for (auto& [k, n] : answers) summary += k + " ×" + std::to_string(n) + "; ";
    EXPECT_EQ(answers.size(), 2u) << summary;
    EXPECT_GT(answers["alice→bob unavailable"], 0) << summary;
    EXPECT_GT(answers["bob→alice unavailable"], 0) << summary;
    std::printf("[ partition ] %s\n", summary.c_str());
    // Everything else keeps working: through gw3, logins on both sides, both dispatchers.
    auto r = send_and_wait(*alice, "carol@example.com", ++id, "via gw3");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    r = send_and_wait(*bob, "carol@example.com", ++id, "auch via gw3");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_EQ(delivered(*carol), (std::vector<std::string>{"via gw3", "auch via gw3"}));
    r = send_and_wait(*carol, "bob.müller@example.de", ++id, "hallo");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_TRUE(f.client("gw1", "dave@example.com"));
    EXPECT_TRUE(f.client("gw2", "erin@example.com"));
    for (auto d : {"d1", "d2"}) {
        EXPECT_EQ(f.state(d, "gw1"), "up") << d;
        EXPECT_EQ(f.state(d, "gw2"), "up") << d;
    }

    // Healed: the links come back, the snapshots resync, and bob gets messages again.
    f.fault("heal");
    ASSERT_TRUE(eventually(
        [&] {
            return f.gw_metric("gw1", "imgate_rpc_links_up") == 3 &&
                   f.gw_metric("gw2", "imgate_rpc_links_up") == 3;
        },
        10s));
    delivered(*bob, 200ms);  // carol's "hallo"
    ASSERT_TRUE(eventually(
        [&] {
            auto res = send_and_wait(*alice, "bob.müller@example.de", ++id, "wieder da");
            return res && res->status == proto::code::ok;
        },
        5s, 200ms));
    auto got = delivered(*bob);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got.back(), "wieder da");
}

// (c) Latency on gw4's link (a delay relay on its admin and rpc ports: this kernel may have no
// netem). The dispatchers' pull timeout (200 ms), the RPC call deadline (500 ms) and the peer
// watchdog (peer_timeout 1.5 s, ping_interval 500 ms) each act as configured.
TEST(HostsFault, LatencyOnAGatewayLinkHonoursPullTimeoutCallDeadlineAndPeerTimeout) {
    IMGATE_REQUIRE_HOSTS();
    fleet::options o;
    o.delayable = "gw4";
    o.gateway_yaml = hosts::test_gateway_yaml("  unreachable_hold: 60s\n");
    o.gateway_yaml.replace(o.gateway_yaml.find("call_timeout: 1s"), 16, "call_timeout: 500ms");
    fleet f(o);
    ASSERT_TRUE(f.up()) << f.last_output();
    ASSERT_TRUE(f.settled()) << f.log("d1");
    auto alice = f.client("gw1", "alice@example.com");
    auto bob = f.client("gw4", "李雷@example.cn");
    ASSERT_TRUE(alice && bob);
    ASSERT_TRUE(eventually(
        [&] { return f.gw_metric("gw1", "imgate_rpc_directory_user_locations") >= 1; }, 5s));
    auto diag = [&] {
        return "gw1:\n" + f.log("gw1") + "\ngw4:\n" + f.log("gw4") + "\nrelay:\n" +
               f.log("gw4.relay");
    };

    // 40 ms each way: a pull takes ≥ 80 ms, inside the 200 ms pull timeout; a FORWARD's round
    // trip ≥ 80 ms, inside the 500 ms call deadline. Everything works, only slower.
    f.fault("delay gw4 40ms");
    for (auto d : {"d1", "d2"})
        EXPECT_TRUE(
            eventually([&] { return f.view(d, "gw4").value("pull_latency_ms", 0.0) >= 80; }, 5s))
            << d << ": " << f.view(d, "gw4").dump();
    auto t = clock_type::now();
    auto r = send_and_wait(*alice, "李雷@example.cn", 1, "慢一点");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok);
    EXPECT_GE(ms_since(t), 80);
    EXPECT_EQ(delivered(*bob), std::vector<std::string>{"慢一点"});
    for (auto d : {"d1", "d2"}) EXPECT_EQ(f.state(d, "gw4"), "up") << d;

    // 300 ms each way: the answer comes after ≥ 600 ms, past the 500 ms deadline: `timeout`;
    // the late answer is counted, the message still reached bob once, and the link stays (the
    // round trip plus a ping interval is inside peer_timeout).
    f.fault("delay gw4 300ms");
    double late_before = f.gw_metric("gw1", "imgate_rpc_late_answers_total");
    double read_timeouts =
        f.gw_metric("gw1", "imgate_rpc_links_closed_total{reason=\"read_timeout\"}");
    t = clock_type::now();
    r = send_and_wait(*alice, "李雷@example.cn", 2, "太慢了", 3000ms);
    ASSERT_TRUE(r) << "silence";
    EXPECT_EQ(r->status, proto::code::timeout) << proto::to_string(r->status);
    EXPECT_GE(ms_since(t), 500);
    EXPECT_TRUE(eventually(
        [&] { return f.gw_metric("gw1", "imgate_rpc_late_answers_total") >= late_before + 1; }, 5s))
        << diag();
    EXPECT_EQ(delivered(*bob, 1500ms), std::vector<std::string>{"太慢了"});
    // ... and a pull now takes ≥ 600 ms against a 200 ms timeout: both dispatchers take gw4 out,
    // their pulls failing by timeout.
    for (auto d : {"d1", "d2"}) {
        EXPECT_TRUE(eventually([&] { return f.state(d, "gw4") == "down"; }, 5s)) << d;
        auto err = f.view(d, "gw4").value("last_error", "");
        EXPECT_NE(err.find("timeout"), std::string::npos) << d << ": " << err;
    }
    EXPECT_EQ(f.gw_metric("gw1", "imgate_rpc_links_closed_total{reason=\"read_timeout\"}"),
              read_timeouts)
        << diag();

    // A spike to 2 s each way: a steady latency only shifts the PING/PONG stream, but the jump
    // leaves gw1 reading nothing for ~4 s, more than peer_timeout: its watchdog closes the link
    // (read_timeout), a new handshake cannot fit connect_timeout, and sends to bob answer
    // `unavailable` (his entry is held), never silence.
    f.fault("delay gw4 2s");
    EXPECT_TRUE(eventually(
        [&] {
            return f.gw_metric("gw1", "imgate_rpc_links_closed_total{reason=\"read_timeout\"}") >=
                   read_timeouts + 1;
        },
        8s))
        << diag();
    r = send_and_wait(*alice, "李雷@example.cn", 3, "断了");
    ASSERT_TRUE(r) << "silence";
    EXPECT_EQ(r->status, proto::code::unavailable) << proto::to_string(r->status);

    // Healed: the link comes back (a new handshake fits connect_timeout again), both dispatchers
    // take gw4 back, and sends are delivered.
    f.fault("heal gw4");
    for (auto d : {"d1", "d2"})
        EXPECT_TRUE(eventually([&] { return f.state(d, "gw4") == "up"; }, 10s)) << d;
    ASSERT_TRUE(eventually([&] { return f.gw_metric("gw1", "imgate_rpc_links_up") == 3; }, 10s))
        << diag();
    delivered(*bob, 200ms);
    r = send_and_wait(*alice, "李雷@example.cn", 4, "好了");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, proto::code::ok) << diag();
    EXPECT_EQ(delivered(*bob), std::vector<std::string>{"好了"});
}

// (d) One of the two dispatchers killed: the other keeps answering, and the reference client
// given both addresses fails over, for a one-shot lookup and for a held session that must
// re-home; a dispatcher host gone silent costs the client its connect bound, not a hang.
TEST(HostsFault, DispatcherKilledTheOtherAnswersAndTheClientFailsOver) {
    IMGATE_REQUIRE_HOSTS();
    fleet f;
    ASSERT_TRUE(f.up()) << f.last_output();
    ASSERT_TRUE(f.settled()) << f.log("d1");
    temp_dir dir;
    std::string both = f.dispatcher_urls();
    std::string secret = f.token_secret_file();
    std::string user = "zoë.lefèvre@example.fr";

    // A session held through either dispatcher, before anything fails.
    tool_process listener(dir, "listen",
                          {"listen", "--dispatcher", both, "--secret-file", secret, "-u", user});
    auto connected_to = [&](size_t nth) -> std::string {
        auto err = listener.err();
        size_t pos = 0;
        for (size_t i = 0; i < nth; ++i) {
            pos = err.find("connected to gw", pos);
            if (pos == std::string::npos) return "";
            pos += 13;
        }
        return err.substr(pos, 3);  // "imgate: connected to gw3 10.78.x.23:9000 as ..."
    };
    ASSERT_TRUE(eventually([&] { return !connected_to(1).empty(); }, 15s)) << listener.err();
    std::string first_gw = connected_to(1);

    f.fault("kill d1");
    for (int i = 0; i < 20; ++i) {
        auto a = http_get(f.public_addr("d2"), "/get-tcp-ip?uid=user" + std::to_string(i));
        ASSERT_EQ(a.status, 200) << a.body;
    }
    EXPECT_EQ(http_get(f.public_addr("d1"), "/get-tcp-ip", 500ms).status, 0);

    // A lookup naming the dead dispatcher first fails over to the live one.
    tool_process gg(dir, "get-gateway",
                    {"get-gateway", "--dispatcher", f.dispatcher_url("d1"), "--dispatcher",
                     f.dispatcher_url("d2"), "--user", "alice@example.com"});
    ASSERT_EQ(gg.wait(20s), 0) << gg.err();
    EXPECT_NE(gg.err().find("answered by dispatcher " + f.dispatcher_url("d2")), std::string::npos)
        << gg.err();
    EXPECT_NE(gg.out().find("9000"), std::string::npos) << gg.out();

    // The held session loses its gateway while d1 is dead: it re-homes through d2, and a message
    // sent through the dispatchers reaches it there.
    f.fault("kill " + first_gw);
    ASSERT_TRUE(eventually([&] { return !connected_to(2).empty(); }, 30s)) << listener.err();
    EXPECT_NE(connected_to(2), first_gw);
    tool_process sender(dir, "send",
                        {"send", "--dispatcher", both, "--secret-file", secret, "-u",
                         "alice@example.com", "--to", user, "encore là ?"});
    ASSERT_EQ(sender.wait(20s), 0) << sender.err() << sender.out();
    EXPECT_TRUE(
        eventually([&] { return listener.out().find("encore là ?") != std::string::npos; }, 10s))
        << listener.out() << listener.err();

    // d1 back, d2's host silent (packets vanish, nothing refused): every lookup still succeeds,
    // through d1, each one that tries d2 first paying at most the client's connect bound.
    f.fault("start d1");
    // A fresh dispatcher hands out gateways once its first pulls have taken them up.
    ASSERT_TRUE(eventually(
        [&] { return http_get(f.public_addr("d1"), "/get-tcp-ip?uid=x").status == 200; }, 10s));
    f.fault("silence d2");
    // The start is random per process: lookups until one has tried d2 first (12 at most; all
    // starting at d1 has odds of 1 in 4096).
    int tried_d2_first = 0;
    for (int i = 0; i < 12 && tried_d2_first == 0; ++i) {
        auto t = clock_type::now();
        tool_process g2(dir, "get-gateway-" + std::to_string(i),
                        {"get-gateway", "--dispatcher", both, "--user", "bob@example.com"});
        ASSERT_EQ(g2.wait(20s), 0) << g2.err();
        EXPECT_NE(g2.err().find("answered by dispatcher " + f.dispatcher_url("d1")),
                  std::string::npos)
            << g2.err();
        if (g2.err().find("dispatcher " + f.dispatcher_url("d2") + " failed") !=
            std::string::npos) {
            ++tried_d2_first;
            std::printf("[ dispatcher ] lookup with d2 silent, d2 tried first: %.0f ms\n",
                        ms_since(t));
        }
    }
    EXPECT_EQ(tried_d2_first, 1);
}
