#include "common/backoff.hpp"

#include <algorithm>
#include <cmath>

namespace imgate {

std::chrono::milliseconds backoff::next(std::chrono::milliseconds floor) {
    // Without a source the delay is the full base: still bounded, never zero.
    return next_at(random01_ ? random01_() : 1.0, floor);
}

std::chrono::milliseconds backoff::next_at(double r01, std::chrono::milliseconds floor) {
    // Past 2^30 the base is long capped; stopping the count keeps the arithmetic finite.
    double base = static_cast<double>(min_.count()) * std::pow(2.0, std::min(attempt_, 30u));
    base = std::min(base, static_cast<double>(max_.count()));
    if (attempt_ < 64) ++attempt_;
    double r = std::clamp(r01, 0.0, 1.0);
    auto d = std::chrono::milliseconds(static_cast<int64_t>(base / 2 + r * base / 2));
    return std::max(d, floor);
}

}  // namespace imgate
