// Log lines carry journald's "<N>" priority prefix exactly when stderr is the journal stream (or
// the config asks for it), so `journalctl -p warning` shows warnings and errors only.
#include "common/logging.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

using namespace imgate;

namespace {

// Lines a logger with the daemons' formatter writes, one per level given.
std::vector<std::string> lines_of(const std::string& format, bool prefix) {
    std::ostringstream out;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    spdlog::logger log("t", sink);
    log.set_level(spdlog::level::trace);
    log.set_formatter(make_log_formatter(format, prefix));
    log.critical("c \"quoted\"");
    log.error("e");
    log.warn("w");
    log.info("i");
    log.debug("d");
    log.trace("t");
    std::vector<std::string> lines;
    std::istringstream in(out.str());
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
}

std::string dev_ino(int fd) {
    struct stat st {};
    EXPECT_EQ(::fstat(fd, &st), 0);
    return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

}  // namespace

TEST(JournalPriority, SdDaemonLevels) {
    EXPECT_EQ(journal_priority(spdlog::level::critical), 2);
    EXPECT_EQ(journal_priority(spdlog::level::err), 3);
    EXPECT_EQ(journal_priority(spdlog::level::warn), 4);
    EXPECT_EQ(journal_priority(spdlog::level::info), 6);
    EXPECT_EQ(journal_priority(spdlog::level::debug), 7);
    EXPECT_EQ(journal_priority(spdlog::level::trace), 7);
}

TEST(JournalPriority, TextLinesArePrefixedOnlyWhenAsked) {
    auto with = lines_of("text", true);
    ASSERT_EQ(with.size(), 6u);
    const char* want[] = {"<2>", "<3>", "<4>", "<6>", "<7>", "<7>"};
    for (size_t i = 0; i < 6; ++i) EXPECT_EQ(with[i].substr(0, 3), want[i]) << with[i];
    EXPECT_NE(with[2].find("warning"), std::string::npos) << with[2];
    EXPECT_NE(with[2].find("[t] w"), std::string::npos) << with[2];
    for (auto& l : lines_of("text", false)) EXPECT_NE(l[0], '<') << l;
}

TEST(JournalPriority, JsonLinesStayJsonAfterThePrefix) {
    auto with = lines_of("json", true);
    ASSERT_EQ(with.size(), 6u);
    EXPECT_EQ(with[1].substr(0, 3), "<3>");
    for (auto& l : with) {
        ASSERT_GT(l.size(), 3u);
        auto j = nlohmann::json::parse(l.substr(3), nullptr, false);
        EXPECT_TRUE(j.is_object()) << l;
    }
    EXPECT_EQ(nlohmann::json::parse(with[0].substr(3))["msg"], "c \"quoted\"");
    for (auto& l : lines_of("json", false)) EXPECT_TRUE(nlohmann::json::parse(l).is_object()) << l;
}

TEST(JournalPriority, JournalStreamMustNameThisVeryStream) {
    char path[] = "/tmp/imgate_logging_test_XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    int other = ::open("/dev/null", O_WRONLY);
    ASSERT_GE(other, 0);
    auto mine = dev_ino(fd);
    EXPECT_TRUE(is_journal_stream(mine.c_str(), fd));
    // Inherited by a child whose stderr went to a file or /dev/null: not the journal.
    EXPECT_FALSE(is_journal_stream(mine.c_str(), other));
    EXPECT_FALSE(is_journal_stream(nullptr, fd));
    EXPECT_FALSE(is_journal_stream("", fd));
    EXPECT_FALSE(is_journal_stream("garbage", fd));
    EXPECT_FALSE(is_journal_stream((mine + "x").c_str(), fd));
    ::close(other);
    ::close(fd);
    ::unlink(path);
}

TEST(JournalPriority, ConfigAlwaysAndNeverOverrideDetection) {
    log_config c;
    c.priority_prefix = "always";
    EXPECT_TRUE(want_priority_prefix(c));
    c.priority_prefix = "never";
    EXPECT_FALSE(want_priority_prefix(c));
    // auto: only a JOURNAL_STREAM naming this stderr turns it on.
    c.priority_prefix = "auto";
    ::setenv("JOURNAL_STREAM", dev_ino(STDERR_FILENO).c_str(), 1);
    EXPECT_TRUE(want_priority_prefix(c));
    ::setenv("JOURNAL_STREAM", "1:1", 1);
    EXPECT_FALSE(want_priority_prefix(c));
    ::unsetenv("JOURNAL_STREAM");
    EXPECT_FALSE(want_priority_prefix(c));
}
