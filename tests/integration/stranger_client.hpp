#pragma once
// A client written from docs/protocol.md alone, for contract tests: it builds frames byte by byte
// and splits the gateway's answers with its own reading of the 12-byte header, never through
// src/common's codec, so a test fails when the server and the document disagree even where the
// shared codec would agree with the server.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "../support/raw_conn.hpp"

namespace imgate::test::wire {

inline std::string u8(uint8_t v) {
    return std::string(1, char(v));
}
inline std::string u16(uint16_t v) {
    return {char(v >> 8), char(v & 0xff)};
}
inline std::string u32(uint32_t v) {
    return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}
inline std::string u64(uint64_t v) {
    return u32(uint32_t(v >> 32)) + u32(uint32_t(v));
}
inline std::string str16(std::string_view s) {
    return u16(uint16_t(s.size())) + std::string(s);
}
inline std::string blob32(std::string_view s) {
    return u32(uint32_t(s.size())) + std::string(s);
}

// §2: u32 length | u8 version 0x01 | u8 op | u16 flags 0 | u32 corr, then the body.
inline std::string frame(uint8_t op, uint32_t corr, std::string_view body) {
    return u32(uint32_t(body.size())) + u8(0x01) + u8(op) + u16(0) + u32(corr) + std::string(body);
}

// The op numbers of §3, spelled out rather than taken from the server's headers.
namespace op {
inline constexpr uint8_t login = 0x01, login_result = 0x02, ping = 0x03, pong = 0x04, send = 0x10,
                         send_result = 0x11, deliver = 0x12, ack = 0x13, receipt = 0x14,
                         join = 0x20, leave = 0x21, room_result = 0x22, push = 0x30, kick = 0x40,
                         redirect = 0x41, error = 0x7f;
}

struct got_frame {
    uint8_t version = 0;
    uint8_t op = 0;
    uint16_t flags = 0;
    uint32_t corr = 0;
    std::string body;
    std::string bytes;  // header and body as received
};

inline uint32_t be32(std::string_view b, size_t at) {
    return uint32_t(uint8_t(b[at])) << 24 | uint32_t(uint8_t(b[at + 1])) << 16 |
           uint32_t(uint8_t(b[at + 2])) << 8 | uint32_t(uint8_t(b[at + 3]));
}
inline uint16_t be16(std::string_view b, size_t at) {
    return uint16_t(uint16_t(uint8_t(b[at])) << 8 | uint8_t(b[at + 1]));
}
inline uint64_t be64(std::string_view b, size_t at) {
    return uint64_t(be32(b, at)) << 32 | be32(b, at + 4);
}

// One connection speaking raw bytes. Every read has a deadline.
class stranger {
  public:
    bool connect(const std::string& hostport) { return conn_.connect(hostport); }
    bool send(std::string_view bytes) { return conn_.send(bytes); }

    // The next whole frame, or nullopt when none arrives within timeout (or the peer closed).
    std::optional<got_frame> next(std::chrono::milliseconds timeout = 3000ms) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            conn_.pump();
            std::string_view in = std::string_view(conn_.received()).substr(pos_);
            if (in.size() >= 12 && in.size() >= 12 + be32(in, 0)) {
                got_frame f;
                uint32_t len = be32(in, 0);
                f.version = uint8_t(in[4]);
                f.op = uint8_t(in[5]);
                f.flags = be16(in, 6);
                f.corr = be32(in, 8);
                f.body = std::string(in.substr(12, len));
                f.bytes = std::string(in.substr(0, 12 + len));
                pos_ += 12 + len;
                return f;
            }
            if (conn_.is_closed()) return std::nullopt;
            auto left = deadline - std::chrono::steady_clock::now();
            if (left <= 0ms) return std::nullopt;
            pollfd p{conn_.fd(), POLLIN, 0};
            ::poll(&p, 1,
                   int(std::chrono::duration_cast<std::chrono::milliseconds>(left).count()) + 1);
        }
    }

    // True once the gateway closed the connection, with no frame left unread.
    bool closed_after_last_frame(std::chrono::milliseconds timeout = 3000ms) {
        if (!conn_.wait_closed(timeout)) return false;
        return conn_.received().size() == pos_;
    }

  private:
    raw_conn conn_;
    size_t pos_ = 0;
};

}  // namespace imgate::test::wire
