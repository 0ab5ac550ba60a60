#pragma once
// A session stand-in for the socket-free gateway tests (hub, router, local delivery): records
// every frame it was given and whether it was finished.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gateway/hub.hpp"

namespace imgate::test {

// Owns copies of what the hub or the router queued to it; `accept` false makes it refuse frames
// like a session that is closing.
class fake_session : public gw::session_sink {
  public:
    fake_session(uint64_t id, std::string user, std::string device = "", bool accept = true)
        : id_(id), user_(std::move(user)), device_(std::move(device)), accept_(accept) {}
    uint64_t session_id() const override { return id_; }
    const std::string& user() const override { return user_; }
    const std::string& device() const override { return device_; }
    bool push_frame(const gw::shared_frame& f) override {
        if (!accept_) return false;
        frames.push_back(f);
        return true;
    }
    bool push_owned(std::string bytes) override {
        if (!accept_) return false;
        owned.push_back(std::move(bytes));
        return true;
    }
    void finish(std::string last_frame) override {
        finished = true;
        last = std::move(last_frame);
    }

    std::vector<gw::shared_frame> frames;
    std::vector<std::string> owned;
    bool finished = false;
    std::string last;

  private:
    uint64_t id_;
    std::string user_, device_;
    bool accept_;
};

}  // namespace imgate::test
