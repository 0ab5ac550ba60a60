// A dispatcher reload says what changed, one line per key, and the configuration it then runs has
// a new hash in /status and /metrics; a broken file on disk shows as imgate_config_file_valid 0
// without any reload (systemctl reload's pre-check would have kept it from the daemon).
#include <gtest/gtest.h>

#include "../support/local_fleet.hpp"

namespace {

using namespace imgate::test;

std::string status_hash(daemon_process& p) {
    auto j = http_get(p.addr("admin"), "/status").json();
    return j.is_object() && j.contains("config") ? j["config"].value("hash", std::string()) : "";
}

bool metrics_have(daemon_process& p, const std::string& line) {
    return http_get(p.addr("admin"), "/metrics").body.find("\n" + line + "\n") != std::string::npos;
}

TEST(OpsReloadLog, DispatcherLogsEachChangeAndRunsANewHash) {
    local_fleet fleet(local_fleet::options{});
    std::string why;
    ASSERT_TRUE(fleet.start(&why)) << why;
    auto& disp = fleet.dispatcher();
    auto before = status_hash(disp);
    ASSERT_EQ(before.size(), 12u);
    EXPECT_TRUE(metrics_have(disp, "imgate_config_info{hash=\"" + before + "\"} 1"));

    // A typo lands on disk: flagged at the next scrape, nothing applied.
    auto fleet_file = fleet.dir().file("fleet.yaml");
    auto good = read_file(fleet_file);
    write_file(fleet_file, good + "  - id: gw9\n    wieght: 5\n");
    EXPECT_TRUE(metrics_have(disp, "imgate_config_file_valid 0"));
    EXPECT_EQ(status_hash(disp), before);

    // Fixed, with a real change: one weight.
    auto edited = good;
    auto at = edited.find("  - id: gw2\n");
    ASSERT_NE(at, std::string::npos) << good;
    edited.insert(at + 12, "    weight: 50\n");
    write_file(fleet_file, edited);
    EXPECT_TRUE(metrics_have(disp, "imgate_config_file_valid 1"));
    disp.signal(SIGHUP);
    ASSERT_TRUE(eventually([&] {
        return disp.log().find("reload: added: fleet.gateways[gw2].weight = 50") !=
               std::string::npos;
    })) << disp.log();
    auto after = status_hash(disp);
    EXPECT_NE(after, before);
    EXPECT_TRUE(metrics_have(disp, "imgate_config_info{hash=\"" + after + "\"} 1"));
    EXPECT_FALSE(metrics_have(disp, "imgate_config_info{hash=\"" + before + "\"} 1"));
    EXPECT_NE(disp.log().find("reload: configuration " + before + " -> " + after),
              std::string::npos)
        << disp.log();
    // Only that one key changed.
    auto log = disp.log();
    size_t lines = 0;
    for (std::string what : {"reload: changed: ", "reload: added: ", "reload: removed: "})
        for (auto p = log.find(what); p != std::string::npos; p = log.find(what, p + 1)) ++lines;
    EXPECT_EQ(lines, 1u) << log;
}

}  // namespace
