#include "dispatcher/admin_http.hpp"

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "common/awaitable.hpp"

namespace imgate::disp {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

void admin_connection::close() {
    resolver.cancel();
    boost::system::error_code ignore;
    stream.socket().close(ignore);
    connected = false;
}

asio::awaitable<std::string> admin_exchange(admin_connection& c, const endpoint& to,
                                            admin_request& req, admin_response& res,
                                            std::chrono::milliseconds timeout, size_t body_limit) {
    c.stream.expires_after(timeout);
    // A kept-alive connection may have been closed by the gateway while idle; that is not the
    // gateway failing, so one fresh attempt follows within the same deadline.
    for (int attempt = 0; attempt < 2; ++attempt) {
        bool reused = c.connected;
        if (!c.connected) {
            c.buf.clear();
            auto port = std::to_string(to.port);
            auto [rec, results] = co_await c.resolver.async_resolve(to.host, port, use_tuple);
            if (rec) co_return "resolve " + to.host + ": " + rec.message();
            auto [cec, ep] = co_await c.stream.async_connect(results, use_tuple);
            if (cec == beast::error::timeout)
                co_return "connect: timeout after " + std::to_string(timeout.count()) + "ms";
            if (cec) co_return "connect: " + cec.message();
            c.stream.socket().set_option(tcp::no_delay(true));
            c.connected = true;
        }
        auto [wec, wn] = co_await http::async_write(c.stream, req, use_tuple);
        http::response_parser<http::string_body> parser;
        parser.body_limit(body_limit);
        parser.header_limit(16 * 1024);
        boost::system::error_code rec;
        if (!wec) {
            auto [e, n] = co_await http::async_read(c.stream, c.buf, parser, use_tuple);
            rec = e;
        }
        auto ec = wec ? wec : rec;
        if (ec) {
            boost::system::error_code ignore;
            c.stream.socket().close(ignore);
            c.connected = false;
            bool stale =
                reused && (ec == http::error::end_of_stream || ec == asio::error::eof ||
                           ec == asio::error::connection_reset || ec == asio::error::broken_pipe);
            if (stale && attempt == 0) continue;
            if (ec == beast::error::timeout)
                co_return "timeout after " + std::to_string(timeout.count()) + "ms";
            if (ec == http::error::body_limit)
                co_return "body larger than " + std::to_string(body_limit / 1024) + " KiB";
            co_return std::string(wec ? "write: " : "read: ") + ec.message();
        }
        res = parser.release();
        if (!res.keep_alive()) {
            boost::system::error_code ignore;
            c.stream.socket().shutdown(tcp::socket::shutdown_both, ignore);
            c.stream.socket().close(ignore);
            c.connected = false;
        }
        co_return std::string();
    }
    co_return "connection closed twice";
}

}  // namespace imgate::disp
