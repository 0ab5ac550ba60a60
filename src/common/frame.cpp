#include "common/frame.hpp"

namespace imgate {

const char* to_string(frame_error e) {
    switch (e) {
        case frame_error::none:
            return "none";
        case frame_error::bad_version:
            return "unsupported protocol version";
        case frame_error::too_large:
            return "frame too large";
    }
    return "unknown";
}

void append_frame(std::string& out, uint8_t version, uint8_t op, uint32_t corr,
                  std::string_view body, uint16_t flags) {
    byte_writer w(out);
    w.u32(static_cast<uint32_t>(body.size()));
    w.u8(version);
    w.u8(op);
    w.u16(flags);
    w.u32(corr);
    w.raw(body);
}

size_t begin_frame(std::string& out) {
    size_t start = out.size();
    out.append(frame_header_size, '\0');
    return start;
}

void finish_frame(std::string& out, size_t start, uint8_t version, uint8_t op, uint32_t corr,
                  uint16_t flags) {
    // Written in place over the placeholder begin_frame appended: no temporary, no shifting.
    auto len = static_cast<uint32_t>(out.size() - start - frame_header_size);
    char* h = out.data() + start;
    h[0] = static_cast<char>(len >> 24);
    h[1] = static_cast<char>(len >> 16);
    h[2] = static_cast<char>(len >> 8);
    h[3] = static_cast<char>(len);
    h[4] = static_cast<char>(version);
    h[5] = static_cast<char>(op);
    h[6] = static_cast<char>(flags >> 8);
    h[7] = static_cast<char>(flags);
    h[8] = static_cast<char>(corr >> 24);
    h[9] = static_cast<char>(corr >> 16);
    h[10] = static_cast<char>(corr >> 8);
    h[11] = static_cast<char>(corr);
}

void frame_decoder::feed(std::string_view bytes) {
    if (error_ != frame_error::none) return;
    // Compact lazily so a long-lived connection doesn't keep growing its buffer.
    if (pos_ > 0 && (pos_ == buf_.size() || pos_ > 4096)) {
        buf_.erase(0, pos_);
        pos_ = 0;
    }
    buf_.append(bytes);
}

std::optional<frame> frame_decoder::next(std::string_view& input) {
    if (error_ != frame_error::none) return std::nullopt;
    if (buf_.size() != pos_) keep(input);
    if (input.empty()) return next();
    size_t used = 0;
    if (auto f = take(input, used)) {
        input.remove_prefix(used);
        return f;
    }
    keep(input);  // an incomplete frame (or a failed stream): keep its bytes
    return std::nullopt;
}

void frame_decoder::keep(std::string_view& input) {
    if (!input.empty()) feed(input);
    input = {};
}

std::optional<frame> frame_decoder::take(std::string_view avail, size_t& used) {
    if (avail.size() < frame_header_size) return std::nullopt;
    byte_reader r(avail.substr(0, frame_header_size));
    uint32_t len = r.u32();
    uint8_t ver = r.u8();
    uint8_t op = r.u8();
    uint16_t flags = r.u16();
    uint32_t corr = r.u32();
    if (ver != version_) {
        error_ = frame_error::bad_version;
        return std::nullopt;
    }
    if (len > max_body_) {
        error_ = frame_error::too_large;
        return std::nullopt;
    }
    if (avail.size() < frame_header_size + len) return std::nullopt;
    frame f;
    f.op = op;
    f.flags = flags;
    f.corr = corr;
    f.body.assign(avail.substr(frame_header_size, len));
    used = frame_header_size + len;
    return f;
}

std::optional<frame> frame_decoder::next() {
    if (error_ != frame_error::none) return std::nullopt;
    size_t used = 0;
    auto f = take(std::string_view(buf_).substr(pos_), used);
    if (f) pos_ += used;
    return f;
}

}  // namespace imgate
