#include "dispatcher/query.hpp"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "common/http_server.hpp"
#include "common/ids.hpp"
#include "common/logging.hpp"

namespace imgate::disp {

std::variant<tcp_ip_query, query_error> parse_tcp_ip_query(std::string_view query,
                                                           const query_limits& limits) {
    std::string err;
    auto params = parse_query(query, &err, 8);
    if (!params) return query_error{"bad_query", err};
    tcp_ip_query q;
    for (auto& [k, v] : *params) {
        if (k == "uid") {
            if (v.size() > limits.max_uid_length)
                return query_error{"bad_uid", "uid is longer than " +
                                                  std::to_string(limits.max_uid_length) + " bytes"};
            if (std::any_of(v.begin(), v.end(),
                            [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
                return query_error{"bad_uid", "uid contains control characters"};
            q.uid = v;
        } else if (k == "exclude") {
            std::string_view rest(v);
            while (!rest.empty()) {
                auto comma = rest.find(',');
                auto id = rest.substr(0, comma);
                if (!ids::valid_node_id(id))
                    return query_error{"bad_exclude",
                                       "exclude must be a comma-separated list of gateway ids"};
                if (q.exclude.size() >= limits.max_exclude)
                    return query_error{
                        "bad_exclude",
                        "exclude lists more than " + std::to_string(limits.max_exclude) + " ids"};
                q.exclude.emplace_back(id);
                if (comma == std::string_view::npos) break;
                rest = rest.substr(comma + 1);
                if (rest.empty()) return query_error{"bad_exclude", "exclude ends with a comma"};
            }
        } else if (k == "region") {
            if (!ids::valid_node_id(v))
                return query_error{"bad_region",
                                   "region must be 1-64 characters of [A-Za-z0-9._-]"};
            q.region = v;
        } else if (k == "transport") {
            auto t = parse_transport(v);
            if (!t)
                return query_error{"bad_transport",
                                   "transport must be one of tcp, tls, ws, wss (default tcp)"};
            q.via = *t;
        } else {
            std::string shown = k.size() > 32 ? k.substr(0, 32) + "..." : k;
            nlohmann::json name = shown;
            return query_error{
                "unknown_parameter",
                "unknown query parameter " +
                    name.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                    " (accepted: uid, exclude, region, transport)"};
        }
    }
    return q;
}

int64_t spread_retry_ms(int64_t base_ms, int64_t jitter_ms, std::mt19937_64& rng) {
    if (jitter_ms <= 0) return base_ms;
    return base_ms + std::uniform_int_distribution<int64_t>(0, jitter_ms)(rng);
}

int64_t retry_after_seconds(int64_t retry_ms) {
    return std::max<int64_t>(1, (retry_ms + 999) / 1000);
}

std::string render_no_gateway(int64_t retry_ms) {
    return R"({"error":"no_gateway_available","retry_after_ms":)" + std::to_string(retry_ms) + "}";
}

std::string render_pick(const std::vector<pick_target>& targets, transport via,
                        const reconnect_policy* policy) {
    // Built by hand: this is the hot path of the public API, and ids are [A-Za-z0-9._-] while
    // hosts are escaped anyway. Keys in the same order nlohmann::json would print them.
    auto escaped = [](std::string& out, std::string_view s) {
        bool plain = std::all_of(s.begin(), s.end(), [](unsigned char c) {
            return c >= 0x20 && c != '"' && c != '\\' && c < 0x7f;
        });
        if (plain)
            out += s;  // the normal case: no temporary string
        else
            out += json_escape(s);
    };
    // Numbers straight into the answer, without a temporary string each.
    auto number = [](std::string& out, int64_t v) {
        char buf[24];
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
        out.append(buf, end);
    };
    const char* via_name = to_string(via);
    bool web = via == transport::ws || via == transport::wss;
    auto target = [&escaped, &number, via_name, web](std::string& out, const pick_target& t,
                                                     const reconnect_policy* p) {
        out += "\"host\":\"";
        escaped(out, t.address.host);
        out += "\",\"id\":\"";
        escaped(out, t.id);
        out += "\",\"port\":";
        number(out, t.address.port);
        if (p) {  // "reconnect" sorts between "port" and "transport"
            out += ",\"reconnect\":{\"base_ms\":";
            number(out, p->base_ms);
            out += ",\"jitter_ms\":";
            number(out, p->jitter_ms);
            out += ",\"max_ms\":";
            number(out, p->max_ms);
            out += '}';
        }
        out += ",\"transport\":\"";
        out += via_name;
        out += '"';
        if (web) {
            // endpoint::to_string brackets an IPv6 host, as a URL needs.
            out += ",\"url\":\"";
            escaped(out, std::string(via_name) + "://" + t.address.to_string() + "/");
            out += '"';
        }
    };
    std::string out;
    out.reserve(64 + 64 * targets.size());
    out += "{\"alternates\":[";
    for (size_t i = 1; i < targets.size(); ++i) {
        if (i > 1) out += ',';
        out += '{';
        target(out, targets[i], nullptr);
        out += '}';
    }
    out += "],";
    target(out, targets.front(), policy);
    out += '}';
    return out;
}

}  // namespace imgate::disp
