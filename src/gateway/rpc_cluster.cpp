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
#include "gateway/rpc_wire.hpp"

namespace imgate::gw {

namespace {

// Aggregates the per-peer answers of one forward; calls done once, when the last one is in.
struct fan_in {
    size_t remaining;
    rpc::result_combiner comb;
    std::function<void(forward_result)> done;
    cluster_metrics* metrics;

    void add(const forward_result& r) {
        comb.add(r);
        if (--remaining > 0) return;
        auto res = comb.result();
        metrics->forward_result(res.status).inc();
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
         metrics_registry& m, std::unique_ptr<session_directory> dir)
        : ctx(std::make_shared<cluster_context>(io, fleet, self_id, secret, cfg, local, m)),
          fleet(fleet) {
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
        asio::post(ctx->strand, [self, on_peer_up] {
            self->inbound->start(on_peer_up);
            for (auto& g : self->fleet.gateways)
                if (g.id != self->ctx->self_id) self->add_link(g);
            spdlog::info("cluster rpc: {} listening on port {}, {} peers", self->ctx->self_id,
                         self->ctx->port.load(), self->links.size());
        });
    }

    void add_link(const gateway_spec& g) {
        auto l = std::make_shared<outbound_link>(ctx, g);
        links[g.id] = l;
        ctx->set_peer_state(g.id, "connecting");
        l->start();
    }

    void do_stop() {
        ctx->stopped = true;
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
        // Another directory may answer later; it must call back on this strand.
        auto kind = msg.kind;
        auto target = msg.target;
        auto on_peers = [self, msg = std::move(msg),
                         done = std::move(done)](const peer_list& peers) mutable {
            self->fan_out(msg, std::move(done), peers);
        };
        inbound->directory().resolve(kind, target, std::move(on_peers));
    }

    void fan_out(const outbound_message& msg, std::function<void(forward_result)> done,
                 const peer_list& peers) {
        auto& m = ctx->metrics;
        if (peers.empty()) {
            m.forward_result(proto::code::offline).inc();
            done(forward_result{proto::code::offline, 0});
            return;
        }
        auto deadline = rpc::clock::now() + ctx->cfg.call_timeout;
        if (peers.size() == 1) {
            // The common 1:1 case: the call's own callback is the result, no aggregation.
            outbound_link* l = usable(peers[0]);
            uint32_t corr = 0;
            if (l) {
                auto cb = [&m, done](forward_result r) {
                    m.forward_result(r.status).inc();
                    done(r);
                };
                corr = l->start_call(deadline, std::move(cb));
            }
            if (corr == 0) {
                m.forward_result(proto::code::unavailable).inc();
                done(forward_result{proto::code::unavailable, 0});
                return;
            }
            l->send_forward(msg, corr);
            return;
        }
        auto agg = std::make_shared<fan_in>();
        agg->remaining = peers.size();
        agg->done = std::move(done);
        agg->metrics = &m;
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

    template <class M>
    void announce(const std::string& key, bool on) {
        if (ctx->stopped) return;
        M m;
        m.changes.push_back(rpc::delta{on, key});
        std::string bytes = rpc::encode(m);
        // A peer whose link is down gets everything in the snapshot when it comes back.
        for (auto& [id, l] : links)
            if (l->usable()) l->send(bytes);
    }

    std::shared_ptr<cluster_context> ctx;
    fleet_config fleet;
    std::shared_ptr<inbound_side> inbound;
    std::map<std::string, std::shared_ptr<outbound_link>> links;
    peer_list peers_scratch;
    std::string forward_scratch;
};

rpc_cluster::rpc_cluster(boost::asio::io_context& io, const fleet_config& fleet,
                         const std::string& self_id, const std::string& secret,
                         const rpc_config& cfg, local_delivery& local, metrics_registry& metrics,
                         std::unique_ptr<session_directory> dir)
    : impl_(
          std::make_shared<impl>(io, fleet, self_id, secret, cfg, local, metrics, std::move(dir))) {
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
    asio::post(i->ctx->strand, [i, user] { i->announce<rpc::presence_msg>(user, true); });
}

void rpc_cluster::device_login(const std::string& user, const std::string& device) {
    auto i = impl_;
    asio::post(i->ctx->strand, [i, user, device] { i->do_device_login(user, device); });
}

void rpc_cluster::user_offline(const std::string& user) {
    auto i = impl_;
    asio::post(i->ctx->strand, [i, user] { i->announce<rpc::presence_msg>(user, false); });
}

void rpc_cluster::room_interest(const std::string& room, bool interested) {
    auto i = impl_;
    asio::post(i->ctx->strand,
               [i, room, interested] { i->announce<rpc::room_interest_msg>(room, interested); });
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

}  // namespace imgate::gw
