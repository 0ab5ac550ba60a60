// imgate-delay-relay: a TCP relay that delays each direction by a configurable time, for the
// many-hosts fleet's `delay gwN` fault (config/hosts/run-hosts.sh), where the kernel has no
// netem. Contract: /work/notes/hosts-contract.md, "Helper relay"; usage: --help.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/daemon.hpp"
#include "common/log_throttle.hpp"
#include "delay_queue.hpp"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using imgate::relay::delay_queue;
using imgate::relay::relay_clock;
using std::chrono::milliseconds;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr size_t max_read = 64 * 1024;

tcp::endpoint to_asio(const imgate::endpoint& e) {
    return {asio::ip::make_address(e.host), e.port};
}

std::string show(const tcp::endpoint& e) {
    return imgate::endpoint{e.address().to_string(), e.port()}.to_string();
}

// The delay in force, shared by every connection; changed only on SIGHUP (one thread).
struct delay_setting {
    milliseconds base{0};             // --delay
    std::optional<std::string> file;  // --delay-file
    milliseconds now{0};

    // Reads --delay-file: its duration, or `base` when the file is missing; nullopt (with *why)
    // when it exists but holds no duration.
    std::optional<milliseconds> read(std::string* why) const {
        std::ifstream in(*file);
        if (!in) return base;
        std::string text((std::istreambuf_iterator<char>(in)), {});
        auto d = imgate::relay::parse_delay(text);
        if (!d) *why = "not a duration (such as 0ms, 250ms, 1s): \"" + text + "\"";
        return d;
    }
    void reload() {
        if (!file) {
            spdlog::warn("SIGHUP without --delay-file: delay stays {}ms", now.count());
            return;
        }
        std::string why;
        auto d = read(&why);
        if (!d) {
            spdlog::warn("delay file {}: {}; delay stays {}ms", *file, why, now.count());
            return;
        }
        auto before = now;
        now = *d;
        spdlog::info("delay {}ms -> {}ms (from {})", before.count(), now.count(), *file);
    }
};

// A steady_timer used as a condition: the waiter re-checks its condition before each wait, and
// with one thread nothing can change between that check and the wait.
asio::awaitable<void> wait_signal(asio::steady_timer& t) {
    t.expires_at(asio::steady_timer::time_point::max());
    co_await t.async_wait(use_tuple);
}

// One relayed connection: the accepted socket, the one to the target, and per direction the
// queue of delayed chunks. Closing either side on an error closes both; the object lives while
// its four coroutines (a reader and a writer per direction) hold it.
class link : public std::enable_shared_from_this<link> {
  public:
    link(tcp::socket client, tcp::socket target, const delay_setting& delay, size_t max_buffer)
        : client_(std::move(client)),
          target_(std::move(target)),
          delay_(delay),
          up_(client_.get_executor(), max_buffer),
          down_(client_.get_executor(), max_buffer) {}

    // Each coroutine takes a reference to the link as a parameter, copied into its frame at
    // creation: the link lives until the last of the four ends.
    void start() {
        auto ex = client_.get_executor();
        imgate::spawn(ex, read(shared_from_this(), client_, up_), "relay read");
        imgate::spawn(ex, write(shared_from_this(), target_, up_), "relay write");
        imgate::spawn(ex, read(shared_from_this(), target_, down_), "relay read");
        imgate::spawn(ex, write(shared_from_this(), client_, down_), "relay write");
    }

  private:
    struct direction {
        direction(const asio::any_io_executor& ex, size_t max_buffer)
            : q(max_buffer), data(ex), room(ex), due(ex) {}
        delay_queue q;
        asio::steady_timer data;  // the writer waits here for a chunk
        asio::steady_timer room;  // the reader waits here for the writer to drain
        asio::steady_timer due;   // the writer waits here for the front chunk's moment
        bool flushed = false;     // EOF written through (shutdown(send) done)
    };

    asio::awaitable<void> read(std::shared_ptr<link> /*self*/, tcp::socket& from, direction& d) {
        std::string buf;
        while (!closed_) {
            if (d.q.room() == 0) {
                co_await wait_signal(d.room);
                continue;
            }
            buf.resize(std::min(max_read, d.q.room()));
            auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), use_tuple);
            if (closed_) break;
            auto read_at = relay_clock::now();
            if (ec == asio::error::eof) {
                d.q.push_eof(read_at, delay_.now);
                d.data.cancel();
                break;
            }
            if (ec) {
                close_both();
                break;
            }
            d.q.push(buf.substr(0, n), read_at, delay_.now);
            d.data.cancel();
        }
    }

    asio::awaitable<void> write(std::shared_ptr<link> /*self*/, tcp::socket& to, direction& d) {
        while (!closed_) {
            if (d.q.empty()) {
                co_await wait_signal(d.data);
                continue;
            }
            if (relay_clock::now() < d.q.front().due) {
                d.due.expires_at(d.q.front().due);
                co_await d.due.async_wait(use_tuple);
                continue;
            }
            if (d.q.front().eof) {
                boost::system::error_code ec;
                to.shutdown(tcp::socket::shutdown_send, ec);
                d.q.pop();
                d.flushed = true;
                // Both halves shut down: nothing more can flow, the connection is done.
                if (ec || (up_.flushed && down_.flushed)) close_both();
                break;
            }
            auto [ec, n] =
                co_await asio::async_write(to, asio::buffer(d.q.front().bytes), use_tuple);
            if (closed_) break;
            if (ec) {
                close_both();
                break;
            }
            d.q.pop();
            d.room.cancel();
        }
    }

    void close_both() {
        if (closed_) return;
        closed_ = true;
        boost::system::error_code ec;
        client_.close(ec);
        target_.close(ec);
        for (auto* d : {&up_, &down_}) {
            d->data.cancel();
            d->room.cancel();
            d->due.cancel();
        }
    }

    tcp::socket client_;
    tcp::socket target_;
    const delay_setting& delay_;
    direction up_;    // client -> target
    direction down_;  // target -> client
    bool closed_ = false;
};

// One --route: its listener and where each accepted connection is relayed.
class route_listener {
  public:
    route_listener(asio::io_context& io, const imgate::relay::route& r, const delay_setting& delay,
                   size_t max_buffer)
        : acceptor_(io), target_(to_asio(r.target)), delay_(delay), max_buffer_(max_buffer) {
        auto ep = to_asio(r.listen);
        acceptor_.open(ep.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind(ep);
        acceptor_.listen(asio::socket_base::max_listen_connections);
    }
    tcp::endpoint local() const { return acceptor_.local_endpoint(); }
    const tcp::endpoint& target() const { return target_; }

    asio::awaitable<void> accept_loop() {
        auto ex = co_await asio::this_coro::executor;
        asio::steady_timer backoff(ex);
        for (;;) {
            auto [ec, sock] = co_await acceptor_.async_accept(use_tuple);
            if (ec == asio::error::operation_aborted) co_return;
            if (ec) {
                // Out of descriptors and the like: keep the listener, try again shortly.
                warn("accept on " + show(local()) + " failed: " + ec.message());
                backoff.expires_after(milliseconds(100));
                co_await backoff.async_wait(use_tuple);
                continue;
            }
            imgate::spawn(ex, connect(std::move(sock)), "relay connect");
        }
    }

  private:
    asio::awaitable<void> connect(tcp::socket client) {
        tcp::socket target(client.get_executor());
        auto [ec] = co_await target.async_connect(target_, use_tuple);
        boost::system::error_code ignored;
        if (ec) {
            // No peer behind the wire: the client sees its connection reset, without a byte.
            warn("connect to " + show(target_) + " failed: " + ec.message() +
                 "; closing the accepted connection");
            client.set_option(asio::socket_base::linger(true, 0), ignored);
            client.close(ignored);
            co_return;
        }
        client.set_option(tcp::no_delay(true), ignored);
        target.set_option(tcp::no_delay(true), ignored);
        std::make_shared<link>(std::move(client), std::move(target), delay_, max_buffer_)->start();
    }

    void warn(const std::string& what) {
        uint64_t suppressed = 0;
        if (throttle_.admit(&suppressed))
            spdlog::warn("{}{}", what, imgate::suppressed_note(suppressed));
    }

    tcp::acceptor acceptor_;
    tcp::endpoint target_;
    const delay_setting& delay_;
    size_t max_buffer_;
    imgate::log_throttle throttle_;
};

int bad_arguments(const std::string& why) {
    std::fprintf(stderr, "imgate-delay-relay: %s (see --help)\n", why.c_str());
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{
        "imgate-delay-relay: relays TCP connections, delaying each direction (a wire with "
        "latency, for fault tests where the kernel has no netem)"};
    std::vector<std::string> route_args;
    std::string delay_arg = "0ms";
    std::string delay_file;
    std::string ready_file;
    size_t max_buffer = 4 * 1024 * 1024;
    cli.add_option("--route", route_args,
                   "LISTEN=TARGET, both HOST:PORT (IPv4 or [v6]:port); LISTEN port 0 picks a "
                   "free port. Repeatable")
        ->required();
    cli.add_option("--delay", delay_arg,
                   "one-way delay of each direction, e.g. 0ms, 250ms, 1s (default 0ms)");
    cli.add_option("--delay-file", delay_file,
                   "file holding one duration, read at start and on SIGHUP (missing: --delay)");
    cli.add_option("--ready-file", ready_file,
                   "once listening, write {\"pid\":N,\"routes\":[{\"listen\",\"target\"}]} here");
    cli.add_option("--max-buffer", max_buffer,
                   "bytes buffered per direction of a connection before the relay stops "
                   "reading that side (default 4194304)")
        ->check(CLI::Range(size_t(1), size_t(1) << 40));
    try {
        cli.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return cli.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return cli.exit(e);
    } catch (const CLI::ParseError& e) {
        return bad_arguments(e.what());
    }

    std::vector<imgate::relay::route> routes;
    for (auto& r : route_args) {
        auto parsed = imgate::relay::parse_route(r);
        if (!parsed)
            return bad_arguments("--route " + r +
                                 ": expected LISTEN=TARGET, each HOST:PORT with an IPv4 or "
                                 "[IPv6] address, the target's port not 0");
        routes.push_back(*parsed);
    }
    delay_setting delay;
    auto d = imgate::relay::parse_delay(delay_arg);
    if (!d)
        return bad_arguments("--delay " + delay_arg +
                             ": expected a duration such as 0ms, 250ms or 1s");
    delay.base = delay.now = *d;
    if (!delay_file.empty()) {
        delay.file = delay_file;
        std::string why;
        auto from_file = delay.read(&why);
        if (!from_file) return bad_arguments("--delay-file " + delay_file + ": " + why);
        delay.now = *from_file;
    }

    asio::io_context io;
    std::vector<std::unique_ptr<route_listener>> listeners;
    nlohmann::json ready_routes = nlohmann::json::array();
    for (auto& r : routes) {
        try {
            listeners.push_back(std::make_unique<route_listener>(io, r, delay, max_buffer));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "imgate-delay-relay: cannot listen on %s: %s\n",
                         r.listen.to_string().c_str(), e.what());
            return 1;
        }
        auto& l = *listeners.back();
        ready_routes.push_back({{"listen", show(l.local())}, {"target", show(l.target())}});
        spdlog::info("relaying {} -> {}", show(l.local()), show(l.target()));
    }
    spdlog::info("delay {}ms each way", delay.now.count());
    for (auto& l : listeners) imgate::spawn(io, l->accept_loop(), "relay accept");

    imgate::daemon_control control(
        io, [&] { io.stop(); }, [&] { delay.reload(); });
    control.start();
    if (!ready_file.empty()) {
        nlohmann::json ready = {{"pid", ::getpid()}, {"routes", ready_routes}};
        if (!imgate::write_ready_file(ready_file, ready.dump())) {
            std::fprintf(stderr, "imgate-delay-relay: cannot write the ready file %s\n",
                         ready_file.c_str());
            return 1;
        }
    }
    io.run();
    return 0;
}
