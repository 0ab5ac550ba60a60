// bench/tls_memory.sh: heap held per idle wolfSSL server connection after a handshake (socketpairs,
// mallinfo2).
#include <fcntl.h>
#include <malloc.h>
#include <sys/socket.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <cstdio>
#include <cstdlib>
#include <vector>
static size_t used() {
    auto m = mallinfo2();
    return m.uordblks + m.hblkhd;
}
int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s CERT_DIR CONNECTIONS\n", argv[0]);
        return 2;
    }
    const char* dir = argv[1];
    wolfSSL_Init();
    WOLFSSL_CTX* sc = wolfSSL_CTX_new(wolfSSLv23_server_method());
    WOLFSSL_CTX* cc = wolfSSL_CTX_new(wolfSSLv23_client_method());
    char p[256];
    snprintf(p, 256, "%s/server.crt", dir);
    if (wolfSSL_CTX_use_certificate_chain_file(sc, p) != SSL_SUCCESS) {
        puts("cert");
        return 1;
    }
    snprintf(p, 256, "%s/server.key", dir);
    if (wolfSSL_CTX_use_PrivateKey_file(sc, p, SSL_FILETYPE_PEM) != SSL_SUCCESS) {
        puts("key");
        return 1;
    }
    wolfSSL_CTX_set_verify(cc, SSL_VERIFY_NONE, nullptr);
    std::vector<WOLFSSL*> keep;
    int N = atoi(argv[2]);
    size_t base = 0;
    for (int i = 0; i < N + 1; i++) {
        if (i == 1) base = used();
        WOLFSSL* s = wolfSSL_new(sc);
        WOLFSSL* c = wolfSSL_new(cc);
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
        fcntl(sv[1], F_SETFL, O_NONBLOCK);
        wolfSSL_set_fd(s, sv[0]);
        wolfSSL_set_fd(c, sv[1]);
        for (int k = 0; k < 30; k++) {
            wolfSSL_connect(c);
            wolfSSL_accept(s);
        }
        char buf[100];
        wolfSSL_write(c, "hi", 2);
        int r1 = wolfSSL_read(s, buf, 100);
        wolfSSL_write(s, "ok", 2);
        wolfSSL_read(c, buf, 100);
        wolfSSL_read(s, buf, 100);
        if (i == 0 && r1 != 2) {
            printf("wolfssl: handshake failed\n");
            return 1;
        }
        wolfSSL_free(c);
        keep.push_back(s);
    }
    printf("wolfssl %s: %zu bytes of heap per idle server connection (%d connections)\n",
           LIBWOLFSSL_VERSION_STRING, (used() - base) / N, N);
}
