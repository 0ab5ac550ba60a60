#pragma once
// HS256 JSON Web Tokens: verification against a list of secrets (rotation) and minting.
// Crypto (HMAC-SHA256, base64, constant-time compare) is OpenSSL's; only the JWS layout is here.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imgate::jwt {

enum class verify_error {
    none,
    malformed,         // not three base64url parts / bad JSON
    duplicate_member,  // a member name repeated in the header or the claims (which one counts?)
    bad_algorithm,     // alg missing, "none" or anything but HS256
    unsupported_crit,  // header has "crit": we implement no extension (RFC 7515 §4.1.11)
    bad_signature,     // no configured secret matches
    expired,           // exp <= now
    not_yet_valid,     // nbf > now
    missing_claim,     // sub or exp missing / wrong type
    bad_time_claim,    // nbf or iat present but not a number of seconds in range
    bad_identity,      // sub or dev breaks the id rule (src/common/ids.hpp)
};

const char* to_string(verify_error e);

struct claims {
    std::string sub;
    std::string dev;  // empty when absent
    int64_t exp = 0;
};

struct verify_result {
    verify_error error = verify_error::none;
    claims c;
    explicit operator bool() const { return error == verify_error::none; }
};

// now_s: seconds since the epoch (injected so tests control expiry). leeway_s tolerates skew.
// Structure and header (base64url, JSON without duplicate member names, alg, crit) are checked
// first, then the signature, then the claims: a token that is not signed learns nothing about
// its claims. A verified token's sub (and dev, when not empty) follow the id rule with its hard
// bound (ids::max_bytes); a gateway may still refuse ids longer than its own max_id_length.
verify_result verify(std::string_view token, const std::vector<std::string>& secrets, int64_t now_s,
                     int64_t leeway_s = 0);

std::string sign(const claims& c, const std::string& secret, int64_t iat_s);

std::string base64url_encode(std::string_view in);
std::optional<std::string> base64url_decode(std::string_view in);
std::string hmac_sha256(std::string_view key, std::string_view data);

int64_t now_seconds();

}  // namespace imgate::jwt
