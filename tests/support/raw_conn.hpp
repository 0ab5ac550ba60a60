#pragma once
// A raw loopback TCP connection for tests that need byte-level control (trickling requests,
// never reading, floods of hundreds of sockets without an io_context each).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.hpp"
#include "common/frame.hpp"
#include "common/protocol.hpp"
#include "process.hpp"

namespace imgate::test {

using namespace std::chrono_literals;

// A lone 12-byte frame header declaring a body of `len` bytes, whatever follows: how the abuse
// tests announce a body they never (or only partly) send.
inline std::string frame_header(uint32_t len, uint8_t version, uint8_t op, uint32_t corr = 0) {
    std::string h;
    byte_writer w(h);
    w.u32(len);
    w.u8(version);
    w.u8(op);
    w.u16(0);
    w.u32(corr);
    return h;
}

// A whole RPC HELLO (op 0x01) from gateway `id` with a fixed nonce: the first frame a stranger
// (or a peer) sends on the RPC port.
inline std::string rpc_hello_from(const std::string& id) {
    std::string body;
    byte_writer w(body);
    w.str16(id);
    w.str16(std::string(16, 'n'));
    std::string out;
    append_frame(out, rpc_protocol_version, 0x01, 0, body);
    return out;
}

// One plain TCP connection to a loopback address. Non-blocking after connect; every wait has a
// deadline. Owns its descriptor.
class raw_conn {
  public:
    raw_conn() = default;
    raw_conn(const raw_conn&) = delete;
    raw_conn& operator=(const raw_conn&) = delete;
    raw_conn(raw_conn&& o) noexcept : fd_(o.fd_), in_(std::move(o.in_)), closed_(o.closed_) {
        o.fd_ = -1;
    }
    ~raw_conn() { close(); }

    // Connects (blocking, loopback is immediate). rcvbuf > 0 shrinks the receive buffer first,
    // source binds a specific local address such as 127.0.0.2.
    // Creates the socket ahead of connect(), for tests that must not need a descriptor later
    // (e.g. while the process is out of them).
    bool open() {
        if (fd_ < 0) fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        return fd_ >= 0;
    }

    // Connects (blocking, loopback is immediate), on the socket from open() if there is one.
    bool connect(const std::string& hostport, int rcvbuf = 0, const std::string& source = "") {
        auto [host, port] = split_hostport(hostport);
        if (!open()) return false;
        if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        if (!source.empty()) {
            sockaddr_in src{};
            src.sin_family = AF_INET;
            ::inet_pton(AF_INET, source.c_str(), &src.sin_addr);
            if (::bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) return false;
        }
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            close();
            return false;
        }
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
        closed_ = false;
        return true;
    }

    // Writes all bytes within timeout; false if the peer is gone or the deadline passed.
    bool send(std::string_view bytes, std::chrono::milliseconds timeout = 2000ms) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!bytes.empty()) {
            ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n > 0) {
                bytes.remove_prefix(size_t(n));
                continue;
            }
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
            auto left = deadline - std::chrono::steady_clock::now();
            if (left <= 0ms) return false;
            pollfd p{fd_, POLLOUT, 0};
            ::poll(&p, 1, int(std::chrono::duration_cast<std::chrono::milliseconds>(left).count()));
        }
        return true;
    }

    // Reads whatever is available without waiting; notes a close (EOF or reset).
    void pump() {
        char buf[16384];
        for (;;) {
            ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n > 0) {
                in_.append(buf, size_t(n));
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                closed_ = true;
            return;
        }
    }

    // Waits until the peer closed the connection (EOF or reset), keeping what it sent.
    bool wait_closed(std::chrono::milliseconds timeout) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!closed_) {
            pump();
            if (closed_) break;
            auto left = deadline - std::chrono::steady_clock::now();
            if (left <= 0ms) return false;
            pollfd p{fd_, POLLIN, 0};
            ::poll(&p, 1, int(std::chrono::duration_cast<std::chrono::milliseconds>(left).count()));
        }
        return true;
    }

    // Non-blocking check: has the peer closed by now?
    bool is_closed() {
        if (!closed_) pump();
        return closed_;
    }

    // Decodes the client frames received so far (the gateway's answers).
    std::vector<frame> frames(uint8_t version = client_protocol_version) const {
        frame_decoder d(absolute_max_frame_body, version);
        d.feed(in_);
        std::vector<frame> out;
        while (auto f = d.next()) out.push_back(std::move(*f));
        return out;
    }
    // The status of the first ERROR frame received, if any.
    std::optional<proto::code> error_code() const {
        for (auto& f : frames())
            if (auto e = proto::decode<proto::error_msg>(f)) return e->status;
        return std::nullopt;
    }

    const std::string& received() const { return in_; }
    int fd() const { return fd_; }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

  private:
    int fd_ = -1;
    std::string in_;
    bool closed_ = true;
};

}  // namespace imgate::test
