#pragma once
// Fingerprints of secrets for status pages and audit logs: an operator can compare which secret
// two hosts use without the value ever leaving the process. Domain-separated so a fingerprint of
// one kind of secret says nothing about another kind with the same value, and the value itself
// is never what gets hashed alone (docs/admin-api.md, "Secret fingerprints").
#include <openssl/evp.h>

#include <string>
#include <string_view>

namespace imgate {

// First 16 hex characters (64 bits) of SHA-256("imgate-secret-fingerprint-v1\0" kind "\0" value).
// `kind` is "jwt", "cluster" or "admin". Empty string if hashing fails (never expected).
inline std::string secret_fingerprint(std::string_view kind, std::string_view value) {
    static constexpr std::string_view prefix{"imgate-secret-fingerprint-v1\0", 29};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (!ctx) return {};
    const char nul = '\0';
    bool ok = EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
              EVP_DigestUpdate(ctx, prefix.data(), prefix.size()) == 1 &&
              EVP_DigestUpdate(ctx, kind.data(), kind.size()) == 1 &&
              EVP_DigestUpdate(ctx, &nul, 1) == 1 &&
              EVP_DigestUpdate(ctx, value.data(), value.size()) == 1 &&
              EVP_DigestFinal_ex(ctx, md, &len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok || len < 8) return {};
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(16);
    for (unsigned i = 0; i < 8; ++i) {
        out.push_back(hex[md[i] >> 4]);
        out.push_back(hex[md[i] & 15]);
    }
    return out;
}

}  // namespace imgate
