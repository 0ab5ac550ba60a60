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
    malformed,      // not three base64url parts / bad JSON
    bad_algorithm,  // alg missing, "none" or anything but HS256
    bad_signature,  // no configured secret matches
    expired,        // exp <= now
    not_yet_valid,  // nbf > now
    missing_claim,  // sub or exp missing / wrong type
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
verify_result verify(std::string_view token, const std::vector<std::string>& secrets, int64_t now_s,
                     int64_t leeway_s = 0);

std::string sign(const claims& c, const std::string& secret, int64_t iat_s);

std::string base64url_encode(std::string_view in);
std::optional<std::string> base64url_decode(std::string_view in);
std::string hmac_sha256(std::string_view key, std::string_view data);

int64_t now_seconds();

}  // namespace imgate::jwt
