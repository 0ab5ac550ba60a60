#pragma once
// What an announced directory answers for a user or a room (a sorted peer list) and what one
// metric sample reads: the way the directory tests read a directory and its gauges back.
#include <algorithm>
#include <sstream>
#include <string>

#include "common/metrics.hpp"
#include "gateway/directory.hpp"

namespace imgate::gw::test_support {

inline peer_list sorted_peers(announced_directory& d, proto::target_kind k, const std::string& t) {
    peer_list out;
    d.resolve(k, t, [&](const peer_list& p) { out = p; });
    std::sort(out.begin(), out.end());
    return out;
}

inline peer_list user(announced_directory& d, const std::string& u) {
    return sorted_peers(d, proto::target_kind::user, u);
}

inline peer_list room(announced_directory& d, const std::string& r) {
    return sorted_peers(d, proto::target_kind::room, r);
}

// The value of one rendered sample (exact series text), or -1 when it is not rendered.
inline double sample(const metrics_registry& m, const std::string& series) {
    std::istringstream in(m.render());
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    return -1;
}

}  // namespace imgate::gw::test_support
