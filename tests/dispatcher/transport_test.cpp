// GET /get-tcp-ip?transport=...: the parameter's parsing, picks restricted to the gateways that
// serve the transport (pick and alternates), the answer's transport/url fields, and the
// dispatcher.yaml `https:` block.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/clock.hpp"
#include "dispatcher/dispatcher_config.hpp"
#include "dispatcher/fleet_state.hpp"
#include "dispatcher/query.hpp"

using namespace imgate;
using namespace imgate::disp;
using namespace std::chrono_literals;

namespace {

std::variant<tcp_ip_query, query_error> parse(std::string_view q) {
    return parse_tcp_ip_query(q, {128, 32});
}

TEST(TransportQuery, DefaultsToTcpAndAcceptsEachTransport) {
    auto plain = parse("uid=alice%40example.com");
    ASSERT_TRUE(std::holds_alternative<tcp_ip_query>(plain));
    EXPECT_EQ(std::get<tcp_ip_query>(plain).via, transport::tcp);
    for (auto t : all_transports) {
        auto r = parse(std::string("uid=alice%40example.com&transport=") + to_string(t));
        ASSERT_TRUE(std::holds_alternative<tcp_ip_query>(r)) << to_string(t);
        EXPECT_EQ(std::get<tcp_ip_query>(r).via, t);
    }
}

TEST(TransportQuery, UnknownEmptyOrOddlyCasedValuesAreBadTransport) {
    for (auto q : {"transport=quic", "transport=", "transport=WSS", "transport=wss%20",
                   "transport=tcp,tls"}) {
        auto r = parse(q);
        ASSERT_TRUE(std::holds_alternative<query_error>(r)) << q;
        EXPECT_EQ(std::get<query_error>(r).code, "bad_transport") << q;
        EXPECT_NE(std::get<query_error>(r).message.find("tcp, tls, ws, wss"), std::string::npos);
    }
}

TEST(TransportQuery, RepeatedTransportIsABadQuery) {
    auto r = parse("transport=tcp&transport=wss");
    ASSERT_TRUE(std::holds_alternative<query_error>(r));
    EXPECT_EQ(std::get<query_error>(r).code, "bad_query");
}

TEST(TransportQuery, UnknownParameterMessageListsTransport) {
    auto r = parse("transports=wss");
    ASSERT_TRUE(std::holds_alternative<query_error>(r));
    EXPECT_EQ(std::get<query_error>(r).code, "unknown_parameter");
    EXPECT_NE(std::get<query_error>(r).message.find("transport)"), std::string::npos);
}

TEST(TransportRender, TcpAndTlsCarryTheTransportOnly) {
    std::vector<pick_target> t{{"gw1", {"10.0.0.1", 9443}}, {"gw2", {"10.0.0.2", 9443}}};
    EXPECT_EQ(
        render_pick(t, transport::tls),
        R"({"alternates":[{"host":"10.0.0.2","id":"gw2","port":9443,"transport":"tls"}],"host":"10.0.0.1","id":"gw1","port":9443,"transport":"tls"})");
}

TEST(TransportRender, WebSocketsCarryAUrlWithIpv6Bracketed) {
    std::vector<pick_target> t{{"gw1", {"gw1.im.example.com", 443}},
                               {"gw2", {"2001:db8::2", 8443}}};
    EXPECT_EQ(
        render_pick(t, transport::wss),
        R"({"alternates":[{"host":"2001:db8::2","id":"gw2","port":8443,"transport":"wss","url":"wss://[2001:db8::2]:8443/"}],"host":"gw1.im.example.com","id":"gw1","port":443,"transport":"wss","url":"wss://gw1.im.example.com:443/"})");
    auto j = nlohmann::json::parse(render_pick({{"gw3", {"127.0.0.1", 8080}}}, transport::ws));
    EXPECT_EQ(j["url"], "ws://127.0.0.1:8080/");
    EXPECT_EQ(j["transport"], "ws");
    EXPECT_TRUE(j["alternates"].empty());
}

// A fleet where each gateway serves a different set of transports.
gateway_spec gw(int n, bool tcp, bool tls, bool ws, bool wss, uint32_t weight = 100) {
    gateway_spec g;
    g.id = "gw" + std::to_string(n);
    std::string host = "10.0.0." + std::to_string(n);
    if (tcp) g.client = g.client_listen = {host, 9000};
    if (tls) g.tls = g.tls_listen = {host, 9443};
    if (ws) g.ws = g.ws_listen = {host, 8080};
    if (wss) g.wss = g.wss_listen = {"gw" + std::to_string(n) + ".im.example.com", 443};
    g.admin = {host, 9100};
    g.rpc = {host, 9200};
    g.weight = weight;
    g.region = "eu";
    return g;
}

struct transport_fleet {
    manual_clock clock;
    metrics_registry metrics;
    fleet_state fs{clock, 7, &metrics};
    explicit transport_fleet(std::vector<gateway_spec> specs) {
        fleet_config f;
        f.gateways = std::move(specs);
        health_params p;
        p.rise = 1;
        p.slow_start = 0ms;
        fs.apply(f, p, true);
        for (auto& g : f.gateways) {
            gateway_status s;
            s.id = g.id;
            s.state = "serving";
            s.max_connections = 100000;
            s.uptime_s = 100;
            fs.pull_succeeded(g.id, fs.pull_started(g.id), s, 1.0);
        }
    }
};

TEST(TransportPick, OnlyGatewaysServingTheTransportArePickedOrAlternates) {
    // gw1: tcp only; gw2: tcp + wss; gw3: wss + tls; gw4: ws only.
    transport_fleet f({gw(1, true, false, false, false), gw(2, true, false, false, true),
                       gw(3, false, true, false, true), gw(4, false, false, true, false)});
    auto ids_of = [](const std::vector<pick_target>& t) {
        std::set<std::string> s;
        for (auto& x : t) s.insert(x.id);
        return s;
    };
    std::map<transport, std::set<std::string>> serving{{transport::tcp, {"gw1", "gw2"}},
                                                       {transport::tls, {"gw3"}},
                                                       {transport::ws, {"gw4"}},
                                                       {transport::wss, {"gw2", "gw3"}}};
    for (auto& [t, want] : serving) {
        std::set<std::string> seen;
        for (int i = 0; i < 200; ++i) {
            pick_request r;
            r.alternates = 3;
            r.via = t;
            auto got = f.fs.pick(r);
            ASSERT_EQ(got.size(), want.size()) << to_string(t);  // every server, no other
            EXPECT_EQ(ids_of(got), want) << to_string(t);
            for (auto& x : got) {
                seen.insert(x.id);
                // The address handed out is that transport's.
                if (t == transport::wss)
                    EXPECT_EQ(x.address.to_string(), x.id + ".im.example.com:443");
                if (t == transport::tls) EXPECT_EQ(x.address.port, 9443);
                if (t == transport::tcp) EXPECT_EQ(x.address.port, 9000);
            }
        }
        EXPECT_EQ(seen, want) << to_string(t);
    }
}

TEST(TransportPick, NoGatewayServingTheTransportGivesAnEmptyPick) {
    transport_fleet f({gw(1, true, false, false, false), gw(2, true, true, false, false)});
    pick_request r;
    r.via = transport::wss;
    r.alternates = 2;
    pick_explanation why;
    EXPECT_TRUE(f.fs.pick(r, &why).empty());
    EXPECT_EQ(why.pool, "none");
    ASSERT_EQ(why.skipped.size(), 2u);
    EXPECT_EQ(why.skipped[0].second, "no_wss");
    // Excluding the only tls gateway leaves none for tls either.
    r.via = transport::tls;
    r.exclude = {"gw2"};
    EXPECT_TRUE(f.fs.pick(r).empty());
    // Nothing was counted as handed out by the empty picks.
    EXPECT_EQ(f.fs.picks_of("gw1") + f.fs.picks_of("gw2"), 0u);
}

TEST(TransportPick, WeightsApplyWithinTheTransportsCandidates) {
    // wss: gw2 (weight 300) and gw3 (weight 100); gw1 (tcp only, weight 10000) must not dilute.
    transport_fleet f({gw(1, true, false, false, false, 10000),
                       gw(2, true, false, false, true, 300),
                       gw(3, false, false, false, true, 100)});
    std::map<std::string, int> c;
    pick_request r;
    r.via = transport::wss;
    for (int i = 0; i < 4000; ++i) {
        auto t = f.fs.pick(r);
        ASSERT_FALSE(t.empty());
        c[t.front().id]++;
    }
    EXPECT_EQ(c.count("gw1"), 0u);
    // Static weights 3:1; power-of-two choices sharpens towards the lower score, but gw2 must
    // get clearly more than gw3 and gw3 a real share.
    EXPECT_GT(c["gw2"], c["gw3"] * 2) << c["gw2"] << " vs " << c["gw3"];
    EXPECT_GT(c["gw3"], 200);
}

TEST(TransportStatus, StatusJsonListsEachGatewaysTransports) {
    transport_fleet f({gw(1, true, false, false, false), gw(3, false, true, false, true)});
    auto j = f.fs.status_json();
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0]["client"], "10.0.0.1:9000");
    EXPECT_EQ(j[0]["transports"], (nlohmann::json{{"tcp", "10.0.0.1:9000"}}));
    EXPECT_EQ(j[1]["client"], nullptr);  // gw3 serves no plain tcp
    EXPECT_EQ(j[1]["transports"],
              (nlohmann::json{{"tls", "10.0.0.3:9443"}, {"wss", "gw3.im.example.com:443"}}));
}

struct config_dir {
    std::filesystem::path p;
    config_dir() {
        p = std::filesystem::temp_directory_path() /
            ("imgate-https-cfg-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(p);
        write("fleet.yaml",
              "gateways:\n  - {id: gw1, client: 127.0.0.1:9001, admin: 127.0.0.1:9101, rpc: "
              "127.0.0.1:9201}\n");
    }
    ~config_dir() { std::filesystem::remove_all(p); }
    std::string write(const std::string& name, const std::string& text) {
        std::ofstream(p / name) << text;
        return (p / name).string();
    }
};

TEST(DispatcherHttpsConfig, AbsentByDefaultAndParsedWithTlsRules) {
    config_dir d;
    auto c = load_dispatcher_config(d.write("dispatcher.yaml", "fleet: fleet.yaml\n"));
    EXPECT_FALSE(c.https.enabled());
    c = load_dispatcher_config(
        d.write("dispatcher.yaml",
                "fleet: fleet.yaml\nhttps:\n  listen: 0.0.0.0:8443\n  cert_file: certs/d.crt\n"
                "  key_file: /etc/imgate/d.key\n  handshake_timeout: 2s\n  max_handshakes: 50\n"
                "  min_version: '1.3'\n"));
    ASSERT_TRUE(c.https.enabled());
    EXPECT_EQ(c.https.listen->to_string(), "0.0.0.0:8443");
    EXPECT_EQ(c.https.tls.cert_file, (d.p / "certs/d.crt").string());
    EXPECT_EQ(c.https.tls.key_file, "/etc/imgate/d.key");
    EXPECT_EQ(c.https.tls.handshake_timeout, 2s);
    EXPECT_EQ(c.https.tls.max_handshakes, 50u);
    EXPECT_EQ(c.https.tls.min_version, "1.3");
}

TEST(DispatcherHttpsConfig, ErrorsNameTheKey) {
    config_dir d;
    auto expect_error = [&](const std::string& yaml, const std::string& fragment) {
        try {
            load_dispatcher_config(d.write("dispatcher.yaml", "fleet: fleet.yaml\n" + yaml));
            ADD_FAILURE() << "accepted: " << yaml;
        } catch (const config_error& e) {
            EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
        }
    };
    expect_error("https: {cert_file: a.crt, key_file: a.key}\n", "https.listen");
    expect_error("https: {listen: 127.0.0.1:8443}\n", "https.cert_file");
    expect_error("https: {listen: 127.0.0.1:8443, cert_file: a.crt}\n", "https.key_file");
    expect_error("https: {listen: 127.0.0.1:8443, cert_file: a, key_file: b, ciphers: x}\n",
                 "https.ciphers: unknown key");
    expect_error("https: {listen: 127.0.0.1:8443, cert_file: a, key_file: b, min_version: '1.1'}\n",
                 "https.min_version");
    expect_error(
        "listen: 127.0.0.1:8080\nhttps: {listen: 127.0.0.1:8080, cert_file: a, "
        "key_file: b}\n",
        "https.listen: must differ");
}

}  // namespace
