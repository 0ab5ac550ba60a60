#pragma once
// Process-wide spdlog setup: level and format (text or JSON lines) from config, changeable on
// reload.
#include <spdlog/spdlog.h>

#include "common/config.hpp"

namespace imgate {

// Installs the default logger writing to stderr (journald picks it up under systemd).
void setup_logging(const log_config& cfg, const std::string& name);
// Applies a new level/format at runtime (SIGHUP).
void apply_log_config(const log_config& cfg);

// Escapes s for embedding inside a JSON string literal.
std::string json_escape(std::string_view s);

}  // namespace imgate
