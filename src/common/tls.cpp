#include "common/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <cstdio>
#include <ctime>

#include "common/fingerprint.hpp"

namespace imgate {

namespace {

// Mozilla's "intermediate" TLS 1.2 list: forward secrecy and AEAD only. TLS 1.3 suites are
// OpenSSL's defaults (all AEAD).
constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

tls_cert_info read_info(SSL_CTX* ctx) {
    tls_cert_info info;
    X509* cert = SSL_CTX_get0_certificate(ctx);
    if (!cert) return info;
    char buf[512];
    X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
    info.subject = buf;
    const ASN1_TIME* na = X509_get0_notAfter(cert);
    struct tm tm {};
    if (ASN1_TIME_to_tm(na, &tm) == 1) {
        char out[32];
        std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        info.not_after = out;
        int days = 0, secs = 0;
        if (ASN1_TIME_diff(&days, &secs, nullptr, na) == 1)
            info.seconds_left = int64_t(days) * 86400 + secs;
    }
    info.fingerprint = certificate_fingerprint(cert);
    return info;
}

}  // namespace

std::string certificate_fingerprint(X509* cert) {
    if (!cert) return "";
    unsigned char* der = nullptr;
    int len = i2d_X509(cert, &der);
    if (len <= 0) return "";
    auto fp = sha256_hex(std::string_view(reinterpret_cast<const char*>(der), size_t(len)));
    OPENSSL_free(der);
    return fp;
}

std::string peer_certificate_fingerprint(SSL* ssl) {
    X509* cert = ssl ? SSL_get1_peer_certificate(ssl) : nullptr;
    auto fp = certificate_fingerprint(cert);
    X509_free(cert);
    return fp;
}

std::string openssl_errors(const std::string& fallback) {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? fallback : out;
}

tls_settings parse_tls_settings(yaml_map m) {
    tls_settings s;
    if (m.has("cert_file") || m.has("key_file")) {
        s.cert_file = resolve_path(m.file(), m.str("cert_file"));
        s.key_file = resolve_path(m.file(), m.str("key_file"));
    }
    s.min_version = m.str("min_version", "1.2");
    if (s.min_version != "1.2" && s.min_version != "1.3")
        m.fail("min_version", "must be \"1.2\" or \"1.3\" (older versions are not offered)");
    s.handshake_timeout = m.duration("handshake_timeout", s.handshake_timeout);
    if (s.handshake_timeout.count() <= 0) m.fail("handshake_timeout", "must be positive");
    s.max_handshakes = static_cast<uint32_t>(m.integer("max_handshakes", 1000, 1, 1000000));
    m.finish();
    return s;
}

std::shared_ptr<ssl::context> make_server_tls_context(const tls_settings& s, tls_cert_info* info) {
    ERR_clear_error();
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    SSL_CTX* c = ctx->native_handle();
    SSL_CTX_set_min_proto_version(c, s.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
    // RELEASE_BUFFERS: an idle connection gives its record buffers (~34 KiB) back to the pool.
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_set_cipher_list(c, tls12_ciphers) != 1)
        throw config_error("tls: cipher list refused: " + openssl_errors());
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
    static const unsigned char sid_ctx[] = "imgate";
    SSL_CTX_set_session_id_context(c, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_sess_set_cache_size(c, 20000);
    SSL_CTX_set_timeout(c, 3600);
    if (s.cert_file.empty() || s.key_file.empty())
        throw config_error("tls: cert_file and key_file are both required");
    check_secret_file_mode(s.key_file);
    if (SSL_CTX_use_certificate_chain_file(c, s.cert_file.c_str()) != 1)
        throw config_error("cert_file " + s.cert_file + ": " +
                           openssl_errors("cannot load the certificate chain"));
    if (SSL_CTX_use_PrivateKey_file(c, s.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        auto why = openssl_errors("cannot load the private key");
        if (why.find("mismatch") != std::string::npos)
            throw config_error("key_file " + s.key_file + " does not match cert_file " +
                               s.cert_file + ": " + why);
        throw config_error("key_file " + s.key_file + ": " + why);
    }
    if (SSL_CTX_check_private_key(c) != 1)
        throw config_error("key_file " + s.key_file + " does not match cert_file " + s.cert_file +
                           ": " + openssl_errors("key mismatch"));
    auto i = read_info(c);
    if (i.seconds_left < 0)
        throw config_error("cert_file " + s.cert_file + ": certificate expired at " + i.not_after);
    if (info) *info = std::move(i);
    return ctx;
}

std::shared_ptr<ssl::context> make_client_tls_context(const std::string& ca_file, bool insecure) {
    ERR_clear_error();
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    SSL_CTX* c = ctx->native_handle();
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_options(
        c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    if (insecure) {
        SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
        return ctx;
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
    if (ca_file.empty()) {
        if (SSL_CTX_set_default_verify_paths(c) != 1)
            throw config_error("TLS: cannot load the system CA store: " + openssl_errors());
    } else if (SSL_CTX_load_verify_locations(c, ca_file.c_str(), nullptr) != 1) {
        throw config_error("--ca " + ca_file + ": " + openssl_errors("cannot load the CA file"));
    }
    return ctx;
}

bool set_client_tls_host(SSL* ssl, const std::string& host, bool verify) {
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(host, ec);
    // SNI carries names only, never an address (RFC 6066).
    if (ec && SSL_set_tlsext_host_name(ssl, host.c_str()) != 1) return false;
    if (!verify) return true;
    X509_VERIFY_PARAM* p = SSL_get0_param(ssl);
    if (!ec) return X509_VERIFY_PARAM_set1_ip_asc(p, host.c_str()) == 1;
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return X509_VERIFY_PARAM_set1_host(p, host.c_str(), host.size()) == 1;
}

tls_context_holder::tls_context_holder(const tls_settings& s) : settings_(s) {
    ctx_ = make_server_tls_context(s, &info_);  // in the body: info_ is constructed by now
}

std::shared_ptr<ssl::context> tls_context_holder::get() const {
    std::lock_guard lk(mu_);
    return ctx_;
}

tls_settings tls_context_holder::settings() const {
    std::lock_guard lk(mu_);
    return settings_;
}

tls_cert_info tls_context_holder::info() const {
    std::lock_guard lk(mu_);
    return info_;
}

bool tls_context_holder::reload(const tls_settings& s, std::string& error) {
    try {
        tls_cert_info info;
        auto ctx = make_server_tls_context(s, &info);
        std::lock_guard lk(mu_);
        ctx_ = std::move(ctx);
        settings_ = s;
        info_ = std::move(info);
        return true;
    } catch (const std::exception& e) {
        error = e.what();
        return false;
    }
}

}  // namespace imgate
