#pragma once
// The answer of a frame handler to the reader that fed it a frame.
#include <cstdint>

namespace imgate::gw {

// Read on, stop reading (the caller goes on with the connection), or a protocol error.
enum class verdict : uint8_t { more, stop, reject };

}  // namespace imgate::gw
