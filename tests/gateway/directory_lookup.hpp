#pragma once
// What an announced directory answers for a user or a room, as a sorted peer list: the one way
// the directory tests read it back.
#include <algorithm>
#include <string>

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

}  // namespace imgate::gw::test_support
