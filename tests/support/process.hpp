#pragma once
// Test support for integration tests: spawn a real daemon, wait for its --ready-file, signal it,
// collect its exit status and log, and always reap it. Header-only; test code only.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc_stat.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace imgate::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline std::string binary_path(const std::string& name) {
#ifdef IMGATE_BINARY_DIR
    return std::string(IMGATE_BINARY_DIR) + "/src/" + name;
#else
    return "./" + name;
#endif
}

// In a forked child, before exec: stdout and stderr to `path` (created; truncated, plus
// `extra_flags` such as O_APPEND), stdin from /dev/null. Async-signal-safe calls only.
inline void child_output_to(const char* path, int extra_flags = 0) {
    int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | extra_flags, 0644);
    if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
}

inline std::string source_path(const std::string& rel) {
#ifdef IMGATE_SOURCE_DIR
    return std::string(IMGATE_SOURCE_DIR) + "/" + rel;
#else
    return rel;
#endif
}

// Whether this build runs under a sanitizer. The daemons the tests start come from the same
// build, so it also says whether their RSS means anything: ASan keeps freed memory in its
// quarantine (256 MiB by default) and adds shadow memory and redzones, TSan its shadow. Memory
// bounds read from RSS are then asserted by the release suite only; everything else the test
// checks (refusals, closes, metrics) is asserted under the sanitizers too.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool rss_is_meaningful = false;
#else
inline constexpr bool rss_is_meaningful = true;
#endif

// Polls pred every `step` until it is true or `timeout` passes. Used instead of fixed sleeps:
// the wait ends as soon as the awaited state is observable.
template <class Pred>
bool eventually(Pred&& pred, std::chrono::milliseconds timeout = 5000ms,
                std::chrono::milliseconds step = 10ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        if (pred()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(step);
    }
}

// A fresh directory under the system temp dir, removed on destruction.
class temp_dir {
  public:
    temp_dir() {
        std::random_device rd;
        path_ = fs::temp_directory_path() /
                ("imgate-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
        fs::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        if (!std::getenv("IMGATE_KEEP_TEST_DIRS")) fs::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const fs::path& path() const { return path_; }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

  private:
    fs::path path_;
};

inline void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path);
}

// A secret file as an operator must leave it: 0600, owned by the test's user (the daemons refuse
// secrets others can read or write; git keeps config/local's at 0644).
inline void write_secret_file(const std::string& path, const std::string& text) {
    write_file(path, text);
    std::filesystem::permissions(
        path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A port that was free a moment ago (bound once, then closed). Prefer letting the daemon bind port
// 0 and reading its ready file; use this only where an address must be known before start. The
// kernel may hand the same ephemeral port out again right after it was closed, so a port already
// returned by this process is never returned twice (a fleet needs distinct ports).
inline uint16_t free_port() {
    static std::mutex mu;
    static std::set<uint16_t> handed;
    // Ports below the kernel's ephemeral range: no outgoing connection of a test running in
    // parallel (the abuse tests open thousands) can take the port between this pick and the
    // daemon's bind, as happened with ports the kernel handed out (seen as "Address already in
    // use" at a gateway's start). Random within the range so parallel test processes rarely
    // pick alike, and checked by binding.
    uint16_t low = 32768;
    if (std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range"); in) in >> low;
    const uint16_t first = 10000;
    std::lock_guard lk(mu);
    static std::mt19937 rng(std::random_device{}());
    boost::asio::io_context io;
    for (int attempt = 0; attempt < 1000; ++attempt) {
        uint16_t p = 0;
        if (low > first + 1000) {
            p = static_cast<uint16_t>(std::uniform_int_distribution<int>(first, low - 1)(rng));
        }
        boost::system::error_code ec;
        boost::asio::ip::tcp::acceptor a(io);
        a.open(boost::asio::ip::tcp::v4(), ec);
        if (!ec)
            a.bind(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), p),
                   ec);
        if (ec) continue;  // taken: try another
        p = a.local_endpoint().port();
        if (handed.insert(p).second) return p;
    }
    throw std::runtime_error("free_port: no new port after 1000 attempts");
}

// Splits "host:port".
inline std::pair<std::string, uint16_t> split_hostport(const std::string& hp) {
    auto c = hp.rfind(':');
    return {hp.substr(0, c), static_cast<uint16_t>(std::stoi(hp.substr(c + 1)))};
}

struct http_result {
    int status = 0;  // 0: connection failed
    std::string body;
    std::map<std::string, std::string> headers;
    nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
};

// One synchronous HTTP/1.1 request with a deadline; never throws.
inline http_result http_request(const std::string& hostport, boost::beast::http::verb method,
                                const std::string& target, const std::string& body = "",
                                std::vector<std::pair<std::string, std::string>> headers = {},
                                std::chrono::milliseconds timeout = 3000ms) {
    namespace http = boost::beast::http;
    http_result r;
    try {
        auto [host, port] = split_hostport(hostport);
        boost::asio::io_context io;
        boost::beast::tcp_stream s(io);
        s.expires_after(timeout);
        s.connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address(host), port));
        http::request<http::string_body> req{method, target, 11};
        req.set(http::field::host, host);
        for (auto& [k, v] : headers) req.set(k, v);
        if (!body.empty()) {
            req.body() = body;
            req.set(http::field::content_type, "application/json");
        }
        req.prepare_payload();
        http::write(s, req);
        boost::beast::flat_buffer buf;
        http::response<http::string_body> res;
        http::read(s, buf, res);
        r.status = res.result_int();
        r.body = res.body();
        for (auto& f : res) r.headers[std::string(f.name_string())] = std::string(f.value());
    } catch (const std::exception&) {
        r.status = 0;
    }
    return r;
}

inline http_result http_get(const std::string& hostport, const std::string& target,
                            std::chrono::milliseconds timeout = 3000ms) {
    return http_request(hostport, boost::beast::http::verb::get, target, "", {}, timeout);
}

// CPU seconds (user+system) a process has consumed so far, from /proc/PID/stat; 0 if it is gone.
inline double process_cpu_seconds(pid_t pid) {
    auto t = process_cpu_ticks(pid);
    return ticks_seconds(t.user + t.system);
}

// A daemon child process. stdout+stderr go to <dir>/<name>.log. The child gets SIGKILL if the
// test process dies (PR_SET_PDEATHSIG), and the destructor kills and reaps it, so no test leaves
// orphans behind even when an assertion fails.
class daemon_process {
  public:
    daemon_process(std::string name, std::string binary, std::vector<std::string> args,
                   const temp_dir& dir)
        : name_(std::move(name)),
          log_path_(dir.file(name_ + ".log")),
          ready_path_(dir.file(name_ + ".ready.json")) {
        std::error_code ec;
        fs::remove(ready_path_, ec);
        args.push_back("--ready-file");
        args.push_back(ready_path_);
        start(binary, args);
    }
    ~daemon_process() {
        if (running()) {
            ::kill(pid_, SIGKILL);
            reap_blocking();
        }
    }
    daemon_process(const daemon_process&) = delete;
    daemon_process& operator=(const daemon_process&) = delete;

    pid_t pid() const { return pid_; }
    const std::string& name() const { return name_; }

    // Waits until the daemon wrote its ready file (or exited, or timeout). True when ready.
    bool wait_ready(std::chrono::milliseconds timeout = 10000ms) {
        bool ok = eventually(
            [&] {
                if (fs::exists(ready_path_)) return true;
                return !running();
            },
            timeout, 5ms);
        if (!ok || !fs::exists(ready_path_)) return false;
        ready_ = nlohmann::json::parse(read_file(ready_path_), nullptr, false);
        return ready_.is_object();
    }
    // The ready file's JSON (addresses actually bound, pid).
    const nlohmann::json& ready() const { return ready_; }
    std::string addr(const std::string& key) const { return ready_.value(key, std::string()); }

    void signal(int sig) const {
        if (pid_ > 0) ::kill(pid_, sig);
    }

    bool running() {
        if (exited_) return false;
        int status = 0;
        pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            exited_ = true;
            status_ = status;
            return false;
        }
        return r == 0;
    }

    // Waits for the process to exit; returns its raw wait status, or nullopt on timeout.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout = 10000ms) {
        if (!eventually([&] { return !running(); }, timeout, 5ms)) return std::nullopt;
        return status_;
    }
    // Exit code if it exited normally, -signal if killed, nullopt while running.
    std::optional<int> exit_code() {
        if (running() || !exited_) return std::nullopt;
        if (WIFEXITED(status_)) return WEXITSTATUS(status_);
        if (WIFSIGNALED(status_)) return -WTERMSIG(status_);
        return std::nullopt;
    }

    std::string log() const { return read_file(log_path_); }
    const std::string& log_path() const { return log_path_; }

    // CPU seconds (user+system) consumed so far, from /proc/PID/stat.
    double cpu_seconds() const { return process_cpu_seconds(pid_); }

  private:
    void start(const std::string& binary, const std::vector<std::string>& args) {
        std::vector<std::string> argv_s{binary};
        argv_s.insert(argv_s.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : argv_s) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            child_output_to(log_path_.c_str());
            ::unsetenv("NOTIFY_SOCKET");
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
    }
    void reap_blocking() {
        int status = 0;
        if (::waitpid(pid_, &status, 0) == pid_) {
            exited_ = true;
            status_ = status;
        }
    }

    std::string name_;
    std::string log_path_;
    std::string ready_path_;
    pid_t pid_ = -1;
    bool exited_ = false;
    int status_ = 0;
    nlohmann::json ready_;
};

// Runs a command to completion, capturing stdout+stderr; returns {exit code, output}.
inline std::pair<int, std::string> run_command(const std::string& cmd) {
    std::string out;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return {-1, ""};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = ::pclose(p);
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace imgate::test
