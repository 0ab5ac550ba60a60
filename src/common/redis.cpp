#include "common/redis.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <strings.h>
#include <sys/ioctl.h>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <optional>
#include <random>

#include "common/backoff.hpp"
#include "common/log_throttle.hpp"

namespace imgate::redis {

namespace asio = boost::asio;
using boost::system::error_code;
using steady = std::chrono::steady_clock;

namespace {

class category final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "redis"; }
    std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
            case errc::not_connected:
                return "not connected to redis";
            case errc::queue_full:
                return "too many redis commands waiting for an answer";
            case errc::timed_out:
                return "redis did not answer in time";
            case errc::connection_lost:
                return "redis connection lost before the answer";
            case errc::stopped:
                return "redis connection stopped";
            case errc::protocol:
                return "redis protocol error";
        }
        return "redis error " + std::to_string(ev);
    }
};

reply copy_reply(const redisReply* r) {
    reply out;
    switch (r->type) {
        case REDIS_REPLY_STRING:
            out.type = reply::kind::string;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_STATUS:
            out.type = reply::kind::status;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_ERROR:
            out.type = reply::kind::error;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_INTEGER:
            out.type = reply::kind::integer;
            out.integer = r->integer;
            break;
        case REDIS_REPLY_ARRAY:
            out.type = reply::kind::array;
            out.elements.reserve(r->elements);
            for (size_t i = 0; i < r->elements; ++i)
                out.elements.push_back(copy_reply(r->element[i]));
            break;
        default:
            out.type = reply::kind::nil;
            break;
    }
    return out;
}

// Commands after which replies stop matching commands one to one (pub/sub and monitor modes,
// CLIENT REPLY OFF|SKIP), or that change the session behind the connection's back (HELLO 3
// switches to RESP3, which hiredis 0.14 cannot parse; RESET undoes AUTH and SELECT; SELECT
// would hold only until the next reconnect, which selects options.db).
bool refused_command(const argv& args) {
    if (args.empty()) return true;
    static const char* const names[] = {"subscribe",    "psubscribe",   "ssubscribe", "unsubscribe",
                                        "punsubscribe", "sunsubscribe", "monitor",    "hello",
                                        "reset",        "select"};
    for (auto* n : names)
        if (::strcasecmp(args[0].c_str(), n) == 0) return true;
    return args.size() >= 2 && ::strcasecmp(args[0].c_str(), "client") == 0 &&
           ::strcasecmp(args[1].c_str(), "reply") == 0;
}

// Bytes waiting in the socket's receive buffer (0 on error).
int readable_bytes(int fd) {
    int n = 0;
    if (::ioctl(fd, FIONREAD, &n) != 0) return 0;
    return n;
}

const reply& nil_reply() {
    static const reply r;
    return r;
}

}  // namespace

const boost::system::error_category& redis_category() {
    static const category c;
    return c;
}

error_code make_error_code(errc e) {
    return {static_cast<int>(e), redis_category()};
}

struct connection::impl : std::enable_shared_from_this<impl> {
    // One hiredis async context and the descriptor that watches its socket for it. The descriptor
    // never owns the fd: hiredis closes it in redisFree, so cleanup() releases it first.
    struct link : std::enable_shared_from_this<link> {
        explicit link(const asio::any_io_executor& ex) : sd(ex) {}
        ~link() {
            if (sd.is_open()) sd.release();
        }
        redisAsyncContext* ac = nullptr;  // null once hiredis freed (or is freeing) the context
        asio::posix::stream_descriptor sd;
        impl* owner = nullptr;  // null once the connection no longer listens (its destructor)
        bool want_read = false, want_write = false;
        bool reading = false, writing = false;  // an async_wait of that kind is outstanding
        bool closed = false;
        std::optional<errc> fail_reason;  // set by whoever tears the context down
        std::string why;                  // text for the log line when it closes
        int hiredis_err = 0;              // ac->err when hiredis closed it (REDIS_ERR_*)
    };

    // What one sent command waits for; the deque mirrors hiredis's reply callback list (FIFO).
    enum class step { user, auth, select, ping };
    struct pending_cmd {
        reply_handler h;
        steady::time_point sent;
        step kind = step::user;
    };

    static constexpr const char* commands_help =
        "Redis commands by outcome: ok (a reply), error (an error reply), failed (no reply: not "
        "connected, queue full, timed out, connection lost, stopped)";

    impl(asio::any_io_executor e, options o, metrics_registry& m)
        : ex(std::move(e)),
          opts(std::move(o)),
          timer(ex),
          cmd_timer(ex),
          resolver(ex),
          retry(opts.backoff_min, opts.backoff_max),
          rng(std::random_device{}()),
          m_up(m.get_gauge("imgate_redis_up", "Whether the Redis connection is up (1) or not (0)",
                           {{"name", opts.name}})),
          m_connects(m.get_counter("imgate_redis_connects_total",
                                   "Redis connections made ready (connected and authenticated)",
                                   {{"name", opts.name}})),
          m_ok(m.get_counter("imgate_redis_commands_total", commands_help,
                             {{"name", opts.name}, {"result", "ok"}})),
          m_error(m.get_counter("imgate_redis_commands_total", commands_help,
                                {{"name", opts.name}, {"result", "error"}})),
          m_failed(m.get_counter("imgate_redis_commands_total", commands_help,
                                 {{"name", opts.name}, {"result", "failed"}})),
          m_pending(m.get_gauge("imgate_redis_pending", "Redis commands sent and not yet answered",
                                {{"name", opts.name}})) {
        m_up.set(0);
    }

    ~impl() {
        // The facade stops us on the executor; this is the last resort when the executor never
        // ran that (its io_context was destroyed): free hiredis without running handlers, as
        // Asio destroys the handlers of abandoned operations.
        stopped = true;
        if (cur && cur->ac) {
            auto l = cur;
            l->owner = nullptr;
            redisAsyncFree(l->ac);
        }
    }

    std::string address() const {
        if (!opts.unix_path.empty()) return opts.unix_path;
        return opts.host + ":" + std::to_string(opts.port);
    }

    // --- hiredis event hooks (called by hiredis, on the executor) ---
    static void hook_add_read(void* p) {
        auto* l = static_cast<link*>(p);
        l->want_read = true;
        if (l->owner) l->owner->arm_read(l->shared_from_this());
    }
    static void hook_del_read(void* p) { static_cast<link*>(p)->want_read = false; }
    static void hook_add_write(void* p) {
        auto* l = static_cast<link*>(p);
        l->want_write = true;
        if (l->owner) l->owner->arm_write(l->shared_from_this());
    }
    static void hook_del_write(void* p) { static_cast<link*>(p)->want_write = false; }
    static void hook_cleanup(void* p) {
        auto* l = static_cast<link*>(p);
        if (l->closed) return;
        // hiredis may still run callbacks naming this link after the hook: it lives until the
        // next drain, which runs outside hiredis.
        if (l->owner) l->owner->retired.push_back(l->shared_from_this());
        l->closed = true;
        if (l->ac && l->ac->err) {
            l->hiredis_err = l->ac->err;
            if (l->why.empty() && l->ac->errstr) l->why = l->ac->errstr;
        }
        l->ac = nullptr;
        l->want_read = l->want_write = false;
        // Cancels the outstanding waits and hands the fd back: hiredis closes it right after.
        if (l->sd.is_open()) l->sd.release();
        if (l->owner) l->owner->on_link_closed(*l);
    }
    static void on_reply_cb(redisAsyncContext* ac, void* r, void* priv) {
        auto* l = static_cast<link*>(priv);
        if (l->owner) l->owner->on_reply(*l, ac, static_cast<redisReply*>(r));
    }

    void arm_read(std::shared_ptr<link> l) {
        if (l->reading || !l->ac) return;
        l->reading = true;
        auto& sd = l->sd;
        sd.async_wait(asio::posix::descriptor_base::wait_read, [w = weak_from_this(),
                                                                l = std::move(l)](error_code ec) {
            l->reading = false;
            auto self = w.lock();
            if (!self || !l->ac || ec == asio::error::operation_aborted) return;
            if (ec) {
                self->drop(l, errc::connection_lost, "wait: " + ec.message());
            } else if (l->want_read) {
                redisAsyncHandleRead(l->ac);
                // hiredis reads at most 16 KiB per call: take what the socket
                // already holds now rather than one reactor round trip per 16 KiB
                // (bounded, so one busy connection does not starve the executor).
                for (int i = 0; i < 64 && l->ac && l->want_read && readable_bytes(l->ac->c.fd) > 0;
                     ++i)
                    redisAsyncHandleRead(l->ac);
                // hiredis re-adds the read interest itself; this covers a delRead
                // followed by addRead while our wait was outstanding.
                if (l->ac && l->want_read) self->arm_read(l);
            }
            self->drain();
        });
    }
    void arm_write(std::shared_ptr<link> l) {
        if (l->writing || !l->ac) return;
        l->writing = true;
        auto& sd = l->sd;
        sd.async_wait(asio::posix::descriptor_base::wait_write,
                      [w = weak_from_this(), l = std::move(l)](error_code ec) {
                          l->writing = false;
                          auto self = w.lock();
                          if (!self || !l->ac || ec == asio::error::operation_aborted) return;
                          if (ec) {
                              self->drop(l, errc::connection_lost, "wait: " + ec.message());
                          } else if (l->want_write) {
                              redisAsyncHandleWrite(l->ac);
                              if (l->ac && l->want_write) self->arm_write(l);
                          }
                          self->drain();
                      });
    }

    // --- lifecycle ---
    void do_start() {
        if (started || stopped) return;
        started = true;
        connect();
    }

    void do_stop() {
        if (stopped) return;
        stopped = true;
        cancel_timer();
        cancel_cmd_timer();
        resolver.cancel();
        if (cur && cur->ac) drop(cur, errc::stopped, "stopped");
        cur.reset();
        set_up(false);
        schedule_drain();
    }

    void connect() {
        if (stopped) return;
        ++attempt_seq;
        arm_timer(opts.connect_timeout, [this] { on_connect_timeout(); });
        if (!opts.unix_path.empty()) return open(nullptr);
        error_code ec;
        auto addr = asio::ip::make_address(opts.host, ec);
        if (!ec) return open(&addr);
        // A name: resolve without blocking the executor (hiredis would call getaddrinfo inline).
        resolving = true;
        resolver.async_resolve(
            opts.host, std::to_string(opts.port),
            [w = weak_from_this(), seq = attempt_seq](error_code ec,
                                                      asio::ip::tcp::resolver::results_type res) {
                auto self = w.lock();
                if (!self || self->stopped || seq != self->attempt_seq) return;
                self->resolving = false;
                if (ec || res.empty()) {
                    self->attempt_failed("cannot resolve " + self->opts.host + ": " +
                                         (ec ? ec.message() : std::string("no address")));
                    return;
                }
                // IPv4 first: a local Redis usually binds 127.0.0.1 only,
                // while "localhost" may resolve to ::1 first.
                auto a = res.begin()->endpoint().address();
                for (auto& e : res) {
                    if (e.endpoint().address().is_v4()) {
                        a = e.endpoint().address();
                        break;
                    }
                }
                self->open(&a);
            });
    }

    void open(const asio::ip::address* addr) {
        redisAsyncContext* ac = addr ? redisAsyncConnect(addr->to_string().c_str(), opts.port)
                                     : redisAsyncConnectUnix(opts.unix_path.c_str());
        if (!ac) return attempt_failed("cannot allocate a hiredis context");
        if (ac->err) {
            std::string why = ac->errstr ? ac->errstr : "connect failed";
            redisAsyncFree(ac);
            return attempt_failed(why);
        }
        auto l = std::make_shared<link>(ex);
        error_code ec;
        l->sd.assign(ac->c.fd, ec);
        if (ec) {
            redisAsyncFree(ac);
            return attempt_failed("cannot watch the socket: " + ec.message());
        }
        l->ac = ac;
        l->owner = this;
        ac->data = l.get();
        ac->ev.data = l.get();
        ac->ev.addRead = &hook_add_read;
        ac->ev.delRead = &hook_del_read;
        ac->ev.addWrite = &hook_add_write;
        ac->ev.delWrite = &hook_del_write;
        ac->ev.cleanup = &hook_cleanup;
        cur = l;
        // AUTH, SELECT and a PING, pipelined behind the connect: the connection is up when the
        // PING answers, so a server that accepts but does not speak Redis (or is still loading)
        // is not taken for a working one. Queuing them also arms the write wait that detects
        // the end of the non-blocking connect.
        reply_handler none;
        if (!opts.password.empty()) send(*l, {"AUTH", opts.password}, none, step::auth);
        if (opts.db != 0) send(*l, {"SELECT", std::to_string(opts.db)}, none, step::select);
        send(*l, {"PING"}, none, step::ping);
    }

    // Queues one command on hiredis; false if hiredis refused it (the context is closing), and
    // then h is left to the caller.
    bool send(link& l, const argv& args, reply_handler& h, step kind) {
        std::vector<const char*> av;
        std::vector<size_t> lens;
        av.reserve(args.size());
        lens.reserve(args.size());
        for (auto& a : args) {
            av.push_back(a.data());
            lens.push_back(a.size());
        }
        if (redisAsyncCommandArgv(l.ac, &on_reply_cb, &l, static_cast<int>(args.size()), av.data(),
                                  lens.data()) != REDIS_OK)
            return false;
        pending.push_back(pending_cmd{std::move(h), steady::now(), kind});
        return true;
    }

    void on_reply(link& l, redisAsyncContext* ac, redisReply* r) {
        if (pending.empty()) return;  // cannot happen: hiredis answers each callback once
        pending_cmd p = std::move(pending.front());
        pending.pop_front();
        if (p.kind != step::user) return on_handshake_reply(l, ac, r, p.kind);
        --user_pending;
        m_pending.set(static_cast<double>(user_pending));
        if (!r) {
            errc why = l.fail_reason                           ? *l.fail_reason
                       : (ac && ac->err == REDIS_ERR_PROTOCOL) ? errc::protocol
                                                               : errc::connection_lost;
            m_failed.inc();
            completions.push_back(
                [h = std::move(p.h), why] { h(make_error_code(why), nil_reply()); });
            return;
        }
        reply rep = copy_reply(r);
        (rep.is_error() ? m_error : m_ok).inc();
        completions.push_back([h = std::move(p.h), rep = std::move(rep)] { h(error_code{}, rep); });
    }

    void on_handshake_reply(link& l, redisAsyncContext* ac, redisReply* r, step kind) {
        if (!r || l.closed || !l.ac) return;  // the context is going away; cleanup reports it
        if (r->type == REDIS_REPLY_ERROR) {
            const char* what = kind == step::auth     ? "AUTH"
                               : kind == step::select ? "SELECT"
                                                      : "PING";
            l.why = std::string(what) + " failed: " + std::string(r->str, r->len);
            l.fail_reason = errc::connection_lost;
            // Inside a hiredis callback: the free is deferred until the callback returns.
            redisAsyncFree(ac);
            return;
        }
        if (kind == step::ping) became_up();
    }

    void became_up() {
        cancel_timer();
        retry.reset();
        set_up(true);
        m_connects.inc();
        if (failed_attempts > 0)
            spdlog::info("redis {}: connected to {} after {} failed attempt{}", opts.name,
                         address(), failed_attempts, failed_attempts == 1 ? "" : "s");
        else
            spdlog::info("redis {}: connected to {}", opts.name, address());
        failed_attempts = 0;
        if (on_up) completions.push_back([f = on_up] { f(); });
    }

    // Tears the context down now: every command waiting on it fails with `reason`.
    void drop(std::shared_ptr<link> l, errc reason, std::string why) {
        if (!l || !l->ac || l->closed) return;
        if (!l->fail_reason) l->fail_reason = reason;
        if (l->why.empty()) l->why = std::move(why);
        redisAsyncFree(l->ac);
    }

    // Called from hiredis's cleanup hook: the context is being freed (by us or after an error).
    void on_link_closed(link& l) {
        bool was_up = up.load();
        set_up(false);
        cancel_cmd_timer();
        if (cur.get() == &l) cur.reset();
        if (stopped) return;
        std::string why = l.why.empty() ? std::string("connection closed") : l.why;
        errc reason = l.fail_reason                         ? *l.fail_reason
                      : l.hiredis_err == REDIS_ERR_PROTOCOL ? errc::protocol
                                                            : errc::connection_lost;
        if (was_up) {
            uint64_t suppressed = 0;
            if (down_log.admit(&suppressed))
                spdlog::warn("redis {}: connection to {} lost: {}; reconnecting{}", opts.name,
                             address(), why, suppressed_note(suppressed));
            if (on_down)
                completions.push_back([f = on_down, reason] { f(make_error_code(reason)); });
            schedule_reconnect();
        } else {
            attempt_failed(why, reason);
        }
    }

    void attempt_failed(const std::string& why, errc reason = errc::not_connected) {
        cancel_timer();
        ++failed_attempts;
        uint64_t suppressed = 0;
        if (down_log.admit(&suppressed))
            spdlog::warn("redis {}: cannot connect to {} ({} failed attempt{}): {}; retrying{}",
                         opts.name, address(), failed_attempts, failed_attempts == 1 ? "" : "s",
                         why, suppressed_note(suppressed));
        if (on_down) completions.push_back([f = on_down, reason] { f(make_error_code(reason)); });
        schedule_reconnect();
        schedule_drain();
    }

    void schedule_reconnect() {
        if (stopped) return;
        auto delay = retry.next(rng);
        arm_timer(delay, [this] { connect(); });
    }

    void on_connect_timeout() {
        if (up || stopped) return;
        if (resolving) {
            resolving = false;
            ++attempt_seq;  // the resolve's late answer is ignored
            resolver.cancel();
            return attempt_failed("connect timed out (resolving " + opts.host + ")",
                                  errc::timed_out);
        }
        if (cur && cur->ac) {
            auto l = cur;
            drop(l, errc::timed_out,
                 "connect timed out after " + std::to_string(opts.connect_timeout.count()) + "ms");
        }
    }

    // --- commands ---
    void do_command(argv args, reply_handler h) {
        errc refuse{};
        if (stopped)
            refuse = errc::stopped;
        else if (!up || !cur || !cur->ac)
            refuse = errc::not_connected;
        else if (user_pending >= opts.max_pending)
            refuse = errc::queue_full;
        if (refuse == errc{} && refused_command(args))
            return fail_now(std::move(h), asio::error::invalid_argument);
        if (refuse != errc{}) return fail_now(std::move(h), make_error_code(refuse));
        auto l = cur;
        // hiredis refuses new commands once the context is closing.
        if (!send(*l, args, h, step::user))
            return fail_now(std::move(h), make_error_code(errc::not_connected));
        ++user_pending;
        m_pending.set(static_cast<double>(user_pending));
        if (!cmd_timer_armed) arm_cmd_timer(pending.front().sent + opts.command_timeout);
    }

    void fail_now(reply_handler h, error_code ec) {
        m_failed.inc();
        asio::post(ex, [h = std::move(h), ec] { h(ec, nil_reply()); });
    }

    void arm_cmd_timer(steady::time_point at) {
        cmd_timer_armed = true;
        cmd_timer.expires_at(at);
        cmd_timer.async_wait([w = weak_from_this(), seq = ++cmd_timer_seq](error_code) {
            auto self = w.lock();
            if (!self || seq != self->cmd_timer_seq) return;
            self->cmd_timer_armed = false;
            self->on_cmd_timer();
            self->drain();
        });
    }
    void cancel_cmd_timer() {
        ++cmd_timer_seq;
        cmd_timer_armed = false;
        cmd_timer.cancel();
    }

    void on_cmd_timer() {
        if (!up || pending.empty() || !cur) return;
        auto deadline = pending.front().sent + opts.command_timeout;
        if (steady::now() < deadline) return arm_cmd_timer(deadline);
        auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() -
                                                                            pending.front().sent);
        auto l = cur;
        drop(l, errc::timed_out,
             "no answer for " + std::to_string(waited.count()) + "ms (command_timeout " +
                 std::to_string(opts.command_timeout.count()) + "ms, " +
                 std::to_string(user_pending) + " commands waiting)");
    }

    // --- timer for the connect timeout and the reconnect backoff (never both at once) ---
    template <class F>
    void arm_timer(std::chrono::milliseconds d, F f) {
        timer.expires_after(d);
        timer.async_wait([w = weak_from_this(), seq = ++timer_seq, f](error_code) {
            auto self = w.lock();
            if (!self || seq != self->timer_seq || self->stopped) return;
            f();
            self->drain();
        });
    }
    void cancel_timer() {
        ++timer_seq;
        timer.cancel();
    }

    void set_up(bool v) {
        up = v;
        m_up.set(v ? 1 : 0);
    }

    // Runs user handlers, never from inside hiredis: a handler may send commands, stop, or drop
    // the last reference to the connection.
    void drain() {
        if (draining) return;
        draining = true;
        auto keep = shared_from_this();
        while (!completions.empty()) {
            auto batch = std::move(completions);
            completions.clear();
            for (auto& c : batch) c();
        }
        retired.clear();
        draining = false;
    }
    void schedule_drain() {
        if (drain_posted || (completions.empty() && retired.empty())) return;
        drain_posted = true;
        asio::post(ex, [self = shared_from_this()] {
            self->drain_posted = false;
            self->drain();
        });
    }

    asio::any_io_executor ex;
    options opts;
    asio::steady_timer timer;      // connect timeout, then backoff
    asio::steady_timer cmd_timer;  // the oldest command's deadline
    asio::ip::tcp::resolver resolver;
    backoff retry;
    std::mt19937 rng;
    log_throttle down_log{1.0 / 30, 2};

    std::function<void()> on_up;
    std::function<void(error_code)> on_down;

    std::shared_ptr<link> cur;                   // the context being connected or in use
    std::vector<std::shared_ptr<link>> retired;  // closed, kept until hiredis is done with them
    std::deque<pending_cmd> pending;
    size_t user_pending = 0;
    std::deque<std::function<void()>> completions;
    std::atomic<bool> up{false};
    bool started = false, stopped = false, resolving = false;
    bool draining = false, drain_posted = false;
    bool cmd_timer_armed = false;
    uint64_t timer_seq = 0, cmd_timer_seq = 0, attempt_seq = 0;
    uint32_t failed_attempts = 0;

    gauge& m_up;
    counter& m_connects;
    counter& m_ok;
    counter& m_error;
    counter& m_failed;
    gauge& m_pending;
};

std::shared_ptr<connection> connection::create(asio::any_io_executor ex, options o,
                                               metrics_registry& m) {
    auto i = std::make_shared<impl>(std::move(ex), std::move(o), m);
    return std::shared_ptr<connection>(new connection(std::move(i)));
}

connection::connection(std::shared_ptr<impl> i) : impl_(std::move(i)) {}

connection::~connection() {
    // Stops on the executor (inline when already there); the lambda keeps the state alive.
    auto i = impl_;
    asio::dispatch(i->ex, [i] { i->do_stop(); });
}

void connection::set_on_up(std::function<void()> f) {
    impl_->on_up = std::move(f);
}
void connection::set_on_down(std::function<void(error_code)> f) {
    impl_->on_down = std::move(f);
}

void connection::start() {
    asio::dispatch(impl_->ex, [i = impl_] { i->do_start(); });
}

void connection::stop() {
    asio::dispatch(impl_->ex, [i = impl_] { i->do_stop(); });
}

void connection::command(argv args, reply_handler h) {
    asio::dispatch(impl_->ex, [i = impl_, args = std::move(args), h = std::move(h)]() mutable {
        i->do_command(std::move(args), std::move(h));
    });
}

bool connection::connected() const {
    return impl_->up.load();
}

const options& connection::opts() const {
    return impl_->opts;
}

}  // namespace imgate::redis
