#pragma once
// Stands in for the gateway core in the cluster tests: the users with a session here, and the
// targets a forwarded message reached (one entry per delivery).
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "gateway/cluster.hpp"

namespace imgate::gw::test_support {

class fake_local final : public local_delivery {
  public:
    uint32_t deliver_local(const outbound_message& m) override {
        std::lock_guard lk(mu);
        if (m.kind != proto::target_kind::user || !users.count(m.target)) return 0;
        delivered.push_back(m.target);
        return 1;
    }
    void receipt_local(uint64_t, const proto::receipt_msg&) override {}
    std::vector<std::string> local_users() const override {
        std::lock_guard lk(mu);
        return {users.begin(), users.end()};
    }
    std::vector<std::string> local_rooms() const override { return {}; }
    void device_claimed(const std::string&, const std::string&) override {}

    mutable std::mutex mu;
    std::set<std::string> users;
    std::vector<std::string> delivered;
};

// The gateway core as peer_service needs it for announcements: nothing.
class no_local final : public local_delivery {
  public:
    uint32_t deliver_local(const outbound_message&) override { return 0; }
    void receipt_local(uint64_t, const proto::receipt_msg&) override {}
    std::vector<std::string> local_users() const override { return {}; }
    std::vector<std::string> local_rooms() const override { return {}; }
    void device_claimed(const std::string&, const std::string&) override {}
};

}  // namespace imgate::gw::test_support
