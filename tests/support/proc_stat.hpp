#pragma once
// A process's CPU time from /proc/PID/stat. Header-only and free of the rest of tests/support, so
// the bench programs (bench/*.cpp, built outside CMake) include it too.
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace imgate::test {

// utime and stime in clock ticks.
struct cpu_ticks {
    unsigned long long user = 0;
    unsigned long long system = 0;
};

// {0, 0} when the process is gone.
inline cpu_ticks process_cpu_ticks(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(in)), {});
    // The command name (field 2) may hold spaces and parentheses: count fields after its ')'.
    auto close = s.rfind(')');
    if (close == std::string::npos) return {};
    std::istringstream rest(s.substr(close + 2));
    std::string f;
    cpu_ticks t;
    for (int i = 3; i <= 15 && rest >> f; ++i) {
        if (i == 14) t.user = std::stoull(f);
        if (i == 15) t.system = std::stoull(f);
    }
    return t;
}

inline double ticks_seconds(unsigned long long ticks) {
    return double(ticks) / double(::sysconf(_SC_CLK_TCK));
}

}  // namespace imgate::test
