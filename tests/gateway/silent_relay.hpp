#pragma once
// A loopback TCP relay in front of one gateway's RPC port, to make a link go silent the way a
// network partition does, without network namespaces: while cut, no byte and no close crosses it
// in either direction (both ends stay open and hear nothing), and a new connection is accepted
// but never reaches the far side, like a dial whose handshake never completes. A connection that
// lived through a cut stays dead after heal (bytes were lost in between); new ones relay again.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <memory>
#include <thread>
#include <vector>

namespace imgate::test {

// Owns its io_context and thread, the listener and every relayed connection.
class silent_relay {
  public:
    using tcp = boost::asio::ip::tcp;

    explicit silent_relay(uint16_t target_port)
        : work_(boost::asio::make_work_guard(io_)),
          acceptor_(io_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)),
          target_(boost::asio::ip::make_address("127.0.0.1"), target_port) {
        port_ = acceptor_.local_endpoint().port();
        boost::asio::co_spawn(io_, accept_loop(), on_error);
        thread_ = std::thread([this] { io_.run(); });
    }
    ~silent_relay() {
        work_.reset();
        io_.stop();
        thread_.join();
    }
    silent_relay(const silent_relay&) = delete;
    silent_relay& operator=(const silent_relay&) = delete;

    uint16_t port() const { return port_; }

    // From now on nothing crosses: live connections go dead, new ones are black holes.
    void cut() {
        run([this] {
            cut_ = true;
            for (auto& w : pairs_)
                if (auto p = w.lock()) p->dead = true;
        });
    }
    // New connections relay again; the ones a cut killed stay dead.
    void heal() {
        run([this] { cut_ = false; });
    }
    // Connections accepted so far (each gateway dial through the relay is one).
    size_t accepted() {
        size_t n = 0;
        run([&] { n = accepted_; });
        return n;
    }

  private:
    struct pair {
        explicit pair(boost::asio::io_context& io) : a(io), b(io) {}
        tcp::socket a;  // the dialling gateway's side
        tcp::socket b;  // the target's side
        bool dead = false;
        void close() {
            boost::system::error_code ec;
            a.close(ec);
            b.close(ec);
        }
    };

    static void on_error(std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
    }

    template <class F>
    void run(F f) {
        std::promise<void> done;
        boost::asio::post(io_, [&] {
            f();
            done.set_value();
        });
        done.get_future().wait();
    }

    boost::asio::awaitable<void> accept_loop() {
        auto tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
        for (;;) {
            auto p = std::make_shared<pair>(io_);
            auto [ec] = co_await acceptor_.async_accept(p->a, tuple);
            if (ec) co_return;
            ++accepted_;
            pairs_.push_back(p);
            if (cut_) {
                p->dead = true;
                boost::asio::co_spawn(io_, pump(p, p->a, p->b), on_error);
                continue;
            }
            auto [cec] = co_await p->b.async_connect(target_, tuple);
            if (cec) {
                p->close();
                continue;
            }
            boost::asio::co_spawn(io_, pump(p, p->a, p->b), on_error);
            boost::asio::co_spawn(io_, pump(p, p->b, p->a), on_error);
        }
    }

    // Copies from -> to until either side ends (then closes both) or the pair goes dead (then
    // swallows everything, and an end on one side is not passed on).
    static boost::asio::awaitable<void> pump(std::shared_ptr<pair> p, tcp::socket& from,
                                             tcp::socket& to) {
        auto tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
        std::vector<char> buf(16384);
        for (;;) {
            auto [ec, n] = co_await from.async_read_some(boost::asio::buffer(buf), tuple);
            if (p->dead) {
                if (ec) co_return;
                continue;
            }
            if (ec) {
                p->close();
                co_return;
            }
            auto [wec, wn] =
                co_await boost::asio::async_write(to, boost::asio::buffer(buf, n), tuple);
            if (wec && !p->dead) {
                p->close();
                co_return;
            }
        }
    }

    boost::asio::io_context io_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
    tcp::acceptor acceptor_;
    tcp::endpoint target_;
    uint16_t port_ = 0;
    std::thread thread_;
    bool cut_ = false;
    size_t accepted_ = 0;
    std::vector<std::weak_ptr<pair>> pairs_;
};

}  // namespace imgate::test
