#include "dispatcher/gateway_status.hpp"

#include <nlohmann/json.hpp>

namespace imgate::disp {

std::variant<gateway_status, std::string> parse_gateway_status(std::string_view body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded()) return std::string("status body is not valid JSON");
    if (!j.is_object()) return std::string("status body is not a JSON object");
    gateway_status s;
    std::string err;
    auto field = [&](const char* name) -> const nlohmann::json* {
        auto it = j.find(name);
        if (it == j.end() || it->is_null()) {
            if (err.empty()) err = std::string("status field '") + name + "' missing";
            return nullptr;
        }
        return &*it;
    };
    auto bad = [&](const char* name, const char* want) {
        if (err.empty()) err = std::string("status field '") + name + "' is not " + want;
    };
    auto str = [&](const char* name, std::string& out) {
        if (auto* v = field(name)) {
            if (v->is_string())
                out = v->get<std::string>();
            else
                bad(name, "a string");
        }
    };
    auto uint = [&](const char* name, uint64_t& out) {
        if (auto* v = field(name)) {
            if (v->is_number_unsigned())
                out = v->get<uint64_t>();
            else if (v->is_number_integer() && v->get<int64_t>() >= 0)
                out = static_cast<uint64_t>(v->get<int64_t>());
            else
                bad(name, "a non-negative integer");
        }
    };
    str("id", s.id);
    str("state", s.state);
    uint("connections", s.connections);
    uint("max_connections", s.max_connections);
    uint("sessions", s.sessions);
    if (auto* v = field("full")) {
        if (v->is_boolean())
            s.full = v->get<bool>();
        else
            bad("full", "a boolean");
    }
    if (auto* v = field("load")) {
        if (v->is_number() && v->get<double>() >= 0 && v->get<double>() <= 1)
            s.load = v->get<double>();
        else
            bad("load", "a number in 0..1");
    }
    if (auto* v = field("pid")) {
        if (v->is_number_integer())
            s.pid = v->get<int64_t>();
        else
            bad("pid", "an integer");
    }
    str("version", s.version);
    if (auto* v = field("uptime_s")) {
        if (v->is_number() && v->get<double>() >= 0)
            s.uptime_s = v->get<double>();
        else
            bad("uptime_s", "a non-negative number");
    }
    // Optional objects: only their shape is checked when present.
    if (auto it = j.find("mesh"); err.empty() && it != j.end() && !it->is_null()) {
        auto& m = *it;
        auto count = [&](const char* name, std::optional<uint64_t>& out) {
            auto f = m.find(name);
            if (f == m.end() || f->is_null()) return;
            if (f->is_number_unsigned())
                out = f->get<uint64_t>();
            else if (err.empty())
                err = std::string("status field 'mesh.") + name + "' is not a non-negative integer";
        };
        if (!m.is_object()) {
            err = "status field 'mesh' is not an object";
        } else {
            count("peers_expected", s.peers_expected);
            count("links_up", s.links_up);
        }
    }
    if (auto it = j.find("secrets"); err.empty() && it != j.end() && !it->is_null()) {
        auto& sec = *it;
        if (!sec.is_object()) {
            err = "status field 'secrets' is not an object";
        } else if (auto f = sec.find("jwt"); f != sec.end() && !f->is_null()) {
            if (!f->is_array())
                err = "status field 'secrets.jwt' is not an array";
            else if (!f->empty()) {
                if ((*f)[0].is_string())
                    s.jwt_fingerprint = (*f)[0].get<std::string>();
                else
                    err = "status field 'secrets.jwt' holds a non-string";
            }
        }
    }
    if (err.empty() && s.state != "serving" && s.state != "draining" && s.state != "stopping")
        err = "status field 'state' is \"" + s.state + "\", expected serving, draining or stopping";
    if (!err.empty()) return err;
    return s;
}

}  // namespace imgate::disp
