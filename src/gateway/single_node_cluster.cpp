#include "gateway/cluster.hpp"

namespace imgate::gw {

namespace {

// The cluster of one: nothing to forward to.
class single_node_cluster final : public cluster {
  public:
    void forward(const outbound_message&, std::function<void(forward_result)> done) override {
        done(forward_result{proto::code::offline, 0});
    }
    void send_receipt(const std::string&, uint64_t, const proto::receipt_msg&) override {}
    void user_online(const std::string&) override {}
    void user_offline(const std::string&) override {}
    void room_interest(const std::string&, bool) override {}
    void device_login(const std::string&, const std::string&) override {}
    void reload(const fleet_config&) override {}
    void stop() override {}
    // No peers and no cluster secret: nothing to be linked to, nothing to mismatch.
    mesh_status mesh() const override { return {}; }
};

}  // namespace

std::unique_ptr<cluster> make_single_node_cluster() {
    return std::make_unique<single_node_cluster>();
}

}  // namespace imgate::gw
