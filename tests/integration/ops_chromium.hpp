#pragma once
// Headless Chromium for the dashboard tests: find it, run it with a fresh profile and a hard
// time limit, and return the DOM after the page's scripts ran. Test code only.
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>

#include "../support/process.hpp"

namespace imgate::test {

inline std::string find_in_path(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::stringstream ss(path ? path : "/usr/bin:/bin");
    std::string dir;
    while (std::getline(ss, dir, ':')) {
        std::string p = (dir.empty() ? "." : dir) + "/" + name;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return "";
}

inline std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

struct chromium_result {
    int exit_code = -1;
    std::string dom;  // stdout: the serialized DOM after scripts ran
    std::string stderr_text;
};

// Runs `chromium --headless ... --dump-dom url` with a fresh profile in `dir`. `timeout` (the
// coreutils one) bounds the run and kills Chromium's whole process group if it hangs.
// virtual_time_ms lets the page's timers and fetches run without the test waiting in real time.
inline chromium_result run_chromium(const std::string& chromium, const temp_dir& dir,
                                    const std::string& url, int virtual_time_ms = 5000,
                                    const std::string& extra_args = "") {
    static int run = 0;
    std::string profile = dir.file("chromium-profile-" + std::to_string(++run));
    std::string out = dir.file("dom-" + std::to_string(run) + ".html");
    std::string err = dir.file("chromium-" + std::to_string(run) + ".log");
    std::string cmd = "timeout -k 5 60 " + shell_quote(chromium) +
                      " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
                      " --disable-background-networking --disable-component-update --disable-sync"
                      " --disable-dev-shm-usage --user-data-dir=" +
                      shell_quote(profile) +
                      " --virtual-time-budget=" + std::to_string(virtual_time_ms) + " " +
                      extra_args + " --dump-dom " + shell_quote(url) + " >" + shell_quote(out) +
                      " 2>" + shell_quote(err) + " </dev/null";
    int st = std::system(cmd.c_str());
    chromium_result r;
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.dom = read_file(out);
    r.stderr_text = read_file(err);
    return r;
}

// Why Chromium cannot be used here, or nullopt when it renders a trivial page. Only this
// decides a skip: a page that fails to render afterwards is a test failure.
inline std::optional<std::string> chromium_unusable(std::string& chromium, const temp_dir& dir) {
    chromium = find_in_path("chromium");
    if (chromium.empty()) chromium = find_in_path("chromium-browser");
    if (chromium.empty()) return "chromium is not installed (`make deps` installs it)";
    auto r = run_chromium(chromium, dir, "data:text/html,<p id=probe>chromium-probe-ok</p>", 100);
    if (r.dom.find("chromium-probe-ok") == std::string::npos) {
        std::string tail = r.stderr_text.size() > 800
                               ? r.stderr_text.substr(r.stderr_text.size() - 800)
                               : r.stderr_text;
        return "chromium cannot start here (exit " + std::to_string(r.exit_code) + "): " + tail;
    }
    return std::nullopt;
}

}  // namespace imgate::test
