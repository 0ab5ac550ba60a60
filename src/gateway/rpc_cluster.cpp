#include "gateway/rpc_cluster.hpp"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "common/daemon.hpp"
#include "gateway/rpc_link.hpp"
#include "gateway/rpc_wire.hpp"

namespace imgate::gw {

namespace {

using tcp = asio::ip::tcp;
using strand_t = asio::strand<asio::io_context::executor_type>;
using error_code = boost::system::error_code;
using rpc::clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string random_nonce() {
    std::string n(rpc::nonce_size, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(n.data()), static_cast<int>(n.size())) != 1)
        throw std::runtime_error("RAND_bytes failed");
    return n;
}

// One TCP connection of the mesh, either direction: socket, frame decoder, and the single writer's
// bounded queue (bytes appended to `pending`, swapped into `writing` for one coalesced write).
// Lives on the cluster's strand.
struct conn {
    conn(const strand_t& s, uint64_t max_queue) : sock(s), wake(s), dog(s), max_queue(max_queue) {
        last_read = last_write = clock::now();
    }

    tcp::socket sock;
    asio::steady_timer wake;  // the writer sleeps on it while the queue is empty
    asio::steady_timer dog;   // watchdog: read deadline, stalled writes, idle pings
    frame_decoder dec{rpc::max_body, rpc_protocol_version};
    std::string pending;
    std::string writing;
    uint64_t max_queue;
    bool closed = false;
    bool in_write = false;
    bool close_after_flush = false;
    bool overflowed = false;
    // Set on every read / queued write, folded into last_read / last_write by the watchdog tick:
    // the hot path never reads the clock.
    bool read_seen = false;
    bool write_seen = false;
    clock::time_point last_read, last_write, write_started;
    clock::time_point last_ping{};
    bool skipped_logged = false;  // one warning per connection for refused entries

    // Queues whole frames; past the bound the peer is a slow consumer and the link is closed
    // (its calls then fail with unavailable; a reconnect resynchronises with a snapshot).
    bool send(std::string_view bytes, bool bounded = true) {
        if (closed) return false;
        bool was_empty = pending.empty();
        pending.append(bytes);
        return after_append(was_empty, bounded);
    }
    // Same, patching the correlation id of a frame encoded once for several peers.
    bool send_with_corr(std::string_view bytes, uint32_t corr) {
        if (closed) return false;
        bool was_empty = pending.empty();
        size_t at = pending.size();
        pending.append(bytes);
        std::string c;
        byte_writer cw(c);
        cw.u32(corr);
        pending.replace(at + 8, 4, c);
        return after_append(was_empty, true);
    }
    template <class M>
    bool send_msg(const M& m, uint32_t corr = 0) {
        if (closed) return false;
        bool was_empty = pending.empty();
        rpc::encode(pending, m, corr);
        return after_append(was_empty, true);
    }
    bool after_append(bool was_empty, bool bounded) {
        write_seen = true;
        if (bounded && pending.size() > max_queue) {
            overflowed = true;
            close();
            return false;
        }
        if (was_empty && !in_write) wake.cancel();
        return true;
    }
    void close() {
        if (closed) return;
        closed = true;
        error_code ec;
        sock.close(ec);
        wake.cancel();
        dog.cancel();
    }
    void close_when_flushed() {
        if (pending.empty() && !in_write)
            close();
        else
            close_after_flush = true;
    }
};

enum class read_end { closed, bad_frame, stopped, rejected };
enum class verdict { more, stop, reject };

// Aggregates the per-peer answers of one forward; calls done once, when the last one is in.
struct fan_in {
    size_t remaining;
    rpc::result_combiner comb;
    std::function<void(forward_result)> done;
    counter* results[4];  // delivered, offline, unavailable, timeout

    void add(const forward_result& r) {
        comb.add(r);
        if (--remaining > 0) return;
        auto res = comb.result();
        switch (res.status) {
            case proto::code::ok:
                results[0]->inc();
                break;
            case proto::code::offline:
                results[1]->inc();
                break;
            case proto::code::timeout:
                results[3]->inc();
                break;
            default:
                results[2]->inc();
                break;
        }
        auto d = std::move(done);
        d(res);
    }
};

}  // namespace

struct rpc_cluster::impl : std::enable_shared_from_this<impl> {
    // One persistent outbound link to a peer: reconnect loop, its current connection and the
    // calls in flight on it.
    struct link {
        link(const strand_t& s, gateway_spec sp, const rpc_config& cfg, std::function<double()> rnd)
            : spec(std::move(sp)),
              calls(cfg.max_in_flight),
              bo(cfg.backoff_min, cfg.backoff_max, std::move(rnd)),
              call_timer(s),
              retry_timer(s) {}
        gateway_spec spec;
        rpc::call_table calls;
        rpc::backoff bo;
        asio::steady_timer call_timer;
        asio::steady_timer retry_timer;
        std::shared_ptr<conn> c;
        bool up = false;
        bool removed = false;
    };

    impl(asio::io_context& io_, const fleet_config& fleet_, std::string self, std::string secret_,
         const rpc_config& cfg_, local_delivery& local_, metrics_registry& m,
         std::unique_ptr<session_directory> dir_)
        : io(io_),
          strand(asio::make_strand(io_)),
          self_id(std::move(self)),
          secret(std::move(secret_)),
          cfg(cfg_),
          local(local_),
          metrics(m),
          dir(dir_ ? std::move(dir_) : std::make_unique<announced_directory>()),
          local_dir(dynamic_cast<announced_directory*>(dir.get())),
          acceptor(strand),
          fleet(fleet_),
          rng(std::random_device{}()) {
        for (auto& g : fleet.gateways) members.insert(g.id);
        const char* fr[] = {"delivered", "offline", "unavailable", "timeout"};
        for (int i = 0; i < 4; ++i)
            forward_results[i] =
                &m.get_counter("imgate_rpc_forwards_total",
                               "Cross-node forwards by combined result", {{"result", fr[i]}});
        forward_frames = &m.get_counter("imgate_rpc_forward_frames_total",
                                        "FORWARD frames sent to peers (one per peer per message)");
        forwards_received = &m.get_counter("imgate_rpc_forwards_received_total",
                                           "FORWARD frames received from peers");
        receipts_dropped =
            &m.get_counter("imgate_rpc_receipts_dropped_total",
                           "Receipts not sent because the link to the origin gateway was down");
        late_answers = &m.get_counter("imgate_rpc_late_answers_total",
                                      "FORWARD_RESULTs for calls already timed out");
        busy = &m.get_counter("imgate_rpc_in_flight_full_total",
                              "Forwards failed fast because max_in_flight calls were pending");
        g_links = &m.get_gauge("imgate_rpc_links_up", "Authenticated outbound peer links");
        g_inbound = &m.get_gauge("imgate_rpc_inbound_links", "Authenticated inbound peer links");
        g_users = &m.get_gauge("imgate_rpc_directory_users",
                               "Users known to be on other gateways (directory entries)");
        g_rooms = &m.get_gauge("imgate_rpc_directory_rooms",
                               "Rooms with members on other gateways (directory entries)");
        g_user_locs = &m.get_gauge("imgate_rpc_directory_user_locations",
                                   "(user, peer gateway) pairs in the directory");
        g_room_locs = &m.get_gauge("imgate_rpc_directory_room_locations",
                                   "(room, peer gateway) pairs in the directory");
        // Every label value the code below can count exists at 0 from start-up: an increase()
        // alert (docs/prometheus-alerts.yml) cannot fire on a series' first sample, so a series
        // born with its first event would hide that event. New reasons belong in these lists.
        for (const char* r :
             {"bad_frame", "unknown_peer", "bad_proof", "refused", "timeout", "closed"})
            auth_failure("outbound", r);
        for (const char* r :
             {"bad_frame", "unknown_peer", "bad_proof", "timeout", "closed", "too_many_handshakes"})
            auth_failure("inbound", r);
        for (const char* r : {"slow_consumer", "read_timeout", "write_stall"}) closed_for(r);
        for (const char* d : {"inbound", "outbound"})
            m.get_counter("imgate_rpc_protocol_errors_total",
                          "Malformed or unexpected frames from authenticated peers",
                          {{"direction", d}});
        for (auto& g : fleet.gateways)
            if (g.id != self_id) connects_counter(g.id);
    }

    // Also called for a peer that a reload adds, so its series exists before its first connect.
    counter& connects_counter(const std::string& peer) {
        return metrics.get_counter("imgate_rpc_link_connects_total",
                                   "Successful handshakes on the outbound link to a peer",
                                   {{"peer", peer}});
    }

    counter& auth_failure(const char* direction, const char* reason) {
        return metrics.get_counter("imgate_rpc_auth_failures_total",
                                   "RPC handshakes refused (wrong secret, unknown peer, garbage)",
                                   {{"direction", direction}, {"reason", reason}});
    }
    counter& closed_for(const char* reason) {
        return metrics.get_counter("imgate_rpc_links_closed_total",
                                   "Peer links closed by this gateway, by reason",
                                   {{"reason", reason}});
    }

    // ---- start / stop / reload (on the strand) ----

    void bind() {
        register_entry_metrics();
        const gateway_spec* me = fleet.find(self_id);
        if (!me) throw std::runtime_error("gateway " + self_id + " is not in the fleet");
        tcp::resolver res(io);
        error_code ec;
        auto eps = res.resolve(me->rpc.host, std::to_string(me->rpc.port), ec);
        if (ec || eps.empty())
            throw std::runtime_error("rpc address " + me->rpc.to_string() + ": " + ec.message());
        tcp::endpoint ep = eps.begin()->endpoint();
        acceptor.open(ep.protocol());
        acceptor.set_option(tcp::acceptor::reuse_address(true));
        acceptor.bind(ep, ec);
        if (ec)
            throw std::runtime_error("cannot bind rpc " + me->rpc.to_string() + ": " +
                                     ec.message());
        acceptor.listen();
        port = acceptor.local_endpoint().port();
    }

    void start() {
        auto self = shared_from_this();
        asio::post(strand, [self] {
            imgate::spawn(self->strand, self->accept_loop(), "rpc accept loop");
            for (auto& g : self->fleet.gateways)
                if (g.id != self->self_id) self->add_link(g);
            spdlog::info("cluster rpc: {} listening on port {}, {} peers", self->self_id,
                         self->port.load(), self->links.size());
        });
    }

    void add_link(const gateway_spec& g) {
        auto rnd = [this] { return std::uniform_real_distribution<double>(0, 1)(rng); };
        auto l = std::make_shared<link>(strand, g, cfg, rnd);
        links[g.id] = l;
        connects_counter(g.id);
        imgate::spawn(strand, run_link(l), "rpc link " + g.id);
        imgate::spawn(strand, run_call_timer(l), "rpc call timer " + g.id);
    }

    void remove_link(const std::shared_ptr<link>& l) {
        l->removed = true;
        l->retry_timer.cancel();
        l->call_timer.cancel();
        if (l->c) l->c->close();
        l->calls.fail_all(proto::code::unavailable);
    }

    void do_stop() {
        stopped = true;
        error_code ec;
        acceptor.close(ec);
        for (auto& [id, l] : links) remove_link(l);
        for (auto& [id, c] : inbound) c->close();
        for (auto& c : handshaking) c->close();
    }

    void do_reload(const fleet_config& f) {
        if (stopped) return;
        if (!f.cluster_secret_file.empty()) {
            try {
                secret = read_secret_file(f.cluster_secret_file);
            } catch (const config_error& e) {
                spdlog::warn("cluster rpc: keeping the previous cluster secret: {}", e.what());
            }
        }
        fleet = f;
        members.clear();
        for (auto& g : f.gateways) members.insert(g.id);
        if (!members.count(self_id))
            spdlog::warn(
                "cluster rpc: {} is no longer in the fleet file; links kept to listed peers",
                self_id);
        size_t added = 0, removed = 0;
        for (auto it = links.begin(); it != links.end();) {
            const gateway_spec* g = f.find(it->first);
            if (g && g->rpc == it->second->spec.rpc) {
                it->second->spec = *g;
                ++it;
                continue;
            }
            remove_link(it->second);
            forget_peer_metrics(it->first);
            it = links.erase(it);
            ++removed;
        }
        for (auto& g : f.gateways) {
            if (g.id == self_id || links.count(g.id)) continue;
            add_link(g);
            ++added;
        }
        for (auto& [id, c] : inbound)
            if (!members.count(id)) c->close();  // its cleanup drops the directory entries
        spdlog::info("cluster rpc: reload: {} peers ({} added, {} removed)", links.size(), added,
                     removed);
    }

    void forget_peer_metrics(const std::string& id) {
        metrics.remove_series("imgate_rpc_link_connects_total", "peer", id);
    }

    // ---- outbound links ----

    asio::awaitable<void> run_link(std::shared_ptr<link> l) {
        auto keep = shared_from_this();
        while (!l->removed && !stopped) {
            auto c = std::make_shared<conn>(strand, cfg.max_queue_bytes);
            l->c = c;
            bool ok = co_await dial(l, c);
            if (ok && !l->removed && !stopped) {
                l->up = true;
                g_links->set(static_cast<double>(++links_count));
                l->bo.reset();
                {
                    std::lock_guard lk(obs_mu);
                    ++connects_by_peer[l->spec.id];
                }
                connects_counter(l->spec.id).inc();
                spdlog::info("cluster rpc: link {} -> {} up", self_id, l->spec.id);
                // The snapshot replaces whatever the peer knew of us; it may exceed the queue
                // bound once, which is not a slow consumer.
                std::string snap;
                rpc::encode_snapshot<rpc::presence_msg>(snap, local.local_users());
                rpc::encode_snapshot<rpc::room_interest_msg>(snap, local.local_rooms());
                c->send(snap, false);
                imgate::spawn(strand, watchdog(c, true), "rpc watchdog");
                std::function<verdict(frame&)> h = [this, l](frame& f) {
                    return on_outbound_frame(*l, f);
                };
                auto end = co_await read_frames(c, h);
                if (end == read_end::bad_frame || end == read_end::rejected)
                    metrics
                        .get_counter("imgate_rpc_protocol_errors_total",
                                     "Malformed or unexpected frames from authenticated peers",
                                     {{"direction", "outbound"}})
                        .inc();
                if (c->overflowed) closed_for("slow_consumer").inc();
                l->up = false;
                g_links->set(static_cast<double>(--links_count));
                c->close();
                size_t failed = l->calls.fail_all(proto::code::unavailable);
                if (!stopped && !l->removed)
                    spdlog::warn("cluster rpc: link {} -> {} down; {} calls failed", self_id,
                                 l->spec.id, failed);
            }
            c->close();
            if (l->c == c) l->c.reset();
            if (l->removed || stopped) break;
            l->retry_timer.expires_after(l->bo.next());
            co_await l->retry_timer.async_wait(use_tuple);
        }
    }

    // Where a handshake ended: its last step and why the frame reader stopped.
    struct handshake_outcome {
        rpc::hs_step last;
        read_end end{};
        const char* failure_reason(bool timed_out) const {
            return last.st == rpc::hs_step::state::failed ? rpc::to_string(last.error)
                   : end == read_end::bad_frame           ? "bad_frame"
                   : timed_out                            ? "timeout"
                                                          : "closed";
        }
    };

    // Feeds frames to either side's socket-free handshake and sends what it answers, until it
    // succeeds, fails or the connection ends (the caller's guard timer bounds it in time).
    template <class Handshake>
    asio::awaitable<handshake_outcome> run_handshake(std::shared_ptr<conn> c, Handshake& hs) {
        handshake_outcome out;
        std::function<verdict(frame&)> h = [&hs, &out, c](frame& f) {
            out.last = hs.on_frame(f);
            c->send(out.last.out);
            return out.last.st == rpc::hs_step::state::pending ? verdict::more : verdict::stop;
        };
        out.end = co_await read_frames(c, h);
        co_return out;
    }

    // Connects and authenticates within connect_timeout (each of the two phases).
    asio::awaitable<bool> dial(std::shared_ptr<link> l, std::shared_ptr<conn> c) {
        asio::steady_timer guard(strand);
        guard.expires_after(cfg.connect_timeout);
        auto on_guard = [c](error_code ec) {
            if (!ec) c->close();
        };
        guard.async_wait(on_guard);
        error_code ec;
        auto addr = asio::ip::make_address(l->spec.rpc.host, ec);
        tcp::endpoint ep;
        if (!ec) {
            ep = tcp::endpoint(addr, l->spec.rpc.port);
        } else {
            tcp::resolver res(strand);
            auto host = l->spec.rpc.host;
            auto port_s = std::to_string(l->spec.rpc.port);
            auto [rec, eps] = co_await res.async_resolve(host, port_s, use_tuple);
            if (rec || eps.empty() || c->closed) {
                guard.cancel();
                co_return false;
            }
            ep = eps.begin()->endpoint();
        }
        if (c->closed) co_return false;
        auto [cec] = co_await c->sock.async_connect(ep, use_tuple);
        if (cec || c->closed || l->removed) {
            guard.cancel();
            co_return false;
        }
        error_code nec;
        c->sock.set_option(tcp::no_delay(true), nec);
        guard.expires_after(cfg.connect_timeout);
        guard.async_wait(on_guard);
        imgate::spawn(strand, writer(c), "rpc writer");
        rpc::connector_handshake hs(self_id, l->spec.id, secret, random_nonce());
        c->send(hs.hello());
        auto out = co_await run_handshake(c, hs);
        guard.cancel();
        if (out.last.st == rpc::hs_step::state::ok && !c->closed) co_return true;
        const char* reason = out.failure_reason(false);
        auth_failure("outbound", reason).inc();
        // A refused or unreachable peer is retried with backoff; log the first failures only.
        if (l->bo.attempts() < 3 || out.last.st == rpc::hs_step::state::failed)
            spdlog::warn("cluster rpc: handshake {} -> {} failed: {}", self_id, l->spec.id, reason);
        c->close();
        co_return false;
    }

    verdict on_outbound_frame(link& l, frame& f) {
        switch (static_cast<rpc::op>(f.op)) {
            case rpc::op::forward_result: {
                auto m = rpc::decode<rpc::forward_result_msg>(f);
                if (!m) return verdict::reject;
                if (!l.calls.complete(f.corr, forward_result{m->status, m->reached}))
                    late_answers->inc();
                return verdict::more;
            }
            case rpc::op::pong:
                return verdict::more;
            case rpc::op::ping:
                l.c->send_msg(rpc::pong_msg{});
                return verdict::more;
            default:
                return verdict::reject;
        }
    }

    asio::awaitable<void> run_call_timer(std::shared_ptr<link> l) {
        auto keep = shared_from_this();
        while (!l->removed && !stopped) {
            auto next = l->calls.next_deadline();
            l->call_timer.expires_at(next ? *next : clock::now() + std::chrono::hours(1));
            co_await l->call_timer.async_wait(use_tuple);
            l->calls.expire(clock::now());
        }
    }

    // ---- inbound links ----

    asio::awaitable<void> accept_loop() {
        auto keep = shared_from_this();
        while (!stopped) {
            tcp::socket s(strand);
            auto [ec] = co_await acceptor.async_accept(s, use_tuple);
            if (stopped || ec == asio::error::operation_aborted) break;
            if (ec) {
                // Out of descriptors and the like: pause instead of spinning.
                spdlog::warn("cluster rpc: accept failed: {}", ec.message());
                asio::steady_timer t(strand);
                t.expires_after(std::chrono::milliseconds(100));
                co_await t.async_wait(use_tuple);
                continue;
            }
            if (handshaking.size() >= cfg.max_handshakes) {
                // Unauthenticated connections are bounded in number as well as in time.
                auth_failure("inbound", "too_many_handshakes").inc();
                if (!handshake_cap_logged) {
                    spdlog::warn(
                        "cluster rpc: {} inbound handshakes in progress (cluster_rpc."
                        "max_handshakes); closing new connections until they finish",
                        handshaking.size());
                    handshake_cap_logged = true;
                }
                error_code cec;
                s.close(cec);
                continue;
            }
            handshake_cap_logged = false;
            auto c = std::make_shared<conn>(strand, cfg.max_queue_bytes);
            c->sock = std::move(s);
            handshaking.insert(c);
            imgate::spawn(strand, serve_inbound(c), "rpc inbound");
        }
    }

    asio::awaitable<void> serve_inbound(std::shared_ptr<conn> c) {
        auto keep = shared_from_this();
        error_code nec;
        c->sock.set_option(tcp::no_delay(true), nec);
        asio::steady_timer guard(strand);
        guard.expires_after(cfg.connect_timeout);
        bool timed_out = false;
        error_code rec;
        auto remote = c->sock.remote_endpoint(rec);
        std::string from = rec ? std::string("?") : remote.address().to_string();
        // Counted before the close, so whoever sees the close also sees the count.
        auto on_guard = [this, c, &timed_out](error_code ec) {
            if (ec) return;
            timed_out = true;
            auth_failure("inbound", "timeout").inc();
            c->close();
        };
        guard.async_wait(on_guard);
        imgate::spawn(strand, writer(c), "rpc writer");
        auto is_member = [this](std::string_view id) { return members.count(std::string(id)) > 0; };
        rpc::acceptor_handshake hs(self_id, secret, is_member, random_nonce());
        auto out = co_await run_handshake(c, hs);
        guard.cancel();
        handshaking.erase(c);
        if (out.last.st != rpc::hs_step::state::ok || c->closed || stopped) {
            const char* reason = out.failure_reason(timed_out);
            if (!timed_out) auth_failure("inbound", reason).inc();
            spdlog::warn("cluster rpc: refused inbound link from {} ({}): {}", from,
                         hs.peer_id().empty() ? "no id" : hs.peer_id(), reason);
            c->close_when_flushed();
            co_await guard_close(c);
            co_return;
        }
        std::string peer = hs.peer_id();
        if (auto old = inbound.find(peer); old != inbound.end()) old->second->close();
        inbound[peer] = c;
        g_inbound->set(static_cast<double>(inbound.size()));
        inbound_count = inbound.size();
        // The peer is evidently back (restarted): retry our link to it now, not after backoff.
        if (auto l = links.find(peer); l != links.end() && !l->second->up)
            l->second->retry_timer.cancel();
        imgate::spawn(strand, watchdog(c, false), "rpc watchdog");
        std::function<verdict(frame&)> serve = [this, &peer, c](frame& f) {
            return on_inbound_frame(peer, *c, f);
        };
        auto end = co_await read_frames(c, serve);
        if (end == read_end::bad_frame || end == read_end::rejected)
            metrics
                .get_counter("imgate_rpc_protocol_errors_total",
                             "Malformed or unexpected frames from authenticated peers",
                             {{"direction", "inbound"}})
                .inc();
        if (c->overflowed) closed_for("slow_consumer").inc();
        c->close();
        auto it = inbound.find(peer);
        if (it != inbound.end() && it->second == c) {
            // The peer's announcement stream ended: what it told us may no longer be true.
            inbound.erase(it);
            dir->drop_peer(peer);
            update_directory_gauges();
            g_inbound->set(static_cast<double>(inbound.size()));
            inbound_count = inbound.size();
        }
    }

    // Gives a refused connection a moment to receive AUTH_FAIL (the writer closes it once the
    // queue is flushed), bounded by connect_timeout for a peer that does not read.
    asio::awaitable<void> guard_close(std::shared_ptr<conn> c) {
        if (c->closed) co_return;
        asio::steady_timer t(strand);
        t.expires_after(cfg.connect_timeout);
        co_await t.async_wait(use_tuple);
        c->close();
    }

    // Entries a peer sent that this gateway cannot use (an id outside the id rule — a peer
    // running another version, or a bug): skipped and counted, never a reason to drop the link
    // and with it everything the peer announced.
    void skipped_entry(const std::string& peer, conn& c, rpc::op o, uint32_t n) {
        entries_skipped.at(static_cast<uint8_t>(o))->inc(n);
        if (!std::exchange(c.skipped_logged, true))
            spdlog::warn(
                "cluster rpc: skipped {} {} entr{} from {} with an id outside the id rule "
                "(further ones on this link are only counted in "
                "imgate_rpc_entries_skipped_total)",
                n, rpc::to_string(o), n == 1 ? "y" : "ies", peer);
    }

    void register_entry_metrics() {
        for (auto o : {rpc::op::forward, rpc::op::receipt, rpc::op::presence,
                       rpc::op::room_interest, rpc::op::device_claim})
            entries_skipped[static_cast<uint8_t>(o)] = &metrics.get_counter(
                "imgate_rpc_entries_skipped_total",
                "Entries from peers skipped because an id breaks the id rule (link kept)",
                {{"op", rpc::to_string(o)}});
        claims_received = &metrics.get_counter(
            "imgate_rpc_device_claims_received_total",
            "DEVICE_CLAIMs from peers (a user+device logged in there; older sessions here kicked)");
        claims_sent = &metrics.get_counter("imgate_rpc_device_claims_sent_total",
                                           "DEVICE_CLAIMs sent to peers holding the user");
    }

    verdict on_inbound_frame(const std::string& peer, conn& c, frame& f) {
        switch (static_cast<rpc::op>(f.op)) {
            case rpc::op::forward: {
                rpc::forward_msg m;
                if (!rpc::read_body(f.body, m)) return verdict::reject;
                forwards_received->inc();
                if (!rpc::usable(m.m)) {
                    // Answered, so the sender's call completes now instead of at its deadline.
                    skipped_entry(peer, c, rpc::op::forward, 1);
                    c.send_msg(rpc::forward_result_msg{proto::code::bad_request, 0}, f.corr);
                    return verdict::more;
                }
                uint32_t n = stopping.load() ? 0 : local.deliver_local(m.m);
                c.send_msg(
                    rpc::forward_result_msg{n > 0 ? proto::code::ok : proto::code::offline, n},
                    f.corr);
                return verdict::more;
            }
            case rpc::op::receipt: {
                auto m = rpc::decode<rpc::receipt_msg>(f);
                if (!m) return verdict::reject;
                if (!rpc::usable(m->r)) {
                    skipped_entry(peer, c, rpc::op::receipt, 1);
                    return verdict::more;
                }
                if (!stopping.load()) local.receipt_local(m->origin_session, m->r);
                return verdict::more;
            }
            case rpc::op::presence: {
                auto m = rpc::decode<rpc::presence_msg>(f);
                if (!m) return verdict::reject;
                if (m->skipped) skipped_entry(peer, c, rpc::op::presence, m->skipped);
                dir->apply_presence(peer, m->reset, m->changes);
                update_directory_gauges();
                return verdict::more;
            }
            case rpc::op::room_interest: {
                auto m = rpc::decode<rpc::room_interest_msg>(f);
                if (!m) return verdict::reject;
                if (m->skipped) skipped_entry(peer, c, rpc::op::room_interest, m->skipped);
                dir->apply_rooms(peer, m->reset, m->changes);
                update_directory_gauges();
                return verdict::more;
            }
            case rpc::op::device_claim: {
                auto m = rpc::decode<rpc::device_claim_msg>(f);
                if (!m) return verdict::reject;
                if (!rpc::usable(*m)) {
                    skipped_entry(peer, c, rpc::op::device_claim, 1);
                    return verdict::more;
                }
                claims_received->inc();
                if (!stopping.load()) local.device_claimed(m->user, m->device);
                return verdict::more;
            }
            case rpc::op::ping:
                c.send_msg(rpc::pong_msg{});
                return verdict::more;
            default:
                return verdict::reject;
        }
    }

    void update_directory_gauges() {
        users_count = dir->user_entries();
        rooms_count = dir->room_entries();
        g_users->set(static_cast<double>(users_count.load()));
        g_rooms->set(static_cast<double>(rooms_count.load()));
        g_user_locs->set(static_cast<double>(dir->user_locations()));
        g_room_locs->set(static_cast<double>(dir->room_locations()));
    }

    // ---- per-connection coroutines ----

    asio::awaitable<read_end> read_frames(std::shared_ptr<conn> c,
                                          const std::function<verdict(frame&)>& h) {
        std::array<char, 64 * 1024> buf;
        while (!c->closed) {
            while (auto f = c->dec.next()) {
                auto v = h(*f);
                // The caller closes after counting, so the count is visible before the close.
                if (v == verdict::reject) co_return read_end::rejected;
                if (v == verdict::stop) co_return read_end::stopped;
                if (c->closed) co_return read_end::closed;
            }
            if (c->dec.error() != frame_error::none) co_return read_end::bad_frame;
            auto [ec, n] = co_await c->sock.async_read_some(asio::buffer(buf), use_tuple);
            if (ec) {
                c->close();
                co_return read_end::closed;
            }
            c->read_seen = true;
            c->dec.feed(std::string_view(buf.data(), n));
        }
        co_return read_end::closed;
    }

    asio::awaitable<void> writer(std::shared_ptr<conn> c) {
        while (!c->closed) {
            if (c->pending.empty()) {
                if (c->close_after_flush) {
                    c->close();
                    break;
                }
                c->wake.expires_at(clock::time_point::max());
                co_await c->wake.async_wait(use_tuple);
                continue;
            }
            c->writing.clear();
            c->writing.swap(c->pending);
            c->in_write = true;
            c->write_started = clock::now();
            auto [ec, n] = co_await asio::async_write(c->sock, asio::buffer(c->writing), use_tuple);
            c->in_write = false;
            if (ec) {
                c->close();
                break;
            }
        }
    }

    asio::awaitable<void> watchdog(std::shared_ptr<conn> c, bool pinger) {
        auto tick = std::min(cfg.ping_interval / 2, cfg.peer_timeout / 4);
        if (tick < std::chrono::milliseconds(10)) tick = std::chrono::milliseconds(10);
        while (!c->closed) {
            c->dog.expires_after(tick);
            co_await c->dog.async_wait(use_tuple);
            if (c->closed) break;
            auto now = clock::now();
            if (std::exchange(c->read_seen, false)) c->last_read = now;
            if (std::exchange(c->write_seen, false)) c->last_write = now;
            if (now - c->last_read > cfg.peer_timeout) {
                closed_for("read_timeout").inc();
                c->close();
                break;
            }
            if (c->in_write && now - c->write_started > cfg.peer_timeout) {
                closed_for("write_stall").inc();
                c->close();
                break;
            }
            // The dialler proves the link alive whenever either direction has been quiet for
            // ping_interval. Idle *writes* alone are not enough: a dialler that only announces
            // (PRESENCE, ROOM_INTEREST, RECEIPT, DEVICE_CLAIM: frames nobody answers) writes all
            // the time but reads nothing, and its read deadline would close a healthy link.
            bool quiet =
                now - c->last_read >= cfg.ping_interval || now - c->last_write >= cfg.ping_interval;
            if (pinger && quiet && now - c->last_ping >= cfg.ping_interval) {
                c->send_msg(rpc::ping_msg{});
                c->last_ping = c->last_write = now;
                c->write_seen = false;
            }
        }
    }

    // ---- the cluster operations (on the strand) ----

    void do_forward(outbound_message msg, std::function<void(forward_result)> done) {
        if (stopped) {
            forward_results[2]->inc();
            done(forward_result{proto::code::unavailable, 0});
            return;
        }
        if (local_dir) {
            // The default directory: answer inline, into a reused buffer.
            peers_scratch.clear();
            local_dir->peers(msg.kind, msg.target, peers_scratch);
            fan_out(msg, std::move(done), peers_scratch);
            return;
        }
        auto self = shared_from_this();
        // Another directory may answer later; it must call back on this strand.
        auto kind = msg.kind;
        auto target = msg.target;
        auto on_peers = [self, msg = std::move(msg),
                         done = std::move(done)](const peer_list& peers) mutable {
            self->fan_out(msg, std::move(done), peers);
        };
        dir->resolve(kind, target, std::move(on_peers));
    }

    counter* result_counter(proto::code c) {
        switch (c) {
            case proto::code::ok:
                return forward_results[0];
            case proto::code::offline:
                return forward_results[1];
            case proto::code::timeout:
                return forward_results[3];
            default:
                return forward_results[2];
        }
    }

    // The usable link to peer, or null.
    link* usable(const std::string& peer) {
        auto it = links.find(peer);
        if (it == links.end() || !it->second->up || !it->second->c) return nullptr;
        return it->second.get();
    }

    void fan_out(const outbound_message& msg, std::function<void(forward_result)> done,
                 const peer_list& peers) {
        if (peers.empty()) {
            forward_results[1]->inc();
            done(forward_result{proto::code::offline, 0});
            return;
        }
        auto deadline = clock::now() + cfg.call_timeout;
        if (peers.size() == 1) {
            // The common 1:1 case: the call's own callback is the result, no aggregation.
            link* l = usable(peers[0]);
            uint32_t corr = 0;
            if (l) {
                auto cb = [this, done](forward_result r) {
                    result_counter(r.status)->inc();
                    done(r);
                };
                corr = l->calls.add(deadline, std::move(cb));
                if (corr == 0) busy->inc();
            }
            if (corr == 0) {
                forward_results[2]->inc();
                done(forward_result{proto::code::unavailable, 0});
                return;
            }
            if (deadline < l->call_timer.expiry()) l->call_timer.cancel();
            forward_frames->inc();
            size_t before = l->c->pending.size();
            bool was_empty = before == 0;
            if (!l->c->closed) {
                rpc::encode_forward(l->c->pending, msg, corr);
                l->c->after_append(was_empty, true);
            }
            return;
        }
        auto agg = std::make_shared<fan_in>();
        agg->remaining = peers.size();
        agg->done = std::move(done);
        std::copy(std::begin(forward_results), std::end(forward_results), agg->results);
        forward_scratch.clear();
        rpc::encode_forward(forward_scratch, msg, 0);
        for (const auto& p : peers) {
            link* l = usable(p);
            if (!l) {
                agg->add(forward_result{proto::code::unavailable, 0});
                continue;
            }
            auto cb = [agg](forward_result r) { agg->add(r); };
            uint32_t corr = l->calls.add(deadline, cb);
            if (corr == 0) {
                busy->inc();
                agg->add(forward_result{proto::code::unavailable, 0});
                continue;
            }
            if (deadline < l->call_timer.expiry()) l->call_timer.cancel();
            forward_frames->inc();
            // On overflow the connection closes and its reader fails this call (unavailable).
            l->c->send_with_corr(forward_scratch, corr);
        }
    }

    void do_receipt(const std::string& origin, uint64_t session, const proto::receipt_msg& r) {
        auto it = links.find(origin);
        if (stopped || it == links.end() || !it->second->up || !it->second->c) {
            receipts_dropped->inc();
            return;
        }
        rpc::receipt_msg m;
        m.origin_session = session;
        m.r = r;
        it->second->c->send_msg(m);
    }

    // A user+device logged in here: peers that hold sessions of the user kick that device's
    // older session (KICK replaced). Only peers the directory lists can hold one.
    void do_device_login(const std::string& user, const std::string& device) {
        if (stopped) return;
        auto self = shared_from_this();
        auto on_peers = [self, user, device](const peer_list& peers) {
            if (peers.empty()) return;
            std::string bytes = rpc::encode(rpc::device_claim_msg{user, device});
            for (const auto& p : peers)
                if (link* l = self->usable(p)) {
                    self->claims_sent->inc();
                    l->c->send(bytes);
                }
        };
        if (local_dir) {
            peers_scratch.clear();
            local_dir->peers(proto::target_kind::user, user, peers_scratch);
            on_peers(peers_scratch);
            return;
        }
        dir->resolve(proto::target_kind::user, user, std::move(on_peers));
    }

    template <class M>
    void announce(const std::string& key, bool on) {
        if (stopped) return;
        M m;
        m.changes.push_back(rpc::delta{on, key});
        std::string bytes = rpc::encode(m);
        // A peer whose link is down gets everything in the snapshot when it comes back.
        for (auto& [id, l] : links)
            if (l->up && l->c) l->c->send(bytes);
    }

    asio::io_context& io;
    strand_t strand;
    std::string self_id;
    std::string secret;
    rpc_config cfg;
    local_delivery& local;
    metrics_registry& metrics;
    std::unique_ptr<session_directory> dir;
    announced_directory* local_dir = nullptr;  // dir, when it is the default in-memory one
    peer_list peers_scratch;
    std::string forward_scratch;
    tcp::acceptor acceptor;
    fleet_config fleet;
    std::set<std::string> members;
    std::map<std::string, std::shared_ptr<link>> links;
    std::map<std::string, std::shared_ptr<conn>> inbound;  // authenticated, by peer id
    std::set<std::shared_ptr<conn>> handshaking;
    bool handshake_cap_logged = false;
    bool stopped = false;
    std::atomic<bool> stopping{false};  // set at once by stop(), before the strand sees it
    std::mt19937_64 rng;

    counter* forward_results[4];
    std::map<uint8_t, counter*> entries_skipped;
    counter* claims_received = nullptr;
    counter* claims_sent = nullptr;
    counter* forward_frames;
    counter* forwards_received;
    counter* receipts_dropped;
    counter* late_answers;
    counter* busy;
    gauge* g_links;
    gauge* g_inbound;
    gauge* g_users;
    gauge* g_rooms;
    gauge* g_user_locs;
    gauge* g_room_locs;

    std::atomic<uint16_t> port{0};
    std::atomic<size_t> inbound_count{0};
    std::atomic<size_t> links_count{0};
    std::atomic<size_t> users_count{0};
    std::atomic<size_t> rooms_count{0};
    mutable std::mutex obs_mu;
    std::map<std::string, uint64_t> connects_by_peer;
};

rpc_cluster::rpc_cluster(boost::asio::io_context& io, const fleet_config& fleet,
                         const std::string& self_id, const std::string& secret,
                         const rpc_config& cfg, local_delivery& local, metrics_registry& metrics,
                         std::unique_ptr<session_directory> dir)
    : impl_(
          std::make_shared<impl>(io, fleet, self_id, secret, cfg, local, metrics, std::move(dir))) {
    impl_->bind();
    impl_->start();
}

rpc_cluster::~rpc_cluster() {
    stop();
}

void rpc_cluster::forward(const outbound_message& msg, std::function<void(forward_result)> done) {
    auto i = impl_;
    asio::post(i->strand, [i, msg, done = std::move(done)]() mutable {
        i->do_forward(std::move(msg), std::move(done));
    });
}

void rpc_cluster::send_receipt(const std::string& origin_gateway, uint64_t origin_session,
                               const proto::receipt_msg& r) {
    auto i = impl_;
    asio::post(i->strand, [i, origin_gateway, origin_session, r] {
        i->do_receipt(origin_gateway, origin_session, r);
    });
}

void rpc_cluster::user_online(const std::string& user) {
    auto i = impl_;
    asio::post(i->strand, [i, user] { i->announce<rpc::presence_msg>(user, true); });
}

void rpc_cluster::device_login(const std::string& user, const std::string& device) {
    auto i = impl_;
    asio::post(i->strand, [i, user, device] { i->do_device_login(user, device); });
}

void rpc_cluster::user_offline(const std::string& user) {
    auto i = impl_;
    asio::post(i->strand, [i, user] { i->announce<rpc::presence_msg>(user, false); });
}

void rpc_cluster::room_interest(const std::string& room, bool interested) {
    auto i = impl_;
    asio::post(i->strand,
               [i, room, interested] { i->announce<rpc::room_interest_msg>(room, interested); });
}

void rpc_cluster::reload(const fleet_config& fleet) {
    auto i = impl_;
    asio::post(i->strand, [i, fleet] { i->do_reload(fleet); });
}

void rpc_cluster::stop() {
    auto i = impl_;
    if (i->stopping.exchange(true)) return;
    asio::post(i->strand, [i] { i->do_stop(); });
}

uint16_t rpc_cluster::rpc_port() const {
    return impl_->port.load();
}
size_t rpc_cluster::links_up() const {
    return impl_->links_count.load();
}
size_t rpc_cluster::inbound_up() const {
    return impl_->inbound_count.load();
}
size_t rpc_cluster::directory_users() const {
    return impl_->users_count.load();
}
size_t rpc_cluster::directory_rooms() const {
    return impl_->rooms_count.load();
}
uint64_t rpc_cluster::connects(const std::string& peer) const {
    std::lock_guard lk(impl_->obs_mu);
    auto it = impl_->connects_by_peer.find(peer);
    return it == impl_->connects_by_peer.end() ? 0 : it->second;
}

peer_list rpc_cluster::lookup(proto::target_kind kind, const std::string& target) const {
    auto i = impl_;
    auto p = std::make_shared<std::promise<peer_list>>();
    auto fut = p->get_future();
    asio::post(i->strand, [i, p, kind, target] {
        auto on_peers = [p](const peer_list& peers) { p->set_value(peers); };
        i->dir->resolve(kind, target, on_peers);
    });
    return fut.get();
}

}  // namespace imgate::gw
