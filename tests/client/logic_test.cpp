#include "client/logic.hpp"

#include "client/load.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

// Addresses and answers are written as brace lists of their leading fields; the rest (path,
// transport) have default member initializers, which is what these tests want.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

using namespace imgate::client;
using std::chrono::milliseconds;
namespace proto = imgate::proto;

TEST(ParseDuration, UnitsAndBareSeconds) {
    EXPECT_EQ(parse_duration("1500ms"), milliseconds(1500));
    EXPECT_EQ(parse_duration("2s"), milliseconds(2000));
    EXPECT_EQ(parse_duration("30"), milliseconds(30000));
    EXPECT_EQ(parse_duration("0.5"), milliseconds(500));
    EXPECT_EQ(parse_duration("5m"), milliseconds(300000));
    EXPECT_EQ(parse_duration("1h"), milliseconds(3600000));
    EXPECT_EQ(parse_duration("7d"), milliseconds(7 * 86400000LL));
}

TEST(ParseDuration, RejectsGarbage) {
    for (auto s : {"", "s", "-1", "1x", "1.2.3", "abc", "1 h", ".", "1e400"})
        EXPECT_FALSE(parse_duration(s)) << s;
}

TEST(SplitList, TrimsAndDropsEmpty) {
    EXPECT_EQ(split_list("a, b,,c "), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_TRUE(split_list("").empty());
    EXPECT_TRUE(split_list(",,").empty());
}

TEST(Loopback, AcceptsOnlyLoopback) {
    for (auto h : {"127.0.0.1", "127.255.0.9", "::1", "[::1]", "localhost", "::ffff:127.0.0.2"})
        EXPECT_TRUE(is_loopback_host(h)) << h;
    for (auto h : {"10.0.0.1", "128.0.0.1", "0.0.0.0", "::", "example.com", "::ffff:10.0.0.1",
                   "126.255.255.255", "", "localhost.example.com"})
        EXPECT_FALSE(is_loopback_host(h)) << h;
}

TEST(HttpUrl, Parses) {
    auto u = parse_http_url("http://127.0.0.1:8080");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "127.0.0.1");
    EXPECT_EQ(u->port, 8080);
    EXPECT_EQ(u->prefix, "");
    u = parse_http_url("http://disp.example/api/");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->port, 80);
    EXPECT_EQ(u->prefix, "/api");
    u = parse_http_url("http://[::1]:81/x");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "::1");
    EXPECT_EQ(u->authority(), "[::1]:81");
    std::string err;
    EXPECT_FALSE(parse_http_url("127.0.0.1:8080", &err));
    EXPECT_NE(err.find("http[s]://"), std::string::npos);
    EXPECT_FALSE(parse_http_url("http://:80", &err));
    EXPECT_FALSE(parse_http_url("http://h:0", &err));
    EXPECT_FALSE(parse_http_url("http://h:99999", &err));
}

TEST(GatewayAnswer, ParsesPickAndAlternates) {
    std::string err;
    auto a = parse_gateway_answer(
        R"({"id":"gw1","host":"127.0.0.1","port":9001,"alternates":[{"id":"gw2","host":"127.0.0.1","port":9002}]})",
        &err);
    ASSERT_TRUE(a) << err;
    EXPECT_EQ(a->primary, (gateway_addr{"gw1", "127.0.0.1", 9001, ""}));
    ASSERT_EQ(a->alternates.size(), 1u);
    EXPECT_EQ(a->alternates[0], (gateway_addr{"gw2", "127.0.0.1", 9002, ""}));
}

TEST(GatewayAnswer, RejectsBadShapes) {
    std::string err;
    EXPECT_FALSE(parse_gateway_answer("not json", &err));
    EXPECT_FALSE(parse_gateway_answer(R"({"id":"gw1","port":9001})", &err));
    EXPECT_NE(err.find("host"), std::string::npos);
    EXPECT_FALSE(parse_gateway_answer(R"({"host":"h","port":"9001"})", &err));
    EXPECT_FALSE(parse_gateway_answer(R"({"host":"h","port":70000})", &err));
    EXPECT_FALSE(parse_gateway_answer(R"({"host":"h","port":1,"alternates":{}})", &err));
    EXPECT_FALSE(
        parse_gateway_answer(R"({"host":"h","port":1,"alternates":[{"host":"x"}]})", &err));
    EXPECT_NE(err.find("alternates[0]"), std::string::npos);
}

TEST(GatewayQuery, EncodesAndSkipsEmpty) {
    EXPECT_EQ(get_gateway_query("", "", {}), "");
    EXPECT_EQ(get_gateway_query("al ice", "eu", {"gw1", "gw2"}),
              "uid=al%20ice&region=eu&exclude=gw1%2Cgw2");
}

TEST(Failover, PrimaryThenAlternatesWithoutDuplicates) {
    failover_plan p;
    gateway_answer a{{"gw1", "h", 1}, {{"gw2", "h", 2}, {"gw1", "h", 1}, {"gw3", "h", 3}}};
    p.start(a);
    EXPECT_EQ(p.next()->id, "gw1");
    EXPECT_EQ(p.next()->id, "gw2");
    EXPECT_EQ(p.next()->id, "gw3");
    EXPECT_FALSE(p.next());
}

TEST(Failover, FailedGatewaysGoLastAndAreExcluded) {
    failover_plan p;
    p.start({{"gw1", "h", 1}, {{"gw2", "h", 2}}});
    p.mark_failed(*p.next());
    p.mark_failed(*p.next());
    EXPECT_EQ(p.exclude(), (std::vector<std::string>{"gw1", "gw2"}));
    // The dispatcher ignored the exclude (everything else is down): still try, new ones first.
    p.start({{"gw1", "h", 1}, {{"gw3", "h", 3}}});
    EXPECT_EQ(p.next()->id, "gw3");
    EXPECT_EQ(p.next()->id, "gw1");
    EXPECT_FALSE(p.next());
    p.forget_failures();
    EXPECT_TRUE(p.exclude().empty());
}

TEST(Failover, ExcludeListIsBoundedAndKeysAddressesWithoutId) {
    failover_plan p;
    for (int i = 0; i < 40; ++i) p.mark_failed({"gw" + std::to_string(i), "h", 1});
    EXPECT_EQ(p.exclude().size(), failover_plan::max_exclude);
    EXPECT_EQ(p.exclude().back(), "gw39");
    // An address without an id is not excludable at the dispatcher, but still goes last.
    failover_plan q;
    q.mark_failed({"", "127.0.0.1", 9001});
    EXPECT_TRUE(q.exclude().empty());
    q.start({{"", "127.0.0.1", 9001}, {{"gw2", "127.0.0.1", 9002}}});
    EXPECT_EQ(q.next()->id, "gw2");
    EXPECT_EQ(q.next()->port, 9001);
}

TEST(Backoff, GrowsWithJitterCappedAndHonoursFloor) {
    std::mt19937_64 rng(42);
    backoff b(milliseconds(100), milliseconds(1000));
    auto d0 = b.next(rng);
    EXPECT_GE(d0, milliseconds(50));
    EXPECT_LE(d0, milliseconds(100));
    auto d1 = b.next(rng);
    EXPECT_GE(d1, milliseconds(100));
    EXPECT_LE(d1, milliseconds(200));
    auto d2 = b.next(rng);
    EXPECT_GE(d2, milliseconds(200));
    EXPECT_LE(d2, milliseconds(400));
    b.next(rng);  // cap 800
    for (int i = 0; i < 20; ++i) {
        auto d = b.next(rng);
        EXPECT_GE(d, milliseconds(500));
        EXPECT_LE(d, milliseconds(1000));
    }
    EXPECT_EQ(b.next(rng, milliseconds(5000)), milliseconds(5000));
    b.reset();
    EXPECT_LE(b.next(rng), milliseconds(100));
    // Jitter: not every draw is the same.
    std::set<int64_t> seen;
    for (int i = 0; i < 20; ++i) {
        b.reset();
        seen.insert(b.next(rng).count());
    }
    EXPECT_GT(seen.size(), 3u);
}

TEST(LatencyStats, NearestRankPercentiles) {
    latency_stats s;
    EXPECT_EQ(s.percentile(50), 0u);
    for (uint64_t v = 100; v >= 1; --v) s.add(v);  // 1..100 in reverse order
    EXPECT_EQ(s.count(), 100u);
    EXPECT_EQ(s.percentile(50), 50u);
    EXPECT_EQ(s.percentile(90), 90u);
    EXPECT_EQ(s.percentile(99), 99u);
    EXPECT_EQ(s.percentile(100), 100u);
    EXPECT_EQ(s.percentile(0), 1u);
    EXPECT_EQ(s.max(), 100u);
    EXPECT_DOUBLE_EQ(s.mean(), 50.5);
    s.add(1000);  // adding after a percentile query re-sorts
    EXPECT_EQ(s.percentile(100), 1000u);
}

TEST(LatencyStats, ReservoirStaysBoundedAndRepresentative) {
    latency_stats s(1000, 7);
    for (uint64_t i = 0; i < 100000; ++i) s.add(i % 1000);
    EXPECT_EQ(s.count(), 100000u);
    EXPECT_EQ(s.max(), 999u);
    // Uniform 0..999: the sampled median is near 500.
    EXPECT_NEAR(double(s.percentile(50)), 500.0, 80.0);
}

TEST(ValidateLoad, AcceptsSaneLocalRun) {
    load_params p;
    p.gateways = {{"127.0.0.1", 9001}, {"::1", 9002}};
    EXPECT_EQ(validate_load(p), "");
    load_params d;
    d.dispatchers = {"http://127.0.0.1:8080"};
    EXPECT_EQ(validate_load(d), "");
}

// --allow-target: a private network one of this machine's interfaces is on, nothing else.
TEST(AllowTarget, OnlyPrivateNetworksThisMachineIsOn) {
    namespace ip = boost::asio::ip;
    std::vector<ip::address> local = {ip::make_address("127.0.0.1"), ip::make_address("10.77.0.1"),
                                      ip::make_address("fd00:77::1"),
                                      ip::make_address("203.0.113.9")};
    target_networks t;
    EXPECT_EQ(parse_target_networks({"10.77.0.0/24", "fd00:77::/64"}, local, t), "");
    EXPECT_TRUE(t.allows("10.77.0.21"));
    EXPECT_TRUE(t.allows("[fd00:77::21]"));
    EXPECT_TRUE(t.allows("127.0.0.5"));  // loopback always
    EXPECT_FALSE(t.allows("10.77.1.21"));
    EXPECT_FALSE(t.allows("gw1.example.com"));  // names are never resolved into a network
    // A host address written as a network is taken as its network.
    target_networks h;
    EXPECT_EQ(parse_target_networks({"10.77.0.9/24"}, local, h), "");
    EXPECT_TRUE(h.allows("10.77.0.200"));

    target_networks r;
    EXPECT_NE(parse_target_networks({"203.0.113.0/24"}, local, r).find("not a private range"),
              std::string::npos);  // public, even though this machine is on it
    EXPECT_NE(parse_target_networks({"10.99.0.0/24"}, local, r).find("no interface"),
              std::string::npos);
    EXPECT_NE(parse_target_networks({"10.0.0.0/4"}, local, r).find("not a private range"),
              std::string::npos);  // wider than 10/8
    EXPECT_NE(parse_target_networks({"10.77.0.0"}, local, r).find("not a CIDR"), std::string::npos);
    EXPECT_NE(parse_target_networks({"2001:db8::/32"}, local, r).find("not a private range"),
              std::string::npos);
    EXPECT_TRUE(r.empty());

    load_params p;
    p.dispatchers = {"http://10.77.0.11:8080,http://10.77.0.12:8080"};
    EXPECT_NE(validate_load(p).find("--allow-target"), std::string::npos);
    p.allowed = t;
    EXPECT_EQ(validate_load(p), "");
    p.gateways = {{"10.77.0.21", 9000}};
    p.dispatchers.clear();
    EXPECT_EQ(validate_load(p), "");
}

TEST(AllowTarget, LocalInterfacesIncludeLoopback) {
    auto local = local_interface_addresses();
    EXPECT_NE(std::find(local.begin(), local.end(), boost::asio::ip::make_address("127.0.0.1")),
              local.end());
}

TEST(ValidateLoad, RefusesNonLoopbackAndOutOfBounds) {
    load_params p;
    p.gateways = {{"127.0.0.1", 9001}, {"192.168.1.5", 9002}};
    EXPECT_NE(validate_load(p).find("192.168.1.5"), std::string::npos);
    load_params d;
    d.dispatchers = {"http://10.1.2.3:8080"};
    EXPECT_NE(validate_load(d).find("loopback"), std::string::npos);
    d.dispatchers = {"http://dispatcher.example:8080"};
    EXPECT_NE(validate_load(d).find("loopback"), std::string::npos);
    // Every one of several dispatchers must be local, and every item of a comma list is checked.
    d.dispatchers = {"http://127.0.0.1:8080", "http://127.0.0.2:8080,http://10.1.2.3:8080"};
    EXPECT_NE(validate_load(d).find("10.1.2.3"), std::string::npos) << validate_load(d);
    d.dispatchers = {"http://127.0.0.1:8080", "http://127.0.0.2:8080,http://[::1]:8080"};
    EXPECT_EQ(validate_load(d), "");

    auto with = [](auto f) {
        load_params q;
        q.gateways = {{"127.0.0.1", 9001}};
        f(q);
        return validate_load(q);
    };
    EXPECT_NE(with([](load_params& q) { q.clients = 20001; }), "");
    EXPECT_NE(with([](load_params& q) { q.clients = 1; }), "");
    EXPECT_EQ(with([](load_params& q) { q.clients = 20000; }), "");
    EXPECT_NE(with([](load_params& q) { q.duration_s = 601; }), "");
    EXPECT_EQ(with([](load_params& q) { q.duration_s = 600; }), "");
    EXPECT_NE(with([](load_params& q) { q.duration_s = 0; }), "");
    EXPECT_NE(with([](load_params& q) { q.rate = 0; }), "");
    EXPECT_NE(with([](load_params& q) { q.payload_bytes = 8; }), "");
    EXPECT_NE(with([](load_params& q) { q.rooms = 0; }), "");  // room_share > 0 needs rooms
    EXPECT_EQ(with([](load_params& q) {
                  q.rooms = 0;
                  q.room_share = 0;
              }),
              "");
    EXPECT_NE(with([](load_params& q) { q.rooms = 1000; }), "");  // more rooms than clients
    load_params none;
    EXPECT_NE(validate_load(none), "");
}

TEST(SendExitCode, MapsStatus) {
    EXPECT_EQ(send_exit_code(proto::code::ok), 0);
    EXPECT_EQ(send_exit_code(proto::code::offline), 2);
    EXPECT_EQ(send_exit_code(proto::code::rate_limited), 1);
    EXPECT_EQ(send_exit_code(proto::code::unavailable), 1);
}

TEST(Render, DeliverJsonLineHasIdsSenderAndText) {
    proto::deliver_msg m;
    m.server_msg_id = 77;
    m.kind = proto::target_kind::room;
    m.from_user = "alice";
    m.from_device = "phone";
    m.room = "r1";
    m.ts_ms = 1700000000000;
    m.payload = "hi \"there\"\n";
    auto line = render_deliver(m, true);
    EXPECT_EQ(line.find('\n'), std::string::npos);
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["type"], "deliver");
    EXPECT_EQ(j["server_msg_id"], 77);
    EXPECT_EQ(j["from"], "alice");
    EXPECT_EQ(j["from_device"], "phone");
    EXPECT_EQ(j["room"], "r1");
    EXPECT_EQ(j["kind"], "room");
    EXPECT_EQ(j["text"], "hi \"there\"\n");
    auto text = render_deliver(m, false);
    EXPECT_EQ(text.find('\n'), std::string::npos);  // control characters are escaped
    EXPECT_NE(text.find("alice/phone"), std::string::npos);
    EXPECT_NE(text.find("[r1]"), std::string::npos);
}

TEST(Render, InvalidUtf8DoesNotThrow) {
    proto::deliver_msg m;
    m.payload = std::string("\xff\xfe", 2);
    EXPECT_NO_THROW(nlohmann::json::parse(render_deliver(m, true)));
}

TEST(Render, SendResultAndReceipt) {
    proto::send_result_msg r{5, 9, proto::code::offline, 0};
    auto j = nlohmann::json::parse(render_send_result(r, "bob", false, true));
    EXPECT_EQ(j["status"], "offline");
    EXPECT_EQ(j["to"], "bob");
    EXPECT_EQ(j["reached"], 0);
    EXPECT_EQ(render_send_result(r, "bob", false, false).rfind("offline: user bob", 0), 0u);
    proto::receipt_msg rc{5, 9, "bob", "phone"};
    auto k = nlohmann::json::parse(render_receipt(rc, true));
    EXPECT_EQ(k["user"], "bob");
    EXPECT_EQ(k["client_msg_id"], 5);
}

TEST(LoadPayload, RoundTripsAndRejectsForeign) {
    auto p = make_load_payload(123456789, 64);
    EXPECT_EQ(p.size(), 64u);
    EXPECT_EQ(read_load_payload(p), 123456789u);
    EXPECT_FALSE(read_load_payload("hello world, not a stamp"));
    EXPECT_FALSE(read_load_payload("imgL"));
}

TEST(ValidateLoad, ShardsRunIdAndReconnect) {
    auto with = [](auto f) {
        load_params q;
        q.dispatchers = {"http://127.0.0.1:8080"};
        f(q);
        return validate_load(q);
    };
    // Reconnect mode: a dispatcher is required, --rate 0 is allowed (only there).
    EXPECT_EQ(with([](load_params& q) {
                  q.reconnect = true;
                  q.rate = 0;
              }),
              "");
    EXPECT_NE(with([](load_params& q) { q.rate = 0; }), "");
    EXPECT_NE(with([](load_params& q) {
                  q.reconnect = true;
                  q.rate = -1;
              }),
              "");
    {
        load_params q;
        q.gateways = {{"127.0.0.1", 9001}};
        q.reconnect = true;
        EXPECT_NE(validate_load(q).find("--dispatcher"), std::string::npos);
    }
    EXPECT_NE(with([](load_params& q) { q.reconnect_concurrency = 0; }), "");
    // --shard: 0 <= I < N <= 64; up to 200000 clients in all, at most 20000 in this process.
    EXPECT_EQ(with([](load_params& q) {
                  q.clients = 200000;
                  q.shard_index = 63;
                  q.shard_count = 64;
              }),
              "");
    EXPECT_NE(with([](load_params& q) {
                  q.clients = 200000;
                  q.shard_index = 0;
                  q.shard_count = 8;  // 25000 each
              }).find("20000"),
              std::string::npos);
    EXPECT_NE(with([](load_params& q) {
                  q.clients = 200001;
                  q.shard_count = 64;
              }),
              "");
    EXPECT_NE(with([](load_params& q) {
                  q.shard_index = 2;
                  q.shard_count = 2;
              }),
              "");
    EXPECT_NE(with([](load_params& q) { q.shard_count = 65; }), "");
    EXPECT_NE(with([](load_params& q) { q.clients = 20001; }), "");  // unsharded limit stays
    EXPECT_NE(with([](load_params& q) { q.run_id = "bad id"; }), "");
    EXPECT_NE(with([](load_params& q) { q.run_id = std::string(33, 'a'); }), "");
    EXPECT_EQ(with([](load_params& q) { q.run_id = "storm_7-a"; }), "");
}

TEST(LoadParams, ShardsSplitTheGlobalIndexesWithoutGapsOrOverlap) {
    for (uint32_t clients : {2u, 7u, 100u, 15001u}) {
        for (uint32_t n : {1u, 2u, 3u, 64u}) {
            if (n > clients) continue;
            uint32_t next = 0;
            for (uint32_t i = 0; i < n; ++i) {
                load_params p;
                p.clients = clients;
                p.shard_index = i;
                p.shard_count = n;
                EXPECT_EQ(p.first_client(), next) << clients << " " << i << "/" << n;
                next += p.local_clients();
            }
            EXPECT_EQ(next, clients);
        }
    }
}

TEST(ParseShard, AcceptsIOverNOnly) {
    EXPECT_EQ(parse_shard("0/2"), std::make_pair(0u, 2u));
    EXPECT_EQ(parse_shard("17/64"), std::make_pair(17u, 64u));
    for (auto s : {"", "1", "/2", "1/", "a/2", "1/2/3", "-1/2", "1 /2", "1/2x"})
        EXPECT_FALSE(parse_shard(s)) << s;
}

TEST(ReconnectPolicy, ParsedFromTheAnswerAndIgnoredWhenBad) {
    auto ans = [](const std::string& rc) {
        std::string err;
        auto a = parse_gateway_answer(R"({"id":"gw1","host":"127.0.0.1","port":9001)" +
                                          (rc.empty() ? "" : ",\"reconnect\":" + rc) + "}",
                                      &err);
        EXPECT_TRUE(a) << err;
        return a ? a->reconnect : std::nullopt;
    };
    EXPECT_FALSE(ans(""));
    auto p = ans(R"({"base_ms":250,"jitter_ms":0,"max_ms":4000})");
    ASSERT_TRUE(p);
    EXPECT_EQ(p->base, milliseconds(250));
    EXPECT_EQ(p->jitter, milliseconds(0));
    EXPECT_EQ(p->max, milliseconds(4000));
    // Each bad value makes the whole policy ignored; the answer itself still stands.
    for (auto bad : {R"({"base_ms":0,"jitter_ms":1,"max_ms":10})",
                     R"({"base_ms":100,"jitter_ms":1,"max_ms":50})",
                     R"({"base_ms":100,"jitter_ms":-1,"max_ms":500})",
                     R"({"base_ms":100,"jitter_ms":1,"max_ms":600001})",
                     R"({"base_ms":"100","jitter_ms":1,"max_ms":500})",
                     R"({"base_ms":100.5,"jitter_ms":1,"max_ms":500})",
                     R"({"base_ms":100,"max_ms":500})", R"([100,1,500])", R"(null)", R"("x")"})
        EXPECT_FALSE(ans(bad)) << bad;
    EXPECT_EQ(parse_reconnect_policy(R"({"base_ms":1,"jitter_ms":600000,"max_ms":600000})"),
              (reconnect_policy{milliseconds(1), milliseconds(600000), milliseconds(600000)}));
    EXPECT_FALSE(parse_reconnect_policy("not json"));
}

TEST(ReconnectSchedule, FirstAttemptAfterALossWaitsOnlyTheJitter) {
    double r = 0;
    reconnect_schedule s([&] { return r; });  // defaults: 500 / 1000 / 30000
    EXPECT_EQ(s.after_loss(), milliseconds(0));
    r = 0.25;
    EXPECT_EQ(s.after_loss(), milliseconds(250));
    r = 1;
    EXPECT_EQ(s.after_loss(), milliseconds(1000));
    r = 7;  // out of range draws are clamped
    EXPECT_EQ(s.after_loss(), milliseconds(1000));
    // A server hint is waited exactly: no jitter on top.
    EXPECT_EQ(s.after_loss(milliseconds(1733)), milliseconds(1733));
    EXPECT_EQ(s.after_loss(milliseconds(0)), milliseconds(0));
}

TEST(ReconnectSchedule, FailedRoundsDoubleToTheCapPlusJitter) {
    double r = 0.5;
    reconnect_schedule s([&] { return r; }, reconnect_policy{milliseconds(500), milliseconds(1000),
                                                             milliseconds(3000)});
    s.after_loss();
    EXPECT_EQ(s.after_failed_round(), milliseconds(500 + 500));   // n=1: base
    EXPECT_EQ(s.after_failed_round(), milliseconds(1000 + 500));  // n=2
    EXPECT_EQ(s.after_failed_round(), milliseconds(2000 + 500));  // n=3
    EXPECT_EQ(s.after_failed_round(), milliseconds(3000 + 500));  // capped
    r = 0;
    for (int i = 0; i < 100; ++i) EXPECT_EQ(s.after_failed_round(), milliseconds(3000));
    EXPECT_EQ(s.failed_rounds(), 104u);
    // A hint replaces the own wait but the round still counts.
    EXPECT_EQ(s.after_failed_round(milliseconds(120)), milliseconds(120));
    EXPECT_EQ(s.failed_rounds(), 105u);
    // A new loss (or a session up: reset) starts the doubling over.
    s.after_loss();
    EXPECT_EQ(s.after_failed_round(), milliseconds(500));
    s.reset();
    EXPECT_EQ(s.after_failed_round(), milliseconds(500));
}

TEST(ReconnectSchedule, DrawsAreUniformOverTheJitter) {
    std::mt19937_64 rng(7);
    reconnect_schedule s([&] { return std::uniform_real_distribution<double>(0, 1)(rng); });
    int buckets[10] = {};
    for (int i = 0; i < 10000; ++i) {
        auto d = s.after_loss().count();
        ASSERT_GE(d, 0);
        ASSERT_LE(d, 1000);
        ++buckets[std::min<long>(d / 100, 9)];
    }
    for (int b : buckets) {
        EXPECT_GT(b, 800);
        EXPECT_LT(b, 1200);
    }
}

TEST(LoadReport, ReconnectAdditionsAndExitCode) {
    load_params p;
    p.dispatchers = {"http://127.0.0.1:8080"};
    p.reconnect = true;
    p.clients = 60;
    p.shard_index = 1;
    p.shard_count = 2;
    load_report r;
    r.clients = 30;
    r.connected = 30;
    r.logins = 41;
    r.losses = 11;
    r.loss_reasons = {{"reset", 10}, {"kick:shutdown", 1}};
    r.relogins = 11;
    r.attempts_failed = 3;
    r.failed_by_cause = {{"http_503", 2}, {"refused", 1}};
    for (uint64_t ms : {100, 300, 900}) r.relogin_ms.add(ms);
    auto text = r.text(p);
    EXPECT_NE(text.find("losses       11 [kick:shutdown 1] [reset 10], re-logins 11"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("loss->login   p50 300"), std::string::npos) << text;
    EXPECT_NE(text.find("503s 2"), std::string::npos) << text;
    EXPECT_NE(text.find("30 of 30 connected, stuck 0"), std::string::npos) << text;
    auto j = nlohmann::json::parse(r.json(p));
    EXPECT_EQ(j["losses"], 11);
    EXPECT_EQ(j["relogins"], 11);
    EXPECT_EQ(j["http_503"], 2);
    EXPECT_EQ(j["attempts_failed_by_cause"]["refused"], 1);
    EXPECT_EQ(j["relogin_ms"]["max"], 900);
    EXPECT_EQ(j["params"]["shard"], "1/2");
    EXPECT_EQ(j["params"]["first_client"], 30);
    EXPECT_EQ(j["params"]["reconnect_concurrency"], 1000);
    // Reconnect mode: losses are fine when everyone is back; a stuck client or a missing
    // result fails the run.
    EXPECT_EQ(r.exit_code(p), 0);
    r.lost_with_session = 4;
    EXPECT_EQ(r.exit_code(p), 0);
    r.stuck = 1;
    EXPECT_EQ(r.exit_code(p), 1);
    r.stuck = 0;
    r.missing = 1;
    EXPECT_EQ(r.exit_code(p), 1);
    // One dispatcher: the JSON counts fail-overs (0), the text is as it always was.
    EXPECT_EQ(j["dispatcher_failovers"], 0);
    EXPECT_EQ(text.find("fail-overs"), std::string::npos) << text;
    // Several: both count them.
    p.dispatchers = {"http://127.0.0.1:8080", "http://127.0.0.2:8080"};
    r.dispatcher_failovers = 7;
    EXPECT_NE(r.text(p).find("dispatcher fail-overs 7 (over 2 dispatchers)"), std::string::npos)
        << r.text(p);
    EXPECT_EQ(nlohmann::json::parse(r.json(p))["dispatcher_failovers"], 7);
    // Without --reconnect a failed first connect still fails the run.
    p.reconnect = false;
    r.missing = 0;
    r.connect_failed = 1;
    EXPECT_EQ(r.exit_code(p), 1);
}
