// Fuzz target: the strict YAML loaders — the fleet file (parse_fleet), dispatcher.yaml
// (parse_dispatcher_config, fleet file not loaded) and the shared sections (log, cluster_rpc) —
// on arbitrary documents. Bad input must end in config_error (or yaml-cpp's
// own YAML::Exception for syntax), never a crash, hang or another exception type.
//
// Invariants on success: at least one gateway, ids valid and unique, weights within bounds.
#include <set>

#include "common/config.hpp"
#include "common/ids.hpp"
#include "dispatcher/dispatcher_config.hpp"
#include "fuzz_support.hpp"
#include "gateway/rpc_config.hpp"

using namespace imgate;

namespace {

template <class F>
void guarded(F&& f) {
    try {
        f();
    } catch (const config_error& e) {
        FUZZ_CHECK(std::string_view(e.what()).size() > 0);
    } catch (const YAML::Exception&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    YAML::Node doc;
    try {
        doc = YAML::Load(text);
    } catch (const YAML::Exception&) {
        return 0;
    }
    guarded([&] {
        auto fleet = parse_fleet(yaml_map(doc, "fuzz.yaml"));
        FUZZ_CHECK(!fleet.gateways.empty());
        std::set<std::string> ids;
        for (auto& g : fleet.gateways) {
            FUZZ_CHECK(ids::valid_node_id(g.id));
            FUZZ_CHECK(ids.insert(g.id).second);
            FUZZ_CHECK(g.weight <= 1000000);
            FUZZ_CHECK(fleet.find(g.id) != nullptr);
        }
    });
    guarded([&] {
        yaml_map root(doc, "fuzz.yaml");
        parse_log_config(root.map("log"));
    });
    guarded([&] {
        yaml_map root(doc, "fuzz.yaml");
        auto c = gw::parse_rpc_config(root.map("cluster_rpc"));
        FUZZ_CHECK(c.call_timeout.count() > 0 && c.backoff_min <= c.backoff_max);
    });
    guarded([&] {
        auto c = disp::parse_dispatcher_config(yaml_map(doc, "fuzz.yaml"), false);
        FUZZ_CHECK(c.poll.rise >= 1 && c.poll.fall >= 1);
        FUZZ_CHECK(c.overload.low_water <= c.overload.high_water);
    });
    return 0;
}
