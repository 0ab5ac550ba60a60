#include "client/tls_client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

#include "common/tls.hpp"

namespace imgate::client {

std::string tls_client::trust() const {
    if (insecure) return "nothing (--insecure: certificates are not verified)";
    if (ca_file.empty()) return "the system CA store";
    return "the CA file " + ca_file;
}

std::shared_ptr<const tls_client> make_tls_client(const std::string& ca_file, bool insecure) {
    auto t = std::make_shared<tls_client>();
    t->ca_file = ca_file;
    t->insecure = insecure;
    t->ctx = make_client_tls_context(ca_file, insecure);
    return t;
}

bool prepare_tls_host(SSL* ssl, const std::string& host, const tls_client& t, std::string* why) {
    if (set_client_tls_host(ssl, host, !t.insecure)) return true;
    if (why) *why = "TLS refuses the host name \"" + host + "\": " + openssl_errors();
    return false;
}

std::string describe_tls_failure(SSL* ssl, const std::string& host, const std::string& where,
                                 const tls_client& t, const boost::system::error_code& ec,
                                 bool* cert_refused) {
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (!t.insecure && v != X509_V_OK) {
        if (cert_refused) *cert_refused = true;
        if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            return "TLS certificate of " + where + " does not match the host " + host +
                   " (name mismatch; verified against " + t.trust() + ")";
        return "TLS certificate of " + where +
               " was not trusted: " + X509_verify_cert_error_string(v) + " (verified against " +
               t.trust() + ")";
    }
    std::string why = ec.message();
    if (ec == boost::asio::error::eof || ec == boost::asio::ssl::error::stream_truncated)
        why = "the server closed the connection (is it a TLS port?)";
    else if (ec.category() == boost::asio::error::get_ssl_category())
        why = ec.message() + " (is it a TLS port?)";
    return "TLS handshake with " + where + " failed: " + why;
}

}  // namespace imgate::client
