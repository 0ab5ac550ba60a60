#include "common/jwt.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "common/ids.hpp"

namespace imgate::jwt {

namespace {

using json = nlohmann::json;

// Parses one JSON part of a token. nlohmann keeps the last of repeated member names, and other
// JWT libraries may keep the first, so {"alg":"none","alg":"HS256"} would mean different things
// to different readers: a repeated name in any object refuses the token (RFC 7515 §5.2 allows
// that). The parser callback sees every key before it is stored.
json parse_part(const std::string& text, bool& duplicate) {
    std::vector<std::set<std::string>> open;  // member names of each enclosing object
    auto cb = [&](int, json::parse_event_t ev, json& parsed) {
        if (ev == json::parse_event_t::object_start) {
            open.emplace_back();
        } else if (ev == json::parse_event_t::object_end) {
            if (!open.empty()) open.pop_back();
        } else if (ev == json::parse_event_t::key && !open.empty()) {
            if (!open.back().insert(parsed.get<std::string>()).second) duplicate = true;
        }
        return true;
    };
    return json::parse(text, cb, false);
}

// exp, nbf and iat (NumericDate, RFC 7519 §2: seconds, possibly fractional) within ±2^62, so the
// leeway arithmetic cannot overflow (casting 1e300 or adding leeway to INT64_MAX is undefined
// behaviour, found by the jwt_verify fuzzer); far beyond year 10^11. Fractions are rounded
// towards the stricter side by the caller's choice of `round_up`.
bool numeric_date(const json& v, bool round_up, int64_t& out) {
    constexpr int64_t limit = int64_t{1} << 62;
    if (v.is_number_float()) {
        double d = v.get<double>();
        if (!(d > -static_cast<double>(limit) && d < static_cast<double>(limit))) return false;
        out = static_cast<int64_t>(round_up ? std::ceil(d) : std::floor(d));
        return true;
    }
    if (v.is_number_unsigned()) {
        if (v.get<uint64_t>() >= static_cast<uint64_t>(limit)) return false;
        out = static_cast<int64_t>(v.get<uint64_t>());
        return true;
    }
    if (v.is_number_integer()) {
        int64_t i = v.get<int64_t>();
        if (i <= -limit || i >= limit) return false;
        out = i;
        return true;
    }
    return false;  // a string, bool, null, array or object
}

}  // namespace

const char* to_string(verify_error e) {
    switch (e) {
        case verify_error::none:
            return "ok";
        case verify_error::malformed:
            return "malformed token";
        case verify_error::duplicate_member:
            return "duplicate member name in token header or claims";
        case verify_error::bad_algorithm:
            return "unsupported algorithm (only HS256)";
        case verify_error::unsupported_crit:
            return "unsupported critical header parameter (crit)";
        case verify_error::bad_signature:
            return "bad signature";
        case verify_error::expired:
            return "token expired";
        case verify_error::not_yet_valid:
            return "token not yet valid";
        case verify_error::missing_claim:
            return "missing or invalid sub/exp claim";
        case verify_error::bad_time_claim:
            return "nbf or iat is not a number of seconds in range";
        case verify_error::bad_identity:
            return "user or device id is empty, too long, not UTF-8 or has a control, "
                   "whitespace or invisible formatting character";
    }
    return "unknown";
}

std::string base64url_encode(std::string_view in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()),
                            static_cast<int>(in.size()));
    out.resize(n);
    while (!out.empty() && out.back() == '=') out.pop_back();
    for (char& c : out) {
        if (c == '+')
            c = '-';
        else if (c == '/')
            c = '_';
    }
    return out;
}

std::optional<std::string> base64url_decode(std::string_view in) {
    if (in.size() % 4 == 1) return std::nullopt;
    std::string b64;
    b64.reserve(in.size() + 3);
    for (char c : in) {
        if (c == '-')
            b64 += '+';
        else if (c == '_')
            b64 += '/';
        else if (std::isalnum(static_cast<unsigned char>(c)))
            b64 += c;
        else
            return std::nullopt;  // padding, whitespace and '+/' are not base64url
    }
    size_t pad = (4 - b64.size() % 4) % 4;
    if (pad) {
        // Canonical encodings only: the bits of the last character that carry no data must be
        // zero, or one signature would have several spellings (token malleability; found by the
        // jwt_verify fuzzer flipping 'A' to 'B' in a signature's last character).
        char last = b64.back();
        int v = last >= 'A' && last <= 'Z'   ? last - 'A'
                : last >= 'a' && last <= 'z' ? last - 'a' + 26
                : last >= '0' && last <= '9' ? last - '0' + 52
                : last == '+'                ? 62
                                             : 63;
        int unused_bits = pad == 2 ? 4 : 2;
        if (v & ((1 << unused_bits) - 1)) return std::nullopt;
    }
    b64.append(pad, '=');
    std::string out(b64.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(b64.data()),
                            static_cast<int>(b64.size()));
    if (n < 0) return std::nullopt;
    out.resize(static_cast<size_t>(n) - pad);
    return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
    return std::string(reinterpret_cast<char*>(md), len);
}

int64_t now_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

verify_result verify(std::string_view token, const std::vector<std::string>& secrets, int64_t now_s,
                     int64_t leeway_s) {
    verify_result r;
    if (token.size() > 8192) {
        r.error = verify_error::malformed;
        return r;
    }
    auto d1 = token.find('.');
    auto d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
    if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) {
        r.error = verify_error::malformed;
        return r;
    }
    auto header_raw = base64url_decode(token.substr(0, d1));
    auto payload_raw = base64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
    auto sig = base64url_decode(token.substr(d2 + 1));
    if (!header_raw || !payload_raw || !sig) {
        r.error = verify_error::malformed;
        return r;
    }
    bool duplicate = false;
    auto header = parse_part(*header_raw, duplicate);
    auto payload = parse_part(*payload_raw, duplicate);
    if (header.is_discarded() || !header.is_object() || payload.is_discarded() ||
        !payload.is_object()) {
        r.error = verify_error::malformed;
        return r;
    }
    if (duplicate) {
        r.error = verify_error::duplicate_member;
        return r;
    }
    auto alg = header.find("alg");
    if (alg == header.end() || !alg->is_string() || alg->get<std::string>() != "HS256") {
        r.error = verify_error::bad_algorithm;
        return r;
    }
    // A "crit" names extensions the token's meaning depends on; we implement none, so whatever
    // it lists (even an empty list, itself invalid) is refused rather than silently ignored.
    if (header.contains("crit")) {
        r.error = verify_error::unsupported_crit;
        return r;
    }
    // Signature before claims: an unsigned token learns nothing about which claims were wrong.
    std::string_view signing_input = token.substr(0, d2);
    bool matched = false;
    for (const auto& secret : secrets) {
        auto mac = hmac_sha256(secret, signing_input);
        if (mac.size() == sig->size() && CRYPTO_memcmp(mac.data(), sig->data(), mac.size()) == 0)
            matched = true;
    }
    if (!matched) {
        r.error = verify_error::bad_signature;
        return r;
    }
    auto sub = payload.find("sub");
    auto exp = payload.find("exp");
    int64_t exp_s = 0;
    if (sub == payload.end() || !sub->is_string() || sub->get<std::string>().empty() ||
        exp == payload.end() || !numeric_date(*exp, false, exp_s)) {
        r.error = verify_error::missing_claim;
        return r;
    }
    r.c.sub = sub->get<std::string>();
    r.c.exp = exp_s;
    if (auto dev = payload.find("dev"); dev != payload.end()) {
        if (!dev->is_string()) {
            r.error = verify_error::missing_claim;
            return r;
        }
        r.c.dev = dev->get<std::string>();
    }
    // The one id rule, here as well as in the gateway: whoever uses a verified token gets ids
    // that cannot impersonate another (bidi overrides, zero-width characters).
    if (!ids::valid(r.c.sub) || (!r.c.dev.empty() && !ids::valid(r.c.dev))) {
        r.error = verify_error::bad_identity;
        return r;
    }
    // Present but not a usable number: refused, not skipped (a skipped nbf would make a token
    // valid early that its issuer meant to be valid later).
    int64_t nbf_s = 0;
    int64_t iat_s = 0;
    auto nbf = payload.find("nbf");
    auto iat = payload.find("iat");
    if ((nbf != payload.end() && !numeric_date(*nbf, true, nbf_s)) ||
        (iat != payload.end() && !numeric_date(*iat, false, iat_s))) {
        r.error = verify_error::bad_time_claim;
        return r;
    }
    if (r.c.exp + leeway_s <= now_s) {
        r.error = verify_error::expired;
        return r;
    }
    if (nbf != payload.end() && nbf_s > now_s + leeway_s) {
        r.error = verify_error::not_yet_valid;
        return r;
    }
    return r;
}

std::string sign(const claims& c, const std::string& secret, int64_t iat_s) {
    nlohmann::json header = {{"alg", "HS256"}, {"typ", "JWT"}};
    nlohmann::json payload = {{"sub", c.sub}, {"exp", c.exp}, {"iat", iat_s}};
    if (!c.dev.empty()) payload["dev"] = c.dev;
    std::string input = base64url_encode(header.dump()) + "." + base64url_encode(payload.dump());
    return input + "." + base64url_encode(hmac_sha256(secret, input));
}

}  // namespace imgate::jwt
