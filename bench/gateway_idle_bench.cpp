// Idle-session memory benchmark client (driven by bench/gateway_idle_bench.sh).
// Opens N authenticated sessions to one gateway (spread over several loopback source addresses)
// over one transport, keeps them idle, and reports the gateway's RSS growth per session from
// /proc/PID/status and its CPU time per session set up (handshake + login) from /proc/PID/stat.
//
//   gateway_idle_bench --secret-file F --gateway HOST:PORT --pid PID [--sessions N]
//                      [--concurrency N] [--sources N] [--max-seconds S]
//                      [--transport tcp|tls|ws|wss] [--ca FILE] [--settle-seconds S]
//                      [--mark N]
// With --mark N (0 < N < sessions) the RSS is also read, settled, once N sessions are open, and
// the marginal bytes per session between N and all of them are printed: the gateway's fixed
// costs (and what the first sessions' allocations warmed up) then drop out of the figure.
#include <unistd.h>
#include <algorithm>
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
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_stream.hpp"
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

double cpu_seconds(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(in)), {});
    auto rp = all.rfind(')');
    std::istringstream rest(all.substr(rp + 2));
    std::string f;
    unsigned long long ut = 0, st = 0;
    for (int i = 3; i <= 15 && rest >> f; ++i) {
        if (i == 14) ut = std::stoull(f);
        if (i == 15) st = std::stoull(f);
    }
    return double(ut + st) / double(sysconf(_SC_CLK_TCK));
}

struct shared_state {
    uint32_t next = 0, ok = 0, failed = 0;
};

asio::awaitable<void> opener(std::vector<std::unique_ptr<bench::bench_stream>>& conns,
                             shared_state& st, uint32_t total, uint32_t sources,
                             tcp::endpoint target, const std::string& secret, transport kind,
                             asio::ssl::context* ctx) {
    while (st.next < total) {
        uint32_t i = st.next++;
        auto c = std::make_unique<bench::bench_stream>();
        // Source 127.0.0.(2+k): each source address has its own ephemeral port range.
        auto src = asio::ip::make_address_v4("127.0.0." + std::to_string(2 + i % sources));
        auto ec = co_await c->connect(kind, target, src, ctx);
        if (ec) {
            if (st.failed++ == 0) std::fprintf(stderr, "connect: %s\n", ec.message().c_str());
            continue;
        }
        auto now = jwt::now_seconds();
        std::string token = jwt::sign({"idle" + std::to_string(i), "d", now + 3600}, secret, now);
        // Named, not a temporary inside co_await: GCC 12 destroys such temporaries twice.
        std::string login = proto::encode(proto::login_msg{token});
        auto wec = co_await c->write(login);
        frame_decoder dec(absolute_max_frame_body);
        char buf[512];
        std::optional<frame> f;
        while (!wec && !f && dec.error() == frame_error::none) {
            auto [rec, n] = co_await c->read_some(buf, sizeof buf);
            if (rec) break;
            dec.feed(std::string_view(buf, n));
            f = dec.next();
        }
        if (wec || !f || f->op != uint8_t(proto::op::login_result)) {
            ++st.failed;
            continue;
        }
        ++st.ok;
        conns.push_back(std::move(c));
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string secret_file, gateway;
    int pid = 0;
    uint32_t sessions = 10000, concurrency = 200, sources = 8, max_seconds = 120;
    std::string transport_name = "tcp", ca_file;
    uint32_t settle_seconds = 0, mark = 0;
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
        else if (k == "--transport")
            transport_name = v;
        else if (k == "--ca")
            ca_file = v;
        else if (k == "--settle-seconds")
            settle_seconds = std::stoul(v);
        else if (k == "--mark")
            mark = std::stoul(v);
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    auto ep = parse_endpoint(gateway);
    auto kind = parse_transport(transport_name);
    if (secret_file.empty() || !ep || pid <= 0 || !kind) {
        std::fprintf(stderr, "see the usage at the top of bench/gateway_idle_bench.cpp\n");
        return 2;
    }
    std::string secret = read_secret_file(secret_file);
    tcp::endpoint target(asio::ip::make_address(ep->host), ep->port);

    std::shared_ptr<asio::ssl::context> ctx;
    if (*kind == transport::tls || *kind == transport::wss)
        ctx = make_client_tls_context(ca_file, ca_file.empty());
    long before = rss_kib(pid);
    double cpu_before = cpu_seconds(pid);
    asio::io_context io;
    std::vector<std::unique_ptr<bench::bench_stream>> conns;
    conns.reserve(sessions);
    shared_state st;
    auto t0 = std::chrono::steady_clock::now();
    auto open_until = [&](uint32_t total) {
        io.restart();
        for (uint32_t i = 0; i < concurrency; ++i)
            imgate::spawn(io, opener(conns, st, total, sources, target, secret, *kind, ctx.get()),
                          "opener");
        io.run_until(t0 + std::chrono::seconds(max_seconds));
    };
    long at_mark = -1;
    uint32_t ok_at_mark = 0;
    if (mark > 0 && mark < sessions) {
        open_until(mark);
        std::this_thread::sleep_for(std::chrono::seconds(settle_seconds));
        at_mark = rss_kib(pid);
        ok_at_mark = st.ok;
        std::printf("at_mark sessions_ok=%u gateway_rss_kib=%ld (settled %u s)\n", st.ok, at_mark,
                    settle_seconds);
    }
    open_until(sessions);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (at_mark >= 0) secs -= settle_seconds;  // the pause at the mark is not set-up time
    double cpu = cpu_seconds(pid) - cpu_before;
    long at_setup = rss_kib(pid);
    // The sessions stay open and idle while the gateway settles (its housekeeping returns the
    // handshakes' transient buffers to the system every few seconds).
    std::this_thread::sleep_for(std::chrono::seconds(settle_seconds));
    long after = rss_kib(pid);
    std::printf("rss_bytes_per_session_right_after_setup=%.0f (settled %u s below)\n",
                double(at_setup - before) * 1024.0 / std::max<uint32_t>(1, st.ok), settle_seconds);
    std::printf(
        "transport=%s sessions_ok=%u failed=%u setup_s=%.1f gateway_rss_before_kib=%ld "
        "after_kib=%ld\n",
        transport_name.c_str(), st.ok, st.failed, secs, before, after);
    if (st.ok == 0) return 1;
    std::printf("rss_bytes_per_idle_session=%.0f gateway_cpu_us_per_session_setup=%.1f\n",
                double(after - before) * 1024.0 / st.ok, cpu * 1e6 / st.ok);
    if (at_mark >= 0 && st.ok > ok_at_mark)
        std::printf("marginal_rss_bytes_per_idle_session=%.0f (sessions %u -> %u)\n",
                    double(after - at_mark) * 1024.0 / (st.ok - ok_at_mark), ok_at_mark, st.ok);
    return st.failed == 0 ? 0 : 1;
}
