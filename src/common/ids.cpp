#include "common/ids.hpp"

namespace imgate::ids {

const char* to_string(id_error e) {
    switch (e) {
        case id_error::none:
            return "ok";
        case id_error::empty:
            return "empty";
        case id_error::too_long:
            return "too long";
        case id_error::bad_utf8:
            return "not valid UTF-8";
        case id_error::forbidden:
            return "contains a control, whitespace or invisible formatting character";
    }
    return "?";
}

namespace {

// Code points an id may not contain: they are invisible, change how the text around them is
// displayed (bidi overrides can make "alice" look like someone else), or split it into words.
bool forbidden_code_point(uint32_t cp) {
    if (cp <= 0x20 || cp == 0x7f) return true;                    // C0 controls, space, DEL
    if (cp >= 0x80 && cp <= 0xa0) return true;                    // C1 controls, no-break space
    if (cp == 0xad || cp == 0x1680 || cp == 0x180e) return true;  // soft hyphen, spaces
    if (cp >= 0x2000 && cp <= 0x200f) return true;                // spaces, zero-width, LRM/RLM
    if (cp >= 0x2028 && cp <= 0x202f) return true;  // line/paragraph separators, bidi embeddings
    if (cp >= 0x205f && cp <= 0x206f) return true;  // math space, invisible operators, isolates
    if (cp == 0x3000 || cp == 0xfeff) return true;  // ideographic space, BOM
    if (cp >= 0xfff9 && cp <= 0xfffb) return true;  // interlinear annotation
    if ((cp & 0xfffe) == 0xfffe) return true;       // noncharacters U+xxFFFE/U+xxFFFF
    if (cp >= 0xfdd0 && cp <= 0xfdef) return true;  // noncharacters
    return false;
}

}  // namespace

id_error check(std::string_view id, size_t max_len) {
    if (id.empty()) return id_error::empty;
    if (max_len > max_bytes) max_len = max_bytes;
    if (id.size() > max_len) return id_error::too_long;
    const auto* p = reinterpret_cast<const unsigned char*>(id.data());
    const auto* end = p + id.size();
    while (p < end) {
        unsigned char b = *p;
        uint32_t cp;
        size_t n;
        if (b < 0x80) {
            cp = b;
            n = 1;
        } else if (b >= 0xc2 && b <= 0xdf) {
            cp = b & 0x1f;
            n = 2;
        } else if (b >= 0xe0 && b <= 0xef) {
            cp = b & 0x0f;
            n = 3;
        } else if (b >= 0xf0 && b <= 0xf4) {
            cp = b & 0x07;
            n = 4;
        } else {
            return id_error::bad_utf8;  // continuation byte first, 0xc0/0xc1 overlong, > 0xf4
        }
        if (size_t(end - p) < n) return id_error::bad_utf8;
        for (size_t i = 1; i < n; ++i) {
            if ((p[i] & 0xc0) != 0x80) return id_error::bad_utf8;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        // Shortest form only, no UTF-16 surrogates, nothing past U+10FFFF.
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return id_error::bad_utf8;
        if (forbidden_code_point(cp)) return id_error::forbidden;
        p += n;
    }
    return id_error::none;
}

bool valid_node_id(std::string_view id) {
    if (id.empty() || id.size() > max_node_id_bytes) return false;
    for (char c : id) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

}  // namespace imgate::ids
