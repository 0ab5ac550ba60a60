#pragma once
// Shared by the abuse tests (abuse_client_test.cpp) and the abuse bench (bench/abuse_bench.cpp):
// raw frame headers, /proc readings, the descriptor limit, and raw logged-in connections. No
// gtest here: the bench is a plain program.
#include <poll.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "common/frame.hpp"
#include "common/protocol.hpp"
#include "fault_fixture.hpp"

namespace imgate::test::abuse {

using namespace std::chrono_literals;

// The descriptor limit raised towards its hard limit, so a thousand sockets fit in this process
// and in the gateways it starts afterwards (they inherit it). False if `want` is out of reach.
inline bool raise_fd_limit(rlim_t want) {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return false;
    if (r.rlim_cur >= want) return true;
    r.rlim_cur = std::min(r.rlim_max, std::max(want, r.rlim_cur));
    ::setrlimit(RLIMIT_NOFILE, &r);
    return r.rlim_cur >= want;
}

// A field of /proc/PID/status in KiB (VmRSS, VmHWM), or -1.
inline long status_kb(pid_t pid, const std::string& field) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
    return -1;
}

// A client frame header (12 bytes) declaring a body of `len` bytes.
inline std::string header(uint32_t len, proto::op o = proto::op::login, uint32_t corr = 1) {
    return frame_header(len, client_protocol_version, uint8_t(o), corr);
}

// Reads on c until pred(c) holds, the peer closes, or timeout passes.
template <class Pred>
bool wait_until(raw_conn& c, Pred pred, std::chrono::milliseconds timeout = 3000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        c.pump();
        if (pred(c)) return true;
        if (c.is_closed()) return pred(c);
        auto left = deadline - std::chrono::steady_clock::now();
        if (left <= 0ms) return false;
        pollfd p{c.fd(), POLLIN, 0};
        ::poll(&p, 1, int(std::chrono::duration_cast<std::chrono::milliseconds>(left).count()) + 1);
    }
}

inline bool has_op(const raw_conn& c, proto::op o) {
    for (auto& f : c.frames())
        if (f.op == uint8_t(o)) return true;
    return false;
}

// The ERRORs received so far.
inline std::vector<std::pair<uint32_t, proto::error_msg>> errors(const raw_conn& c) {
    std::vector<std::pair<uint32_t, proto::error_msg>> out;
    for (auto& f : c.frames())
        if (auto e = proto::decode<proto::error_msg>(f)) out.emplace_back(f.corr, *e);
    return out;
}

// A raw connection logged in as user (LOGIN_RESULT received), or one that is not open.
inline raw_conn logged_in_raw(const std::string& addr, const std::string& user) {
    raw_conn c;
    if (!c.connect(addr)) return c;
    c.send(proto::encode(proto::login_msg{fault::token(user, "phone")}, 1));
    if (!wait_until(c, [](raw_conn& r) { return has_op(r, proto::op::login_result); })) c.close();
    return c;
}

}  // namespace imgate::test::abuse
