#include "common/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace imgate {

namespace {

// %* in a pattern: the message, JSON-escaped, so JSON-lines output stays valid whatever is logged.
class json_message_flag : public spdlog::custom_flag_formatter {
  public:
    void format(const spdlog::details::log_msg& msg, const std::tm&,
                spdlog::memory_buf_t& dest) override {
        auto s = json_escape(std::string_view(msg.payload.data(), msg.payload.size()));
        dest.append(s.data(), s.data() + s.size());
    }
    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<json_message_flag>();
    }
};

// %J in a pattern: "<N>", the line's syslog priority for journald (SyslogLevelPrefix=yes, the
// default, strips it).
class priority_flag : public spdlog::custom_flag_formatter {
  public:
    void format(const spdlog::details::log_msg& msg, const std::tm&,
                spdlog::memory_buf_t& dest) override {
        char buf[4] = {'<', static_cast<char>('0' + journal_priority(msg.level)), '>', 0};
        dest.append(buf, buf + 3);
    }
    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<priority_flag>();
    }
};

}  // namespace

std::string json_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 8);
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    return out;
}

int journal_priority(spdlog::level::level_enum level) {
    switch (level) {
        case spdlog::level::critical:
            return 2;  // LOG_CRIT
        case spdlog::level::err:
            return 3;  // LOG_ERR
        case spdlog::level::warn:
            return 4;  // LOG_WARNING
        case spdlog::level::info:
            return 6;  // LOG_INFO
        default:
            return 7;  // LOG_DEBUG (debug, trace)
    }
}

bool is_journal_stream(const char* journal_stream_env, int fd) {
    if (!journal_stream_env) return false;
    unsigned long long dev = 0, ino = 0;
    char extra = 0;
    if (std::sscanf(journal_stream_env, "%llu:%llu%c", &dev, &ino, &extra) != 2) return false;
    struct stat st {};
    if (::fstat(fd, &st) != 0) return false;
    return static_cast<unsigned long long>(st.st_dev) == dev &&
           static_cast<unsigned long long>(st.st_ino) == ino;
}

bool want_priority_prefix(const log_config& cfg) {
    if (cfg.priority_prefix == "always") return true;
    if (cfg.priority_prefix == "never") return false;
    return is_journal_stream(std::getenv("JOURNAL_STREAM"), STDERR_FILENO);
}

std::unique_ptr<spdlog::formatter> make_log_formatter(const std::string& format,
                                                      bool priority_prefix) {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<priority_flag>('J');
    std::string prefix = priority_prefix ? "%J" : "";
    if (format == "json") {
        f->add_flag<json_message_flag>('*').set_pattern(
            prefix + R"({"ts":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","logger":"%n","msg":"%*"})");
    } else {
        // No colour codes under the journal: they would end up in the stored message.
        f->set_pattern(prefix + (priority_prefix ? "%Y-%m-%d %H:%M:%S.%e %-5l [%n] %v"
                                                 : "%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v"));
    }
    return f;
}

void setup_logging(const log_config& cfg, const std::string& name) {
    auto logger =
        std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
    spdlog::set_default_logger(logger);
    apply_log_config(cfg);
}

void apply_log_config(const log_config& cfg) {
    spdlog::set_level(spdlog::level::from_str(cfg.level));
    spdlog::set_formatter(make_log_formatter(cfg.format, want_priority_prefix(cfg)));
    spdlog::flush_on(spdlog::level::info);
}

}  // namespace imgate
