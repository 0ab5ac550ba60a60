#include <spdlog/spdlog.h>

#include "gateway/cluster.hpp"
#include "gateway/cluster_metrics.hpp"
#include "gateway/rpc_cluster.hpp"

namespace imgate::gw {

std::unique_ptr<cluster> make_cluster(const fleet_config& fleet, const std::string& self_id,
                                      const std::string& secret, const rpc_config& cfg,
                                      local_delivery& local, boost::asio::io_context& io,
                                      metrics_registry& metrics, const directory_config& dir,
                                      const redis_config& redis) {
    bool redis_mode = dir.mode == directory_mode::redis;
    if (fleet.gateways.size() < 2 || secret.empty()) {
        // Nothing to look up: no peer can hold a session. The mode gauge still says what the
        // configuration asked for.
        directory_metrics m(metrics, to_string(dir.mode));
        if (fleet.gateways.size() < 2) {
            if (redis_mode)
                spdlog::info(
                    "directory.mode redis with a one-gateway fleet: no peers, Redis is not used "
                    "for the directory");
            return make_single_node_cluster();
        }
        // Forwarding unauthenticated is not an option; say loudly that the fleet is split.
        spdlog::warn(
            "fleet has {} gateways but no cluster.secret_file: no cross-node delivery, "
            "{} serves its own sessions only",
            fleet.gateways.size(), self_id);
        return make_single_node_cluster();
    }
    // Throws (start-up error) when the RPC address cannot be bound.
    return std::make_unique<rpc_cluster>(io, fleet, self_id, secret, cfg, local, metrics, nullptr,
                                         dir, redis);
}

}  // namespace imgate::gw
