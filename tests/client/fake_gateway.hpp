#pragma once
// An in-process stand-in for a gateway in client unit tests: one Asio acceptor on 127.0.0.1
// speaking the client codec with scripted behaviour, so the session and connector are tested
// without the real imgate-gateway binary.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/awaitable.hpp"
#include "common/daemon.hpp"
#include "common/frame.hpp"
#include "common/protocol.hpp"

namespace imgate::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class fake_gateway {
  public:
    explicit fake_gateway(asio::io_context& io, std::string id = "fake1")
        : io_(io), acc_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), id_(id) {
        spawn(io_, accept_loop(), "fake gateway accept");
    }

    uint16_t port() const { return acc_.local_endpoint().port(); }

    // Behaviour knobs.
    uint32_t heartbeat_ms = 0;
    bool answer_login = true;
    bool answer_pings = true;
    bool send_receipts = true;
    proto::code send_status = proto::code::ok;
    // Refuse every LOGIN with this ERROR (rate_limited, server_busy ...), then send
    // refuse_redirect when set (a gateway with retry hints; without it, one from before them),
    // then close.
    std::optional<proto::code> refuse_login;
    std::optional<proto::redirect_msg> refuse_redirect;

    // What the client did.
    int logins = 0;
    int pings = 0;
    std::vector<uint64_t> acks;
    std::vector<std::string> joins;
    std::vector<proto::send_msg> sends;
    bool logged_in = false;

    // Writes raw bytes to the current connection (small frames: a blocking write is immediate).
    void write(const std::string& bytes) {
        if (!conn_) return;
        boost::system::error_code ec;
        asio::write(*conn_, asio::buffer(bytes), ec);
    }
    template <class M>
    void send(const M& m) {
        write(proto::encode(m));
    }
    void drop() {
        if (!conn_) return;
        boost::system::error_code ec;
        conn_->close(ec);
    }
    void stop() {
        boost::system::error_code ec;
        acc_.close(ec);
        drop();
    }

  private:
    asio::awaitable<void> accept_loop() {
        while (true) {
            auto [ec, sock] = co_await acc_.async_accept(use_tuple);
            if (ec) co_return;
            conn_ = std::make_shared<tcp::socket>(std::move(sock));
            co_await serve(conn_);
        }
    }

    asio::awaitable<void> serve(std::shared_ptr<tcp::socket> s) {
        frame_decoder dec;
        char buf[4096];
        logged_in = false;
        while (true) {
            auto [ec, n] = co_await s->async_read_some(asio::buffer(buf), use_tuple);
            if (ec) co_return;
            dec.feed(std::string_view(buf, n));
            while (auto f = dec.next()) {
                if (!on_frame(*f)) {
                    boost::system::error_code ignored;
                    s->close(ignored);
                    co_return;
                }
            }
        }
    }

    bool on_frame(const frame& f) {
        using proto::op;
        switch (static_cast<op>(f.op)) {
            case op::login: {
                ++logins;
                auto m = proto::decode<proto::login_msg>(f);
                if (!answer_login) return true;
                if (refuse_login) {
                    std::string out = proto::encode(
                        proto::error_msg{*refuse_login, "refused by the fake"}, f.corr);
                    if (refuse_redirect) out += proto::encode(*refuse_redirect);
                    write(out);
                    return false;
                }
                if (!m || m->token == "bad") {
                    write(
                        proto::encode(proto::error_msg{proto::code::auth_failed, "bad_signature"}));
                    return false;
                }
                logged_in = true;
                write(proto::encode(proto::login_result_msg{"u", "d", id_, heartbeat_ms, 0, 65536},
                                    f.corr));
                return true;
            }
            case op::ping:
                ++pings;
                if (answer_pings) write(proto::encode(proto::pong_msg{}, f.corr));
                return true;
            case op::ack:
                if (auto m = proto::decode<proto::ack_msg>(f)) acks.push_back(m->server_msg_id);
                return true;
            case op::join:
                if (auto m = proto::decode<proto::join_msg>(f)) {
                    joins.push_back(m->room);
                    write(proto::encode(proto::room_result_msg{m->room, proto::code::ok}, f.corr));
                }
                return true;
            case op::send:
                if (auto m = proto::decode<proto::send_msg>(f)) {
                    sends.push_back(*m);
                    bool ok = send_status == proto::code::ok;
                    write(proto::encode(proto::send_result_msg{
                        m->client_msg_id, 1000 + m->client_msg_id, send_status, ok ? 1u : 0u}));
                    if (ok && send_receipts)
                        write(proto::encode(proto::receipt_msg{
                            m->client_msg_id, 1000 + m->client_msg_id, "bob", "p"}));
                }
                return true;
            default:
                return true;
        }
    }

    asio::io_context& io_;
    tcp::acceptor acc_;
    std::string id_;
    std::shared_ptr<tcp::socket> conn_;
};

}  // namespace imgate::test
