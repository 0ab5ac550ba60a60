#pragma once
// The client side of TLS (gateway connections over tls and wss, an https dispatcher): one
// verifying context per run, shared by every connection, together with what it trusts, so a
// refused certificate is reported as one line naming the host and the CA file.
#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>
#include <memory>
#include <string>

namespace imgate::client {

// Owns the shared client context and remembers what it was built from (for error lines).
struct tls_client {
    std::shared_ptr<boost::asio::ssl::context> ctx;
    std::string ca_file;  // empty: the system CA store
    bool insecure = false;
    // "the CA file F", "the system CA store" or "nothing (--insecure)".
    std::string trust() const;
};

// Throws config_error when the CA file (or the system store) cannot be loaded.
std::shared_ptr<const tls_client> make_tls_client(const std::string& ca_file, bool insecure);

// Prepares a client SSL for `host` (SNI for a name; the certificate must match the name or IP
// address unless insecure). False with why set when OpenSSL refuses the name.
bool prepare_tls_host(SSL* ssl, const std::string& host, const tls_client& t, std::string* why);

// One line for a failed TLS handshake with `where` (host:port) reached as `host`. Certificate
// refusals say so ("was not trusted" / "name mismatch") and name the CA; cert_refused is then set.
std::string describe_tls_failure(SSL* ssl, const std::string& host, const std::string& where,
                                 const tls_client& t, const boost::system::error_code& ec,
                                 bool* cert_refused = nullptr);

}  // namespace imgate::client
