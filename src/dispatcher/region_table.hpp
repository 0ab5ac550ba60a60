#pragma once
// Maps a client IP address to a region through a CIDR table (longest prefix wins), with a default
// region for addresses no entry covers. Pure data: no sockets.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace imgate::disp {

class region_table {
  public:
    // Parses "10.0.0.0/8" or "2001:db8::/32"; returns an error message on failure.
    std::optional<std::string> add(std::string_view cidr, const std::string& region);
    void set_default(std::string region) { default_ = std::move(region); }
    const std::string& default_region() const { return default_; }

    const std::string& lookup(const boost::asio::ip::address& a) const;
    size_t size() const { return entries_.size(); }
    std::vector<std::string> regions() const {
        std::vector<std::string> out;
        for (const auto& e : entries_) out.push_back(e.region);
        return out;
    }

  private:
    struct entry {
        std::array<uint8_t, 16> net{};  // IPv4 stored as IPv4-mapped IPv6
        unsigned prefix = 0;            // in IPv6 bits
        std::string region;
    };
    std::vector<entry> entries_;  // sorted by prefix, longest first
    std::string default_ = "default";
};

}  // namespace imgate::disp
