// bench/tls_memory.sh: heap held per idle GnuTLS server session after a handshake (socketpairs,
// mallinfo2).
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <malloc.h>
#include <sys/socket.h>
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
    char c1[256], k1[256];
    snprintf(c1, 256, "%s/server.crt", dir);
    snprintf(k1, 256, "%s/server.key", dir);
    gnutls_global_init();
    gnutls_certificate_credentials_t sx, cx;
    gnutls_certificate_allocate_credentials(&sx);
    gnutls_certificate_allocate_credentials(&cx);
    if (gnutls_certificate_set_x509_key_file(sx, c1, k1, GNUTLS_X509_FMT_PEM) < 0) {
        puts("cert");
        return 1;
    }
    std::vector<gnutls_session_t> keep;
    int N = atoi(argv[2]);
    size_t base = 0;
    for (int i = 0; i < N + 1; i++) {
        if (i == 1) base = used();
        gnutls_session_t s, c;
        gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK);
        gnutls_init(&c, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
        gnutls_set_default_priority(s);
        gnutls_set_default_priority(c);
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, sx);
        gnutls_credentials_set(c, GNUTLS_CRD_CERTIFICATE, cx);
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
        fcntl(sv[1], F_SETFL, O_NONBLOCK);
        gnutls_transport_set_int(s, sv[0]);
        gnutls_transport_set_int(c, sv[1]);
        int rs = -1, rc = -1;
        for (int k = 0; k < 30 && (rs < 0 || rc < 0); k++) {
            if (rc < 0) rc = gnutls_handshake(c);
            if (rs < 0) rs = gnutls_handshake(s);
        }
        char buf[100];
        gnutls_record_send(c, "hi", 2);
        int r1 = gnutls_record_recv(s, buf, 100);
        gnutls_record_send(s, "ok", 2);
        gnutls_record_recv(c, buf, 100);
        gnutls_record_recv(s, buf, 100);
        if (i == 0 && (rs < 0 || rc < 0 || r1 != 2)) {
            printf("gnutls: handshake failed\n");
            return 1;
        }
        gnutls_deinit(c);
        keep.push_back(s);
    }
    printf("gnutls %s: %zu bytes of heap per idle server session (%d sessions)\n",
           gnutls_check_version(nullptr), (used() - base) / N, N);
}
