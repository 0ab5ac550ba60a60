#pragma once
// Big-endian field writer/reader used by every binary body on the wire (client and internal).
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace imgate {

// Appends big-endian fields to a caller-owned buffer; never fails (length checks are the
// encoder's job, see byte_writer::str16 contract).
class byte_writer {
  public:
    explicit byte_writer(std::string& out) : out_(out) {}

    void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
    void u16(uint16_t v) {
        char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
        out_.append(b, 2);
    }
    void u32(uint32_t v) {
        char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
        out_.append(b, 4);
    }
    void u64(uint64_t v) {
        u32(static_cast<uint32_t>(v >> 32));
        u32(static_cast<uint32_t>(v));
    }
    // Strings longer than 65535 bytes are truncated; callers validate ids before encoding.
    void str16(std::string_view s) {
        if (s.size() > 0xffff) s = s.substr(0, 0xffff);
        u16(static_cast<uint16_t>(s.size()));
        out_.append(s);
    }
    void blob32(std::string_view s) {
        u32(static_cast<uint32_t>(s.size()));
        out_.append(s);
    }
    void raw(std::string_view s) { out_.append(s); }

  private:
    std::string& out_;
};

// Reads big-endian fields from a view; an overrun latches ok() to false and yields zeros.
class byte_reader {
  public:
    explicit byte_reader(std::string_view data) : data_(data) {}

    uint8_t u8() {
        if (!need(1)) return 0;
        return static_cast<uint8_t>(data_[pos_++]);
    }
    uint16_t u16() {
        if (!need(2)) return 0;
        uint16_t v = (b(0) << 8) | b(1);
        pos_ += 2;
        return v;
    }
    uint32_t u32() {
        if (!need(4)) return 0;
        uint32_t v = (uint32_t(b(0)) << 24) | (uint32_t(b(1)) << 16) | (uint32_t(b(2)) << 8) |
                     uint32_t(b(3));
        pos_ += 4;
        return v;
    }
    uint64_t u64() {
        uint64_t hi = u32();
        uint64_t lo = u32();
        return (hi << 32) | lo;
    }
    std::string_view str16() { return bytes(u16()); }
    std::string_view blob32() { return bytes(u32()); }
    std::string_view bytes(size_t n) {
        if (!need(n)) return {};
        auto v = data_.substr(pos_, n);
        pos_ += n;
        return v;
    }
    bool ok() const { return ok_; }
    bool at_end() const { return pos_ == data_.size(); }
    // True when every field was present and nothing trails: the check every decoder ends with.
    bool done() const { return ok_ && at_end(); }

  private:
    bool need(size_t n) {
        if (!ok_ || data_.size() - pos_ < n) {
            ok_ = false;
            return false;
        }
        return true;
    }
    uint32_t b(size_t i) const { return static_cast<uint8_t>(data_[pos_ + i]); }

    std::string_view data_;
    size_t pos_ = 0;
    bool ok_ = true;
};

}  // namespace imgate
