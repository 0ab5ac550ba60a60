// Fuzz target: query-string parsing (imgate::parse_query / percent_decode, used by every HTTP
// listener including the dispatcher's GET /get-tcp-ip).
//
// Input layout: [max_params byte][query...]
// Invariants: success never yields more than max_params pairs or an empty key; failure always
// explains itself; a decoded string is never longer than its input; percent-encoding the parsed
// pairs and parsing again gives the same map.
#include <map>

#include "common/http_server.hpp"
#include "fuzz_support.hpp"

using namespace imgate;

namespace {

std::string encode(const std::string& s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::byte_source in(data, size);
    size_t max_params = in.u8() % 40 + 1;
    std::string q(in.rest());

    if (auto d = percent_decode(q)) FUZZ_CHECK(d->size() <= q.size());

    std::string err;
    auto r = parse_query(q, &err, max_params);
    if (!r) {
        FUZZ_CHECK(!err.empty());
        return 0;
    }
    FUZZ_CHECK(r->size() <= max_params);
    std::string again;
    for (auto& [k, v] : *r) {
        FUZZ_CHECK(!k.empty());
        if (!again.empty()) again += '&';
        again += encode(k) + "=" + encode(v);
    }
    auto r2 = parse_query(again, &err, max_params);
    FUZZ_CHECK(r2.has_value());
    FUZZ_CHECK(*r2 == *r);
    return 0;
}
