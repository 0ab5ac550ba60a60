#pragma once
// Length-prefixed framing shared by the client protocol and the internal RPC (docs/protocol.md).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.hpp"

namespace imgate {

// Header: u32 body length | u8 version | u8 op | u16 flags | u32 correlation id (big-endian).
inline constexpr size_t frame_header_size = 12;
inline constexpr uint8_t client_protocol_version = 1;
inline constexpr uint8_t rpc_protocol_version = 0x81;  // distinct so a client can't talk RPC
inline constexpr uint32_t default_max_frame_body = 64 * 1024;
inline constexpr uint32_t absolute_max_frame_body = 16 * 1024 * 1024;

struct frame {
    uint8_t op = 0;
    uint16_t flags = 0;
    uint32_t corr = 0;
    std::string body;
};

enum class frame_error : uint8_t { none, bad_version, too_large };

const char* to_string(frame_error e);

// Appends one whole frame (header + body) to out.
void append_frame(std::string& out, uint8_t version, uint8_t op, uint32_t corr,
                  std::string_view body, uint16_t flags = 0);

// Rewrites the header of a frame built with begin_frame/finish_frame; lets encoders write the body
// straight into the output buffer without a temporary.
size_t begin_frame(std::string& out);
void finish_frame(std::string& out, size_t start, uint8_t version, uint8_t op, uint32_t corr,
                  uint16_t flags = 0);

// Socket-free incremental decoder: feed bytes in any split, take whole frames out. A header that
// declares a body over max_body (or a wrong version) is an error as soon as its 12 bytes are in,
// before anything of that size is buffered. After an error the decoder stays failed.
class frame_decoder {
  public:
    explicit frame_decoder(uint32_t max_body = default_max_frame_body,
                           uint8_t version = client_protocol_version)
        : max_body_(max_body), version_(version) {}

    void feed(std::string_view bytes);
    // Like feed then next, without the copy: while nothing is buffered, the next whole frame is
    // taken straight from the front of `input` (which then starts after it); an incomplete
    // frame at its end is copied in and `input` emptied. With bytes buffered, `input` is
    // appended first.
    std::optional<frame> next(std::string_view& input);
    // Copies in what is left of `input` (next(input) was not run dry) and empties it.
    void keep(std::string_view& input);
    // The next whole frame, or nullopt when more bytes are needed or the stream failed (error()).
    std::optional<frame> next();

    frame_error error() const { return error_; }
    size_t buffered() const { return buf_.size() - pos_; }
    void set_max_body(uint32_t m) { max_body_ = m; }
    uint32_t max_body() const { return max_body_; }

  private:
    // One frame from the front of `avail`: its size in `used`; nullopt when incomplete or failed.
    std::optional<frame> take(std::string_view avail, size_t& used);

    std::string buf_;
    size_t pos_ = 0;
    uint32_t max_body_;
    uint8_t version_;
    frame_error error_ = frame_error::none;
};

}  // namespace imgate
