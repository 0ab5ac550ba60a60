// The hex of docs/protocol.md §4 "Worked examples" is what the codec writes for the message each
// example describes: a client author copies those bytes, so they must be exact.
#include <gtest/gtest.h>

#include <cctype>
#include <sstream>

#include "../support/process.hpp"
#include "common/protocol.hpp"

namespace {

using namespace imgate;
namespace proto = imgate::proto;

// The bytes of every ``` block of §4, in order. On each line the leading two-digit hex tokens
// are bytes; the first other token starts the comment.
std::vector<std::string> example_blocks(const std::string& md) {
    auto from = md.find("## 4. Worked examples");
    auto to = md.find("## 5.", from);
    std::istringstream in(md.substr(from, to - from));
    std::vector<std::string> out;
    std::string line;
    bool inside = false;
    while (std::getline(in, line)) {
        if (line.rfind("```", 0) == 0) {
            inside = !inside;
            if (inside) out.emplace_back();
            continue;
        }
        if (!inside) continue;
        std::istringstream tokens(line);
        std::string t;
        while (tokens >> t) {
            if (t.size() != 2 || !std::isxdigit(uint8_t(t[0])) || !std::isxdigit(uint8_t(t[1])))
                break;
            out.back() += char(std::stoi(t, nullptr, 16));
        }
    }
    return out;
}

TEST(ProtocolDoc, WorkedExamplesAreTheCodecsBytes) {
    auto blocks =
        example_blocks(imgate::test::read_file(imgate::test::source_path("docs/protocol.md")));
    const uint64_t smid = 0x0001000000000005;
    std::vector<std::pair<const char*, std::string>> want{
        {"LOGIN", proto::encode(proto::login_msg{"eyJ.x.y"}, 1)},
        {"LOGIN_RESULT",
         proto::encode(proto::login_result_msg{"alice", "phone", "gw1", 30000, 90000, 65536}, 1)},
        {"PING", proto::encode(proto::ping_msg{}, 2)},
        {"SEND", proto::encode(proto::send_msg{proto::target_kind::user, "bob", 7, "hi"}, 3)},
        {"SEND_RESULT", proto::encode(proto::send_result_msg{7, smid, proto::code::ok, 1}, 3)},
        {"DELIVER", proto::encode(proto::deliver_msg{smid, proto::target_kind::user, "alice",
                                                     "phone", "", 1700000000000, "hi"})},
        {"ACK + RECEIPT", proto::encode(proto::ack_msg{smid}) +
                              proto::encode(proto::receipt_msg{7, smid, "bob", "tablet"})},
        {"ERROR auth_failed",
         proto::encode(proto::error_msg{proto::code::auth_failed, "bad signature"}, 1)},
        {"KICK replaced",
         proto::encode(proto::kick_msg{proto::kick_reason::replaced, 0,
                                       std::string(proto::kick_replaced_message)})},
        {"REDIRECT", proto::encode(proto::redirect_msg{1500, "", 0, "drain"})},
    };
    ASSERT_EQ(blocks.size(), want.size()) << "§4 gained or lost an example: extend this list";
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(blocks[i], want[i].second) << want[i].first;
}

}  // namespace
