// Fuzz target: the gateway's config loader (load_gateway_config), which reads gateway.yaml plus
// the fleet and secret files it names. The input is written as gateway.yaml into a private temp
// dir that also holds a valid fleet and secret files. Inputs containing '/' or '\' are skipped so
// the fuzzer cannot point the loader at device files outside that dir (YAML escapes could spell a
// '/'); the YAML grammar itself is covered by the yaml_config target.
//
// Invariants on success: the id is in the fleet, at least one token secret, limits consistent
// (payload <= frame <= absolute max, idle > heartbeat, positive timeouts).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/frame.hpp"
#include "fuzz_support.hpp"
#include "gateway/gateway_config.hpp"

using namespace imgate;
namespace fs = std::filesystem;

namespace {

// Plain storage: the atexit handler runs after the static path below is destroyed.
char cleanup_dir[512];

const fs::path& dir() {
    static const fs::path d = [] {
        auto p = fs::temp_directory_path() / ("imgate-fuzz-gwcfg-" + std::to_string(::getpid()));
        fs::create_directories(p);
        auto put = [&](const char* name, const char* text) {
            std::ofstream(p / name, std::ios::trunc) << text;
            // The gateway refuses secret files others can read; 0600 for every file keeps the
            // success paths reachable.
            fs::permissions(p / name, fs::perms::owner_read | fs::perms::owner_write);
        };
        put("fleet.yaml",
            "cluster: {secret_file: cluster.secret}\n"
            "gateways:\n"
            "  - {id: gw1, client: '127.0.0.1:1', admin: '127.0.0.1:2', rpc: '127.0.0.1:3'}\n"
            "  - {id: gw2, client: '127.0.0.1:4', admin: '127.0.0.1:5', rpc: '127.0.0.1:6'}\n");
        put("token.secret", "fuzz-token-secret\n");
        put("old.secret", "fuzz-old-secret\n");
        put("admin.token", "fuzz-admin-token\n");
        put("cluster.secret", "fuzz-cluster-secret\n");
        put("empty.secret", "  \n");
        std::snprintf(cleanup_dir, sizeof cleanup_dir, "%s", p.c_str());
        std::atexit([] {
            std::error_code ec;
            fs::remove_all(cleanup_dir, ec);
        });
        return p;
    }();
    return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    if (text.find_first_of("/\\") != std::string::npos) return 0;
    auto path = (dir() / "gateway.yaml").string();
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << text;
    }
    try {
        auto c = gw::load_gateway_config(path, "");
        FUZZ_CHECK(c.fleet.find(c.id) != nullptr);
        FUZZ_CHECK(!c.token_secrets.empty());
        for (auto& s : c.token_secrets) FUZZ_CHECK(!s.empty());
        FUZZ_CHECK(c.limits.max_payload_bytes <= c.limits.max_frame_bytes);
        FUZZ_CHECK(c.limits.max_frame_bytes <= absolute_max_frame_body);
        FUZZ_CHECK(c.limits.idle_timeout > c.limits.heartbeat_interval);
        FUZZ_CHECK(c.limits.login_timeout.count() > 0 && c.limits.write_timeout.count() > 0);
    } catch (const config_error&) {
    } catch (const YAML::Exception&) {
    }
    return 0;
}
