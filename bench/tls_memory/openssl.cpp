// Heap an idle OpenSSL server connection holds after its handshake (bench/tls_memory.sh).
// N server/client pairs over non-blocking socketpairs complete a TLS 1.3 handshake and one
// message each way; the client side is freed; the server SSL objects are kept. Prints the
// OpenSSL allocations alive per connection, and the largest by size (counted through
// CRYPTO_set_mem_functions).
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace {
std::unordered_map<void*, size_t>* live;
bool counting = false;
void* counted_malloc(size_t n, const char*, int) {
    void* p = malloc(n);
    if (counting && p) (*live)[p] = n;
    return p;
}
void* counted_realloc(void* p, size_t n, const char*, int) {
    if (counting && p) live->erase(p);
    void* q = realloc(p, n);
    if (counting && q) (*live)[q] = n;
    return q;
}
void counted_free(void* p, const char*, int) {
    if (counting && p) live->erase(p);
    free(p);
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: openssl CERT_DIR CONNECTIONS\n");
        return 2;
    }
    live = new std::unordered_map<void*, size_t>();
    CRYPTO_set_mem_functions(counted_malloc, counted_realloc, counted_free);
    std::string dir = argv[1];
    int n = std::atoi(argv[2]);
    SSL_CTX* sc = SSL_CTX_new(TLS_server_method());
    SSL_CTX* cc = SSL_CTX_new(TLS_client_method());
    SSL_CTX_use_certificate_chain_file(sc, (dir + "/server.crt").c_str());
    SSL_CTX_use_PrivateKey_file(sc, (dir + "/server.key").c_str(), SSL_FILETYPE_PEM);
    SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);  // as the gateway's context
    std::vector<SSL*> keep;
    for (int i = 0; i <= n; ++i) {
        if (i == 1) {  // the first connection warmed up lazily initialised provider state
            counting = true;
        }
        SSL* s = SSL_new(sc);
        SSL* c = SSL_new(cc);
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
        fcntl(sv[1], F_SETFL, O_NONBLOCK);
        SSL_set_fd(s, sv[0]);
        SSL_set_fd(c, sv[1]);
        SSL_set_accept_state(s);
        SSL_set_connect_state(c);
        for (int k = 0; k < 20; ++k) {
            SSL_do_handshake(c);
            SSL_do_handshake(s);
        }
        char buf[64];
        SSL_write(c, "hi", 2);
        SSL_read(s, buf, sizeof buf);
        SSL_write(s, "ok", 2);
        SSL_read(c, buf, sizeof buf);
        SSL_read(s, buf, sizeof buf);  // drains: the gateway reads until the socket is empty
        SSL_free(c);
        keep.push_back(s);
    }
    counting = false;
    size_t total = 0;
    std::map<size_t, int> sizes;
    for (auto& [p, sz] : *live) {
        total += sz;
        ++sizes[sz];
    }
    // Only OpenSSL's own allocations: the heap as a whole also holds this program's map of them.
    std::printf("openssl %s: %zu bytes in %zu blocks per idle server connection (%d connections)\n",
                OpenSSL_version(OPENSSL_VERSION_STRING), total / n, live->size() / n, n);
    std::printf("largest blocks per connection:");
    int shown = 0;
    for (auto it = sizes.rbegin(); it != sizes.rend() && shown < 6; ++it, ++shown)
        std::printf(" %zu B x%d", it->first, it->second / n);
    std::printf("\n");
}
