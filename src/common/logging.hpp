#pragma once
// Process-wide spdlog setup: level and format (text or JSON lines) from config, changeable on
// reload.
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include "common/config.hpp"

namespace imgate {

// Installs the default logger writing to stderr (journald picks it up under systemd, and reads
// each line's priority from its "<N>" prefix, see want_priority_prefix).
void setup_logging(const log_config& cfg, const std::string& name);
// Applies a new level/format at runtime (SIGHUP).
void apply_log_config(const log_config& cfg);

// The sd-daemon.h priority of a level: critical 2, error 3, warn 4, info 6, debug/trace 7.
int journal_priority(spdlog::level::level_enum level);
// True when fd is the stream journald reads for this service: JOURNAL_STREAM (systemd sets it to
// "device:inode" of the stream it connected) names exactly fd's device and inode. A process
// whose stderr was redirected elsewhere inherits the variable but fails the comparison.
bool is_journal_stream(const char* journal_stream_env, int fd);
// Whether lines get the "<N>" prefix for this configuration and this process's stderr.
bool want_priority_prefix(const log_config& cfg);
// The formatter for format "text" or "json"; with priority_prefix each line starts with "<N>",
// which journald strips and records as the line's PRIORITY.
std::unique_ptr<spdlog::formatter> make_log_formatter(const std::string& format,
                                                      bool priority_prefix);

// Escapes s for embedding inside a JSON string literal.
std::string json_escape(std::string_view s);

}  // namespace imgate
