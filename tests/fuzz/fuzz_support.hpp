#pragma once
// Shared helpers of the fuzz targets: a byte source that never runs out (zeros past the end), and
// FUZZ_CHECK, which aborts with a message so both libFuzzer and the GCC corpus replay report a
// broken invariant as a crash. Works with GCC (no <fuzzer/FuzzedDataProvider.h> there).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#define FUZZ_CHECK(cond)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                     \
        }                                                                                     \
    } while (0)

namespace imgate::fuzz {

// Consumes the fuzzer's bytes front to back; reads past the end yield zeros / empty strings so a
// target never has to check sizes.
class byte_source {
  public:
    byte_source(const uint8_t* data, size_t size)
        : data_(reinterpret_cast<const char*>(data), size) {}
    explicit byte_source(std::string_view data) : data_(data) {}

    uint8_t u8() { return pos_ < data_.size() ? static_cast<uint8_t>(data_[pos_++]) : 0; }
    uint16_t u16() { return static_cast<uint16_t>((u8() << 8) | u8()); }
    uint32_t u32() { return (uint32_t(u16()) << 16) | u16(); }
    uint64_t u64() { return (uint64_t(u32()) << 32) | u32(); }
    bool flag() { return u8() & 1; }
    // A string of up to max_len bytes; its length comes from one byte (or two when max_len > 255).
    std::string str(size_t max_len) {
        size_t n = max_len > 255 ? u16() : u8();
        if (max_len)
            n %= (max_len + 1);
        else
            n = 0;
        return bytes(n);
    }
    std::string bytes(size_t n) {
        n = std::min(n, data_.size() - pos_);
        std::string s(data_.substr(pos_, n));
        pos_ += n;
        return s;
    }
    std::string_view rest() {
        auto r = data_.substr(pos_);
        pos_ = data_.size();
        return r;
    }
    size_t remaining() const { return data_.size() - pos_; }
    bool empty() const { return pos_ >= data_.size(); }

  private:
    std::string_view data_;
    size_t pos_ = 0;
};

}  // namespace imgate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
