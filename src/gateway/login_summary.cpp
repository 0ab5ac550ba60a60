#include "gateway/login_summary.hpp"

#include <algorithm>
#include <utility>
#include <vector>

namespace imgate::gw {

namespace {
std::string interval_text(std::chrono::milliseconds d) {
    if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
    return std::to_string(d.count()) + " ms";
}

// Descending by count, then by name so the line is deterministic.
template <class Map>
std::vector<std::pair<std::string, uint64_t>> ranked(const Map& m) {
    std::vector<std::pair<std::string, uint64_t>> v(m.begin(), m.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    return v;
}
}  // namespace

login_summary::login_summary(size_t max_sources, size_t top_sources)
    : max_sources_(std::max<size_t>(1, max_sources)),
      top_sources_(std::max<size_t>(1, top_sources)) {}

void login_summary::failed(std::string_view result, std::string_view source) {
    std::lock_guard lk(mu_);
    ++total_;
    auto r = by_result_.find(result);
    if (r == by_result_.end()) r = by_result_.emplace(std::string(result), 0).first;
    ++r->second;
    std::string key(source);
    auto s = by_source_.find(key);
    if (s != by_source_.end())
        ++s->second;
    else if (by_source_.size() < max_sources_)
        by_source_.emplace(std::move(key), 1);
}

std::string login_summary::take(std::chrono::milliseconds interval) {
    uint64_t total;
    std::map<std::string, uint64_t, std::less<>> results;
    std::unordered_map<std::string, uint64_t> sources;
    {
        std::lock_guard lk(mu_);
        total = std::exchange(total_, 0);
        results.swap(by_result_);
        sources.swap(by_source_);
    }
    if (total == 0) return {};
    std::string line = "login failures in the last " + interval_text(interval) + ": " +
                       std::to_string(total) + " (";
    bool first = true;
    for (auto& [result, n] : ranked(results)) {
        line += (first ? "" : ", ") + result + " " + std::to_string(n);
        first = false;
    }
    line += "); top sources: ";
    uint64_t listed = 0;
    auto top = ranked(sources);
    if (top.size() > top_sources_) top.resize(top_sources_);
    first = true;
    for (auto& [source, n] : top) {
        line += (first ? "" : ", ") + source + " (" + std::to_string(n) + ")";
        listed += n;
        first = false;
    }
    // Failures from addresses not listed: below the top ones, or past the tracking cap.
    if (total > listed) line += "; +" + std::to_string(total - listed) + " more";
    return line;
}

uint64_t login_summary::pending() const {
    std::lock_guard lk(mu_);
    return total_;
}

}  // namespace imgate::gw
