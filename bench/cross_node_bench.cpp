// Cross-node delivery benchmark client (driven by bench/cross_node_bench.sh).
// Senders log in on one gateway, receivers on another; the senders push a bounded number of
// messages as fast as a window of outstanding sends allows, and the program reports the CPU time
// (utime + stime from /proc/PID/stat) the gateway processes spent per delivered message.
//
//   cross_node_bench --secret-file F --mode user|room|pairs --send HOST:PORT
//                    --recv HOST:PORT[,...] --pids PID,PID[,...] [--messages N] [--receivers N]
//                    [--senders N] [--window N] [--payload-bytes N] [--max-seconds S]
//                    [--transport tcp|tls] [--ca FILE] [--sync-dir DIR] [--writes window|each]
// Modes: user — each sender spreads its messages over all receivers (r0, r1, ...); room — every
// message goes to one room all receivers joined; pairs — sender i sends only to receiver i
// (--senders must equal --receivers; e-mail-like ids), the shape bench/vs_mosquitto.sh gives
// mosquitto too.
// A window top-up's sends go out in one write (--writes window, the default; --writes each: one
// write per SEND, as libmosquitto writes each PUBLISH), so only the byte-stream transports (tcp,
// tls) apply.
// --sync-dir lets a wrapper observe the measured phase alone (bench/vs_mosquitto.sh attaches
// strace there): after set-up the program creates DIR/ready and waits for DIR/go; after the
// measured phase it prints its figures, creates DIR/done and waits for DIR/exit. Each wait is
// bounded (30 s).
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_stream.hpp"
#include "common/awaitable.hpp"
#include "common/config.hpp"
#include "common/daemon.hpp"
#include "common/frame.hpp"
#include "common/jwt.hpp"
#include "common/protocol.hpp"
#include "tests/support/process.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace imgate;

namespace {

struct options {
    std::string secret_file, mode = "user", send_addr, sync_dir;
    std::vector<std::string> recv_addrs;
    std::vector<int> pids;
    uint64_t messages = 100000;
    uint32_t receivers = 100, senders = 4, window = 200, payload = 64, max_seconds = 60;
    bool write_each = false;  // one socket write per SEND instead of one per window top-up
    transport kind = transport::tcp;
    std::shared_ptr<asio::ssl::context> tls;  // for tls
};

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string x;
    while (std::getline(ss, x, ',')) out.push_back(x);
    return out;
}

// The ids a client logs in with: short ones for user/room, e-mail-like ones for pairs.
std::string receiver_id(const options& o, uint32_t i) {
    if (o.mode == "pairs") return "receiver." + std::to_string(i) + "@bench.example.org";
    return "r" + std::to_string(i);
}
std::string sender_id(const options& o, uint32_t i) {
    if (o.mode == "pairs") return "sender." + std::to_string(i) + "@bench.example.org";
    return "s" + std::to_string(i);
}

// --sync-dir's files: a marker the wrapper waits for, and a bounded wait for the wrapper's.
void touch(const std::string& path) {
    std::ofstream f(path);
}
bool wait_for_file(const std::string& path) {
    struct stat st {};
    for (int i = 0; i < 3000; ++i) {
        if (::stat(path.c_str(), &st) == 0) return true;
        ::usleep(10000);
    }
    return false;
}

// One logged-in client connection.
struct client {
    bench::bench_stream stream;
    frame_decoder dec{absolute_max_frame_body};
    char buf[64 * 1024];

    asio::awaitable<std::optional<frame>> next() {
        for (;;) {
            if (auto f = dec.next()) co_return f;
            if (dec.error() != frame_error::none) co_return std::nullopt;
            auto [ec, n] = co_await stream.read_some(buf, sizeof buf);
            if (ec) co_return std::nullopt;
            dec.feed(std::string_view(buf, n));
        }
    }
};

struct stats {
    std::atomic<uint64_t> delivered{0};  // DELIVER frames read by receivers
    std::atomic<uint64_t> results{0};    // SEND_RESULTs read by senders
    std::atomic<uint64_t> ok{0};         // ... with status ok
    std::atomic<uint64_t> reached{0};    // sum of reached
    std::atomic<uint64_t> failed{0};     // ... with an error status
    std::atomic<bool> stop{false};
};

asio::awaitable<bool> login(client& c, const options& o, const std::string& addr,
                            const std::string& token) {
    auto ep = parse_endpoint(addr);
    if (!ep) co_return false;
    tcp::endpoint e(asio::ip::make_address(ep->host), ep->port);
    auto ec = co_await c.stream.connect(o.kind, e, {}, o.tls.get());
    if (ec) co_return false;
    std::string out = proto::encode(proto::login_msg{token});
    auto wec = co_await c.stream.write(out);
    if (wec) co_return false;
    auto f = co_await c.next();
    co_return f&& proto::decode<proto::login_result_msg>(*f);
}

asio::awaitable<void> receive(std::shared_ptr<client> c, stats& st) {
    while (!st.stop) {
        auto f = co_await c->next();
        if (!f) break;
        if (f->op == static_cast<uint8_t>(proto::op::deliver)) st.delivered.fetch_add(1);
    }
}

// Sends `count` messages keeping at most `window` without a SEND_RESULT; in pairs mode all to
// receiver `first_target`, in user mode to the receivers from `first_target` on, round robin.
asio::awaitable<void> send_loop(std::shared_ptr<client> c, stats& st, const options& o,
                                uint64_t count, uint32_t first_target) {
    uint64_t sent = 0, answered = 0;
    std::string payload(o.payload, 'x');
    uint32_t t = first_target;
    std::string out;
    while (answered < count && !st.stop) {
        out.clear();
        while (sent < count && sent - answered < o.window) {
            proto::send_msg m;
            m.client_msg_id = sent + 1;
            m.payload = payload;
            if (o.mode == "room") {
                m.kind = proto::target_kind::room;
                m.target = "bench-room";
            } else {
                m.kind = proto::target_kind::user;
                m.target = receiver_id(o, o.mode == "pairs" ? first_target : t++ % o.receivers);
            }
            proto::encode(out, m);
            ++sent;
            if (o.write_each) {
                auto ec = co_await c->stream.write(out);
                if (ec) co_return;
                out.clear();
            }
        }
        if (!out.empty()) {
            auto ec = co_await c->stream.write(out);
            if (ec) break;
        }
        // Read what is there (at least one frame) before topping the window up again.
        do {
            auto f = co_await c->next();
            if (!f) co_return;
            if (auto r = proto::decode<proto::send_result_msg>(*f)) {
                ++answered;
                st.results.fetch_add(1);
                st.reached.fetch_add(r->reached);
                if (r->status == proto::code::ok)
                    st.ok.fetch_add(1);
                else if (r->status != proto::code::offline)
                    st.failed.fetch_add(1);
            }
        } while (c->dec.buffered() >= frame_header_size && answered < count);
    }
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--secret-file")
            o.secret_file = v;
        else if (k == "--mode")
            o.mode = v;
        else if (k == "--send")
            o.send_addr = v;
        else if (k == "--recv")
            o.recv_addrs = split(v);
        else if (k == "--pids")
            for (auto& p : split(v)) o.pids.push_back(std::stoi(p));
        else if (k == "--messages")
            o.messages = std::stoull(v);
        else if (k == "--receivers")
            o.receivers = std::stoul(v);
        else if (k == "--senders")
            o.senders = std::stoul(v);
        else if (k == "--window")
            o.window = std::stoul(v);
        else if (k == "--payload-bytes")
            o.payload = std::stoul(v);
        else if (k == "--max-seconds")
            o.max_seconds = std::stoul(v);
        else if (k == "--transport") {
            auto t = parse_transport(v);
            if (!t || *t == transport::ws || *t == transport::wss) {
                std::fprintf(stderr, "--transport: tcp or tls\n");
                return 2;
            }
            o.kind = *t;
        } else if (k == "--ca")
            o.tls = make_client_tls_context(v, false);
        else if (k == "--sync-dir")
            o.sync_dir = v;
        else if (k == "--writes") {
            if (v != "each" && v != "window") {
                std::fprintf(stderr, "--writes: window or each\n");
                return 2;
            }
            o.write_each = v == "each";
        } else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    if (o.secret_file.empty() || o.send_addr.empty() || o.recv_addrs.empty() || o.pids.empty()) {
        std::fprintf(stderr, "see the usage at the top of bench/cross_node_bench.cpp\n");
        return 2;
    }
    if (o.mode != "user" && o.mode != "room" && o.mode != "pairs") {
        std::fprintf(stderr, "--mode: user, room or pairs\n");
        return 2;
    }
    if (o.mode == "pairs" && o.senders != o.receivers) {
        std::fprintf(stderr, "--mode pairs: --senders must equal --receivers\n");
        return 2;
    }
    if (o.kind == transport::tls && !o.tls) o.tls = make_client_tls_context("", true);
    std::string secret = read_secret_file(o.secret_file);
    auto token = [&](const std::string& user) {
        auto now = jwt::now_seconds();
        return jwt::sign(jwt::claims{user, "bench", now + 3600}, secret, now);
    };

    asio::io_context io;
    stats st;
    std::vector<std::shared_ptr<client>> receivers, senders;
    bool setup_ok = true;
    auto setup = [&]() -> asio::awaitable<void> {
        for (uint32_t i = 0; i < o.receivers; ++i) {
            auto c = std::make_shared<client>();
            auto& addr = o.recv_addrs[i % o.recv_addrs.size()];
            if (!co_await login(*c, o, addr, token(receiver_id(o, i)))) {
                setup_ok = false;
                co_return;
            }
            if (o.mode == "room") {
                std::string j = proto::encode(proto::join_msg{"bench-room"});
                co_await c->stream.write(j);
                auto f = co_await c->next();
                auto rr = f ? proto::decode<proto::room_result_msg>(*f) : std::nullopt;
                if (!rr || rr->status != proto::code::ok) {
                    setup_ok = false;
                    co_return;
                }
            }
            receivers.push_back(c);
        }
        for (uint32_t i = 0; i < o.senders; ++i) {
            auto c = std::make_shared<client>();
            if (!co_await login(*c, o, o.send_addr, token(sender_id(o, i)))) {
                setup_ok = false;
                co_return;
            }
            senders.push_back(c);
        }
    };
    imgate::spawn(io, setup(), "setup");
    io.run();
    io.restart();
    if (!setup_ok) {
        std::fprintf(stderr, "setup failed (login/join)\n");
        return 1;
    }
    // Presence and room interest travel to the sending gateway asynchronously: probe until a
    // message to the last receiver (or the room) is delivered remotely.
    {
        bool ready = false;
        auto probe = [&]() -> asio::awaitable<void> {
            auto& c = *senders[0];
            for (int attempt = 0; attempt < 200 && !ready; ++attempt) {
                proto::send_msg m;
                m.client_msg_id = 1000000000ull + attempt;
                m.kind = o.mode == "room" ? proto::target_kind::room : proto::target_kind::user;
                m.target = o.mode == "room" ? "bench-room" : receiver_id(o, o.receivers - 1);
                m.payload = "probe";
                std::string out = proto::encode(m);
                co_await c.stream.write(out);
                auto f = co_await c.next();
                auto r = f ? proto::decode<proto::send_result_msg>(*f) : std::nullopt;
                uint32_t want = o.mode == "room" ? o.receivers : 1;
                if (r && r->status == proto::code::ok && r->reached == want) {
                    ready = true;
                    break;
                }
                asio::steady_timer t(io);
                t.expires_after(std::chrono::milliseconds(25));
                co_await t.async_wait(use_tuple);
            }
        };
        imgate::spawn(io, probe(), "probe");
        io.run();
        io.restart();
        if (!ready) {
            std::fprintf(stderr,
                         "the receivers never became reachable from the sender's gateway\n");
            return 1;
        }
    }
    for (auto& r : receivers) imgate::spawn(io, receive(r, st), "receiver");
    // Let the probes' deliveries drain before the measured phase.
    {
        asio::steady_timer t(io);
        t.expires_after(std::chrono::milliseconds(300));
        t.async_wait([](boost::system::error_code) {});
        io.run_for(std::chrono::milliseconds(300));
    }
    if (!o.sync_dir.empty()) {
        // The receivers stay unread while the wrapper gets ready: nothing is in flight.
        touch(o.sync_dir + "/ready");
        if (!wait_for_file(o.sync_dir + "/go")) {
            std::fprintf(stderr, "no %s/go within 30 s\n", o.sync_dir.c_str());
            return 1;
        }
    }
    uint64_t delivered_before = st.delivered.load();

    std::vector<imgate::test::cpu_ticks> ticks0;
    for (int p : o.pids) ticks0.push_back(imgate::test::process_cpu_ticks(p));
    auto t0 = std::chrono::steady_clock::now();
    uint64_t per_sender = o.messages / o.senders;
    for (uint32_t i = 0; i < o.senders; ++i)
        imgate::spawn(io,
                      send_loop(senders[i], st, o, per_sender, o.mode == "pairs" ? i : i * 7919),
                      "sender");
    uint64_t total = per_sender * o.senders;
    uint64_t expect_copies = o.mode == "room" ? total * o.receivers : total;
    auto deadline = t0 + std::chrono::seconds(o.max_seconds);
    while (std::chrono::steady_clock::now() < deadline) {
        io.run_for(std::chrono::milliseconds(50));
        if (st.results >= total && st.delivered - delivered_before >= expect_copies) break;
    }
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<double> cpu;
    std::vector<std::pair<unsigned long long, unsigned long long>> ticks;
    double cpu_total = 0;
    for (size_t i = 0; i < o.pids.size(); ++i) {
        auto t = imgate::test::process_cpu_ticks(o.pids[i]);
        ticks.emplace_back(t.user - ticks0[i].user, t.system - ticks0[i].system);
        cpu.push_back(imgate::test::ticks_seconds(ticks.back().first + ticks.back().second));
        cpu_total += cpu.back();
    }
    st.stop = true;
    uint64_t delivered = st.delivered - delivered_before;
    std::printf(
        "mode=%s messages=%llu results=%llu ok=%llu failed=%llu delivered_copies=%llu "
        "elapsed_s=%.2f msgs_per_s=%.0f\n",
        o.mode.c_str(), (unsigned long long)total, (unsigned long long)st.results.load(),
        (unsigned long long)st.ok.load(), (unsigned long long)st.failed.load(),
        (unsigned long long)delivered, secs, double(st.results.load()) / secs);
    double hz = double(::sysconf(_SC_CLK_TCK));
    for (size_t i = 0; i < o.pids.size(); ++i)
        std::printf("gateway pid %d cpu_s=%.3f user_s=%.3f system_s=%.3f\n", o.pids[i], cpu[i],
                    double(ticks[i].first) / hz, double(ticks[i].second) / hz);
    if (delivered == 0) {
        std::printf("nothing delivered\n");
        return 1;
    }
    std::printf("cpu_us_per_message=%.3f cpu_us_per_delivered_copy=%.3f\n",
                cpu_total * 1e6 / double(st.results.load()), cpu_total * 1e6 / double(delivered));
    std::fflush(stdout);
    if (!o.sync_dir.empty()) {
        touch(o.sync_dir + "/done");
        wait_for_file(o.sync_dir + "/exit");
    }
    return delivered >= expect_copies && st.results == total ? 0 : 1;
}
