#pragma once
// One gateway's cluster layer (rpc_cluster) running on its own io thread with its own metrics, for
// tests that wire real RPC links over loopback. Local is the test's stand-in for the gateway core
// (a local_delivery); each test keeps its own, since what it records differs.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "common/metrics.hpp"
#include "gateway/rpc_cluster.hpp"

namespace imgate::test {

// A fleet file of gateways on loopback with the given RPC ports (0: bind a port of its own
// choosing); client and admin addresses are placeholders the cluster layer never uses.
inline fleet_config cluster_fleet(const std::map<std::string, uint16_t>& rpc_ports) {
    fleet_config f;
    for (auto& [id, port] : rpc_ports) {
        gateway_spec g;
        g.id = id;
        g.client = {"127.0.0.1", 1};
        g.admin = {"127.0.0.1", 1};
        g.rpc = {"127.0.0.1", port};
        f.gateways.push_back(g);
    }
    return f;
}

// RPC timings short enough for a test to see a link fail and come back within a second.
inline gw::rpc_config fast_rpc_config() {
    using namespace std::chrono_literals;
    gw::rpc_config c;
    c.call_timeout = 500ms;
    c.connect_timeout = 500ms;
    c.ping_interval = 200ms;
    c.peer_timeout = 1000ms;
    c.backoff_min = 20ms;
    c.backoff_max = 200ms;
    return c;
}

// Owns the io_context, its thread, the metrics registry, the Local and the rpc_cluster on them.
template <class Local>
struct cluster_node {
    // dcfg/rcfg: the directory mode (redis mode needs a redis server).
    cluster_node(const fleet_config& fleet, const std::string& id, const std::string& secret,
                 gw::rpc_config cfg, const gw::directory_config& dcfg = {},
                 const gw::redis_config& rcfg = {})
        : node_id(id), work(boost::asio::make_work_guard(io)) {
        cluster = std::make_unique<gw::rpc_cluster>(io, fleet, id, secret, cfg, local, metrics,
                                                    nullptr, dcfg, rcfg);
        thread = std::thread([this] { io.run(); });
    }
    ~cluster_node() { shutdown(); }
    void shutdown() {
        if (!thread.joinable()) return;
        cluster->stop();
        // Waits for the stop to have run on the cluster's strand (lookup queues behind it there),
        // so this node's sockets are closed, and its peers read EOF — a clean close, whose
        // entries they drop at once — before the io_context stops. Without it io.stop() could
        // win, leaving the sockets open and silent: a partition, whose entries peers hold.
        (void)cluster->lookup(proto::target_kind::user, "");
        work.reset();
        io.stop();
        thread.join();
    }

    // Forwards m and waits (5 s at most) for its one answer; a second completion is ignored here
    // (tests that care count them themselves).
    gw::forward_result forward_sync(const gw::outbound_message& m) {
        auto p = std::make_shared<std::promise<gw::forward_result>>();
        auto fut = p->get_future();
        auto calls = std::make_shared<std::atomic<int>>(0);
        cluster->forward(m, [p, calls](gw::forward_result r) {
            if (calls->fetch_add(1) == 0) p->set_value(r);
        });
        if (fut.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
            ADD_FAILURE() << "forward never completed";
            return {proto::code::internal, 0};
        }
        return fut.get();
    }

    // A 1:1 message from alice@example.com to `user`, forwarded as this node's core would.
    gw::forward_result forward_sync(const std::string& user) {
        gw::outbound_message m;
        m.server_msg_id = ++next_msg_id;
        m.kind = proto::target_kind::user;
        m.target = user;
        m.from_user = "alice@example.com";
        m.from_device = "phone";
        m.payload = "hello";
        m.origin_gateway = node_id;
        return forward_sync(m);
    }

    // Sum of the samples of the rendered registry whose line starts with needle; -1: none.
    double metric(const std::string& needle) const {
        double sum = 0;
        bool found = false;
        std::istringstream in(metrics.render());
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind(needle, 0) != 0) continue;
            auto sp = line.rfind(' ');
            if (sp == std::string::npos) continue;
            sum += std::stod(line.substr(sp + 1));
            found = true;
        }
        return found ? sum : -1;
    }

    std::string node_id;
    uint64_t next_msg_id = 0;
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work;
    Local local;
    metrics_registry metrics;
    std::unique_ptr<gw::rpc_cluster> cluster;
    std::thread thread;
};

}  // namespace imgate::test
