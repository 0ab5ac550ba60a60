#pragma once
// What a running daemon's configuration is, as metrics and /status fields: which files it loaded
// (a hash), when, and whether the files on disk still pass --check-config; plus build info, the
// process start time and the "what changed" lines a reload logs.
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/fingerprint.hpp"
#include "common/metrics.hpp"

namespace imgate {

// The files one configuration was read from.
struct config_files {
    std::string main;                  // the daemon's YAML: hashed and diffed
    std::string fleet;                 // the fleet YAML: hashed and diffed (keys "fleet.*")
    std::vector<std::string> secrets;  // secret files: fingerprinted for the diff, never hashed
};

// "key.path" -> scalar text. Sequence items are "[i]", or "[id]" when the item is a map with an
// `id:` (so inserting a gateway does not renumber every later one). Empty maps/sequences and
// nulls appear as "{}", "[]" and "~".
using flat_config = std::map<std::string, std::string>;
flat_config flatten_yaml(const YAML::Node& node, const std::string& prefix = "");

// One line per difference ("changed: k a -> b", "added: k = v", "removed: k (was v)"), keys in
// order, at most max_lines (the last then says how many more). Values of keys that look secret
// (secret, token, password, key — not *file*) are never printed; "secret file P" entries (see
// config_snapshot) print their fingerprints only.
std::vector<std::string> config_diff(const flat_config& before, const flat_config& after,
                                     size_t max_lines = 30);

// What one load of the configuration looked like: hash over the main and fleet files' bytes (the
// first 12 hex digits of SHA-256 of main's bytes, a NUL, fleet's bytes), and the flattened
// documents plus one "secret file P" entry per secret file (fingerprint: 8 hex digits of the
// SHA-256 of its trimmed content, "unreadable" if it cannot be read). Never throws.
struct config_snapshot {
    std::string hash;
    flat_config flat;
};
config_snapshot snapshot_of(const config_files& files);

// Owns the configuration and build metrics of one daemon process:
//   imgate_config_info{hash} 1, imgate_config_loaded_timestamp_seconds,
//   imgate_config_file_valid (re-runs `check` at scrape time when a file's stat changed),
//   imgate_build_info{version,compiler} 1, process_start_time_seconds.
// One per process; current() finds it (the gateway's admin API reads it for /status).
class config_info {
  public:
    // Loads the configuration as --check-config does and returns the files it read; throws
    // config_error (or anything) when invalid.
    using checker = std::function<config_files()>;

    config_info(metrics_registry& metrics, config_files loaded, checker check);
    ~config_info();
    config_info(const config_info&) = delete;
    config_info& operator=(const config_info&) = delete;

    // After a reload was applied: logs one line per change (capped), updates hash and load time.
    // Returns the lines it logged.
    std::vector<std::string> reloaded();

    std::string hash() const;
    double loaded_at_seconds() const;
    // 1 when the files on disk pass `check` now; re-checks only if a file's stat changed.
    bool file_valid() const;
    // {"hash", "loaded_at_s", "file_valid"} for /status.
    nlohmann::json status_json() const;

    static config_info* current();

  private:
    // Shared with the scrape-time gauge, which may outlive this object inside the registry.
    struct state;

    metrics_registry& metrics_;
    gauge& loaded_at_;
    std::shared_ptr<state> st_;
};

}  // namespace imgate
