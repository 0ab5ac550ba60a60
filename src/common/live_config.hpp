#pragma once
// The one way a daemon publishes a reloadable configuration to the threads that read it: a whole
// immutable snapshot replaced at once, with a generation counter so a hot reader (one client
// session per frame) can tell cheaply whether its copy is still current.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

namespace imgate {

// Owns the current snapshot of T. Thread-safe: readers share snapshots; set() replaces it.
template <class T>
class live_config {
  public:
    explicit live_config(T initial) : cur_(std::make_shared<const T>(std::move(initial))) {}

    std::shared_ptr<const T> get() const {
        std::lock_guard lk(mu_);
        return cur_;
    }
    // The snapshot and its generation, read together.
    std::shared_ptr<const T> get(uint64_t& gen) const {
        std::lock_guard lk(mu_);
        gen = gen_.load(std::memory_order_relaxed);
        return cur_;
    }
    // Lock-free: equal to the generation a reader got from get(gen) until the next set().
    uint64_t generation() const { return gen_.load(std::memory_order_acquire); }

    void set(T next) {
        auto p = std::make_shared<const T>(std::move(next));
        std::lock_guard lk(mu_);
        cur_ = std::move(p);
        gen_.fetch_add(1, std::memory_order_release);
    }

  private:
    mutable std::mutex mu_;
    std::shared_ptr<const T> cur_;
    std::atomic<uint64_t> gen_{1};
};

}  // namespace imgate
