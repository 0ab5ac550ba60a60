// Memory of the announced directory (issue 12 item 3): bytes per entry, and whether a dropped
// peer's entries go back to the system. No sockets, one process, bounded by ENTRIES.
// Usage: directory_memory [entries]   (default 500000, at most 5000000)
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "gateway/directory.hpp"

using namespace imgate;

namespace {

size_t rss_kib() {
    std::ifstream in("/proc/self/statm");
    size_t size = 0, resident = 0;
    in >> size >> resident;
    return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE)) / 1024;
}

size_t heap_in_use() {
    return mallinfo2().uordblks;
}

// What a session's user id looks like: an e-mail address of 24-30 bytes (heap-allocated by
// std::string, beyond its 15-byte inline buffer).
std::string user_id(size_t i) {
    return "user" + std::to_string(i) + ".name@example.com";
}

}  // namespace

int main(int argc, char** argv) {
    size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 500000;
    if (n == 0 || n > 5000000) n = 500000;
    std::vector<gw::rpc::delta> frame;
    frame.reserve(gw::rpc::snapshot_chunk);

    gw::announced_directory d;
    d.set_limits({n, n});
    d.apply_presence("gw3", true, {{true, "stays@example.com"}});
    malloc_trim(0);
    size_t heap0 = heap_in_use(), rss0 = rss_kib();
    for (size_t i = 0; i < n; i += frame.capacity()) {
        frame.clear();
        for (size_t j = i; j < n && j < i + frame.capacity(); ++j)
            frame.push_back({true, user_id(j)});
        d.apply_presence("gw2", i == 0, frame);
    }
    frame.clear();
    frame.shrink_to_fit();
    size_t heap1 = heap_in_use(), rss1 = rss_kib();
    auto t0 = std::chrono::steady_clock::now();
    d.drop_peer("gw2");
    auto drop_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0);
    size_t heap2 = heap_in_use(), rss2 = rss_kib();
    std::printf("directory: %zu entries of one peer (ids ~%zu bytes)\n", d.user_entries() + n - 1,
                user_id(n / 2).size());
    std::printf("  heap in use: %.1f bytes/entry (%zu KiB)\n", double(heap1 - heap0) / double(n),
                (heap1 - heap0) / 1024);
    std::printf("  RSS: before %zu KiB, full %zu KiB (%.1f bytes/entry), after drop_peer %zu KiB\n",
                rss0, rss1, double(rss1 - rss0) * 1024 / double(n), rss2);
    std::printf(
        "  heap after drop_peer: %+lld KiB vs before; drop_peer (with malloc_trim) took "
        "%.1f ms\n",
        (long long)(heap2 / 1024) - (long long)(heap0 / 1024), drop_ms.count());

    // The same kind of map without the directory's clean-up, to show what glibc does alone.
    {
        std::unordered_map<std::string, boost::container::small_vector<uint16_t, 3>> t;
        size_t r0 = rss_kib();
        for (size_t i = 0; i < n; ++i) t[user_id(i)].push_back(1);
        size_t r1 = rss_kib();
        auto c0 = std::chrono::steady_clock::now();
        t.clear();
        auto c1 = std::chrono::steady_clock::now();
        size_t r2 = rss_kib();
        decltype(t)().swap(t);
        size_t r3 = rss_kib();
        auto c2 = std::chrono::steady_clock::now();
        malloc_trim(0);
        auto c3 = std::chrono::steady_clock::now();
        size_t r4 = rss_kib();
        std::printf("plain unordered_map: clear() took %.1f ms, malloc_trim %.1f ms\n",
                    std::chrono::duration<double, std::milli>(c1 - c0).count(),
                    std::chrono::duration<double, std::milli>(c3 - c2).count());
        std::printf(
            "plain unordered_map: before %zu KiB, full %zu KiB, clear() %zu KiB, "
            "swap with empty %zu KiB, malloc_trim %zu KiB\n",
            r0, r1, r2, r3, r4);
    }
    return 0;
}
