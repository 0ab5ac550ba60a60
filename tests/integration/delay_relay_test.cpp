// imgate-delay-relay (tests/tools), the wire with latency behind the many-hosts fleet's `delay`
// fault: its delay queue without sockets, then the real binary on loopback in front of a small
// echo server: round trip ≥ 2 × delay, SIGHUP changing the delay both ways, byte order over a
// few MB through a small buffer, half-close after the data, a refusing target, the ready file
// and bad arguments.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <random>
#include <thread>

#include "../support/process.hpp"
#include "../support/raw_conn.hpp"
#include "../tools/delay_queue.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace std::chrono_literals;
using imgate::relay::delay_queue;

namespace {

std::string relay_binary() {
    return std::string(IMGATE_BINARY_DIR) + "/tests/imgate-delay-relay";
}

// Echoes every byte back on each accepted connection and answers the client's half-close with
// its own after the echoed data: the far side of the wire. One thread per connection.
class echo_server {
  public:
    echo_server() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd_, 64) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            throw std::runtime_error("echo_server: cannot listen");
        port_ = ntohs(a.sin_port);
        accepter_ = std::thread([this] { accept_loop(); });
    }
    ~echo_server() {
        stop_ = true;
        accepter_.join();
        {
            std::lock_guard lk(mu_);
            for (int c : conns_) ::shutdown(c, SHUT_RDWR);
        }
        for (auto& t : servers_) t.join();
        for (int c : conns_) ::close(c);
        ::close(fd_);
    }
    std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }
    int accepted() const { return accepted_; }

  private:
    void accept_loop() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            ++accepted_;
            std::lock_guard lk(mu_);
            conns_.push_back(c);
            servers_.emplace_back([c] { serve(c); });
        }
    }
    static void serve(int c) {
        std::vector<char> buf(65536);
        for (;;) {
            ssize_t n = ::recv(c, buf.data(), buf.size(), 0);
            if (n <= 0) break;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = ::send(c, buf.data() + off, size_t(n - off), MSG_NOSIGNAL);
                if (w <= 0) return;
                off += w;
            }
        }
        ::shutdown(c, SHUT_WR);
    }

    int fd_ = -1;
    uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::mutex mu_;
    std::vector<int> conns_;  // shut down to end their threads, then closed
    std::vector<std::thread> servers_;
    std::thread accepter_;
};

// The relay as a daemon; `routes` are LISTEN=TARGET.
struct relay_proc {
    relay_proc(const temp_dir& dir, const std::vector<std::string>& routes,
               std::vector<std::string> extra = {}, const std::string& name = "relay") {
        std::vector<std::string> args;
        for (auto& r : routes) {
            args.push_back("--route");
            args.push_back(r);
        }
        args.insert(args.end(), extra.begin(), extra.end());
        proc = std::make_unique<daemon_process>(name, relay_binary(), args, dir);
    }
    bool ready() { return proc->wait_ready(); }
    std::string listen(size_t i = 0) const {
        return proc->ready()["routes"][i]["listen"].get<std::string>();
    }
    std::unique_ptr<daemon_process> proc;
};

// Waits until `c` has received at least n bytes in all (or closed, or timeout).
bool wait_bytes(raw_conn& c, size_t n, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        c.pump();
        if (c.received().size() >= n) return true;
        auto left = deadline - std::chrono::steady_clock::now();
        if (c.is_closed() || left <= 0ms) return false;
        pollfd p{c.fd(), POLLIN, 0};
        ::poll(&p, 1, int(std::chrono::duration_cast<std::chrono::milliseconds>(left).count()));
    }
}

// Sends `msg` and waits for its echo; the round trip's duration, or nullopt.
std::optional<std::chrono::milliseconds> round_trip(raw_conn& c, const std::string& msg) {
    size_t want = c.received().size() + msg.size();
    auto t0 = std::chrono::steady_clock::now();
    if (!c.send(msg) || !wait_bytes(c, want)) return std::nullopt;
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 t0);
}

uint16_t local_port(const raw_conn& c) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(c.fd(), reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
}

// Bytes not yet read by the relay on its loopback socket 127.0.0.1:listen_port accepted from
// 127.0.0.1:peer_port (the rx_queue column of /proc/net/tcp), or -1 when there is no such socket.
long relay_rx_queue(uint16_t listen_port, uint16_t peer_port) {
    std::ifstream in("/proc/net/tcp");
    std::string line;
    char want_local[16], want_remote[16];
    std::snprintf(want_local, sizeof want_local, "0100007F:%04X", listen_port);
    std::snprintf(want_remote, sizeof want_remote, "0100007F:%04X", peer_port);
    while (std::getline(in, line)) {
        std::istringstream f(line);
        std::string sl, local, remote, st, queues;
        if (!(f >> sl >> local >> remote >> st >> queues)) continue;
        if (local != want_local || remote != want_remote) continue;
        return std::stol(queues.substr(queues.find(':') + 1), nullptr, 16);
    }
    return -1;
}

}  // namespace

// --- the queue, without sockets -------------------------------------------------------------

TEST(DelayQueue, ChunksAreDueTheirDelayAfterTheReadAndNeverOvertakeOlderOnes) {
    delay_queue q(1 << 20);
    auto t0 = imgate::relay::relay_clock::time_point{} + 1h;
    q.push("a", t0, 300ms);
    // The delay dropped to 0 after "a" was read: "b" still waits for "a" (a wire keeps order).
    q.push("b", t0 + 10ms, 0ms);
    q.push("c", t0 + 500ms, 0ms);
    q.push_eof(t0 + 600ms, 100ms);
    EXPECT_EQ(q.front().bytes, "a");
    EXPECT_EQ(q.front().due, t0 + 300ms);
    q.pop();
    EXPECT_EQ(q.front().bytes, "b");
    EXPECT_EQ(q.front().due, t0 + 300ms);
    q.pop();
    EXPECT_EQ(q.front().due, t0 + 500ms);
    q.pop();
    EXPECT_TRUE(q.front().eof);
    EXPECT_EQ(q.front().due, t0 + 700ms);
    EXPECT_TRUE(q.eof_queued());
}

TEST(DelayQueue, RoomShrinksWithBufferedBytesAndReturnsAsTheyAreWritten) {
    delay_queue q(10);
    auto t = imgate::relay::relay_clock::now();
    EXPECT_EQ(q.room(), 10u);
    q.push("123456", t, 0ms);
    EXPECT_EQ(q.room(), 4u);
    q.push("7890", t, 0ms);
    EXPECT_EQ(q.room(), 0u);  // the reader stops here
    EXPECT_EQ(q.buffered(), 10u);
    q.pop();
    EXPECT_EQ(q.room(), 6u);
    q.push("", t, 0ms);  // nothing read, nothing queued
    EXPECT_EQ(q.buffered(), 4u);
}

TEST(DelayQueue, DelaysAndRoutesParseLikeTheDaemonsConfiguration) {
    EXPECT_EQ(imgate::relay::parse_delay("0ms"), 0ms);
    EXPECT_EQ(imgate::relay::parse_delay("250ms\n"), 250ms);
    EXPECT_EQ(imgate::relay::parse_delay(" 1s "), 1000ms);
    EXPECT_EQ(imgate::relay::parse_delay("40"), 40ms);
    EXPECT_EQ(imgate::relay::parse_delay("1.5s"), 1500ms);
    for (auto* bad : {"", "\n", "-5ms", "fast", "3 parsecs", "10us"})
        EXPECT_FALSE(imgate::relay::parse_delay(bad)) << bad;
    auto r = imgate::relay::parse_route("0.0.0.0:19100=127.0.0.1:9100");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->listen.port, 19100);
    EXPECT_EQ(r->target.to_string(), "127.0.0.1:9100");
    auto v6 = imgate::relay::parse_route("[::1]:0=[fd00::21]:9200");
    ASSERT_TRUE(v6);
    EXPECT_EQ(v6->target.host, "fd00::21");
    for (auto* bad : {"127.0.0.1:1", "127.0.0.1:1=127.0.0.1:0", "localhost:1=127.0.0.1:2",
                      "127.0.0.1:1=127.0.0.1:2=127.0.0.1:3", "=127.0.0.1:2", "1.2.3.4:x=1.2.3.4:5"})
        EXPECT_FALSE(imgate::relay::parse_route(bad)) << bad;
}

// --- the binary --------------------------------------------------------------------------------

// Each direction waits `delay`, so an echo through the relay takes at least twice that.
TEST(DelayRelay, RoundTripTakesAtLeastTwiceTheDelay) {
    temp_dir dir;
    echo_server echo;
    relay_proc r(dir, {"127.0.0.1:0=" + echo.addr()}, {"--delay", "150ms"});
    ASSERT_TRUE(r.ready()) << r.proc->log();
    raw_conn c;
    ASSERT_TRUE(c.connect(r.listen()));
    for (int i = 0; i < 3; ++i) {
        auto rt = round_trip(c, "ping " + std::to_string(i) + " ünïcode\n");
        ASSERT_TRUE(rt) << r.proc->log();
        EXPECT_GE(rt->count(), 300) << "round trip " << i;
    }
    EXPECT_EQ(c.received(), "ping 0 ünïcode\nping 1 ünïcode\nping 2 ünïcode\n");
}

// The delay file is re-read on SIGHUP. From D1 to 0: a message sent after the change comes back
// before one sent earlier on another connection, which keeps the old delay (applies to chunks
// read after the change); the order of two events, no wall-time bound. From 0 to D2: a round
// trip takes ≥ 2 × D2 again.
TEST(DelayRelay, SighupRereadsTheDelayFileBothWays) {
    temp_dir dir;
    echo_server echo;
    auto file = dir.file("delay");
    write_file(file, "3s\n");
    relay_proc r(dir, {"127.0.0.1:0=" + echo.addr()}, {"--delay-file", file});
    ASSERT_TRUE(r.ready()) << r.proc->log();
    raw_conn early, late;
    ASSERT_TRUE(early.connect(r.listen()));
    ASSERT_TRUE(late.connect(r.listen()));
    ASSERT_TRUE(early.send("sent at 3s\n"));
    // The relay has read them (they sit in its 3 s queue) once its socket's receive queue is
    // empty; only then may the reload come.
    ASSERT_TRUE(eventually([&] {
        return relay_rx_queue(split_hostport(r.listen()).second, local_port(early)) == 0;
    })) << "the relay never read the early bytes";
    write_file(file, "0ms\n");
    r.proc->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return r.proc->log().find("-> 0ms") != std::string::npos; }))
        << r.proc->log();
    auto rt = round_trip(late, "sent at 0\n");
    ASSERT_TRUE(rt) << r.proc->log();
    early.pump();
    EXPECT_EQ(early.received(), "") << "the message sent at delay 3s came back before the one "
                                       "sent at delay 0";
    EXPECT_TRUE(wait_bytes(early, 11));
    EXPECT_EQ(early.received(), "sent at 3s\n");

    write_file(file, "400ms");
    r.proc->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return r.proc->log().find("0ms -> 400ms") != std::string::npos; }))
        << r.proc->log();
    rt = round_trip(late, "sent at 400ms\n");
    ASSERT_TRUE(rt) << r.proc->log();
    EXPECT_GE(rt->count(), 800);

    // A file that holds no duration keeps the delay in force (and says so).
    write_file(file, "soon");
    r.proc->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] {
        return r.proc->log().find("delay stays 400ms") != std::string::npos;
    })) << r.proc->log();
    rt = round_trip(late, "still 400ms\n");
    ASSERT_TRUE(rt);
    EXPECT_GE(rt->count(), 800);
    EXPECT_TRUE(r.proc->running());
}

// A few MB each way, with a delay and a buffer far smaller than the data (backpressure on the
// reading side), then a half-close: every byte comes back in order, and the echo's own
// shutdown reaches the client only after the last byte.
TEST(DelayRelay, PreservesByteOrderOverMegabytesAndPropagatesHalfCloseAfterTheData) {
    temp_dir dir;
    echo_server echo;
    relay_proc r(dir, {"127.0.0.1:0=" + echo.addr()}, {"--delay", "20ms", "--max-buffer", "65536"});
    ASSERT_TRUE(r.ready()) << r.proc->log();
    std::string data(6 << 20, '\0');
    std::mt19937 rng(7);
    for (auto& ch : data) ch = static_cast<char>(rng());
    raw_conn c;
    ASSERT_TRUE(c.connect(r.listen()));
    size_t sent = 0;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (sent < data.size() && std::chrono::steady_clock::now() < deadline) {
        ssize_t n = ::send(c.fd(), data.data() + sent, std::min<size_t>(data.size() - sent, 65536),
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) sent += size_t(n);
        c.pump();  // read the echo as it comes, or both sides' buffers fill
        pollfd p{c.fd(), POLLIN | POLLOUT, 0};
        ::poll(&p, 1, 100);
    }
    ASSERT_EQ(sent, data.size());
    ::shutdown(c.fd(), SHUT_WR);
    ASSERT_TRUE(c.wait_closed(60s)) << "the echo's half-close never came back";
    ASSERT_EQ(c.received().size(), data.size());
    EXPECT_TRUE(c.received() == data) << "bytes reordered or altered";
    EXPECT_TRUE(r.proc->running());
}

// Half-close the other way round, and the data still flows the open way: the client shuts down
// its sending half first, the echo sees EOF only after the data, and answers after it.
TEST(DelayRelay, ClientHalfCloseReachesTheTargetAfterTheDelayedData) {
    temp_dir dir;
    echo_server echo;
    relay_proc r(dir, {"127.0.0.1:0=" + echo.addr()}, {"--delay", "100ms"});
    ASSERT_TRUE(r.ready()) << r.proc->log();
    raw_conn c;
    ASSERT_TRUE(c.connect(r.listen()));
    ASSERT_TRUE(c.send("last words before the close\n"));
    ::shutdown(c.fd(), SHUT_WR);
    // The echo returns the bytes, then its own EOF: had the relay forwarded our EOF before the
    // delayed bytes, the echo would have closed without them.
    ASSERT_TRUE(c.wait_closed(10s));
    EXPECT_EQ(c.received(), "last words before the close\n");
}

// Nothing listens at the first route's target: each accepted connection is closed without a
// byte, and the relay keeps serving that route's listener and the other route.
TEST(DelayRelay, RefusingTargetClosesTheAcceptedConnectionAndServingGoesOn) {
    temp_dir dir;
    echo_server echo;
    auto dead = "127.0.0.1:" + std::to_string(free_port());
    relay_proc r(dir, {"127.0.0.1:0=" + dead, "127.0.0.1:0=" + echo.addr()}, {"--delay", "10ms"});
    ASSERT_TRUE(r.ready()) << r.proc->log();
    for (int round = 0; round < 2; ++round) {
        raw_conn refused;
        ASSERT_TRUE(refused.connect(r.listen(0)));
        refused.send("anyone there?");
        EXPECT_TRUE(refused.wait_closed(10s)) << "round " << round;
        EXPECT_EQ(refused.received(), "");
        raw_conn ok;
        ASSERT_TRUE(ok.connect(r.listen(1)));
        EXPECT_TRUE(round_trip(ok, "hello " + std::to_string(round))) << r.proc->log();
    }
    EXPECT_TRUE(r.proc->running());
    EXPECT_NE(r.proc->log().find("connect to " + dead + " failed"), std::string::npos)
        << r.proc->log();
    // SIGTERM: exit 0.
    r.proc->signal(SIGTERM);
    auto st = r.proc->wait_exit();
    ASSERT_TRUE(st);
    EXPECT_EQ(r.proc->exit_code(), 0);
}

TEST(DelayRelay, ReadyFileListsEveryRouteWithItsBoundPort) {
    temp_dir dir;
    echo_server echo;
    auto fixed = free_port();
    relay_proc r(
        dir, {"127.0.0.1:0=" + echo.addr(), "127.0.0.1:" + std::to_string(fixed) + "=127.0.0.1:9"});
    ASSERT_TRUE(r.ready()) << r.proc->log();
    const auto& j = r.proc->ready();
    ASSERT_TRUE(j.is_object()) << j.dump();
    EXPECT_EQ(j.size(), 2u) << j.dump();  // pid and routes, nothing else
    EXPECT_EQ(j.value("pid", -1), r.proc->pid());
    ASSERT_TRUE(j["routes"].is_array());
    ASSERT_EQ(j["routes"].size(), 2u);
    auto [host0, port0] = split_hostport(j["routes"][0]["listen"].get<std::string>());
    EXPECT_EQ(host0, "127.0.0.1");
    EXPECT_NE(port0, 0);  // port 0 resolved to the bound port
    EXPECT_EQ(j["routes"][0]["target"], echo.addr());
    EXPECT_EQ(j["routes"][1]["listen"], "127.0.0.1:" + std::to_string(fixed));
    EXPECT_EQ(j["routes"][1]["target"], "127.0.0.1:9");
    EXPECT_EQ(j["routes"][0].size(), 2u);
    // Written through a temporary and a rename: no temporary left behind.
    EXPECT_FALSE(std::filesystem::exists(dir.file("relay.ready.json.tmp")));
}

TEST(DelayRelay, BadArgumentsExitTwoWithAMessage) {
    temp_dir dir;
    auto bin = relay_binary();
    write_file(dir.file("bad-delay"), "three seconds\n");
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"", "--route"},
        {"--route nonsense", "nonsense"},
        {"--route localhost:1=127.0.0.1:2", "localhost:1=127.0.0.1:2"},
        {"--route 127.0.0.1:0=127.0.0.1:0", "127.0.0.1:0=127.0.0.1:0"},
        {"--route 127.0.0.1:0=127.0.0.1:9 --delay 3parsecs", "--delay 3parsecs"},
        {"--route 127.0.0.1:0=127.0.0.1:9 --max-buffer 0", "--max-buffer"},
        {"--route 127.0.0.1:0=127.0.0.1:9 --delay-file " + dir.file("bad-delay"), "--delay-file"},
        {"--route 127.0.0.1:0=127.0.0.1:9 --no-such-flag", "--no-such-flag"},
    };
    for (auto& [args, mention] : cases) {
        auto [code, out] = run_command(bin + " " + args);
        EXPECT_EQ(code, 2) << args << ": " << out;
        EXPECT_NE(out.find("imgate-delay-relay: "), std::string::npos) << args << ": " << out;
        EXPECT_NE(out.find(mention), std::string::npos) << args << ": " << out;
    }
    auto [code, out] = run_command(bin + " --help");
    EXPECT_EQ(code, 0);
    EXPECT_NE(out.find("--max-buffer"), std::string::npos);
}
