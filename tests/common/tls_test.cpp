#include "common/tls.hpp"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "../support/test_certs.hpp"

namespace imgate {
namespace {

tls_settings settings_of(const test::cert_set& c) {
    tls_settings s;
    s.cert_file = c.server_crt;
    s.key_file = c.server_key;
    return s;
}

TEST(Tls, ServerContextLoadsTheChainAndDescribesIt) {
    tls_cert_info info;
    auto ctx = make_server_tls_context(settings_of(test::test_certs()), &info);
    ASSERT_TRUE(ctx);
    EXPECT_NE(info.subject.find("CN=localhost"), std::string::npos) << info.subject;
    EXPECT_EQ(info.fingerprint.size(), 64u);
    EXPECT_GT(info.seconds_left, 700 * 86400);
    SSL_CTX* c = ctx->native_handle();
    EXPECT_EQ(SSL_CTX_get_min_proto_version(c), TLS1_2_VERSION);
    EXPECT_TRUE(SSL_CTX_get_mode(c) & SSL_MODE_RELEASE_BUFFERS);
    EXPECT_TRUE(SSL_CTX_get_options(c) & SSL_OP_CIPHER_SERVER_PREFERENCE);
    EXPECT_TRUE(SSL_CTX_get_options(c) & SSL_OP_NO_RENEGOTIATION);
}

TEST(Tls, MinVersionThirteenRefusesTwelve) {
    auto s = settings_of(test::test_certs());
    s.min_version = "1.3";
    auto ctx = make_server_tls_context(s, nullptr);
    EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx->native_handle()), TLS1_3_VERSION);
}

TEST(Tls, ErrorsNameTheFileAndTheReason) {
    auto s = settings_of(test::test_certs());
    s.cert_file = "/nonexistent/cert.pem";
    try {
        make_server_tls_context(s, nullptr);
        FAIL() << "a missing certificate loaded";
    } catch (const config_error& e) {
        EXPECT_NE(std::string(e.what()).find("cert_file /nonexistent/cert.pem"), std::string::npos)
            << e.what();
    }
    // A key of another set does not match this certificate.
    s = settings_of(test::test_certs());
    s.key_file = test::test_certs("other").server_key;
    try {
        make_server_tls_context(s, nullptr);
        FAIL() << "a mismatched key loaded";
    } catch (const config_error& e) {
        EXPECT_NE(std::string(e.what()).find("does not match"), std::string::npos) << e.what();
    }
}

TEST(Tls, WorldReadableKeyIsRefused) {
    const auto& c = test::test_certs("modes");
    auto copy = c.dir + "/readable.key";
    std::filesystem::copy_file(c.server_key, copy,
                               std::filesystem::copy_options::overwrite_existing);
    ::chmod(copy.c_str(), 0644);
    auto s = settings_of(c);
    s.key_file = copy;
    EXPECT_THROW(make_server_tls_context(s, nullptr), config_error);
}

TEST(Tls, HolderKeepsTheOldContextWhenAReloadFails) {
    tls_context_holder h(settings_of(test::test_certs()));
    auto before = h.get();
    auto fp = h.info().fingerprint;
    auto bad = settings_of(test::test_certs());
    bad.cert_file = test::test_certs().dir + "/missing.crt";
    std::string error;
    EXPECT_FALSE(h.reload(bad, error));
    EXPECT_NE(error.find("missing.crt"), std::string::npos) << error;
    EXPECT_EQ(h.get(), before);
    EXPECT_EQ(h.info().fingerprint, fp);
    // A good reload installs a new context; the old one stays valid for whoever holds it.
    EXPECT_TRUE(h.reload(settings_of(test::test_certs("rotated")), error)) << error;
    EXPECT_NE(h.get(), before);
    EXPECT_NE(h.info().fingerprint, fp);
    EXPECT_NE(before->native_handle(), nullptr);
}

TEST(Tls, ClientContextRefusesAMissingCa) {
    EXPECT_THROW(make_client_tls_context("/nonexistent/ca.pem", false), config_error);
    EXPECT_NO_THROW(make_client_tls_context(test::test_certs().ca_crt, false));
    EXPECT_NO_THROW(make_client_tls_context("", true));
}

TEST(Tls, ParseSettingsResolvesPathsAndChecksValues) {
    auto node = YAML::Load("cert_file: a.crt\nkey_file: /abs/a.key\nhandshake_timeout: 3s\n");
    auto s = parse_tls_settings(yaml_map(node, "/etc/imgate/gateway.yaml", "tls"));
    EXPECT_EQ(s.cert_file, "/etc/imgate/a.crt");
    EXPECT_EQ(s.key_file, "/abs/a.key");
    EXPECT_EQ(s.handshake_timeout, std::chrono::seconds(3));
    EXPECT_TRUE(s.enabled());
    auto bad = YAML::Load("cert_file: a.crt\nkey_file: a.key\nmin_version: '1.1'\n");
    EXPECT_THROW(parse_tls_settings(yaml_map(bad, "g.yaml", "tls")), config_error);
    auto half = YAML::Load("cert_file: a.crt\n");
    EXPECT_THROW(parse_tls_settings(yaml_map(half, "g.yaml", "tls")), config_error);
}

}  // namespace
}  // namespace imgate
