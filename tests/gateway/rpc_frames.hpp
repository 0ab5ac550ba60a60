#pragma once
// Test helper shared by the RPC unit tests: the frames in a byte string as a peer would read them.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/frame.hpp"
#include "gateway/rpc_wire.hpp"

namespace imgate::test {

inline std::vector<frame> rpc_frames_of(const std::string& bytes) {
    frame_decoder d(gw::rpc::max_body, rpc_protocol_version);
    d.feed(bytes);
    std::vector<frame> out;
    while (auto f = d.next()) out.push_back(*f);
    EXPECT_EQ(d.error(), frame_error::none);
    return out;
}

}  // namespace imgate::test
