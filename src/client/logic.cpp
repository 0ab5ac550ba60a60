#include "client/logic.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <boost/asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>

#include "client/dispatcher_list.hpp"
#include "common/bytes.hpp"
#include "common/frame.hpp"

namespace imgate::client {

using json = nlohmann::json;
using std::chrono::milliseconds;

std::optional<milliseconds> parse_duration(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    if (s.empty()) return std::nullopt;
    size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    std::string num(s.substr(0, i));
    std::string_view unit = s.substr(i);
    if (num.empty() || std::count(num.begin(), num.end(), '.') > 1 || num == ".")
        return std::nullopt;
    char* end = nullptr;
    double v = std::strtod(num.c_str(), &end);
    if (end != num.c_str() + num.size() || !std::isfinite(v) || v < 0) return std::nullopt;
    double ms;
    if (unit.empty() || unit == "s")
        ms = v * 1000;
    else if (unit == "ms")
        ms = v;
    else if (unit == "m")
        ms = v * 60'000;
    else if (unit == "h")
        ms = v * 3'600'000;
    else if (unit == "d")
        ms = v * 86'400'000;
    else
        return std::nullopt;
    if (ms > 1e15) return std::nullopt;
    return milliseconds(static_cast<int64_t>(std::llround(ms)));
}

std::vector<std::string> split_list(std::string_view s) {
    std::vector<std::string> out;
    while (true) {
        auto comma = s.find(',');
        auto item = s.substr(0, comma);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        if (!item.empty()) out.emplace_back(item);
        if (comma == std::string_view::npos) break;
        s.remove_prefix(comma + 1);
    }
    return out;
}

namespace {

// The address a host string names, if it is an address literal ("[::1]" as well as "::1").
std::optional<boost::asio::ip::address> host_address(std::string_view host) {
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    boost::system::error_code ec;
    auto a = boost::asio::ip::make_address(std::string(host), ec);
    if (ec) return std::nullopt;
    return a;
}

bool is_loopback_address(const boost::asio::ip::address& a) {
    if (a.is_v4()) return (a.to_v4().to_uint() >> 24) == 127;
    auto v6 = a.to_v6();
    if (v6.is_v4_mapped())
        return (boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_uint() >> 24) ==
               127;
    return v6.is_loopback();
}

}  // namespace

bool is_loopback_host(std::string_view host) {
    if (host == "localhost") return true;
    auto a = host_address(host);
    return a && is_loopback_address(*a);
}

namespace {

bool private_v4(const boost::asio::ip::network_v4& n) {
    auto a = n.network().to_uint();
    return n.prefix_length() >= 8 &&
           ((a >> 24) == 10 || (a >> 20) == ((172u << 4) | 1) || (a >> 16) == ((192u << 8) | 168));
}

bool private_v6(const boost::asio::ip::network_v6& n) {
    return n.prefix_length() >= 7 && (n.network().to_bytes()[0] & 0xfe) == 0xfc;
}

}  // namespace

bool target_networks::allows(std::string_view host) const {
    if (host == "localhost") return true;
    auto parsed = host_address(host);
    if (!parsed) return false;
    const auto& a = *parsed;
    if (is_loopback_address(a)) return true;
    if (a.is_v4()) {
        for (auto& n : v4)
            if (boost::asio::ip::network_v4(a.to_v4(), 32).is_subnet_of(n)) return true;
        return false;
    }
    for (auto& n : v6)
        if (boost::asio::ip::network_v6(a.to_v6(), 128).is_subnet_of(n)) return true;
    return false;
}

std::string parse_target_networks(const std::vector<std::string>& cidrs,
                                  const std::vector<boost::asio::ip::address>& local,
                                  target_networks& out) {
    for (auto& c : cidrs) {
        boost::system::error_code ec;
        bool on_this_machine = false;
        if (c.find(':') == std::string::npos) {
            auto n = boost::asio::ip::make_network_v4(c, ec);
            if (ec) return "--allow-target " + c + ": not a CIDR such as 10.77.0.0/24";
            n = n.canonical();
            if (!private_v4(n))
                return "--allow-target " + c +
                       ": not a private range (10/8, 172.16/12, 192.168/16); the load generator "
                       "never targets other networks";
            for (auto& a : local)
                if (a.is_v4() && boost::asio::ip::network_v4(a.to_v4(), 32).is_subnet_of(n))
                    on_this_machine = true;
            if (on_this_machine) out.v4.push_back(n);
        } else {
            auto n = boost::asio::ip::make_network_v6(c, ec);
            if (ec) return "--allow-target " + c + ": not a CIDR such as fd00:77::/64";
            n = n.canonical();
            if (!private_v6(n)) return "--allow-target " + c + ": not a private range (fc00::/7)";
            for (auto& a : local)
                if (a.is_v6() && boost::asio::ip::network_v6(a.to_v6(), 128).is_subnet_of(n))
                    on_this_machine = true;
            if (on_this_machine) out.v6.push_back(n);
        }
        if (!on_this_machine)
            return "--allow-target " + c +
                   ": no interface of this machine is on that network (the load generator only "
                   "targets networks made here, such as make run-hosts' bridge)";
    }
    return "";
}

std::vector<boost::asio::ip::address> local_interface_addresses() {
    std::vector<boost::asio::ip::address> out;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return out;
    for (auto* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        if (i->ifa_addr->sa_family == AF_INET) {
            auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
            out.push_back(boost::asio::ip::address_v4(ntohl(sin->sin_addr.s_addr)));
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            auto* sin6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
            boost::asio::ip::address_v6::bytes_type b;
            std::memcpy(b.data(), sin6->sin6_addr.s6_addr, b.size());
            out.push_back(boost::asio::ip::address_v6(b));
        }
    }
    ::freeifaddrs(list);
    return out;
}

std::string http_url::authority() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return h + ":" + std::to_string(port);
}

std::string http_url::origin() const {
    return (tls ? "https://" : "http://") + authority();
}

namespace {

// host[:port] or [v6][:port] of a URL; false with `why` set on a bad one.
bool parse_authority(std::string_view auth, std::string& host, uint16_t& port, std::string& why) {
    if (auth.empty()) {
        why = "missing host";
        return false;
    }
    if (auth.front() == '[' || std::count(auth.begin(), auth.end(), ':') == 1) {
        auto ep = parse_endpoint(auth);
        if (!ep) {
            if (auth.front() == '[' && auth.back() == ']' && auth.size() > 2) {
                host = std::string(auth.substr(1, auth.size() - 2));
                return true;
            }
            why = "bad host:port";
            return false;
        }
        if (ep->port == 0) {
            why = "port 0";
            return false;
        }
        host = ep->host;
        port = ep->port;
        return true;
    }
    if (auth.find(':') != std::string_view::npos) {
        why = "IPv6 addresses must be in brackets";
        return false;
    }
    host = std::string(auth);
    return true;
}

}  // namespace

std::optional<http_url> parse_http_url(std::string_view s, std::string* err) {
    auto fail = [&](const std::string& why) -> std::optional<http_url> {
        if (err) *err = "bad URL \"" + std::string(s) + "\": " + why;
        return std::nullopt;
    };
    http_url u;
    std::string_view rest;
    if (s.substr(0, 7) == "http://") {
        rest = s.substr(7);
    } else if (s.substr(0, 8) == "https://") {
        rest = s.substr(8);
        u.tls = true;
        u.port = 443;
    } else {
        return fail("expected http[s]://host[:port][/path]");
    }
    auto slash = rest.find('/');
    std::string_view auth = rest.substr(0, slash);
    if (slash != std::string_view::npos) {
        u.prefix = std::string(rest.substr(slash));
        while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
    }
    std::string why;
    if (!parse_authority(auth, u.host, u.port, why)) return fail(why);
    return u;
}

std::optional<ws_url> parse_ws_url(std::string_view s, std::string* err) {
    auto fail = [&](const std::string& why) -> std::optional<ws_url> {
        if (err) *err = "bad WebSocket URL \"" + std::string(s) + "\": " + why;
        return std::nullopt;
    };
    ws_url u;
    std::string_view rest;
    if (s.substr(0, 5) == "ws://") {
        rest = s.substr(5);
    } else if (s.substr(0, 6) == "wss://") {
        rest = s.substr(6);
        u.secure = true;
        u.port = 443;
    } else {
        return fail("expected ws[s]://host[:port][/path]");
    }
    auto slash = rest.find('/');
    if (slash != std::string_view::npos) u.path = std::string(rest.substr(slash));
    for (unsigned char c : u.path)
        if (c <= 0x20 || c == 0x7f) return fail("control character or space in the path");
    std::string why;
    if (!parse_authority(rest.substr(0, slash), u.host, u.port, why)) return fail(why);
    return u;
}

std::optional<transport> chosen_transport(const transport_args& a, std::string* err) {
    std::optional<transport> t;
    int flags = int(a.tls) + int(a.ws) + int(a.wss);
    if (flags > 1) {
        if (err) *err = "--tls, --ws and --wss are mutually exclusive: give at most one";
        return std::nullopt;
    }
    if (a.tls) t = transport::tls;
    if (a.ws) t = transport::ws;
    if (a.wss) t = transport::wss;
    if (!a.name.empty()) {
        auto n = parse_transport(a.name);
        if (!n) {
            if (err) *err = "--transport: expected tcp, tls, ws or wss, got \"" + a.name + "\"";
            return std::nullopt;
        }
        if (t && *t != *n) {
            if (err)
                *err =
                    std::string("--transport ") + to_string(*n) + " contradicts --" + to_string(*t);
            return std::nullopt;
        }
        t = n;
    }
    return t.value_or(transport::tcp);
}

size_t frame_size_at(std::string_view bytes) {
    if (bytes.size() < frame_header_size) return 0;
    auto b = reinterpret_cast<const unsigned char*>(bytes.data());
    uint32_t len = (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
    return frame_header_size + size_t(len);
}

std::string check_ws_message(std::string_view msg, uint32_t max_body) {
    if (msg.size() < frame_header_size)
        return "a WebSocket message of " + std::to_string(msg.size()) +
               " bytes is shorter than a frame header (12 bytes)";
    size_t want = frame_size_at(msg);
    uint32_t body = static_cast<uint32_t>(want - frame_header_size);
    if (static_cast<unsigned char>(msg[4]) != client_protocol_version)
        return "a WebSocket message carries a frame of version " +
               std::to_string(static_cast<unsigned char>(msg[4])) + " (expected 1)";
    if (body > max_body)
        return "a WebSocket message carries a frame declaring a " + std::to_string(body) +
               "-byte body, over the " + std::to_string(max_body) + "-byte limit";
    if (msg.size() != want)
        return "a WebSocket message of " + std::to_string(msg.size()) +
               " bytes is not exactly one frame (its header declares " + std::to_string(want) +
               " bytes): each message must carry one frame";
    return "";
}

std::string gateway_addr::to_string() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    std::string a = h + ":" + std::to_string(port);
    return id.empty() ? a : id + " " + a;
}

namespace {

bool read_addr(const json& j, gateway_addr& g, std::string* err, const std::string& where) {
    if (!j.is_object()) {
        if (err) *err = where + ": expected an object";
        return false;
    }
    auto host = j.find("host");
    auto port = j.find("port");
    if (host == j.end() || !host->is_string() || host->get<std::string>().empty()) {
        if (err) *err = where + ".host: missing or not a string";
        return false;
    }
    if (port == j.end() || !port->is_number_integer() || port->get<int64_t>() <= 0 ||
        port->get<int64_t>() > 65535) {
        if (err) *err = where + ".port: missing or not a port number";
        return false;
    }
    g.host = host->get<std::string>();
    g.port = static_cast<uint16_t>(port->get<int64_t>());
    auto id = j.find("id");
    if (id != j.end() && id->is_string()) g.id = id->get<std::string>();
    // The WebSocket transports name the endpoint as a URL; it wins over host/port (a proxy in
    // front may serve the upgrade on another path or port than the gateway binds).
    auto url = j.find("url");
    if (url != j.end() && !url->is_null()) {
        std::string why;
        auto u = url->is_string() ? parse_ws_url(url->get<std::string>(), &why) : std::nullopt;
        if (!u) {
            if (err) *err = where + ".url: " + (why.empty() ? "not a string" : why);
            return false;
        }
        g.host = u->host;
        g.port = u->port;
        g.path = u->path;
    }
    return true;
}

}  // namespace

namespace {

std::optional<reconnect_policy> read_reconnect_policy(const json& j) {
    if (!j.is_object()) return std::nullopt;
    auto ms = [&](const char* k) -> std::optional<std::chrono::milliseconds> {
        auto it = j.find(k);
        if (it == j.end() || !it->is_number_integer()) return std::nullopt;
        auto v = it->get<int64_t>();
        if (v < 0 || v > reconnect_policy::limit.count()) return std::nullopt;
        return std::chrono::milliseconds(v);
    };
    auto base = ms("base_ms"), jitter = ms("jitter_ms"), max = ms("max_ms");
    if (!base || !jitter || !max || base->count() == 0 || *max < *base) return std::nullopt;
    return reconnect_policy{*base, *jitter, *max};
}

}  // namespace

std::optional<reconnect_policy> parse_reconnect_policy(const std::string& json_object) {
    return read_reconnect_policy(json::parse(json_object, nullptr, false));
}

std::chrono::milliseconds reconnect_schedule::jitter() {
    double r = random01_ ? std::clamp(random01_(), 0.0, 1.0) : 1.0;
    return std::chrono::milliseconds(
        static_cast<int64_t>(std::llround(r * double(policy_.jitter.count()))));
}

std::chrono::milliseconds reconnect_schedule::after_loss(
    std::optional<std::chrono::milliseconds> hint) {
    failed_rounds_ = 0;
    if (hint) return *hint;
    return jitter();
}

std::chrono::milliseconds reconnect_schedule::after_failed_round(
    std::optional<std::chrono::milliseconds> hint) {
    // The doubling part is common/backoff's full base (draw 1.0): min(max, base * 2^(n-1)).
    backoff b(policy_.base, policy_.max);
    for (uint32_t i = 0; i < std::min(failed_rounds_, 40u); ++i) b.next_at(1.0);
    if (failed_rounds_ < 1000000) ++failed_rounds_;
    if (hint) return *hint;
    return b.next_at(1.0) + jitter();
}

std::optional<gateway_answer> parse_gateway_answer(std::string_view body, std::string* err) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded()) {
        if (err) *err = "dispatcher answer is not JSON";
        return std::nullopt;
    }
    gateway_answer a;
    if (!read_addr(j, a.primary, err, "answer")) return std::nullopt;
    if (auto t = j.find("transport"); t != j.end() && !t->is_null()) {
        if (!t->is_string()) {
            if (err) *err = "answer.transport: expected a string";
            return std::nullopt;
        }
        a.transport_name = t->get<std::string>();
    }
    auto alts = j.find("alternates");
    if (alts != j.end() && !alts->is_null()) {
        if (!alts->is_array()) {
            if (err) *err = "answer.alternates: expected an array";
            return std::nullopt;
        }
        for (size_t i = 0; i < alts->size(); ++i) {
            gateway_addr g;
            if (!read_addr((*alts)[i], g, err, "answer.alternates[" + std::to_string(i) + "]"))
                return std::nullopt;
            a.alternates.push_back(std::move(g));
        }
    }
    // Optional, and never a reason to refuse an answer: a bad policy is ignored.
    if (auto r = j.find("reconnect"); r != j.end()) a.reconnect = read_reconnect_policy(*r);
    return a;
}

std::string percent_encode(std::string_view s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out;
}

std::string check_answer_transport(const gateway_answer& a, transport want) {
    std::string got = a.transport_name.empty() ? "tcp" : a.transport_name;
    if (got == to_string(want)) return "";
    if (a.transport_name.empty())
        return std::string("the dispatcher's answer names no transport (it only knows tcp); ") +
               "asked for " + to_string(want);
    return "the dispatcher answered transport " + got + ", asked for " + to_string(want);
}

std::string get_gateway_query(const std::string& user, const std::string& region,
                              const std::vector<std::string>& exclude, transport via) {
    std::string q;
    auto add = [&](const char* k, const std::string& v) {
        if (v.empty()) return;
        q += q.empty() ? "" : "&";
        q += k;
        q += '=';
        q += percent_encode(v);
    };
    add("uid", user);
    add("region", region);
    std::string ex;
    for (auto& e : exclude) ex += (ex.empty() ? "" : ",") + e;
    add("exclude", ex);
    if (via != transport::tcp) add("transport", to_string(via));
    return q;
}

void failover_plan::start(const gateway_answer& a) {
    order_.clear();
    pos_ = 0;
    std::vector<gateway_addr> retry_last;
    auto add = [&](const gateway_addr& g) {
        auto same = [&](const gateway_addr& o) {
            return (!g.id.empty() && o.id == g.id) || (o.host == g.host && o.port == g.port);
        };
        if (std::any_of(order_.begin(), order_.end(), same) ||
            std::any_of(retry_last.begin(), retry_last.end(), same))
            return;
        bool failed =
            std::find(failed_.begin(), failed_.end(),
                      g.id.empty() ? g.host + ":" + std::to_string(g.port) : g.id) != failed_.end();
        (failed ? retry_last : order_).push_back(g);
    };
    add(a.primary);
    for (auto& g : a.alternates) add(g);
    order_.insert(order_.end(), retry_last.begin(), retry_last.end());
}

std::optional<gateway_addr> failover_plan::next() {
    if (pos_ >= order_.size()) return std::nullopt;
    return order_[pos_++];
}

void failover_plan::mark_failed(const gateway_addr& g) {
    // Ids are what the dispatcher's exclude understands; an address stands in when there's none.
    std::string key = g.id.empty() ? g.host + ":" + std::to_string(g.port) : g.id;
    if (std::find(failed_.begin(), failed_.end(), key) != failed_.end()) return;
    if (failed_.size() >= max_exclude) failed_.erase(failed_.begin());
    failed_.push_back(key);
    if (g.id.empty()) return;
    if (exclude_.size() >= max_exclude) exclude_.erase(exclude_.begin());
    exclude_.push_back(std::move(key));
}

void latency_stats::add(uint64_t us) {
    ++count_;
    sum_ += us;
    max_ = std::max(max_, us);
    if (samples_.size() < capacity_) {
        samples_.push_back(us);
        sorted_ = false;
        return;
    }
    // Algorithm R: the i-th sample replaces a random slot with probability capacity / i.
    std::uniform_int_distribution<uint64_t> d(0, count_ - 1);
    uint64_t slot = d(rng_);
    if (slot < capacity_) {
        samples_[slot] = us;
        sorted_ = false;
    }
}

uint64_t latency_stats::percentile(double q) const {
    if (samples_.empty()) return 0;
    if (!sorted_) {
        std::sort(samples_.begin(), samples_.end());
        sorted_ = true;
    }
    q = std::clamp(q, 0.0, 100.0);
    if (q >= 100.0 && samples_.size() == count_) return samples_.back();
    auto rank = static_cast<size_t>(std::ceil(q / 100.0 * double(samples_.size())));
    if (rank == 0) rank = 1;
    return samples_[rank - 1];
}

std::string validate_load(const load_params& p) {
    using lp = load_params;
    if (p.gateways.empty() && p.dispatchers.empty())
        return "give the targets: --gateways host:port,... or --dispatcher URL";
    if (!p.gateways.empty() && !p.dispatchers.empty())
        return "--gateways and --dispatcher are mutually exclusive";
    for (auto& g : p.gateways) {
        if (!p.allowed.allows(g.host))
            return "refusing to load " + g.to_string() +
                   ": the load generator only targets loopback (127.0.0.0/8, ::1) and the "
                   "networks of --allow-target";
        if (g.port == 0) return "gateway " + g.to_string() + ": port 0";
    }
    if (!p.dispatchers.empty()) {
        std::string err;
        auto urls = parse_dispatcher_urls(p.dispatchers, &err);
        if (!urls) return err;
        for (auto& u : *urls)
            if (!p.allowed.allows(u.host))
                return "refusing to load dispatcher " + u.host +
                       ": the load generator only targets loopback (127.0.0.0/8, ::1) and the "
                       "networks of --allow-target";
    }
    if (p.shard_count < 1 || p.shard_count > lp::max_shards || p.shard_index >= p.shard_count)
        return "--shard I/N: need 0 <= I < N <= " + std::to_string(lp::max_shards);
    if (p.shard_count == 1) {
        if (p.clients < 2 || p.clients > lp::max_clients)
            return "--clients must be in [2, " + std::to_string(lp::max_clients) + "]";
    } else {
        if (p.clients < 2 || p.clients > lp::max_sharded_clients)
            return "--clients must be in [2, " + std::to_string(lp::max_sharded_clients) +
                   "] with --shard";
        if (p.local_clients() > lp::max_clients)
            return "--shard: this process's share (" + std::to_string(p.local_clients()) +
                   " clients) exceeds " + std::to_string(lp::max_clients) + "; use more shards";
        if (p.local_clients() == 0) return "--shard: this shard has no clients";
    }
    if (!p.run_id.empty() && !valid_run_id(p.run_id))
        return "--run-id must be 1.." + std::to_string(lp::max_run_id) + " of [A-Za-z0-9_-]";
    if (p.reconnect && p.dispatchers.empty())
        return "--reconnect needs --dispatcher (reconnects ask it for a gateway)";
    if (p.reconnect_concurrency == 0) return "--reconnect-concurrency must be >= 1";
    if (p.rooms > p.clients) return "--rooms must not exceed --clients";
    bool rate_ok = p.reconnect ? p.rate >= 0 : p.rate > 0;
    if (!rate_ok || p.rate > lp::max_rate)
        return std::string("--rate must be in ") + (p.reconnect ? "[0, " : "(0, ") +
               std::to_string(lp::max_rate) + "] sends/s";
    if (!(p.duration_s > 0) || p.duration_s > lp::max_duration_s)
        return "--duration must be in (0, " + std::to_string(lp::max_duration_s) + "] s";
    if (p.payload_bytes < lp::min_payload || p.payload_bytes > lp::max_payload)
        return "--payload-bytes must be in [" + std::to_string(lp::min_payload) + ", " +
               std::to_string(lp::max_payload) + "]";
    if (!(p.room_share >= 0 && p.room_share <= 1)) return "--room-share must be in [0, 1]";
    if (p.rooms == 0 && p.room_share > 0) return "--room-share > 0 needs --rooms >= 1";
    if (p.connect_concurrency == 0) return "--connect-concurrency must be >= 1";
    if (p.source_spread > 254) return "--source-spread must be in [0, 254]";
    return "";
}

std::optional<std::pair<uint32_t, uint32_t>> parse_shard(std::string_view s) {
    auto slash = s.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    uint32_t i = 0, n = 0;
    auto a = s.substr(0, slash), b = s.substr(slash + 1);
    if (a.empty() || b.empty()) return std::nullopt;
    auto [pa, ea] = std::from_chars(a.data(), a.data() + a.size(), i);
    auto [pb, eb] = std::from_chars(b.data(), b.data() + b.size(), n);
    if (ea != std::errc() || eb != std::errc() || pa != a.data() + a.size() ||
        pb != b.data() + b.size())
        return std::nullopt;
    return std::make_pair(i, n);
}

bool valid_run_id(std::string_view s) {
    if (s.empty() || s.size() > load_params::max_run_id) return false;
    return std::all_of(s.begin(), s.end(),
                       [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '-'; });
}

int send_exit_code(proto::code status) {
    if (status == proto::code::ok) return exit_delivered;
    if (status == proto::code::offline) return exit_offline;
    return exit_error;
}

namespace {

std::string clock_text(uint64_t ts_ms) {
    std::time_t t = static_cast<std::time_t>(ts_ms / 1000);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[16];
    std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
    return buf;
}

std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Human rendering keeps control characters from reaching the terminal.
std::string printable(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    return out;
}

}  // namespace

std::string render_deliver(const proto::deliver_msg& m, bool as_json) {
    bool room = m.kind == proto::target_kind::room;
    if (as_json) {
        json j = {{"type", "deliver"},
                  {"server_msg_id", m.server_msg_id},
                  {"kind", room ? "room" : "user"},
                  {"from", m.from_user},
                  {"from_device", m.from_device},
                  {"ts_ms", m.ts_ms},
                  {"text", m.payload}};
        if (room) j["room"] = m.room;
        return dump(j);
    }
    std::string who = m.from_user + (m.from_device.empty() ? "" : "/" + m.from_device);
    std::string where = room ? " [" + m.room + "]" : "";
    return "[" + clock_text(m.ts_ms) + "]" + where + " " + printable(who) + ": " +
           printable(m.payload) + "  (#" + std::to_string(m.server_msg_id) + ")";
}

std::string render_push(const proto::push_msg& m, bool as_json) {
    if (as_json) {
        json j = {{"type", "push"},
                  {"server_msg_id", m.server_msg_id},
                  {"ts_ms", m.ts_ms},
                  {"text", m.payload}};
        if (!m.room.empty()) j["room"] = m.room;
        return dump(j);
    }
    std::string where = m.room.empty() ? "" : " [" + m.room + "]";
    return "[" + clock_text(m.ts_ms) + "]" + where + " push: " + printable(m.payload) + "  (#" +
           std::to_string(m.server_msg_id) + ")";
}

std::string render_send_result(const proto::send_result_msg& r, const std::string& target,
                               bool room, bool as_json) {
    if (as_json) {
        return dump(json{{"type", "send_result"},
                         {"status", proto::to_string(r.status)},
                         {"to", target},
                         {"kind", room ? "room" : "user"},
                         {"client_msg_id", r.client_msg_id},
                         {"server_msg_id", r.server_msg_id},
                         {"reached", r.reached}});
    }
    return std::string(proto::to_string(r.status)) + ": " + (room ? "room " : "user ") + target +
           ", reached " + std::to_string(r.reached) + " session" + (r.reached == 1 ? "" : "s") +
           " (server id " + std::to_string(r.server_msg_id) + ")";
}

std::string render_receipt(const proto::receipt_msg& r, bool as_json) {
    if (as_json) {
        return dump(json{{"type", "receipt"},
                         {"client_msg_id", r.client_msg_id},
                         {"server_msg_id", r.server_msg_id},
                         {"user", r.user},
                         {"device", r.device}});
    }
    return "receipt: read by " + printable(r.user) +
           (r.device.empty() ? "" : "/" + printable(r.device)) + " (server id " +
           std::to_string(r.server_msg_id) + ")";
}

std::string make_load_payload(uint64_t sent_ns, uint32_t size) {
    std::string p = "imgL";
    byte_writer w(p);
    w.u64(sent_ns);
    if (p.size() < size) p.append(size - p.size(), 'x');
    return p;
}

std::optional<uint64_t> read_load_payload(std::string_view payload) {
    if (payload.size() < 12 || payload.substr(0, 4) != "imgL") return std::nullopt;
    byte_reader r(payload.substr(4, 8));
    return r.u64();
}

}  // namespace imgate::client
