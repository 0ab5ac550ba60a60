#pragma once
// The imgate binary run by an integration test (client_cli_test, transports_test): in the
// background, its output in files of the test's temp dir. Header-only; test code only.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "process.hpp"

namespace imgate::test {

// One run of the imgate binary in the background: stdout and stderr to files, killed and reaped
// by the destructor (and by the kernel if the test dies).
class tool_process {
  public:
    tool_process(const temp_dir& dir, const std::string& name, std::vector<std::string> args)
        : out_(dir.file(name + ".out")), err_(dir.file(name + ".err")) {
        args.insert(args.begin(), binary_path("imgate"));
        pid_ = ::fork();
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            int o = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ::dup2(o, 1);
            ::dup2(e, 2);
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
    }
    ~tool_process() {
        if (!exited_) {
            ::kill(pid_, SIGKILL);
            int st;
            ::waitpid(pid_, &st, 0);
        }
    }
    std::string out() const { return read_file(out_); }
    std::string err() const { return read_file(err_); }
    // Exit code, or nullopt if still running after timeout.
    std::optional<int> wait(std::chrono::milliseconds timeout = 15000ms) {
        if (exited_) return code_;
        bool done = eventually(
            [&] {
                int st;
                if (::waitpid(pid_, &st, WNOHANG) != pid_) return false;
                exited_ = true;
                code_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
                return true;
            },
            timeout, 5ms);
        if (!done) return std::nullopt;
        return code_;
    }
    // Lines of stdout parsed as JSON.
    std::vector<nlohmann::json> json_lines() const {
        std::vector<nlohmann::json> v;
        std::istringstream in(out());
        std::string line;
        while (std::getline(in, line))
            if (!line.empty()) v.push_back(nlohmann::json::parse(line, nullptr, false));
        return v;
    }
    // Number of "connected to" lines on stderr: one per (re)connection.
    int connections() const {
        auto e = err();
        int n = 0;
        for (size_t p = 0; (p = e.find("connected to ", p)) != std::string::npos; ++p) ++n;
        return n;
    }
    bool connected() const { return err().find("connected to ") != std::string::npos; }
    // The gateway id of the last connection.
    std::string gateway() const {
        auto e = err();
        auto p = e.rfind("connected to ");
        if (p == std::string::npos) return "";
        p += 13;
        return e.substr(p, e.find(' ', p) - p);
    }

  private:
    std::string out_, err_;
    pid_t pid_ = -1;
    bool exited_ = false;
    int code_ = -1;
};

}  // namespace imgate::test
