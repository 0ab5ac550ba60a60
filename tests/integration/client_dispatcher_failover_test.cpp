// The reference client with several --dispatcher URLs against real binaries on loopback: two
// real dispatchers pulling the same two gateways, plus dead URLs (a free port with nothing
// listening) and a silent one (a listener that never accepts). get-gateway fails over and says
// so, a round in which every URL fails is one clear error, `listen` re-homes through the other
// dispatcher when its own and then its gateway die, and `load --reconnect` ends with nobody stuck.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../support/tool_process.hpp"
#include "fault_fixture.hpp"

namespace {

using namespace imgate::test;
using json = nlohmann::json;

size_t count_of(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t p = 0; (p = text.find(what, p)) != std::string::npos; p += what.size()) ++n;
    return n;
}

// A loopback port whose listener never accepts: the kernel completes the handshake, nobody
// answers, so a client's request runs into its deadline.
class silent_listener {
  public:
    silent_listener() : port_(free_port()) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port_);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd_, 8) == 0;
    }
    ~silent_listener() { ::close(fd_); }
    bool ok() const { return ok_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  private:
    uint16_t port_;
    int fd_ = -1;
    bool ok_ = false;
};

class ClientDispatcherFailover : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(fleet_.start()) << fleet_.dispatcher().log();
        // A second dispatcher: the same fleet and settings, its own id and (ephemeral) ports.
        auto y = read_file(dir_.file("dispatcher.yaml"));
        auto at = y.find("id: fault-disp");
        ASSERT_NE(at, std::string::npos) << y;
        y.replace(at, 14, "id: fault-disp-2");
        write_file(dir_.file("dispatcher2.yaml"), y);
        disp2_ = std::make_unique<daemon_process>(
            "dispatcher2", binary_path("imgate-dispatcher"),
            std::vector<std::string>{"--config", dir_.file("dispatcher2.yaml")}, dir_);
        ASSERT_TRUE(disp2_->wait_ready()) << disp2_->log();
        ASSERT_TRUE(eventually([&] { return up_count(disp2_->addr("admin")) == 2; }, 10s))
            << disp2_->log();
        url1_ = "http://" + fleet_.public_addr();
        url2_ = "http://" + disp2_->addr("public");
        dead_ = "http://127.0.0.1:" + std::to_string(free_port());
    }

    static size_t up_count(const std::string& admin) {
        auto s = http_get(admin, "/status").json();
        size_t n = 0;
        if (s.is_object() && s.contains("gateways"))
            for (auto& g : s["gateways"])
                if (g.value("state", "") == "up") ++n;
        return n;
    }

    std::vector<std::string> with_secret(std::vector<std::string> a) {
        a.push_back("--secret-file");
        a.push_back(dir_.file("token.secret"));
        return a;
    }

    static fault::fleet::options two_gateways() {
        fault::fleet::options o;
        o.gateways = 2;
        o.dispatcher = true;
        return o;
    }

    fault::fleet fleet_{two_gateways()};
    const temp_dir& dir_ = fleet_.dir();
    std::unique_ptr<daemon_process> disp2_;
    std::string url1_, url2_, dead_;
};

// (i) A dead URL and a live one: every run gets a gateway from the live one and says which; the
// runs that started at the dead one (each process draws its start) say they failed over.
TEST_F(ClientDispatcherFailover, GetGatewayFailsOverFromADeadUrlAndSaysWhoAnswered) {
    int failed_over = 0;
    for (int run = 0; run < 16; ++run) {
        // Both spellings: the flag repeated, and one comma-separated value.
        auto args =
            run % 2 ? std::vector<std::string>{"get-gateway",      "--dispatcher", dead_,
                                               "--dispatcher",     url1_,          "--user",
                                               "jürgen@example.de"}
                    : std::vector<std::string>{"get-gateway", "--dispatcher", dead_ + "," + url1_,
                                               "--user", "jürgen@example.de"};
        tool_process gg(dir_, "gg" + std::to_string(run), args);
        auto rc = gg.wait(15s);
        ASSERT_EQ(rc, std::optional<int>(0)) << gg.out() << gg.err();
        auto j = json::parse(gg.out(), nullptr, false);
        ASSERT_TRUE(j.is_object()) << gg.out();
        EXPECT_TRUE(j["id"] == "gw1" || j["id"] == "gw2") << gg.out();
        auto err = gg.err();
        EXPECT_NE(err.find("answered by dispatcher " + url1_), std::string::npos) << err;
        auto line = "dispatcher " + dead_ + " failed (connection refused); trying " + url1_;
        size_t lines = count_of(err, "failed (");
        EXPECT_LE(lines, 1u) << err;
        if (lines == 1) {
            EXPECT_NE(err.find(line), std::string::npos) << err;
            ++failed_over;
        }
    }
    // Starts are spread: some runs began at each URL (all 16 at one: 2 in 65 536).
    EXPECT_GT(failed_over, 0);
    EXPECT_LT(failed_over, 16);
}

// (ii) Every URL fails: refused, refused, and silent until the request deadline. One error names
// each with its cause, the exit code is 1, nothing is printed on stdout, and it ends.
TEST_F(ClientDispatcherFailover, AllUrlsDeadIsOneErrorNamingEachAndNoHang) {
    silent_listener silent;
    ASSERT_TRUE(silent.ok());
    std::string dead2 = "http://127.0.0.1:" + std::to_string(free_port());
    tool_process gg(dir_, "gg-dead",
                    {"get-gateway", "--dispatcher", dead_, "--dispatcher",
                     dead2 + "," + silent.url(), "--user", "søren"});
    auto rc = gg.wait(30s);
    ASSERT_TRUE(rc) << "get-gateway hung: " << gg.err();
    EXPECT_EQ(*rc, 1) << gg.err();
    EXPECT_EQ(gg.out(), "");
    auto err = gg.err();
    EXPECT_NE(err.find("all 3 dispatchers failed: "), std::string::npos) << err;
    EXPECT_NE(err.find(dead_ + " (connection refused)"), std::string::npos) << err;
    EXPECT_NE(err.find(dead2 + " (connection refused)"), std::string::npos) << err;
    EXPECT_NE(err.find(silent.url() + " (no answer: timed out)"), std::string::npos) << err;
    // Two fail-over lines: after the first and the second URL of the round.
    EXPECT_EQ(count_of(err, "; trying "), 2u) << err;

    // A session command gives up the same way after its rounds (send: two rounds).
    tool_process send(dir_, "send-dead",
                      with_secret({"send", "--dispatcher", dead_ + "," + dead2, "--user", "søren",
                                   "--to", "bob", "--timeout", "20s", "hej"}));
    auto src = send.wait(30s);
    ASSERT_TRUE(src) << send.err();
    EXPECT_EQ(*src, 1);
    EXPECT_NE(send.err().find("all 2 dispatchers failed: "), std::string::npos) << send.err();
}

// (iii) listen holds a session got through one dispatcher; that dispatcher dies, then the
// gateway: the re-login asks the dead dispatcher first (it stuck), fails over to the other one
// and lands on the surviving gateway.
TEST_F(ClientDispatcherFailover, ListenReHomesThroughTheOtherDispatcher) {
    auto listen = std::make_unique<tool_process>(
        dir_, "listen",
        with_secret({"listen", "--dispatcher", url1_, "--dispatcher", url2_, "--user",
                     "marie-thérèse@example.fr", "--json"}));
    ASSERT_TRUE(eventually([&] { return listen->connections() == 1; }, 10s)) << listen->err();
    auto first = listen->err();
    std::string via = first.find("via dispatcher " + url1_) != std::string::npos ? url1_ : url2_;
    std::string other = via == url1_ ? url2_ : url1_;
    ASSERT_NE(first.find("via dispatcher " + via), std::string::npos) << first;
    auto gw = listen->gateway();
    ASSERT_TRUE(gw == "gw1" || gw == "gw2") << first;
    std::string survivor = gw == "gw1" ? "gw2" : "gw1";

    (via == url1_ ? fleet_.dispatcher() : *disp2_).signal(SIGKILL);
    fleet_.gw(gw).signal(SIGKILL);

    ASSERT_TRUE(eventually([&] { return listen->connections() == 2; }, 15s)) << listen->err();
    auto err = listen->err();
    EXPECT_EQ(listen->gateway(), survivor) << err;
    auto ended = err.find("session ended");
    ASSERT_NE(ended, std::string::npos) << err;
    auto again = err.substr(ended);
    EXPECT_NE(again.find("dispatcher " + via + " failed (connection refused); trying " + other),
              std::string::npos)
        << err;
    EXPECT_NE(again.find("via dispatcher " + other), std::string::npos) << err;

    // The new session works: a push to the user reaches it.
    auto pushed = http_request(
        fleet_.admin_addr(survivor), boost::beast::http::verb::post, "/push",
        R"({"user":"marie-thérèse@example.fr","payload":"bienvenue"})",
        {{"Authorization", "Bearer " + fault::admin_token}, {"Content-Type", "application/json"}});
    EXPECT_EQ(pushed.status, 200) << pushed.body;
    ASSERT_TRUE(
        eventually([&] { return listen->out().find("bienvenue") != std::string::npos; }, 5s))
        << listen->out();
}

// (iv) load --reconnect over both dispatchers: one dies mid-run, then the busiest gateway. The
// lost clients that started at the dead dispatcher fail over; at the end nobody is stuck, and the
// report counts the fail-overs its events file lists.
TEST_F(ClientDispatcherFailover, LoadReconnectSurvivesADispatcherDeathWithNobodyStuck) {
    constexpr int clients = 40;
    auto status = dir_.file("status.json");
    auto events = dir_.file("events.jsonl");
    tool_process load(dir_, "load",
                      with_secret({"load",
                                   "--dispatcher",
                                   url1_ + "," + url2_,
                                   "--reconnect",
                                   "--clients",
                                   std::to_string(clients),
                                   "--rooms",
                                   "0",
                                   "--room-share",
                                   "0",
                                   "--rate",
                                   "0",
                                   "--duration",
                                   "10s",
                                   "--status-file",
                                   status,
                                   "--events",
                                   events,
                                   "--json",
                                   "-q"}));
    auto read_status = [&] { return json::parse(read_file(status), nullptr, false); };
    ASSERT_TRUE(eventually(
        [&] {
            auto s = read_status();
            return s.is_object() && s.value("connected", -1) == clients;
        },
        30s))
        << load.err() << read_file(status);

    disp2_->signal(SIGKILL);
    ASSERT_TRUE(disp2_->wait_exit());
    auto st = read_status();
    std::string victim;
    int held = 0;
    for (auto& [id, n] : st["by_gateway"].items())
        if (n.get<int>() > held) {
            held = n.get<int>();
            victim = id;
        }
    ASSERT_FALSE(victim.empty()) << st.dump();
    fleet_.gw(victim).signal(SIGKILL);

    ASSERT_TRUE(eventually(
        [&] {
            auto s = read_status();
            return s.is_object() && s.value("connected", -1) == clients &&
                   !s["by_gateway"].contains(victim) && s.value("lost_total", 0) >= held;
        },
        20s))
        << load.err() << read_file(status);
    auto rc = load.wait(40s);
    ASSERT_TRUE(rc) << load.err();
    EXPECT_EQ(*rc, 0) << load.out() << load.err();
    auto report = json::parse(load.out(), nullptr, false);
    ASSERT_TRUE(report.is_object()) << load.out();
    EXPECT_EQ(report["stuck"], 0);
    EXPECT_EQ(report["relogins"], held);

    // Every fail-over left the dead dispatcher, and the report counts each one.
    std::istringstream in(read_file(events));
    std::string line;
    uint64_t failovers = 0;
    while (std::getline(in, line)) {
        auto e = json::parse(line, nullptr, false);
        if (!e.is_object() || e["event"] != "dispatcher_failover") continue;
        ++failovers;
        EXPECT_EQ(e["dispatcher"], url2_) << line;
        EXPECT_EQ(e["cause"], "connection refused") << line;
    }
    EXPECT_EQ(report["dispatcher_failovers"], failovers);
    // About half of the lost clients started at the dead dispatcher (none of `held`: 2^-held).
    EXPECT_GT(failovers, 0u) << load.out();
    EXPECT_LE(failovers, uint64_t(held)) << load.out();
}

}  // namespace
