// The systemd contract the units rely on (Type=notify, WatchdogSec=, ExecReload= → SIGHUP),
// checked against the real daemons without systemd: the test plays the service manager by
// binding the NOTIFY_SOCKET datagram socket and setting WATCHDOG_USEC/WATCHDOG_PID like
// systemd does, then reads what the daemon reports.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "../support/process.hpp"

namespace {

using namespace imgate::test;
using namespace std::chrono_literals;

// The service manager's end of NOTIFY_SOCKET.
class notify_socket {
  public:
    explicit notify_socket(std::string path) : path_(std::move(path)) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        path_.copy(a.sun_path, sizeof a.sun_path - 1);
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
            throw std::runtime_error("cannot bind " + path_);
    }
    ~notify_socket() {
        ::close(fd_);
        ::unlink(path_.c_str());
    }
    const std::string& path() const { return path_; }

    // Reads datagrams until one contains `needle` (returned) or the timeout passes (""). Every
    // datagram read is appended to log() for failure messages.
    std::string wait_for(const std::string& needle, std::chrono::milliseconds timeout = 10s) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return "";
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, int(left.count())) <= 0) continue;
            char buf[4096];
            ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) continue;
            std::string msg(buf, size_t(n));
            log_ += "[" + msg + "] ";
            if (msg.find(needle) != std::string::npos) return msg;
        }
    }
    const std::string& log() const { return log_; }

  private:
    std::string path_;
    int fd_ = -1;
    std::string log_;
};

// A daemon started the way systemd starts a Type=notify service with WatchdogSec=.
class notified_daemon {
  public:
    notified_daemon(const std::string& binary, std::vector<std::string> args,
                    const std::string& notify_path, const std::string& log_path,
                    uint64_t watchdog_usec) {
        args.insert(args.begin(), binary);
        pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            child_output_to(log_path.c_str());
            ::setenv("NOTIFY_SOCKET", notify_path.c_str(), 1);
            ::setenv("WATCHDOG_USEC", std::to_string(watchdog_usec).c_str(), 1);
            ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
    }
    ~notified_daemon() {
        if (pid_ > 0 && !exited_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    void signal(int s) { ::kill(pid_, s); }
    bool running() {
        if (exited_) return false;
        int st = 0;
        if (::waitpid(pid_, &st, WNOHANG) == pid_) {
            exited_ = true;
            status_ = st;
        }
        return !exited_;
    }
    // Exit code once exited within timeout, else -1000.
    int wait_exit(std::chrono::milliseconds timeout) {
        if (!eventually([&] { return !running(); }, timeout, 5ms)) return -1000;
        return WIFEXITED(status_) ? WEXITSTATUS(status_) : -WTERMSIG(status_);
    }

  private:
    pid_t pid_ = -1;
    bool exited_ = false;
    int status_ = 0;
};

struct daemon_case {
    std::string name;
    std::string binary;
    std::vector<std::string> args;  // config paths are relative to the test's temp dir
    std::string config;             // the file to break for the failed-reload step
};

void PrintTo(const daemon_case& c, std::ostream* os) {
    *os << c.name;
}

// One gateway and the dispatcher in front of it, every port 0.
void write_configs(const temp_dir& d) {
    write_secret_file(d.file("token.secret"), "ops-notify-test-token-secret\n");
    write_file(d.file("fleet.yaml"),
               "gateways:\n  - id: gwn\n    client: 127.0.0.1:0\n    admin: 127.0.0.1:0\n"
               "    rpc: 127.0.0.1:0\n");
    write_file(d.file("gateway.yaml"),
               "fleet: fleet.yaml\nworkers: 1\nauth:\n  secret_files: [token.secret]\n");
    write_file(d.file("dispatcher.yaml"),
               "fleet: fleet.yaml\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n");
}

class OpsNotify : public ::testing::TestWithParam<daemon_case> {};

TEST_P(OpsNotify, ReadyWatchdogReloadAndStop) {
    const auto& c = GetParam();
    temp_dir d;
    write_configs(d);
    notify_socket sock(d.file("notify.sock"));
    std::vector<std::string> args;
    for (auto& a : c.args) args.push_back(a.find(".yaml") != std::string::npos ? d.file(a) : a);
    // 400 ms: the daemon must ping every ~200 ms from its event loop.
    notified_daemon p(binary_path(c.binary), args, sock.path(), d.file("daemon.log"), 400000);

    ASSERT_NE(sock.wait_for("READY=1"), "") << sock.log() << read_file(d.file("daemon.log"));
    // Several pings in a row: the watchdog timer re-arms itself.
    for (int i = 0; i < 3; ++i)
        ASSERT_NE(sock.wait_for("WATCHDOG=1", 2s), "") << "ping " << i << ": " << sock.log();

    // systemctl reload → ExecReload's kill -HUP: RELOADING=1, then READY=1 again.
    p.signal(SIGHUP);
    std::string reloading = sock.wait_for("RELOADING=1");
    ASSERT_NE(reloading, "") << sock.log();
    EXPECT_NE(reloading.find("MONOTONIC_USEC="), std::string::npos)
        << "systemd needs MONOTONIC_USEC with RELOADING=1: " << reloading;
    ASSERT_NE(sock.wait_for("READY=1"), "") << sock.log();

    // A file broken behind the unit's back (ExecReload's check bypassed): the daemon reports
    // the failed reload, returns to READY and keeps serving.
    write_file(d.file(c.config), "this: is: not: valid: yaml:\n");
    p.signal(SIGHUP);
    ASSERT_NE(sock.wait_for("RELOADING=1"), "") << sock.log();
    std::string after = sock.wait_for("READY=1");
    ASSERT_NE(after, "") << sock.log();
    EXPECT_NE(after.find("STATUS=reload failed"), std::string::npos)
        << "`systemctl status` should say the reload failed: " << after;
    ASSERT_NE(sock.wait_for("WATCHDOG=1", 2s), "") << "no pings after a failed reload";
    EXPECT_TRUE(p.running());

    p.signal(SIGTERM);
    EXPECT_NE(sock.wait_for("STOPPING=1"), "") << sock.log();
    EXPECT_EQ(p.wait_exit(15s), 0) << read_file(d.file("daemon.log"));
}

INSTANTIATE_TEST_SUITE_P(Daemons, OpsNotify,
                         ::testing::Values(daemon_case{"dispatcher",
                                                       "imgate-dispatcher",
                                                       {"--config", "dispatcher.yaml"},
                                                       "dispatcher.yaml"},
                                           daemon_case{"gateway",
                                                       "imgate-gateway",
                                                       {"--config", "gateway.yaml", "--id", "gwn"},
                                                       "gateway.yaml"}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
