#include "dispatcher/region_table.hpp"

#include <algorithm>
#include <charconv>

namespace imgate::disp {

namespace {

std::array<uint8_t, 16> to_v6_bytes(const boost::asio::ip::address& a) {
    if (a.is_v6()) {
        return a.to_v6().to_bytes();  // a v4-mapped address already has the layout we use
    }
    return boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, a.to_v4()).to_bytes();
}

bool matches(const std::array<uint8_t, 16>& addr, const std::array<uint8_t, 16>& net,
             unsigned prefix) {
    unsigned full = prefix / 8, rest = prefix % 8;
    for (unsigned i = 0; i < full; ++i)
        if (addr[i] != net[i]) return false;
    if (rest == 0) return true;
    uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (addr[full] & mask) == (net[full] & mask);
}

}  // namespace

std::optional<std::string> region_table::add(std::string_view cidr, const std::string& region) {
    auto slash = cidr.find('/');
    if (slash == std::string_view::npos) return "expected address/prefix such as 10.0.0.0/8";
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(std::string(cidr.substr(0, slash)), ec);
    if (ec) return "bad address \"" + std::string(cidr.substr(0, slash)) + "\"";
    auto ps = cidr.substr(slash + 1);
    unsigned prefix = 0;
    auto [p, perr] = std::from_chars(ps.data(), ps.data() + ps.size(), prefix);
    unsigned max = addr.is_v4() ? 32 : 128;
    if (perr != std::errc() || p != ps.data() + ps.size() || ps.empty() || prefix > max)
        return "bad prefix length \"" + std::string(ps) + "\" (0-" + std::to_string(max) + ")";
    entry e;
    e.net = to_v6_bytes(addr);
    e.prefix = addr.is_v4() ? prefix + 96 : prefix;
    e.region = region;
    // Host bits set is almost always a typo ("10.1.2.3/8"); refuse it rather than guess.
    std::array<uint8_t, 16> masked{};
    for (unsigned i = 0; i < 16; ++i) {
        unsigned bits = e.prefix > i * 8 ? std::min(8u, e.prefix - i * 8) : 0;
        masked[i] = bits == 0 ? 0 : static_cast<uint8_t>(e.net[i] & (0xff << (8 - bits)));
    }
    if (masked != e.net) return "host bits set in \"" + std::string(cidr) + "\"";
    auto pos = std::find_if(entries_.begin(), entries_.end(),
                            [&](const entry& x) { return x.prefix < e.prefix; });
    entries_.insert(pos, std::move(e));
    return std::nullopt;
}

const std::string& region_table::lookup(const boost::asio::ip::address& a) const {
    auto bytes = to_v6_bytes(a);
    for (const auto& e : entries_)
        if (matches(bytes, e.net, e.prefix)) return e.region;
    return default_;
}

}  // namespace imgate::disp
