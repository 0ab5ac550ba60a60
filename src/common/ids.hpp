#pragma once
// The one rule for identifiers, used by the client protocol, the RPC codec, the admin API, the
// client tool and the config. Two kinds:
// - client ids (users, devices, rooms): what apps choose — e-mail addresses, non-ASCII names.
//   UTF-8, 1..max_bytes bytes, no control, whitespace or invisible formatting characters.
//   A gateway may lower the length limit (limits.max_id_length) but never raise it past
//   max_bytes, so an id that any gateway accepted from a client every peer accepts over the RPC.
// - node ids (gateway ids, regions): operator-chosen names that also appear in URLs, metric
//   labels and file names, so they stay within [A-Za-z0-9._-]{1,64}.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace imgate::ids {

// Hard bound on a client id, in bytes, on every wire and in every config.
inline constexpr size_t max_bytes = 1024;
// Default of the gateway's limits.max_id_length: real e-mail addresses, and ~40 CJK characters
// (3 bytes each in UTF-8).
inline constexpr size_t default_max_bytes = 128;
inline constexpr size_t max_node_id_bytes = 64;

enum class id_error : uint8_t {
    none,
    empty,
    too_long,
    bad_utf8,   // not well-formed UTF-8 (overlong, surrogate, truncated, > U+10FFFF)
    forbidden,  // control, whitespace or invisible formatting character (bidi, zero-width)
};
const char* to_string(id_error e);

// Checks a client id against the rule, with the length limit `max_len` (≤ max_bytes).
id_error check(std::string_view id, size_t max_len = max_bytes);
inline bool valid(std::string_view id, size_t max_len = max_bytes) {
    return check(id, max_len) == id_error::none;
}

// [A-Za-z0-9._-]{1,64}
bool valid_node_id(std::string_view id);

}  // namespace imgate::ids
