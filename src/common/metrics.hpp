#pragma once
// A small Prometheus registry: counters, gauges, histograms with labels, rendered as text format.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace imgate {

using label_set = std::vector<std::pair<std::string, std::string>>;

// Monotonic counter; lock-free increments from any thread.
class counter {
  public:
    void inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
    uint64_t value() const { return v_.load(std::memory_order_relaxed); }

  private:
    std::atomic<uint64_t> v_{0};
};

// Settable value; lock-free from any thread.
class gauge {
  public:
    void set(double v) { v_.store(v, std::memory_order_relaxed); }
    void add(double d) { v_.fetch_add(d, std::memory_order_relaxed); }
    void inc() { add(1); }
    void dec() { add(-1); }
    double value() const { return v_.load(std::memory_order_relaxed); }

  private:
    std::atomic<double> v_{0};
};

// Cumulative histogram over fixed upper bounds.
class histogram {
  public:
    explicit histogram(std::vector<double> bounds);
    void observe(double v);
    const std::vector<double>& bounds() const { return bounds_; }
    uint64_t bucket(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }
    uint64_t count() const { return count_.load(std::memory_order_relaxed); }
    double sum() const { return sum_.load(std::memory_order_relaxed); }

  private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<uint64_t>[]> counts_;
    std::atomic<uint64_t> count_{0};
    std::atomic<double> sum_{0};
};

// Owns every metric of a process. Registration is idempotent: asking again for the same name and
// labels returns the same object, so modules can look metrics up instead of passing them around.
class metrics_registry {
  public:
    counter& get_counter(const std::string& name, const std::string& help, label_set labels = {});
    gauge& get_gauge(const std::string& name, const std::string& help, label_set labels = {});
    histogram& get_histogram(const std::string& name, const std::string& help,
                             std::vector<double> bounds, label_set labels = {});
    // A gauge computed at scrape time (called under the registry lock; keep it cheap).
    void gauge_fn(const std::string& name, const std::string& help, label_set labels,
                  std::function<double()> fn);
    // Drops every series of a family whose labels contain (key, value); used when a gateway
    // leaves the fleet so its series do not linger.
    void remove_series(const std::string& name, const std::string& key, const std::string& value);

    std::string render() const;

    static std::vector<double> latency_buckets_seconds();

  private:
    struct series {
        label_set labels;
        std::unique_ptr<counter> c;
        std::unique_ptr<gauge> g;
        std::unique_ptr<histogram> h;
        std::function<double()> fn;
    };
    struct family {
        std::string help;
        std::string type;
        std::vector<std::unique_ptr<series>> items;
    };
    series& find_or_add(const std::string& name, const std::string& help, const char* type,
                        label_set& labels);

    mutable std::mutex mu_;
    std::map<std::string, family> families_;
};

}  // namespace imgate
