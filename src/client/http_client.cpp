#include "client/http_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <nlohmann/json.hpp>

#include "common/awaitable.hpp"

namespace imgate::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// An error for a fail-over line: "timed out", "connection refused", "connection reset by peer".
std::string few_words(const boost::system::error_code& ec) {
    if (ec == beast::error::timeout || ec == asio::error::timed_out) return "timed out";
    std::string m = ec.message();
    if (!m.empty() && m[0] >= 'A' && m[0] <= 'Z' && (m.size() < 2 || !(m[1] >= 'A' && m[1] <= 'Z')))
        m[0] = static_cast<char>(m[0] - 'A' + 'a');
    return m;
}

// Writes the request and reads the answer on a connected (and, for https, handshaken) stream.
template <class Stream>
asio::awaitable<void> exchange(Stream& stream, http::request<http::string_body>& req,
                               const std::string& where, const std::string& target,
                               http_result& out) {
    auto [wec, wn] = co_await http::async_write(stream, req, use_tuple);
    if (wec) {
        out.error = "request to " + where + target + " failed: " + wec.message();
        out.cause = "request failed: " + few_words(wec);
        co_return;
    }
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(4 * 1024 * 1024);
    auto [rec2, rn] = co_await http::async_read(stream, buf, parser, use_tuple);
    if (rec2) {
        out.error = "no answer from " + where + target + ": " +
                    (rec2 == beast::error::timeout ? std::string("timed out") : rec2.message());
        out.cause = "no answer: " + few_words(rec2);
        co_return;
    }
    auto& res = parser.get();
    out.ok = true;
    out.status = static_cast<int>(res.result_int());
    out.body = res.body();
    if (auto it = res.find(http::field::retry_after); it != res.end())
        out.retry_after = std::string(it->value());
}

}  // namespace

asio::awaitable<http_result> http_request(asio::any_io_executor ex, const std::string& method,
                                          const std::string& host, uint16_t port,
                                          const std::string& target, std::string body,
                                          std::vector<std::pair<std::string, std::string>> headers,
                                          std::chrono::milliseconds timeout,
                                          std::shared_ptr<const tls_client> tls,
                                          std::chrono::milliseconds connect_timeout) {
    http_result out;
    auto started = std::chrono::steady_clock::now();
    // The connect gets its own, shorter bound when asked; the rest keeps the whole deadline.
    auto connect_bound =
        connect_timeout.count() > 0 && connect_timeout < timeout ? connect_timeout : timeout;
    std::string authority = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                            std::to_string(port);
    std::string where = (tls ? "https://" : "http://") + authority;
    tcp::resolver resolver(ex);
    auto [rec, results] = co_await resolver.async_resolve(host, std::to_string(port), use_tuple);
    if (rec) {
        out.error = "cannot resolve " + host + ": " + rec.message();
        out.cause = "cannot resolve: " + few_words(rec);
        co_return out;
    }
    http::request<http::string_body> req(http::string_to_verb(method), target, 11);
    req.set(http::field::host, host + ":" + std::to_string(port));
    req.set(http::field::user_agent, std::string("imgate/") + IMGATE_VERSION);
    for (auto& [k, v] : headers) req.set(k, v);
    if (!body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = std::move(body);
    }
    req.prepare_payload();
    if (!tls) {
        beast::tcp_stream stream(ex);
        stream.expires_after(connect_bound);
        auto [cec, ep] = co_await stream.async_connect(results, use_tuple);
        if (cec) {
            out.error = "cannot connect to " + where + ": " +
                        (cec == beast::error::timeout ? std::string("timed out") : cec.message());
            out.cause = cec == beast::error::timeout ? "connect timed out" : few_words(cec);
            co_return out;
        }
        stream.expires_at(started + timeout);
        co_await exchange(stream, req, where, target, out);
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        co_return out;
    }
    // One deadline (the tcp_stream's) covers connect, handshake, request and answer.
    beast::ssl_stream<beast::tcp_stream> stream(ex, *tls->ctx);
    beast::get_lowest_layer(stream).expires_after(connect_bound);
    auto [cec, ep] = co_await beast::get_lowest_layer(stream).async_connect(results, use_tuple);
    if (cec) {
        out.error = "cannot connect to " + where + ": " +
                    (cec == beast::error::timeout ? std::string("timed out") : cec.message());
        out.cause = cec == beast::error::timeout ? "connect timed out" : few_words(cec);
        co_return out;
    }
    beast::get_lowest_layer(stream).expires_at(started + timeout);
    std::string why;
    if (!prepare_tls_host(stream.native_handle(), host, *tls, &why)) {
        out.error = why;
        out.cause = "TLS: " + why;
        co_return out;
    }
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::client, use_tuple);
    if (hec) {
        out.error = hec == beast::error::timeout
                        ? "TLS handshake with " + where + " timed out"
                        : describe_tls_failure(stream.native_handle(), host, authority, *tls, hec);
        out.cause = "TLS handshake failed: " + few_words(hec);
        co_return out;
    }
    co_await exchange(stream, req, where, target, out);
    beast::error_code ignored;
    beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
    co_return out;
}

asio::awaitable<dispatch_result> get_gateway(asio::any_io_executor ex, const http_url& dispatcher,
                                             const std::string& user, const std::string& region,
                                             const std::vector<std::string>& exclude, transport via,
                                             std::shared_ptr<const tls_client> tls,
                                             std::chrono::milliseconds timeout,
                                             std::chrono::milliseconds connect_timeout) {
    dispatch_result out;
    std::string target = dispatcher.prefix + "/get-tcp-ip";
    std::string q = get_gateway_query(user, region, exclude, via);
    if (!q.empty()) target += "?" + q;
    if (dispatcher.tls && !tls) tls = make_tls_client("", false);
    if (!dispatcher.tls) tls = nullptr;
    auto r = co_await http_request(ex, "GET", dispatcher.host, dispatcher.port, target, "", {},
                                   timeout, tls, connect_timeout);
    if (!r.ok) {
        out.error = "dispatcher: " + r.error;
        out.cause = r.cause.empty() ? r.error : r.cause;
        co_return out;
    }
    out.status = r.status;
    out.raw = r.body;
    if (!r.retry_after.empty()) {
        if (auto d = parse_duration(r.retry_after)) out.retry_after = *d;
    }
    if (r.status == 200) {
        std::string err;
        out.answer = parse_gateway_answer(r.body, &err);
        if (out.answer) err = check_answer_transport(*out.answer, via);
        if (!err.empty()) {
            out.answer.reset();
            out.error = "dispatcher " + dispatcher.origin() + ": " + err;
            out.cause = "bad answer: " + err;
        }
        co_return out;
    }
    std::string code, msg;
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_object()) {
        if (auto it = j.find("error"); it != j.end() && it->is_string()) code = *it;
        if (auto it = j.find("message"); it != j.end() && it->is_string()) msg = *it;
        // The dispatcher's per-answer spread wait (ms) is finer than Retry-After's whole seconds.
        if (auto it = j.find("retry_after_ms");
            r.status == 503 && it != j.end() && it->is_number_integer() &&
            it->get<int64_t>() >= 0 && it->get<int64_t>() <= reconnect_policy::limit.count())
            out.retry_after = std::chrono::milliseconds(it->get<int64_t>());
    }
    out.error = "dispatcher " + dispatcher.origin() + " answered " + std::to_string(r.status) +
                (code.empty() ? "" : " " + code) + (msg.empty() ? "" : ": " + msg);
    out.cause = std::to_string(r.status) + (code.empty() ? "" : " " + code);
    co_return out;
}

std::string failover_line(const http_url& from, const std::string& cause, const http_url& to) {
    return "dispatcher " + from.origin() + from.prefix + " failed (" + cause + "); trying " +
           to.origin() + to.prefix;
}

asio::awaitable<dispatch_result> get_gateway_round(
    asio::any_io_executor ex, dispatcher_list& dispatchers, const std::string& user,
    const std::string& region, const std::vector<std::string>& exclude, transport via,
    std::shared_ptr<const tls_client> tls, dispatcher_failover_fn on_failover) {
    if (dispatchers.empty()) {
        dispatch_result none;
        none.error = none.cause = "no dispatcher URL";
        co_return none;
    }
    dispatchers.begin_round();
    // One URL: nothing to fail over to, so its connect keeps the whole deadline (as always).
    auto connect_bound =
        dispatchers.size() > 1 ? dispatcher_connect_timeout : std::chrono::milliseconds(0);
    unsigned failovers = 0;
    std::optional<dispatch_result> last_http, last_503;
    std::chrono::milliseconds longest_503{0};
    while (auto i = dispatchers.next()) {
        const http_url& url = dispatchers.at(*i);
        auto d = co_await get_gateway(ex, url, user, region, exclude, via, tls,
                                      dispatcher_request_timeout, connect_bound);
        auto outcome = classify_dispatch(d.status, d.answer.has_value());
        bool go_on = dispatchers.report(*i, outcome, d.cause);
        if (outcome == dispatch_outcome::no_gateway)
            longest_503 = std::max(longest_503, d.retry_after);
        if (!go_on && (!dispatchers.all_failed() || dispatchers.size() == 1)) {
            // An answer, a 4xx, or the only URL's failure: that result, as it is.
            if (!fails_over(outcome)) d.dispatcher = url.origin() + url.prefix;
            d.failovers = failovers;
            co_return d;
        }
        if (outcome == dispatch_outcome::no_gateway) last_503 = d;
        if (d.status) last_http = d;
        if (!go_on) break;
        ++failovers;
        if (auto to = dispatchers.peek(); to && on_failover)
            on_failover(url, d.cause, dispatchers.at(*to));
    }
    // Every URL failed: one result naming each of them.
    dispatch_result out;
    if (last_503)
        out = std::move(*last_503);
    else if (last_http)
        out = std::move(*last_http);
    out.answer.reset();
    out.retry_after = longest_503;
    out.error = "all " + std::to_string(dispatchers.size()) +
                " dispatchers failed: " + dispatchers.failures();
    out.cause = "all dispatchers failed";
    out.dispatcher.clear();
    out.failovers = failovers;
    co_return out;
}

}  // namespace imgate::client
