#pragma once
// Fingerprints of secrets for status pages and audit logs: an operator can compare which secret
// two hosts use without the value ever leaving the process. Domain-separated so a fingerprint of
// one kind of secret says nothing about another kind with the same value, and the value itself
// is never what gets hashed alone (docs/admin-api.md, "Secret fingerprints").
#include <openssl/evp.h>

#include <string>
#include <string_view>

namespace imgate {

// Lower-case hex of SHA-256(data): the one digest of the code base (config hashes, fingerprints).
inline std::string sha256_hex(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(len * 2);
    for (unsigned i = 0; i < len; ++i) {
        out.push_back(hex[md[i] >> 4]);
        out.push_back(hex[md[i] & 15]);
    }
    return out;
}

// First 16 hex characters (64 bits) of SHA-256("imgate-secret-fingerprint-v1\0" kind "\0" value).
// `kind` is "jwt", "cluster" or "admin". Empty string if hashing fails (never expected).
inline std::string secret_fingerprint(std::string_view kind, std::string_view value) {
    static constexpr std::string_view prefix{"imgate-secret-fingerprint-v1\0", 29};
    std::string input;
    input.reserve(prefix.size() + kind.size() + 1 + value.size());
    input.append(prefix).append(kind).push_back('\0');
    input.append(value);
    return sha256_hex(input).substr(0, 16);
}

}  // namespace imgate
