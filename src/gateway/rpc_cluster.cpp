#include "gateway/rpc_cluster.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <future>
#include <map>

#include "common/daemon.hpp"
#include "gateway/call_table.hpp"
#include "gateway/cluster_context.hpp"
#include "gateway/inbound_side.hpp"
#include "gateway/outbound_link.hpp"
#include "gateway/redis_directory.hpp"
#include "gateway/rpc_wire.hpp"

namespace imgate::gw {

namespace {

// Aggregates the per-peer answers of one forward; calls done once, when the last one is in.
struct fan_in {
    size_t remaining;
    rpc::result_combiner comb;
    std::function<void(forward_result)> done;
    cluster_metrics* metrics;  // null: the caller counts the result

    void add(const forward_result& r) {
        comb.add(r);
        if (--remaining > 0) return;
        auto res = comb.result();
        if (metrics) metrics->forward_result(res.status).inc();
        auto d = std::move(done);
        d(res);
    }
};

}  // namespace

// Wires the parts together and carries out the cluster operations: which peers a message or an
// announcement goes to, and membership changes. Everything runs on the context's strand.
struct rpc_cluster::impl : std::enable_shared_from_this<impl> {
    impl(asio::io_context& io, const fleet_config& fleet, const std::string& self_id,
         const std::string& secret, const rpc_config& cfg, local_delivery& local,
         metrics_registry& m, std::unique_ptr<session_directory> dir, const directory_config& dcfg,
         const redis_config& rcfg)
        : ctx(std::make_shared<cluster_context>(io, fleet, self_id, secret, cfg, local, m)),
          fleet(fleet),
          dir_timer(ctx->strand) {
        directory_metrics dm(m, to_string(dcfg.mode));
        if (!dir && dcfg.mode == directory_mode::redis) {
            ctx->redis_directory = true;
            auto opts = rcfg.conn;
            opts.name = "directory";
            // On the cluster's strand: every reply handler, and so every directory callback,
            // runs where the rest of the cluster state lives.
            redis_conn = redis::connection::create(ctx->strand, opts, m);
            // The hooks run on the strand; the directory may outlive this object inside the
            // inbound side's coroutines, so they reach it through a weak reference.
            redis_directory::hooks h;
            auto owner = weak_owner;
            h.usable_peers = [owner] {
                peer_list out;
                if (auto self = owner->lock())
                    for (auto& [id, l] : self->links)
                        if (l->usable()) out.push_back(id);
                return out;
            };
            auto c = ctx;
            h.members = [c] {
                peer_list out;
                for (auto& id : c->members)
                    if (id != c->self_id) out.push_back(id);
                return out;
            };
            auto d = std::make_unique<redis_directory>(redis_conn, self_id, rcfg.prefix, dcfg,
                                                       std::move(h), dm);
            rdir = d.get();
            dir = std::move(d);
        }
        inbound = std::make_shared<inbound_side>(ctx, std::move(dir));
    }

    void start() {
        // The peer is evidently back (restarted): retry our link to it now, not after backoff.
        std::weak_ptr<impl> weak = shared_from_this();
        auto on_peer_up = [weak](const std::string& peer) {
            auto self = weak.lock();
            if (!self) return;
            if (auto l = self->links.find(peer); l != self->links.end()) l->second->retry_now();
        };
        auto self = shared_from_this();
        *weak_owner = self;
        asio::post(ctx->strand, [self, on_peer_up] {
            self->start_redis();
            self->inbound->start(on_peer_up);
            for (auto& g : self->fleet.gateways)
                if (g.id != self->ctx->self_id) self->add_link(g);
            spdlog::info("cluster rpc: {} listening on port {}, {} peers", self->ctx->self_id,
                         self->ctx->port.load(), self->links.size());
        });
    }

    // redis mode: the connection's up/down drive the directory (on the strand); a timer drives
    // its lease and renewals.
    void start_redis() {
        if (!rdir) return;
        std::weak_ptr<impl> weak = shared_from_this();
        auto on_up = [weak] {
            if (auto s = weak.lock(); s && !s->ctx->stopped) s->rdir->connected();
        };
        auto on_down = [weak](boost::system::error_code) {
            if (auto s = weak.lock()) s->rdir->disconnected();
        };
        redis_conn->set_on_up(on_up);
        redis_conn->set_on_down(on_down);
        redis_conn->start();
        arm_dir_timer();
    }

    void arm_dir_timer() {
        dir_timer.expires_after(rdir->tick_interval());
        std::weak_ptr<impl> weak = shared_from_this();
        auto on_timer = [weak](boost::system::error_code ec) {
            auto s = weak.lock();
            if (ec || !s || s->ctx->stopped) return;
            s->rdir->tick();
            s->arm_dir_timer();
        };
        dir_timer.async_wait(on_timer);
    }

    void add_link(const gateway_spec& g) {
        auto l = std::make_shared<outbound_link>(ctx, g);
        links[g.id] = l;
        ctx->set_peer_state(g.id, "connecting");
        l->start();
    }

    void do_stop() {
        ctx->stopped = true;
        if (redis_conn) {
            dir_timer.cancel();
            redis_conn->stop();
        }
        for (auto& [id, l] : links) l->remove();
        inbound->stop();
    }

    void do_reload(const fleet_config& f) {
        if (ctx->stopped) return;
        if (!f.cluster_secret_file.empty()) {
            try {
                ctx->set_secret(read_secret_file(f.cluster_secret_file));
            } catch (const config_error& e) {
                spdlog::warn("cluster rpc: keeping the previous cluster secret: {}", e.what());
            }
        }
        fleet = f;
        ctx->set_members(f);
        if (!ctx->is_member(ctx->self_id))
            spdlog::warn(
                "cluster rpc: {} is no longer in the fleet file; links kept to listed peers",
                ctx->self_id);
        size_t added = 0, removed = 0;
        for (auto it = links.begin(); it != links.end();) {
            const gateway_spec* g = f.find(it->first);
            if (g && g->rpc == it->second->spec().rpc) {
                it->second->set_spec(*g);
                ++it;
                continue;
            }
            it->second->remove();
            ctx->metrics.forget_peer(it->first);
            ctx->forget_peer_state(it->first);
            it = links.erase(it);
            ++removed;
        }
        for (auto& g : f.gateways) {
            if (g.id == ctx->self_id || links.count(g.id)) continue;
            add_link(g);
            ++added;
        }
        inbound->close_non_members();
        spdlog::info("cluster rpc: reload: {} peers ({} added, {} removed)", links.size(), added,
                     removed);
    }

    // The usable link to peer, or null.
    outbound_link* usable(const std::string& peer) {
        auto it = links.find(peer);
        if (it == links.end() || !it->second->usable()) return nullptr;
        return it->second.get();
    }

    void do_forward(outbound_message msg, std::function<void(forward_result)> done) {
        if (ctx->stopped) {
            ctx->metrics.forward_result(proto::code::unavailable).inc();
            done(forward_result{proto::code::unavailable, 0});
            return;
        }
        if (auto* d = inbound->announced()) {
            // The default directory: answer inline, into a reused buffer.
            peers_scratch.clear();
            d->peers(msg.kind, msg.target, peers_scratch);
            fan_out(msg, std::move(done), peers_scratch);
            return;
        }
        auto self = shared_from_this();
        if (rdir) {
            auto kind = msg.kind;
            auto target = msg.target;
            auto on_peers = [self, msg = std::move(msg), done = std::move(done)](
                                const peer_list& peers, lookup_source src) mutable {
                if (src != lookup_source::cache) {
                    self->fan_out(msg, std::move(done), peers);
                    return;
                }
                // A cached answer may be up to cache_ttl old: if it reached nobody, the user
                // may have moved since, so ask Redis once more before answering offline.
                auto retry = [self, msg, done = std::move(done)](forward_result r) mutable {
                    if (r.status != proto::code::offline || self->ctx->stopped) {
                        self->ctx->metrics.forward_result(r.status).inc();
                        done(r);
                        return;
                    }
                    self->rdir->forget_cached(msg.kind, msg.target);
                    auto again = [self, msg, done = std::move(done)](const peer_list& fresh,
                                                                     lookup_source) mutable {
                        self->fan_out(msg, std::move(done), fresh);
                    };
                    self->rdir->lookup(msg.kind, msg.target, false, std::move(again));
                };
                self->fan_out(msg, std::move(retry), peers, false);
            };
            rdir->lookup(kind, target, true, std::move(on_peers));
            return;
        }
        // Another directory may answer later; it must call back on this strand.
        auto kind = msg.kind;
        auto target = msg.target;
        auto on_peers = [self, msg = std::move(msg),
                         done = std::move(done)](const peer_list& peers) mutable {
            self->fan_out(msg, std::move(done), peers);
        };
        inbound->directory().resolve(kind, target, std::move(on_peers));
    }

    // count=false: the caller counts the result (it may retry first).
    void fan_out(const outbound_message& msg, std::function<void(forward_result)> done,
                 const peer_list& peers, bool count = true) {
        auto& m = ctx->metrics;
        if (peers.empty()) {
            if (count) m.forward_result(proto::code::offline).inc();
            done(forward_result{proto::code::offline, 0});
            return;
        }
        auto deadline = rpc::clock::now() + ctx->cfg.call_timeout;
        if (peers.size() == 1) {
            // The common 1:1 case: the call's own callback is the result, no aggregation.
            outbound_link* l = usable(peers[0]);
            uint32_t corr = 0;
            if (l) {
                auto cb = [&m, done, count](forward_result r) {
                    if (count) m.forward_result(r.status).inc();
                    done(r);
                };
                corr = l->start_call(deadline, std::move(cb));
            }
            if (corr == 0) {
                if (count) m.forward_result(proto::code::unavailable).inc();
                done(forward_result{proto::code::unavailable, 0});
                return;
            }
            l->send_forward(msg, corr);
            return;
        }
        auto agg = std::make_shared<fan_in>();
        agg->remaining = peers.size();
        agg->done = std::move(done);
        agg->metrics = count ? &m : nullptr;
        forward_scratch.clear();
        rpc::encode_forward(forward_scratch, msg, 0);
        for (const auto& p : peers) {
            outbound_link* l = usable(p);
            if (!l) {
                agg->add(forward_result{proto::code::unavailable, 0});
                continue;
            }
            auto cb = [agg](forward_result r) { agg->add(r); };
            uint32_t corr = l->start_call(deadline, cb);
            if (corr == 0) {
                agg->add(forward_result{proto::code::unavailable, 0});
                continue;
            }
            l->send_forward(std::string_view(forward_scratch), corr);
        }
    }

    void do_receipt(const std::string& origin, uint64_t session, const proto::receipt_msg& r) {
        outbound_link* l = ctx->stopped ? nullptr : usable(origin);
        if (!l) {
            ctx->metrics.receipts_dropped.inc();
            return;
        }
        rpc::receipt_msg m;
        m.origin_session = session;
        m.r = r;
        l->send(rpc::encode(m));
    }

    // A user+device logged in here: peers that hold sessions of the user kick that device's
    // older session (KICK replaced). Only peers the directory lists can hold one.
    void do_device_login(const std::string& user, const std::string& device) {
        if (ctx->stopped) return;
        auto self = shared_from_this();
        auto on_peers = [self, user, device](const peer_list& peers) {
            if (peers.empty()) return;
            std::string bytes = rpc::encode(rpc::device_claim_msg{user, device});
            for (const auto& p : peers)
                if (outbound_link* l = self->usable(p)) {
                    self->ctx->metrics.claims_sent.inc();
                    l->send(bytes);
                }
        };
        if (auto* d = inbound->announced()) {
            peers_scratch.clear();
            d->peers(proto::target_kind::user, user, peers_scratch);
            on_peers(peers_scratch);
            return;
        }
        inbound->directory().resolve(proto::target_kind::user, user, std::move(on_peers));
    }

    // Where else each user is online. announced: the in-memory map (no session counts; a held
    // peer is marked). redis: HGETALL per user, pipelined (counts; known=false without Redis).
    void do_presence(const std::vector<std::string>& users,
                     std::function<void(std::vector<presence_answer>)> done) {
        if (rdir) {
            rdir->presence(users, std::move(done));
            return;
        }
        std::vector<presence_answer> out(users.size());
        if (auto* d = inbound->announced()) {
            for (size_t i = 0; i < users.size(); ++i) {
                peers_scratch.clear();
                d->peers(proto::target_kind::user, users[i], peers_scratch);
                for (auto& p : peers_scratch)
                    out[i].peers.push_back(presence_location{p, std::nullopt, d->held(p)});
            }
            done(std::move(out));
            return;
        }
        // Another directory (tests): peers only.
        auto b = std::make_shared<std::pair<std::vector<presence_answer>, size_t>>(std::move(out),
                                                                                   users.size());
        if (users.empty()) {
            done({});
            return;
        }
        for (size_t i = 0; i < users.size(); ++i) {
            auto on_peers = [b, i, done](const peer_list& peers) {
                for (auto& p : peers) b->first[i].peers.push_back(presence_location{p, {}, false});
                if (--b->second == 0) done(std::move(b->first));
            };
            inbound->directory().resolve(proto::target_kind::user, users[i], on_peers);
        }
    }

    template <class M>
    void announce(const std::string& key, bool on) {
        if (ctx->stopped || ctx->redis_directory) return;
        M m;
        m.changes.push_back(rpc::delta{on, key});
        std::string bytes = rpc::encode(m);
        // A peer whose link is down gets everything in the snapshot when it comes back.
        for (auto& [id, l] : links)
            if (l->usable()) {
                l->send(bytes);
                ctx->metrics.announcements_sent.inc();
                ctx->metrics.announcement_bytes_sent.inc(bytes.size());
            }
    }

    std::shared_ptr<cluster_context> ctx;
    fleet_config fleet;
    std::shared_ptr<inbound_side> inbound;
    std::map<std::string, std::shared_ptr<outbound_link>> links;
    // redis mode (else null): the directory (owned by `inbound`), its connection and tick timer.
    redis_directory* rdir = nullptr;
    std::shared_ptr<redis::connection> redis_conn;
    asio::steady_timer dir_timer;
    // Filled by start(); lets the directory's hooks reach this object without owning it.
    std::shared_ptr<std::weak_ptr<impl>> weak_owner = std::make_shared<std::weak_ptr<impl>>();
    peer_list peers_scratch;
    std::string forward_scratch;
};

rpc_cluster::rpc_cluster(boost::asio::io_context& io, const fleet_config& fleet,
                         const std::string& self_id, const std::string& secret,
                         const rpc_config& cfg, local_delivery& local, metrics_registry& metrics,
                         std::unique_ptr<session_directory> dir, const directory_config& dcfg,
                         const redis_config& rcfg)
    : impl_(std::make_shared<impl>(io, fleet, self_id, secret, cfg, local, metrics, std::move(dir),
                                   dcfg, rcfg)) {
    impl_->inbound->bind(fleet);
    impl_->start();
}

rpc_cluster::~rpc_cluster() {
    stop();
}

void rpc_cluster::forward(const outbound_message& msg, std::function<void(forward_result)> done) {
    auto i = impl_;
    asio::post(i->ctx->strand, [i, msg, done = std::move(done)]() mutable {
        i->do_forward(std::move(msg), std::move(done));
    });
}

void rpc_cluster::send_receipt(const std::string& origin_gateway, uint64_t origin_session,
                               const proto::receipt_msg& r) {
    auto i = impl_;
    asio::post(i->ctx->strand, [i, origin_gateway, origin_session, r] {
        i->do_receipt(origin_gateway, origin_session, r);
    });
}

void rpc_cluster::user_online(const std::string& user) {
    auto i = impl_;
    asio::post(i->ctx->strand, [i, user] {
        if (i->rdir)
            i->rdir->user_online(user);
        else
            i->announce<rpc::presence_msg>(user, true);
    });
}

void rpc_cluster::user_sessions(const std::string& user, uint32_t sessions) {
    auto i = impl_;
    if (!i->rdir) return;  // announced mode says only online/offline
    asio::post(i->ctx->strand, [i, user, sessions] {
        if (!i->ctx->stopped) i->rdir->user_sessions(user, sessions);
    });
}

void rpc_cluster::presence(const std::vector<std::string>& users,
                           std::function<void(std::vector<presence_answer>)> done) {
    auto i = impl_;
    asio::post(i->ctx->strand,
               [i, users, done = std::move(done)]() mutable { i->do_presence(users, done); });
}

void rpc_cluster::device_login(const std::string& user, const std::string& device) {
    auto i = impl_;
    asio::post(i->ctx->strand, [i, user, device] { i->do_device_login(user, device); });
}

void rpc_cluster::user_offline(const std::string& user) {
    auto i = impl_;
    asio::post(i->ctx->strand, [i, user] {
        if (i->rdir)
            i->rdir->user_offline(user);
        else
            i->announce<rpc::presence_msg>(user, false);
    });
}

void rpc_cluster::room_interest(const std::string& room, bool interested) {
    auto i = impl_;
    asio::post(i->ctx->strand, [i, room, interested] {
        if (i->rdir)
            i->rdir->room_interest(room, interested);
        else
            i->announce<rpc::room_interest_msg>(room, interested);
    });
}

void rpc_cluster::reload(const fleet_config& fleet) {
    auto i = impl_;
    asio::post(i->ctx->strand, [i, fleet] { i->do_reload(fleet); });
}

void rpc_cluster::stop() {
    auto i = impl_;
    if (i->ctx->stopping.exchange(true)) return;
    asio::post(i->ctx->strand, [i] { i->do_stop(); });
}

mesh_status rpc_cluster::mesh() const {
    return impl_->ctx->mesh();
}

uint16_t rpc_cluster::rpc_port() const {
    return impl_->ctx->port.load();
}
size_t rpc_cluster::links_up() const {
    return impl_->ctx->links_count.load();
}
size_t rpc_cluster::inbound_up() const {
    return impl_->ctx->inbound_count.load();
}
size_t rpc_cluster::directory_users() const {
    return impl_->ctx->users_count.load();
}
size_t rpc_cluster::directory_rooms() const {
    return impl_->ctx->rooms_count.load();
}
uint64_t rpc_cluster::connects(const std::string& peer) const {
    return impl_->ctx->connects(peer);
}

peer_list rpc_cluster::lookup(proto::target_kind kind, const std::string& target) const {
    auto i = impl_;
    auto p = std::make_shared<std::promise<peer_list>>();
    auto fut = p->get_future();
    asio::post(i->ctx->strand, [i, p, kind, target] {
        auto on_peers = [p](const peer_list& peers) { p->set_value(peers); };
        i->inbound->directory().resolve(kind, target, on_peers);
    });
    return fut.get();
}

std::vector<presence_answer> rpc_cluster::presence_of(const std::vector<std::string>& users) const {
    auto p = std::make_shared<std::promise<std::vector<presence_answer>>>();
    auto fut = p->get_future();
    auto i = impl_;
    asio::post(i->ctx->strand, [i, p, users] {
        auto on_answer = [p](std::vector<presence_answer> a) { p->set_value(std::move(a)); };
        i->do_presence(users, on_answer);
    });
    return fut.get();
}

bool rpc_cluster::redis_connected() const {
    return impl_->redis_conn && impl_->redis_conn->connected();
}

}  // namespace imgate::gw
