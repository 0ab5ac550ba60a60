// Fuzz target: what the dispatcher parses from the outside — the GET /get-tcp-ip query
// (parse_tcp_ip_query, reachable by any client) and a gateway's /status JSON
// (parse_gateway_status, reachable by whoever answers on a gateway admin address).
//
// Input layout: [mode][limits byte][text]. mode even: query; odd: status body.
// Invariants: a parsed query respects the uid and exclude limits, has no control characters in
// the uid and only valid gateway ids in exclude; errors carry a code and a message. A parsed
// status has load in [0, 1], a finite non-negative uptime and a known state; a rejected one says
// why.
#include <cmath>

#include "common/config.hpp"
#include "common/ids.hpp"
#include "dispatcher/gateway_status.hpp"
#include "dispatcher/query.hpp"
#include "fuzz_support.hpp"

using namespace imgate;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::byte_source in(data, size);
    uint8_t mode = in.u8();
    uint8_t lim = in.u8();
    std::string text(in.rest());
    if (mode % 2 == 0) {
        disp::query_limits limits;
        limits.max_uid_length = lim % 64 + 1;
        limits.max_exclude = lim / 64 + 1;
        auto r = disp::parse_tcp_ip_query(text, limits);
        if (auto* e = std::get_if<disp::query_error>(&r)) {
            FUZZ_CHECK(!e->code.empty() && !e->message.empty());
            return 0;
        }
        auto& q = std::get<disp::tcp_ip_query>(r);
        FUZZ_CHECK(q.uid.size() <= limits.max_uid_length);
        for (unsigned char c : q.uid) FUZZ_CHECK(c >= 0x20 && c != 0x7f);
        FUZZ_CHECK(q.exclude.size() <= limits.max_exclude);
        for (auto& id : q.exclude) FUZZ_CHECK(ids::valid_node_id(id));
    } else {
        auto r = disp::parse_gateway_status(text);
        if (auto* s = std::get_if<disp::gateway_status>(&r)) {
            FUZZ_CHECK(s->load >= 0 && s->load <= 1);
            FUZZ_CHECK(std::isfinite(s->uptime_s) && s->uptime_s >= 0);
            FUZZ_CHECK(s->state == "serving" || s->state == "draining" || s->state == "stopping");
        } else {
            FUZZ_CHECK(!std::get<std::string>(r).empty());
        }
    }
    return 0;
}
