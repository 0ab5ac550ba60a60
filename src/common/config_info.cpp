#include "common/config_info.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cctype>
#include <chrono>
#include <fstream>
#include <sstream>

namespace imgate {

namespace {

// Taken during static initialisation, before main(): the process start as Prometheus clients
// report it. /proc/self/stat would be more exact but the units hide /proc/stat (ProcSubset=pid).
const double process_start_s =
    std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

std::atomic<config_info*> current_info{nullptr};

const char* const compiler_name =
#if defined(__clang__)
    "clang " __clang_version__;
#elif defined(__GNUC__)
    "gcc " __VERSION__;
#else
    "unknown";
#endif

double now_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

bool read_whole(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::stringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    return true;
}

const std::string secret_prefix = "secret file ";

bool looks_secret(const std::string& key) {
    auto dot = key.find_last_of('.');
    std::string last = dot == std::string::npos ? key : key.substr(dot + 1);
    for (auto& c : last) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (last.find("file") != std::string::npos) return false;  // a path, not the secret
    for (const char* w : {"secret", "token", "password", "key"})
        if (last.find(w) != std::string::npos) return true;
    return false;
}

std::string shown(const std::string& key, const std::string& value) {
    return looks_secret(key) ? std::string("(hidden)") : value;
}

void flatten_into(const YAML::Node& n, const std::string& key, flat_config& out) {
    switch (n.Type()) {
        case YAML::NodeType::Map:
            if (n.size() == 0) {
                out[key] = "{}";
                return;
            }
            for (auto it = n.begin(); it != n.end(); ++it) {
                auto k = it->first.Scalar();
                flatten_into(it->second, key.empty() ? k : key + "." + k, out);
            }
            return;
        case YAML::NodeType::Sequence:
            if (n.size() == 0) {
                out[key] = "[]";
                return;
            }
            for (size_t i = 0; i < n.size(); ++i) {
                auto item = n[i];
                std::string idx = std::to_string(i);
                if (item.IsMap() && item["id"] && item["id"].IsScalar()) idx = item["id"].Scalar();
                flatten_into(item, key + "[" + idx + "]", out);
            }
            return;
        case YAML::NodeType::Scalar:
            out[key] = n.Scalar();
            return;
        default:
            out[key] = "~";
    }
}

// stat() of every file: identity, size, mtime, ctime, mode and owner. Mode and owner are compared
// directly because timestamps are only as fine as the kernel's tick: a chmod right after a write
// could leave ctime unchanged. (A same-size rewrite within one tick is not seen: inherent.)
std::string signature_of(const config_files& f) {
    std::string sig;
    auto add = [&](const std::string& path) {
        if (path.empty()) return;
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) {
            sig += path + ":missing;";
            return;
        }
        for (long long v : {(long long)st.st_dev, (long long)st.st_ino, (long long)st.st_size,
                            (long long)st.st_mtim.tv_sec, (long long)st.st_mtim.tv_nsec,
                            (long long)st.st_ctim.tv_sec, (long long)st.st_ctim.tv_nsec,
                            (long long)st.st_mode, (long long)st.st_uid, (long long)st.st_gid})
            sig += std::to_string(v) + ",";
        sig += path + ";";
    };
    add(f.main);
    add(f.fleet);
    for (auto& s : f.secrets) add(s);
    return sig;
}

}  // namespace

flat_config flatten_yaml(const YAML::Node& node, const std::string& prefix) {
    flat_config out;
    if (node && !node.IsNull()) flatten_into(node, prefix, out);
    return out;
}

std::vector<std::string> config_diff(const flat_config& before, const flat_config& after,
                                     size_t max_lines) {
    std::vector<std::string> all;
    auto secret_line = [](const std::string& what, const std::string& key, const std::string& a,
                          const std::string& b) {
        std::string path = key.substr(secret_prefix.size());
        if (what == "changed")
            return "changed: secret file " + path + " (fingerprint " + a + " -> " + b + ")";
        if (what == "added") return "added: secret file " + path + " (fingerprint " + b + ")";
        return "removed: secret file " + path;
    };
    auto b = before.begin();
    auto a = after.begin();
    while (b != before.end() || a != after.end()) {
        bool take_removed = a == after.end() || (b != before.end() && b->first < a->first);
        bool take_added = !take_removed && (b == before.end() || a->first < b->first);
        if (take_removed) {
            all.push_back(b->first.starts_with(secret_prefix)
                              ? secret_line("removed", b->first, b->second, "")
                              : "removed: " + b->first + " (was " + shown(b->first, b->second) +
                                    ")");
            ++b;
        } else if (take_added) {
            all.push_back(a->first.starts_with(secret_prefix)
                              ? secret_line("added", a->first, "", a->second)
                              : "added: " + a->first + " = " + shown(a->first, a->second));
            ++a;
        } else {
            if (a->second != b->second)
                all.push_back(a->first.starts_with(secret_prefix)
                                  ? secret_line("changed", a->first, b->second, a->second)
                                  : "changed: " + a->first + " " + shown(a->first, b->second) +
                                        " -> " + shown(a->first, a->second));
            ++a;
            ++b;
        }
    }
    if (max_lines > 0 && all.size() > max_lines) {
        size_t more = all.size() - (max_lines - 1);
        all.resize(max_lines - 1);
        all.push_back("... and " + std::to_string(more) + " more changes");
    }
    return all;
}

config_snapshot snapshot_of(const config_files& files) {
    config_snapshot s;
    std::string main_bytes, fleet_bytes;
    read_whole(files.main, main_bytes);
    if (!files.fleet.empty()) read_whole(files.fleet, fleet_bytes);
    s.hash = sha256_hex(main_bytes + std::string(1, '\0') + fleet_bytes).substr(0, 12);
    auto flat_of = [&](const std::string& bytes, const std::string& prefix) {
        try {
            auto f = flatten_yaml(YAML::Load(bytes), prefix);
            s.flat.insert(f.begin(), f.end());
        } catch (const std::exception&) {
            s.flat[prefix.empty() ? "(file)" : prefix] = "(not valid YAML)";
        }
    };
    flat_of(main_bytes, "");
    if (!files.fleet.empty() && files.fleet != files.main) flat_of(fleet_bytes, "fleet");
    for (auto& path : files.secrets) {
        std::string bytes;
        if (!read_whole(path, bytes)) {
            s.flat[secret_prefix + path] = "unreadable";
            continue;
        }
        auto b = bytes.find_first_not_of(" \t\r\n");
        auto e = bytes.find_last_not_of(" \t\r\n");
        bytes = b == std::string::npos ? "" : bytes.substr(b, e - b + 1);
        s.flat[secret_prefix + path] = sha256_hex(bytes).substr(0, 8);
    }
    return s;
}

struct config_info::state {
    checker check;
    std::mutex mu;  // everything below; taken after the registry's lock, never before it
    config_files files;
    config_snapshot snap;
    std::string signature;  // stat of every file when validity was last decided
    bool valid = true;

    bool file_valid() {
        std::lock_guard lk(mu);
        auto sig = signature_of(files);
        if (sig == signature) return valid;
        // A file changed on disk: load it as --check-config would (milliseconds; only after a
        // change, so at most once per edit whatever the scrape rate).
        try {
            files = check();
            valid = true;
            spdlog::info(
                "configuration on disk changed and passes --check-config (not applied "
                "until a reload)");
        } catch (const std::exception& e) {
            valid = false;
            spdlog::warn(
                "configuration on disk fails --check-config; a reload would be refused "
                "and the next restart would fail: {}",
                e.what());
        }
        signature = signature_of(files);
        return valid;
    }
};

config_info::config_info(metrics_registry& metrics, config_files loaded, checker check)
    : metrics_(metrics),
      loaded_at_(metrics.get_gauge("imgate_config_loaded_timestamp_seconds",
                                   "Unix time the running configuration was loaded (start-up or "
                                   "last applied reload)")),
      st_(std::make_shared<state>()) {
    st_->check = std::move(check);
    st_->files = std::move(loaded);
    st_->snap = snapshot_of(st_->files);
    st_->signature = signature_of(st_->files);
    loaded_at_.set(now_seconds());
    metrics_
        .get_gauge("imgate_config_info",
                   "1, labelled with the hash of the running configuration (main and fleet file)",
                   {{"hash", st_->snap.hash}})
        .set(1);
    metrics_.gauge_fn("imgate_config_file_valid",
                      "1 when the configuration files on disk pass --check-config (re-checked "
                      "when they change), 0 when a reload or restart would fail",
                      {}, [st = st_] { return st->file_valid() ? 1.0 : 0.0; });
    metrics_
        .get_gauge("imgate_build_info", "1, labelled with the version and compiler of this build",
                   {{"version", IMGATE_VERSION}, {"compiler", compiler_name}})
        .set(1);
    metrics_.get_gauge("process_start_time_seconds", "Start time of the process since unix epoch")
        .set(process_start_s);
    current_info.store(this);
}

config_info::~config_info() {
    config_info* self = this;
    current_info.compare_exchange_strong(self, nullptr);
}

config_info* config_info::current() {
    return current_info.load();
}

std::vector<std::string> config_info::reloaded() {
    std::string old_hash, new_hash;
    std::vector<std::string> lines;
    {
        std::lock_guard lk(st_->mu);
        // The reload just loaded these files successfully; ask again which ones they are (the
        // fleet file or the secret files may have been renamed).
        try {
            st_->files = st_->check();
        } catch (const std::exception&) {
            // Changed again since the reload read it: keep the file list we have.
        }
        auto next = snapshot_of(st_->files);
        lines = config_diff(st_->snap.flat, next.flat);
        old_hash = st_->snap.hash;
        new_hash = next.hash;
        st_->snap = std::move(next);
        st_->signature = signature_of(st_->files);
        st_->valid = true;
    }
    // The registry is touched only without our lock held (its scrape takes ours inside its own).
    loaded_at_.set(now_seconds());
    if (old_hash != new_hash) {
        metrics_.remove_series("imgate_config_info", "hash", old_hash);
        metrics_
            .get_gauge("imgate_config_info",
                       "1, labelled with the hash of the running configuration (main and fleet "
                       "file)",
                       {{"hash", new_hash}})
            .set(1);
    }
    if (lines.empty())
        spdlog::info("reload: configuration {} unchanged", new_hash);
    else
        spdlog::info("reload: configuration {} -> {}; what changed:", old_hash, new_hash);
    for (auto& l : lines) spdlog::info("reload: {}", l);
    return lines;
}

std::string config_info::hash() const {
    std::lock_guard lk(st_->mu);
    return st_->snap.hash;
}

double config_info::loaded_at_seconds() const {
    return loaded_at_.value();
}

bool config_info::file_valid() const {
    return st_->file_valid();
}

nlohmann::json config_info::status_json() const {
    bool valid = file_valid();
    return {{"hash", hash()}, {"loaded_at_s", loaded_at_seconds()}, {"file_valid", valid}};
}

}  // namespace imgate
