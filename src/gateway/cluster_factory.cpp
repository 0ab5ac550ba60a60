#include "gateway/cluster.hpp"

namespace imgate::gw {

std::unique_ptr<cluster> make_cluster(const fleet_config&, const std::string&, const std::string&,
                                      const rpc_config&, local_delivery&, boost::asio::io_context&,
                                      metrics_registry&) {
    // The RPC mesh replaces this once it lands; until then every gateway stands alone.
    return make_single_node_cluster();
}

}  // namespace imgate::gw
