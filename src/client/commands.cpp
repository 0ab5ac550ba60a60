#include "client/commands.hpp"

#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <iostream>
#include <random>

#include "client/connector.hpp"
#include "client/http_client.hpp"
#include "client/session.hpp"
#include "common/awaitable.hpp"
#include "common/config.hpp"
#include "common/daemon.hpp"
#include "common/ids.hpp"
#include "common/jwt.hpp"

namespace imgate::client {

namespace asio = boost::asio;
using json = nlohmann::json;
using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

void out_line(const std::string& s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

void err_line(const std::string& s) {
    std::fprintf(stderr, "imgate: %s\n", s.c_str());
    std::fflush(stderr);
}

std::string first_existing(const std::string& given, const char* env, const char* local) {
    if (!given.empty()) return given;
    if (const char* e = std::getenv(env); e && *e) return e;
    std::error_code ec;
    if (std::filesystem::exists(local, ec)) return local;
    return "";
}

// Runs one coroutine returning an exit code on a fresh single-threaded io_context.
template <class F>
int run_main(F&& make) {
    asio::io_context io(1);
    int rc = 1;
    asio::co_spawn(io, make(io), [&rc, &io](std::exception_ptr e, int r) {
        io.stop();  // leftover work (a pending stdin read) must not keep the tool alive
        if (e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                err_line(std::string("internal error: ") + ex.what());
            }
            rc = 1;
            return;
        }
        rc = r;
    });
    io.run();
    return rc;
}

struct target_or_error {
    std::optional<target_spec> target;
    std::string error;
};

target_or_error make_target(const session_args& a) {
    target_or_error out;
    target_spec t;
    t.region = a.region;
    std::optional<std::vector<http_url>> urls;
    if (a.gateway.empty()) {
        std::string err;
        urls = parse_dispatcher_urls(a.dispatcher, &err);
        if (!urls) {
            out.error = "--dispatcher: " + err;
            return out;
        }
    }
    bool https = urls && any_https(*urls);
    auto tr = prepare_transport(a.transport, https, &out.error);
    if (!tr) return out;
    t.via = tr->via;
    t.tls = tr->tls;
    if (!a.gateway.empty()) {
        auto ep = parse_endpoint(a.gateway);
        if (!ep || ep->port == 0) {
            out.error = "--gateway: expected host:port, got \"" + a.gateway + "\"";
            return out;
        }
        t.gateway = gateway_addr{"", ep->host, ep->port, ""};
    } else {
        t.dispatchers = std::move(*urls);
    }
    out.target = t;
    return out;
}

// The token and the target of a session command; nullopt once the reason has been printed.
struct session_setup {
    std::string token;
    target_spec target;
};
std::optional<session_setup> prepare_session(session_args& a) {
    std::string err;
    auto token = session_token(a, &err);
    if (!token) {
        err_line(err);
        return std::nullopt;
    }
    auto t = make_target(a);
    if (!t.target) {
        err_line(t.error);
        return std::nullopt;
    }
    return session_setup{std::move(*token), std::move(*t.target)};
}

std::string default_device(const char* what) {
    return std::string(what) + "-" + std::to_string(::getpid());
}

}  // namespace

std::optional<transport_setup> prepare_transport(const transport_args& a, bool https_dispatcher,
                                                 std::string* err) {
    auto via = chosen_transport(a, err);
    if (!via) return std::nullopt;
    transport_setup out;
    out.via = *via;
    if (a.insecure)
        err_line(
            "warning: --insecure: TLS certificates are NOT verified (anyone on the path can "
            "read and change the traffic); for local tests only");
    if (is_tls(out.via) || https_dispatcher) {
        try {
            out.tls = make_tls_client(a.ca_file, a.insecure);
        } catch (const std::exception& e) {
            *err = e.what();
            return std::nullopt;
        }
    }
    return out;
}

std::string default_secret_file(const std::string& given) {
    return first_existing(given, "IMGATE_TOKEN_SECRET_FILE", "config/local/token.secret");
}

std::string default_admin_token_file(const std::string& given) {
    return first_existing(given, "IMGATE_ADMIN_TOKEN_FILE", "config/local/admin.token");
}

std::optional<std::string> token_subject(const std::string& token) {
    auto a = token.find('.');
    auto b = token.find('.', a == std::string::npos ? a : a + 1);
    if (a == std::string::npos || b == std::string::npos) return std::nullopt;
    auto payload = jwt::base64url_decode(std::string_view(token).substr(a + 1, b - a - 1));
    if (!payload) return std::nullopt;
    auto j = json::parse(*payload, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    auto it = j.find("sub");
    if (it == j.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
}

std::optional<std::string> session_token(session_args& a, std::string* err) {
    if (!a.token.empty()) {
        auto sub = token_subject(a.token);
        if (!sub) {
            *err = "--token is not a JWT with a \"sub\" claim";
            return std::nullopt;
        }
        if (a.user.empty()) a.user = *sub;
        return a.token;
    }
    if (a.user.empty()) {
        *err = "--user is required (or give --token)";
        return std::nullopt;
    }
    if (auto e = ids::check(a.user); e != ids::id_error::none) {
        *err = "--user: \"" + a.user + "\" is not a valid id: " + ids::to_string(e);
        return std::nullopt;
    }
    if (auto e = ids::check(a.device); !a.device.empty() && e != ids::id_error::none) {
        *err = "--device: \"" + a.device + "\" is not a valid id: " + ids::to_string(e);
        return std::nullopt;
    }
    auto file = default_secret_file(a.secret_file);
    if (file.empty()) {
        *err =
            "no token: give --token, --secret-file, or set IMGATE_TOKEN_SECRET_FILE "
            "(./config/local/token.secret is used when it exists)";
        return std::nullopt;
    }
    auto ttl = parse_duration(a.ttl);
    if (!ttl || ttl->count() < 1000) {
        *err = "--ttl: expected a duration of at least 1s, like 3600, 30m or 1h";
        return std::nullopt;
    }
    std::string secret;
    try {
        secret = read_secret_file(file);
    } catch (const std::exception& e) {
        *err = std::string("cannot read the token secret: ") + e.what();
        return std::nullopt;
    }
    auto now = jwt::now_seconds();
    return jwt::sign(jwt::claims{a.user, a.device, now + ttl->count() / 1000}, secret, now);
}

int run_token(const token_args& a) {
    session_args s;
    s.user = a.user;
    s.device = a.device;
    s.secret_file = a.secret_file;
    s.ttl = a.ttl;
    std::string err;
    auto t = session_token(s, &err);
    if (!t) {
        err_line(err);
        return 1;
    }
    out_line(*t);
    return 0;
}

int run_get_gateway(const get_gateway_args& a) {
    std::string err;
    auto urls = parse_dispatcher_urls(a.dispatcher, &err);
    if (!urls) {
        err_line("--dispatcher: " + err);
        return 1;
    }
    bool https = any_https(*urls);
    auto tr = prepare_transport(a.transport, https, &err);
    if (!tr) {
        err_line(err);
        return 1;
    }
    // Each run starts at a random URL, so many one-shot callers spread over the dispatchers.
    std::random_device rd;
    size_t start = dispatcher_list::draw_start(
        urls->size(), [&rd] { return std::uniform_real_distribution<double>(0, 1)(rd); });
    bool several = urls->size() > 1;
    dispatcher_list list(std::make_shared<const std::vector<http_url>>(std::move(*urls)), start);
    return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
        dispatcher_failover_fn on_failover = [](const http_url& from, const std::string& cause,
                                                const http_url& to) {
            err_line(failover_line(from, cause, to));
        };
        auto d = co_await get_gateway_round(io.get_executor(), list, a.user, a.region,
                                            split_list(a.exclude), tr->via, tr->tls, on_failover);
        if (d.answer) {
            out_line(d.raw);
            if (several) err_line("answered by dispatcher " + d.dispatcher);
            co_return 0;
        }
        if (d.status) out_line(d.raw);
        err_line(d.error + (d.retry_after.count()
                                ? " (retry after " + std::to_string(d.retry_after.count()) + " ms)"
                                : ""));
        co_return 1;
    });
}

namespace {

// State shared by listen and chat: reconnects until done, prints every message.
struct listener {
    listener(asio::io_context& i, listen_args la, std::string tk, target_spec t)
        : io(i), a(std::move(la)), token(std::move(tk)), target(std::move(t)) {}

    asio::io_context& io;
    listen_args a;
    std::string token;
    target_spec target;
    std::optional<clock::time_point> deadline;
    std::shared_ptr<client_session> current;
    uint64_t received = 0;
    bool done = false;
    bool timed_out = false;
    bool interrupted = false;
    bool connected_once = false;
    // chat: where stdin lines go, and lines typed while (re)connecting.
    std::string chat_target;
    bool chat_room = false;
    std::deque<std::string> backlog;
    uint64_t next_cmid = 1;

    bool chat_send(const std::string& line) {
        return current && current->is_open() &&
               current->send(chat_room ? proto::target_kind::room : proto::target_kind::user,
                             chat_target, line, next_cmid++);
    }

    asio::awaitable<int> run() {
        session_options so;
        if (auto ct = parse_duration(a.s.connect_timeout)) so.connect_timeout = *ct;
        so.handshake_timeout = so.connect_timeout;
        connector conn(io.get_executor(), target, so, std::random_device{}(),
                       [](const std::string& m) { err_line(m); });
        auto end_at = deadline.value_or(clock::time_point::max());
        std::optional<gateway_addr> first;
        while (!done && !interrupted) {
            auto r = co_await conn.connect(a.s.user, token, end_at, first);
            first.reset();
            if (done || interrupted) co_return 0;
            if (!r.session) {
                if (timed_out) co_return finish_code();
                err_line(r.error);
                co_return 1;
            }
            current = r.session;
            connected_once = true;
            auto& info = current->info();
            err_line("connected to " + r.gateway.to_string() +
                     (info.gateway_id == r.gateway.id ? "" : " (gateway " + info.gateway_id + ")") +
                     (target.via == transport::tcp
                          ? ""
                          : std::string(" over ") + to_string(target.via)) +
                     " as " + info.user + (info.device.empty() ? "" : "/" + info.device) +
                     ", heartbeat " + std::to_string(info.heartbeat_ms) + " ms" +
                     (target.dispatchers.size() > 1 && !r.dispatcher.empty()
                          ? ", via dispatcher " + r.dispatcher
                          : ""));
            for (auto& room : a.rooms) current->join(room);
            while (!backlog.empty() && chat_send(backlog.front())) backlog.pop_front();
            session_events ev;
            ev.on_deliver = [this](const proto::deliver_msg& m) {
                if (done) return;
                out_line(render_deliver(m, a.s.json));
                count_one();
            };
            ev.on_push = [this](const proto::push_msg& m) {
                if (done) return;
                out_line(render_push(m, a.s.json));
                count_one();
            };
            ev.on_room_result = [this](const proto::room_result_msg& m) {
                if (m.status == proto::code::ok)
                    err_line("room " + m.room + ": ok");
                else
                    err_line("room " + m.room + ": " + proto::to_string(m.status));
            };
            ev.on_send_result = [this](const proto::send_result_msg& m) {
                out_line(render_send_result(m, chat_target, chat_room, a.s.json));
            };
            ev.on_receipt = [this](const proto::receipt_msg& m) {
                out_line(render_receipt(m, a.s.json));
            };
            ev.on_error = [](const proto::error_msg& e) {
                err_line(std::string("error from the gateway: ") + proto::to_string(e.status) +
                         (e.message.empty() ? "" : ": " + e.message));
            };
            auto end = co_await current->run(std::move(ev));
            current.reset();
            if (done || interrupted) co_return 0;
            if (timed_out) co_return finish_code();
            err_line("session ended: " + end.describe());
            if (end.kick && end.kick->reason == proto::kick_reason::replaced) {
                err_line(
                    "another session logged in with the same user and device; "
                    "not reconnecting (use a different --device to run both)");
                co_return 3;
            }
            if (end.redirect && !end.redirect->host.empty())
                first = gateway_addr{"", end.redirect->host, end.redirect->port, ""};
            // Rule A (docs/protocol.md section 5): the server's hint exactly, else uniform
            // [0, jitter]; the first round asks the dispatcher to exclude the gateway just lost.
            milliseconds wait = conn.schedule().after_loss(server_hint(end));
            conn.exclude_once(r.gateway.id.empty() ? info.gateway_id : r.gateway.id);
            err_line("reconnecting in " + std::to_string(wait.count()) + " ms");
            asio::steady_timer t(io);
            t.expires_at(std::min(end_at, clock::now() + wait));
            co_await t.async_wait(use_tuple);
            if (timed_out) co_return finish_code();
        }
        co_return 0;
    }

    void count_one() {
        ++received;
        if (a.count && received >= a.count) {
            done = true;
            // Let the ack of the last message go out before closing.
            if (current) current->close_after_flush();
        }
    }

    int finish_code() const {
        if (!connected_once) {
            err_line("timeout: never connected");
            return 1;
        }
        if (a.count && received < a.count) {
            err_line("timeout: received " + std::to_string(received) + " of " +
                     std::to_string(a.count) + " messages");
            return 1;
        }
        return 0;
    }

    void stop_all(bool by_timeout) {
        (by_timeout ? timed_out : interrupted) = true;
        if (current) current->close_after_flush();
    }
};

int run_listener(listen_args a, std::function<void(listener&)> setup) {
    auto session = prepare_session(a.s);
    if (!session) return 1;
    std::optional<milliseconds> timeout;
    if (!a.timeout.empty()) {
        timeout = parse_duration(a.timeout);
        if (!timeout || timeout->count() == 0) {
            err_line("--timeout: expected a duration like 30, 30s or 2m");
            return 1;
        }
    }
    return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
        auto l = std::make_shared<listener>(io, a, session->token, session->target);
        if (timeout) l->deadline = clock::now() + *timeout;
        if (setup) setup(*l);
        asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([l](boost::system::error_code ec, int) {
            if (!ec) l->stop_all(false);
        });
        asio::steady_timer timer(io);
        if (timeout) {
            timer.expires_after(*timeout);
            timer.async_wait([l](boost::system::error_code ec) {
                if (!ec) l->stop_all(true);
            });
        }
        int rc = co_await l->run();
        timer.cancel();
        signals.cancel();
        co_return rc;
    });
}

}  // namespace

int run_listen(listen_args a) {
    if (a.s.device.empty()) a.s.device = default_device("listen");
    return run_listener(std::move(a), {});
}

int run_send(send_args a) {
    if (a.to.empty() == a.room.empty()) {
        err_line("give exactly one of --to USER or --room ROOM");
        return 1;
    }
    if (a.text.empty()) {
        err_line("nothing to send: give the text as an argument or with --text");
        return 1;
    }
    if (a.s.device.empty()) a.s.device = default_device("send");
    auto session = prepare_session(a.s);
    if (!session) return 1;
    auto timeout = parse_duration(a.timeout);
    if (!timeout || timeout->count() == 0) {
        err_line("--timeout: expected a duration like 15s");
        return 1;
    }
    std::optional<milliseconds> wait_receipt;
    if (!a.wait_receipt.empty()) {
        wait_receipt = parse_duration(a.wait_receipt);
        if (!wait_receipt) {
            err_line("--wait-receipt: expected a duration like 5s");
            return 1;
        }
    }
    bool room = !a.room.empty();
    std::string target = room ? a.room : a.to;
    return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
        session_options so;
        if (auto ct = parse_duration(a.s.connect_timeout)) so.connect_timeout = *ct;
        so.handshake_timeout = so.connect_timeout;
        connector conn(io.get_executor(), session->target, so, std::random_device{}(),
                       [](const std::string& m) { err_line(m); });
        conn.max_rounds = 2;
        auto deadline = clock::now() + *timeout;
        auto r = co_await conn.connect(a.s.user, session->token, deadline);
        if (!r.session) {
            err_line(r.error);
            co_return 1;
        }
        auto s = r.session;
        std::optional<proto::send_result_msg> result;
        uint32_t receipts = 0;
        bool joined_retry = false;
        uint64_t cmid = std::random_device{}() | 1;
        asio::steady_timer timer(io);
        timer.expires_at(deadline);
        // Everything happens in the callbacks; the timer bounds the run.
        // Shared, not on this frame: an expiry queued as run() returns must not touch the frame.
        auto timer_fired = std::make_shared<bool>(false);
        auto bound = [timer_fired, s](boost::system::error_code ec) {
            if (ec || !s->is_open()) return;
            *timer_fired = true;
            s->close_after_flush();
        };
        session_events ev;
        auto finish = [&]() { s->close_after_flush(); };
        ev.on_send_result = [&](const proto::send_result_msg& m) {
            if (m.client_msg_id != cmid) return;
            if (room && m.status == proto::code::not_in_room && !joined_retry) {
                // The gateway wants room senders to be members: join and send once more.
                joined_retry = true;
                s->join(a.room);
                cmid += 2;
                s->send(proto::target_kind::room, target, a.text, cmid);
                return;
            }
            result = m;
            out_line(render_send_result(m, target, room, a.s.json));
            if (m.status != proto::code::ok || !wait_receipt || receipts >= m.reached) {
                finish();
                return;
            }
            timer.expires_after(*wait_receipt);  // cancels the overall bound: re-arm
            timer.async_wait(bound);
        };
        ev.on_receipt = [&](const proto::receipt_msg& m) {
            if (m.client_msg_id != cmid) return;
            ++receipts;
            if (wait_receipt) out_line(render_receipt(m, a.s.json));
            if (result && wait_receipt && receipts >= result->reached) finish();
        };
        ev.on_error = [&](const proto::error_msg& e) {
            err_line(std::string("error from the gateway: ") + proto::to_string(e.status) +
                     (e.message.empty() ? "" : ": " + e.message));
        };
        ev.on_room_result = [&](const proto::room_result_msg& m) {
            if (m.status != proto::code::ok)
                err_line("join " + m.room + ": " + proto::to_string(m.status));
        };
        timer.async_wait(bound);
        s->send(room ? proto::target_kind::room : proto::target_kind::user, target, a.text, cmid);
        auto end = co_await s->run(std::move(ev));
        timer.cancel();
        if (!result) {
            if (*timer_fired)
                err_line("no send result within " + a.timeout);
            else
                err_line("session ended before the send result: " + end.describe());
            co_return exit_error;
        }
        int rc = send_exit_code(result->status);
        if (rc == exit_delivered && wait_receipt && receipts < result->reached) {
            err_line("receipts: " + std::to_string(receipts) + " of " +
                     std::to_string(result->reached) + " within " + a.wait_receipt);
            co_return exit_receipts_missing;
        }
        co_return rc;
    });
}

int run_push(const push_args& a) {
    if (a.user.empty() == a.room.empty()) {
        err_line("give exactly one of --user USER or --room ROOM");
        return 1;
    }
    auto ep = parse_endpoint(a.admin);
    if (!ep || ep->port == 0) {
        err_line("--admin: expected host:port of a gateway admin listener, got \"" + a.admin +
                 "\"");
        return 1;
    }
    auto file = default_admin_token_file(a.admin_token_file);
    if (file.empty()) {
        err_line("no admin token: give --admin-token-file or set IMGATE_ADMIN_TOKEN_FILE");
        return 1;
    }
    std::string admin_token;
    try {
        admin_token = read_secret_file(file);
    } catch (const std::exception& e) {
        err_line(std::string("cannot read the admin token: ") + e.what());
        return 1;
    }
    auto timeout = parse_duration(a.timeout).value_or(milliseconds(5000));
    json body = {{"payload", a.text}};
    if (!a.user.empty())
        body["user"] = a.user;
    else
        body["room"] = a.room;
    return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
        std::vector<std::pair<std::string, std::string>> headers;
        headers.emplace_back("Authorization", "Bearer " + admin_token);
        auto r = co_await http_request(io.get_executor(), "POST", ep->host, ep->port, "/push",
                                       body.dump(), std::move(headers), timeout);
        if (!r.ok) {
            err_line(r.error);
            co_return 1;
        }
        out_line(r.body);
        if (r.status / 100 != 2) {
            err_line("push failed: HTTP " + std::to_string(r.status));
            co_return 1;
        }
        co_return 0;
    });
}

int run_chat(listen_args a, std::string to, std::string room) {
    if (to.empty() == room.empty()) {
        err_line("give exactly one of --to USER or --room ROOM to chat with");
        return 1;
    }
    if (a.s.device.empty()) a.s.device = default_device("chat");
    if (!room.empty() && std::find(a.rooms.begin(), a.rooms.end(), room) == a.rooms.end())
        a.rooms.push_back(room);
    bool is_room = !room.empty();
    std::string target = is_room ? room : to;
    return run_listener(std::move(a), [target, is_room](listener& l) {
        l.chat_target = target;
        l.chat_room = is_room;
        // stdin lines become sends on whatever session is current; EOF ends the chat.
        auto stdin_loop = [](listener* lp) -> asio::awaitable<void> {
            asio::posix::stream_descriptor in(lp->io, ::dup(STDIN_FILENO));
            asio::streambuf buf(64 * 1024);
            while (!lp->done && !lp->interrupted && !lp->timed_out) {
                auto [ec, n] = co_await asio::async_read_until(in, buf, '\n', use_tuple);
                if (ec) break;
                std::string line(asio::buffers_begin(buf.data()),
                                 asio::buffers_begin(buf.data()) + n - 1);
                buf.consume(n);
                if (line.empty()) continue;
                if (lp->chat_send(line)) continue;
                if (lp->backlog.size() >= 100) {
                    err_line("not connected and 100 lines waiting: dropped \"" + line + "\"");
                    continue;
                }
                lp->backlog.push_back(std::move(line));  // sent once connected
            }
            // Let the last send results arrive before leaving.
            asio::steady_timer t(lp->io);
            auto until = std::chrono::steady_clock::now() + milliseconds(2000);
            while (lp->current && lp->backlog.empty() && lp->current->queued_bytes() > 0 &&
                   std::chrono::steady_clock::now() < until) {
                t.expires_after(milliseconds(10));
                co_await t.async_wait(use_tuple);
            }
            t.expires_after(milliseconds(300));
            co_await t.async_wait(use_tuple);
            lp->stop_all(false);
        };
        spawn(l.io, stdin_loop(&l), "imgate chat stdin");
    });
}

}  // namespace imgate::client
