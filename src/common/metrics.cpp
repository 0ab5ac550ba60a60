#include "common/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace imgate {

histogram::histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size()]) {
    std::sort(bounds_.begin(), bounds_.end());
    for (size_t i = 0; i < bounds_.size(); ++i) counts_[i].store(0);
}

void histogram::observe(double v) {
    auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
    if (it != bounds_.end()) counts_[it - bounds_.begin()].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<double> metrics_registry::latency_buckets_seconds() {
    return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
            0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

metrics_registry::series& metrics_registry::find_or_add(const std::string& name,
                                                        const std::string& help, const char* type,
                                                        label_set& labels) {
    std::sort(labels.begin(), labels.end());
    auto& fam = families_[name];
    if (fam.type.empty()) {
        fam.type = type;
        fam.help = help;
    } else if (fam.type != type) {
        throw std::logic_error("metric " + name + " registered with two types");
    }
    for (auto& s : fam.items)
        if (s->labels == labels) return *s;
    fam.items.push_back(std::make_unique<series>());
    fam.items.back()->labels = labels;
    return *fam.items.back();
}

counter& metrics_registry::get_counter(const std::string& name, const std::string& help,
                                       label_set labels) {
    std::lock_guard lk(mu_);
    auto& s = find_or_add(name, help, "counter", labels);
    if (!s.c) s.c = std::make_unique<counter>();
    return *s.c;
}

gauge& metrics_registry::get_gauge(const std::string& name, const std::string& help,
                                   label_set labels) {
    std::lock_guard lk(mu_);
    auto& s = find_or_add(name, help, "gauge", labels);
    if (!s.g) s.g = std::make_unique<gauge>();
    return *s.g;
}

histogram& metrics_registry::get_histogram(const std::string& name, const std::string& help,
                                           std::vector<double> bounds, label_set labels) {
    std::lock_guard lk(mu_);
    auto& s = find_or_add(name, help, "histogram", labels);
    if (!s.h) s.h = std::make_unique<histogram>(std::move(bounds));
    return *s.h;
}

void metrics_registry::gauge_fn(const std::string& name, const std::string& help, label_set labels,
                                std::function<double()> fn) {
    std::lock_guard lk(mu_);
    auto& s = find_or_add(name, help, "gauge", labels);
    s.fn = std::move(fn);
}

void metrics_registry::remove_series(const std::string& name, const std::string& key,
                                     const std::string& value) {
    std::lock_guard lk(mu_);
    auto it = families_.find(name);
    if (it == families_.end()) return;
    auto& items = it->second.items;
    items.erase(std::remove_if(items.begin(), items.end(),
                               [&](const auto& s) {
                                   for (auto& [k, v] : s->labels)
                                       if (k == key && v == value) return true;
                                   return false;
                               }),
                items.end());
}

namespace {

std::string escape_label(const std::string& v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string escape_help(const std::string& v) {
    std::string out;
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

void write_labels(std::ostringstream& o, const label_set& labels, const char* extra_key = nullptr,
                  const std::string& extra_val = {}) {
    if (labels.empty() && !extra_key) return;
    o << '{';
    bool first = true;
    for (auto& [k, v] : labels) {
        if (!first) o << ',';
        first = false;
        o << k << "=\"" << escape_label(v) << '"';
    }
    if (extra_key) {
        if (!first) o << ',';
        o << extra_key << "=\"" << escape_label(extra_val) << '"';
    }
    o << '}';
}

std::string fmt_num(double v) {
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (std::isnan(v)) return "NaN";
    if (v == std::floor(v) && std::fabs(v) < 1e15) {
        std::ostringstream o;
        o << static_cast<int64_t>(v);
        return o.str();
    }
    std::ostringstream o;
    o.precision(10);
    o << v;
    return o.str();
}

}  // namespace

std::string metrics_registry::render() const {
    std::lock_guard lk(mu_);
    std::ostringstream o;
    for (auto& [name, fam] : families_) {
        if (fam.items.empty()) continue;
        o << "# HELP " << name << ' ' << escape_help(fam.help) << '\n';
        o << "# TYPE " << name << ' ' << fam.type << '\n';
        for (auto& s : fam.items) {
            if (s->c) {
                o << name;
                write_labels(o, s->labels);
                o << ' ' << s->c->value() << '\n';
            } else if (s->g || s->fn) {
                o << name;
                write_labels(o, s->labels);
                o << ' ' << fmt_num(s->fn ? s->fn() : s->g->value()) << '\n';
            } else if (s->h) {
                uint64_t cum = 0;
                for (size_t i = 0; i < s->h->bounds().size(); ++i) {
                    cum += s->h->bucket(i);
                    o << name << "_bucket";
                    write_labels(o, s->labels, "le", fmt_num(s->h->bounds()[i]));
                    o << ' ' << cum << '\n';
                }
                o << name << "_bucket";
                write_labels(o, s->labels, "le", "+Inf");
                o << ' ' << s->h->count() << '\n';
                o << name << "_sum";
                write_labels(o, s->labels);
                o << ' ' << fmt_num(s->h->sum()) << '\n';
                o << name << "_count";
                write_labels(o, s->labels);
                o << ' ' << s->h->count() << '\n';
            }
        }
    }
    return o.str();
}

}  // namespace imgate
