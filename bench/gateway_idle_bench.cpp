// Idle-session memory benchmark client (driven by bench/gateway_idle_bench.sh).
// Opens N authenticated sessions to one gateway (spread over several loopback source addresses),
// keeps them idle, and reports the gateway's RSS growth per session from /proc/PID/status.
//
//   gateway_idle_bench --secret-file F --gateway HOST:PORT --pid PID [--sessions N]
//                      [--concurrency N] [--sources N] [--max-seconds S]
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/awaitable.hpp"
#include "common/config.hpp"
#include "common/daemon.hpp"
#include "common/frame.hpp"
#include "common/jwt.hpp"
#include "common/protocol.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace imgate;

namespace {

long rss_kib(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

struct shared_state {
    uint32_t next = 0, ok = 0, failed = 0;
};

asio::awaitable<void> opener(std::vector<std::unique_ptr<tcp::socket>>& socks, shared_state& st,
                             uint32_t total, uint32_t sources, tcp::endpoint target,
                             const std::string& secret) {
    auto ex = co_await asio::this_coro::executor;
    while (st.next < total) {
        uint32_t i = st.next++;
        auto s = std::make_unique<tcp::socket>(ex);
        boost::system::error_code ec;
        s->open(tcp::v4(), ec);
        // Source 127.0.0.(2+k): each source address has its own ephemeral port range.
        auto src = asio::ip::make_address_v4("127.0.0." + std::to_string(2 + i % sources));
        if (!ec) s->bind(tcp::endpoint(src, 0), ec);
        if (!ec) std::tie(ec) = co_await s->async_connect(target, use_tuple);
        if (ec) {
            ++st.failed;
            continue;
        }
        auto now = jwt::now_seconds();
        std::string use_tuple =
            jwt::sign({"idle" + std::to_string(i), "d", now + 3600}, secret, now);
        std::string out = proto::encode(proto::login_msg{use_tuple});
        auto [wec, wn] = co_await asio::async_write(*s, asio::buffer(out), use_tuple);
        char hdr[frame_header_size];
        auto [rec, rn] = co_await asio::async_read(*s, asio::buffer(hdr), use_tuple);
        if (wec || rec || static_cast<uint8_t>(hdr[5]) != uint8_t(proto::op::login_result)) {
            ++st.failed;
            continue;
        }
        uint32_t len = (uint32_t(uint8_t(hdr[0])) << 24) | (uint32_t(uint8_t(hdr[1])) << 16) |
                       (uint32_t(uint8_t(hdr[2])) << 8) | uint32_t(uint8_t(hdr[3]));
        std::string body(len, '\0');
        auto [bec, bn] = co_await asio::async_read(*s, asio::buffer(body), use_tuple);
        if (bec) {
            ++st.failed;
            continue;
        }
        ++st.ok;
        socks.push_back(std::move(s));
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string secret_file, gateway;
    int pid = 0;
    uint32_t sessions = 10000, concurrency = 200, sources = 8, max_seconds = 120;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--secret-file")
            secret_file = v;
        else if (k == "--gateway")
            gateway = v;
        else if (k == "--pid")
            pid = std::stoi(v);
        else if (k == "--sessions")
            sessions = std::stoul(v);
        else if (k == "--concurrency")
            concurrency = std::stoul(v);
        else if (k == "--sources")
            sources = std::stoul(v);
        else if (k == "--max-seconds")
            max_seconds = std::stoul(v);
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    auto ep = parse_endpoint(gateway);
    if (secret_file.empty() || !ep || pid <= 0) {
        std::fprintf(stderr, "see the usage at the top of bench/gateway_idle_bench.cpp\n");
        return 2;
    }
    std::string secret = read_secret_file(secret_file);
    tcp::endpoint target(asio::ip::make_address(ep->host), ep->port);

    long before = rss_kib(pid);
    asio::io_context io;
    std::vector<std::unique_ptr<tcp::socket>> socks;
    socks.reserve(sessions);
    shared_state st;
    for (uint32_t i = 0; i < concurrency; ++i)
        imgate::spawn(io, opener(socks, st, sessions, sources, target, secret), "opener");
    auto t0 = std::chrono::steady_clock::now();
    io.run_for(std::chrono::seconds(max_seconds));
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // Let the gateway settle (its writes of LOGIN_RESULT are done once we read them).
    long after = rss_kib(pid);
    std::printf("sessions_ok=%u failed=%u setup_s=%.1f gateway_rss_before_kib=%ld after_kib=%ld\n",
                st.ok, st.failed, secs, before, after);
    if (st.ok == 0) return 1;
    std::printf("rss_bytes_per_idle_session=%.0f\n", double(after - before) * 1024.0 / st.ok);
    return st.failed == 0 ? 0 : 1;
}
