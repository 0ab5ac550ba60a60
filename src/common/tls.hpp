#pragma once
// TLS contexts for the daemons' listeners and the client: one place that decides the protocol
// versions, ciphers, session resumption and buffer policy, loads certificate and key files with
// errors that name the file and OpenSSL's reason, and swaps a server context on reload without
// touching connections that already hold the old one (docs/operations.md, "Certificates").
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/config.hpp"

namespace imgate {

namespace ssl = boost::asio::ssl;

// The `tls:` block of gateway.yaml or dispatcher.yaml (docs/configuration.md).
struct tls_settings {
    std::string cert_file;  // resolved; PEM, leaf first then intermediates
    std::string key_file;   // resolved; PEM private key (mode-checked like every secret file)
    std::string min_version = "1.2";  // "1.2" or "1.3"
    std::chrono::milliseconds handshake_timeout{10000};
    uint32_t max_handshakes = 1000;  // TLS/WebSocket handshakes in flight per listener
    bool enabled() const { return !cert_file.empty(); }
    bool operator==(const tls_settings&) const = default;
};

// Reads a `tls:` map: cert_file, key_file (both required when the map is present), min_version,
// handshake_timeout, max_handshakes. Paths resolve against the config file. Absent map: disabled.
tls_settings parse_tls_settings(yaml_map m);

// What a loaded certificate is, for logs, /status and the reload line.
struct tls_cert_info {
    std::string subject;
    std::string not_after;     // "2027-12-01T00:00:00Z"
    std::string fingerprint;   // SHA-256 of the DER certificate, lower-case hex
    int64_t seconds_left = 0;  // until not_after (negative: expired)
};

// A server context with imgate's defaults: TLS 1.2+ (or 1.3 only), no compression, no
// renegotiation, server cipher preference, a session cache and tickets, ECDHE groups, and
// SSL_MODE_RELEASE_BUFFERS so an idle connection holds no record buffers. Loads the chain and
// key and checks they match. Throws config_error("cert_file <path>: <reason>") on any problem.
std::shared_ptr<ssl::context> make_server_tls_context(const tls_settings& s, tls_cert_info* info);

// A client context: verifies the server against ca_file (or the system store when empty) unless
// insecure. Throws config_error when the CA file cannot be read.
std::shared_ptr<ssl::context> make_client_tls_context(const std::string& ca_file, bool insecure);

// Sets SNI and the name (or IP address) the server certificate must carry, on a client SSL.
// False when OpenSSL refuses the name.
bool set_client_tls_host(SSL* ssl, const std::string& host, bool verify);

// SHA-256 of a certificate's DER encoding, lower-case hex (what `openssl x509 -fingerprint
// -sha256` shows, without colons); of the certificate the peer of ssl presented when given an
// SSL. Empty when there is none.
std::string certificate_fingerprint(X509* cert);
std::string peer_certificate_fingerprint(SSL* ssl);

// OpenSSL's queued errors as one line (and clears the queue); `fallback` when there are none.
std::string openssl_errors(const std::string& fallback = "unknown TLS error");

// The server context a listener hands to new handshakes. reload() builds a fresh context and
// installs it only if it loads: connections keep the context they started with, a bad file on
// reload leaves the running one in place.
class tls_context_holder {
  public:
    // Throws config_error (start-up).
    explicit tls_context_holder(const tls_settings& s);

    std::shared_ptr<ssl::context> get() const;
    tls_settings settings() const;
    tls_cert_info info() const;
    // Reload from s (possibly the same files, rotated on disk). On failure: false, error set, the
    // old context stays.
    bool reload(const tls_settings& s, std::string& error);

  private:
    mutable std::mutex mu_;
    std::shared_ptr<ssl::context> ctx_;
    tls_settings settings_;
    tls_cert_info info_;
};

}  // namespace imgate
