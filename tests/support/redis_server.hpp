#pragma once
// Test support: a real redis-server (Debian's redis-server package) on a free loopback port and
// optionally a unix socket, in a temp dir, no persistence. Tests stop, kill, SIGSTOP and restart
// it to exercise the gateway's Redis mode. Header-only; test code only.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "process.hpp"

namespace imgate::test {

// Whether redis-server (and redis-cli) can be run here.
inline bool redis_available() {
    static const bool ok = run_command("redis-server --version").first == 0 &&
                           run_command("redis-cli --version").first == 0;
    return ok;
}

// Skips the current test when there is no redis-server to start.
#define IMGATE_REQUIRE_REDIS()                                                                \
    do {                                                                                      \
        if (!::imgate::test::redis_available())                                               \
            GTEST_SKIP() << "redis-server/redis-cli not installed (apt install redis-server " \
                            "redis-tools); this test needs a real Redis";                     \
    } while (0)

// Owns one redis-server child process, its port and its temp dir (data dir, log, socket). The
// child dies with the test process (PR_SET_PDEATHSIG); the destructor kills and reaps it.
class redis_server {
  public:
    struct options {
        bool unix_socket = false;  // also listen on <dir>/redis.sock (mode 700)
        std::string password;      // --requirepass when non-empty
    };

    redis_server() : redis_server(options{}) {}
    explicit redis_server(options o) : opts_(std::move(o)), port_(free_port()) {
        if (!start()) throw std::runtime_error("redis-server did not start; log:\n" + log());
    }
    ~redis_server() { kill(); }
    redis_server(const redis_server&) = delete;
    redis_server& operator=(const redis_server&) = delete;

    uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    // The socket path ("" without options::unix_socket).
    std::string unix_path() const { return opts_.unix_socket ? dir_.file("redis.sock") : ""; }
    const std::string& password() const { return opts_.password; }
    pid_t pid() const { return pid_; }
    bool running() {
        if (pid_ <= 0) return false;
        int status = 0;
        pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) pid_ = -1;
        return r == 0;
    }
    // The server's output over every start.
    std::string log() const {
        std::string all;
        for (int i = 1; i <= starts_; ++i) all += read_file(log_path(i));
        return all;
    }

    // Starts the server (again, on the same port and dir) and waits until it answers PING.
    // False if it exited or did not answer within `timeout`.
    bool start(std::chrono::milliseconds timeout = 10000ms) {
        if (running()) return true;
        std::vector<std::string> args{"redis-server",
                                      "--port",
                                      std::to_string(port_),
                                      "--bind",
                                      "127.0.0.1",
                                      "--save",
                                      "",
                                      "--appendonly",
                                      "no",
                                      "--dir",
                                      dir_.path().string()};
        if (opts_.unix_socket) {
            args.insert(args.end(), {"--unixsocket", unix_path(), "--unixsocketperm", "700"});
        }
        if (!opts_.password.empty()) args.insert(args.end(), {"--requirepass", opts_.password});
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        std::string log_file = log_path(++starts_);
        pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            child_output_to(log_file.c_str());
            ::execvp(argv[0], argv.data());
            ::_exit(127);
        }
        return eventually([&] { return !running() || answers_ping(); }, timeout, 10ms) && running();
    }

    // SIGTERM, then waits for the exit.
    void stop() { end(SIGTERM); }
    // SIGKILL, then waits for the exit (no shutdown work at all).
    void kill() { end(SIGKILL); }

    // stdout of `redis-cli -p PORT [auth] args...` with one trailing newline removed.
    template <class... Args>
    std::string cli(const Args&... args) const {
        std::string cmd = "redis-cli -p " + std::to_string(port_);
        if (!opts_.password.empty()) cmd += " --no-auth-warning -a " + quote(opts_.password);
        ((cmd += " " + quote(std::string(args))), ...);
        auto out = run_command(cmd).second;
        if (!out.empty() && out.back() == '\n') out.pop_back();
        return out;
    }

  private:
    std::string log_path(int start) const {
        return dir_.file("redis-" + std::to_string(start) + ".log");
    }

    static std::string quote(const std::string& s) {
        std::string q = "'";
        for (char c : s) {
            if (c == '\'')
                q += "'\\''";
            else
                q += c;
        }
        return q + "'";
    }

    // Whether a client connecting now gets any answer to PING (NOAUTH counts: it is Redis).
    bool answers_ping() const {
        timeval tv{0, 200000};
        redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
        if (!c) return false;
        bool ok = false;
        if (!c->err && redisSetTimeout(c, tv) == REDIS_OK) {
            auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
            ok = r != nullptr;
            if (r) freeReplyObject(r);
        }
        redisFree(c);
        return ok;
    }

    void end(int sig) {
        if (pid_ <= 0) return;
        ::kill(pid_, sig);
        if (sig != SIGKILL) ::kill(pid_, SIGCONT);  // a SIGSTOPped server must see the SIGTERM
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }

    options opts_;
    temp_dir dir_;
    uint16_t port_;
    pid_t pid_ = -1;
    int starts_ = 0;
};

}  // namespace imgate::test
