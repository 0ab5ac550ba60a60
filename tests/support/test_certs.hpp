#pragma once
// Certificates for TLS tests, made at test time by config/local/dev-certs.sh (the script `make
// run` uses): no private key is ever committed. Each set has its own CA, so a client trusting one
// set's CA must refuse another set's server certificate.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

namespace imgate::test {

struct cert_set {
    std::string dir;
    std::string ca_crt, ca_key, server_crt, server_key;
};

// The set named `name` for this test process (made once; a fresh directory per process).
inline const cert_set& test_certs(const std::string& name = "main") {
    static std::mutex mu;
    static std::map<std::string, cert_set> sets;
    std::lock_guard lk(mu);
    if (auto it = sets.find(name); it != sets.end()) return it->second;
    char tmpl[] = "/tmp/imgate-certs-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    cert_set s;
    s.dir = std::string(tmpl) + "/" + name;
#ifdef IMGATE_SOURCE_DIR
    std::string script = std::string(IMGATE_SOURCE_DIR) + "/config/local/dev-certs.sh";
#else
    std::string script = "config/local/dev-certs.sh";
#endif
    std::string cmd = script + " '" + s.dir + "' >/dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("dev-certs.sh failed: " + cmd);
    s.ca_crt = s.dir + "/ca.crt";
    s.ca_key = s.dir + "/ca.key";
    s.server_crt = s.dir + "/server.crt";
    s.server_key = s.dir + "/server.key";
    return sets.emplace(name, s).first->second;
}

}  // namespace imgate::test
