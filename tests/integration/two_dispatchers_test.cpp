// Two real dispatchers on one fleet of real gateways, sharing nothing but the fleet file (issue
// 15, item 3): their combined picks follow the weights while the fleet is steady, and neither
// herds new clients onto a gateway that comes back: each one's pick counter since the last pull
// only sees its own picks, and what bounds a returning gateway's share is each dispatcher's slow
// start and its power-of-two-choices draw (docs/architecture.md, "Picking"), not the count of
// dispatchers. The figures are printed as markdown tables for the docs.
//
// The picked clients connect. The dispatcher's load figure is the gateway's `connections`
// (accepted TCP connections, logged in or not, from /status); a dispatcher learns of the other's
// clients only through it, at the next pull. Picks that never connect would leave every
// gateway at 0 and test each dispatcher alone. A LOGIN adds nothing the dispatcher can see, so
// the clients connect and stay without logging in (login_timeout is raised past the test).
// They stay for the next `held` picks, not for ever: 10 000 open connections would put the
// gateways at ~17% of max_connections (capped by the descriptor limit), where the headroom
// factor deliberately favours the emptier gateways — with the same max_connections on every
// gateway here, unlike machines sized like their weights — and the test would measure headroom,
// not the split.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cmath>
#include <cstdio>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>

#include "fault_fixture.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;

const std::vector<std::string> gw_ids = {"gw1", "gw2", "gw3", "gw4"};
const std::vector<uint32_t> weights = {100, 100, 50, 50};

double weight_share(size_t i) {
    double total = 0;
    for (auto w : weights) total += w;
    return weights[i] / total;
}

// GET /get-tcp-ip on one kept-alive connection to a dispatcher's public listener.
class pick_client {
  public:
    explicit pick_client(std::string addr) : addr_(std::move(addr)) {}

    struct answer {
        std::string id;
        std::string client;  // host:port handed out
    };
    // The gateway handed out; nullopt on any other answer or a failure (reconnects once).
    std::optional<answer> pick(const std::string& uid) {
        for (int attempt = 0; attempt < 2; ++attempt) {
            try {
                if (!sock_.is_open()) {
                    auto [host, port] = split_hostport(addr_);
                    sock_.connect({asio::ip::make_address(host), port});
                }
                http::request<http::empty_body> req{http::verb::get, "/get-tcp-ip?uid=" + uid, 11};
                req.set(http::field::host, "dispatcher");
                req.keep_alive(true);
                http::write(sock_, req);
                http::response<http::string_body> res;
                http::read(sock_, buf_, res);
                if (!res.keep_alive()) close();
                if (res.result_int() != 200) return std::nullopt;
                auto j = json::parse(res.body(), nullptr, false);
                if (!j.is_object() || !j.contains("id")) return std::nullopt;
                return answer{j["id"], j["host"].get<std::string>() + ":" +
                                           std::to_string(j["port"].get<int>())};
            } catch (const std::exception&) {
                close();
            }
        }
        return std::nullopt;
    }

  private:
    void close() {
        boost::system::error_code ec;
        sock_.close(ec);
        buf_.clear();
    }
    std::string addr_;
    asio::io_context io_;
    asio::ip::tcp::socket sock_{io_};
    boost::beast::flat_buffer buf_;
};

// One real imgate-dispatcher on the fleet's file, with its own dispatcher.yaml (id and poll
// settings) and a kept-alive client to its public listener.
struct dispatcher {
    dispatcher(fault::fleet& f, const std::string& name, const std::string& poll) {
        auto yaml = f.dir().file(name + ".yaml");
        write_file(yaml, "id: " + name +
                             "\nfleet: fleet.yaml\nlisten: 127.0.0.1:0\n"
                             "admin_listen: 127.0.0.1:0\npoll: " +
                             poll + "\nregions: {default: local}\nlog: {level: info}\n");
        proc =
            std::make_unique<daemon_process>(name, binary_path("imgate-dispatcher"),
                                             std::vector<std::string>{"--config", yaml}, f.dir());
        if (proc->wait_ready()) client = std::make_unique<pick_client>(proc->addr("public"));
    }
    // Per gateway id, its entry of the admin /status.
    std::map<std::string, json> gateways() {
        std::map<std::string, json> out;
        auto s = http_get(proc->addr("admin"), "/status").json();
        if (s.is_object() && s.contains("gateways"))
            for (auto& g : s["gateways"]) out[g["id"]] = g;
        return out;
    }
    std::string state(const std::string& id) {
        auto g = gateways();
        return g.count(id) ? g[id].value("state", "?") : "?";
    }
    bool all_up() {
        auto g = gateways();
        for (auto& id : gw_ids)
            if (!g.count(id) || g[id].value("state", "") != "up") return false;
        return true;
    }
    std::unique_ptr<daemon_process> proc;
    std::unique_ptr<pick_client> client;
};

// The clients the picks placed, connected to their gateway and kept for the next `capacity`
// picks (the oldest leaves when a new one comes).
class held_clients {
  public:
    explicit held_clients(size_t capacity) : capacity_(capacity) {}
    bool add(const pick_client::answer& a) {
        auto c = std::make_unique<raw_conn>();
        if (!c->connect(a.client)) return false;
        held_.push_back({a.id, std::move(c)});
        if (held_.size() > capacity_) held_.pop_front();
        return true;
    }
    // Forgets the clients of a gateway that died; returns how many it held.
    size_t drop(const std::string& id) {
        size_t before = held_.size();
        std::erase_if(held_, [&](const auto& h) { return h.first == id; });
        return before - held_.size();
    }

  private:
    size_t capacity_;
    std::deque<std::pair<std::string, std::unique_ptr<raw_conn>>> held_;
};

// Probability that gateway i is one of pick()'s two distinct weighted draws
// (fleet_state::choose), with effective weights w: the most it can receive however the load
// comparison between the two goes. About twice its share of the weights when that share is
// small; for 100/100/50/50 at full weight, 0.63 for a 100 (1.9×) and 0.37 for a 50 (2.2×).
double p_drawn(const std::vector<double>& w, size_t i) {
    double total = 0;
    for (double x : w) total += x;
    if (total <= 0 || w[i] <= 0) return 0;
    double p = w[i] / total;  // drawn first
    for (size_t j = 0; j < w.size(); ++j)
        if (j != i && w[j] > 0) p += (w[j] / total) * (w[i] / (total - w[j]));  // drawn second
    return std::min(p, 1.0);
}

// The effective weights (static × headroom × slow start; 0 unless up) a dispatcher uses now.
std::vector<double> effective_weights(dispatcher& d) {
    auto g = d.gateways();
    std::vector<double> w;
    for (auto& id : gw_ids)
        w.push_back(g.count(id) && g[id].value("state", "") == "up"
                        ? g[id].value("effective_weight", 0.0)
                        : 0.0);
    return w;
}

double slow_start_of(dispatcher& d, const std::string& id) {
    auto g = d.gateways();
    if (!g.count(id) || g[id].value("state", "") != "up") return 0;
    return g[id].value("slow_start_factor", 0.0);
}

// "élodie.N@example.com", percent-encoded as an app puts it in the query.
std::string uid(int n) {
    return "%C3%A9lodie." + std::to_string(n) + "%40example.com";
}

std::string gateway_yaml() {
    // Connected clients never log in (see the top comment): keep them past the test.
    return "timeouts:\n  login_timeout: 10m\n";
}

fault::fleet::options fleet_options() {
    fault::fleet::options o;
    o.gateways = int(gw_ids.size());
    o.weights = weights;
    o.gateway_yaml = gateway_yaml();
    return o;
}

}  // namespace

// (a) A steady fleet, weights 100/100/50/50: 10 000 picks at 1000/s alternating between the two
// dispatchers, each client connecting to what it was handed. Each gateway's share of the
// combined picks is within 5% (relative) of its share of the weights.
TEST(TwoDispatchers, CombinedPicksFollowTheWeightsOnASteadyFleet) {
    fault::fleet f(fleet_options());
    ASSERT_TRUE(f.start());
    const std::string poll = "{interval: 100ms, timeout: 80ms, rise: 1, fall: 2, slow_start: 0ms}";
    dispatcher a(f, "disp-a", poll), b(f, "disp-b", poll);
    ASSERT_TRUE(a.client) << a.proc->log();
    ASSERT_TRUE(b.client) << b.proc->log();
    ASSERT_TRUE(eventually([&] { return a.all_up() && b.all_up(); }, 10s));

    // 1000 picks/s in all: ~50 per dispatcher per pull interval, against ~300-700 connected
    // clients per gateway, as at any realistic rate the pulled connections outweigh the picks
    // since the last pull.
    const int picks = 10000, rate = 1000;
    held_clients held(2000);
    std::map<std::string, std::map<std::string, int>> by;  // dispatcher -> gateway -> picks
    int failed = 0, unconnected = 0;
    auto t = std::chrono::steady_clock::now();
    for (int n = 0; n < picks; ++n) {
        std::this_thread::sleep_until(t);  // pacing the arrival rate, not waiting for an event
        t += std::chrono::microseconds(1000000 / rate);
        auto& d = n % 2 == 0 ? a : b;
        auto got = d.client->pick(uid(n));
        if (!got) {
            ++failed;
            continue;
        }
        by[d.proc->name()][got->id]++;
        if (!held.add(*got)) ++unconnected;
    }
    EXPECT_EQ(failed, 0);
    EXPECT_EQ(unconnected, 0);

    std::printf(
        "\n(a) steady fleet, %d picks at %d/s alternating between two dispatchers, each client "
        "connected for the next 2000 picks\n"
        "| gateway | weight | weight share | combined share | disp-a share | disp-b share |\n"
        "| --- | --- | --- | --- | --- | --- |\n",
        picks, rate);
    int a_total = 0, b_total = 0;
    for (auto& id : gw_ids) {
        a_total += by["disp-a"][id];
        b_total += by["disp-b"][id];
    }
    for (size_t i = 0; i < gw_ids.size(); ++i) {
        const auto& id = gw_ids[i];
        int na = by["disp-a"][id], nb = by["disp-b"][id];
        double combined = double(na + nb) / double(a_total + b_total);
        std::printf("| %s | %u | %.2f%% | %.2f%% | %.2f%% | %.2f%% |\n", id.c_str(), weights[i],
                    100 * weight_share(i), 100 * combined, 100.0 * na / a_total,
                    100.0 * nb / b_total);
        EXPECT_NEAR(combined, weight_share(i), 0.05 * weight_share(i)) << id;
    }
    // The dispatchers count the same picks as their answers did.
    for (auto* d : {&a, &b}) {
        auto g = d->gateways();
        for (auto& id : gw_ids)
            EXPECT_EQ(g[id].value("picks", -1), by[d->proc->name()][id]) << d->proc->name() << id;
    }
}

namespace {

// One return of gw1 (killed, taken out by both dispatchers, restarted): picks at `rate` per
// second through `via` in turn, each client connecting, in 1 s windows until both dispatchers
// have ramped gw1 to full weight (plus a window). Per window: picks by gateway, and the
// effective weights both dispatchers reported at its start and end.
struct window {
    std::map<std::string, int> picks;
    int total = 0;
    double ramp_a = 0, ramp_b = 0;        // gw1's slow-start factor at the end (0: not up)
    std::vector<std::vector<double>> ew;  // effective weights: a and b at start, a and b at end
};

struct return_run {
    std::vector<window> windows;
    bool ramped = false;  // both reached full weight
    int failed = 0, unconnected = 0;
};

return_run gateway_returns(fault::fleet& f, dispatcher& a, dispatcher& b,
                           const std::vector<dispatcher*>& via, held_clients& held, int rate) {
    return_run run;
    int n = 0;
    auto next = [&]() -> std::optional<pick_client::answer> {
        auto& d = *via[size_t(n) % via.size()];
        return d.client->pick(uid(100000 + n++));
    };
    f.gw("gw1").signal(SIGKILL);
    f.gw("gw1").wait_exit();
    if (!eventually([&] { return a.state("gw1") == "down" && b.state("gw1") == "down"; }, 10s))
        return run;
    // Its clients come back through the dispatchers and land on the others.
    for (size_t k = held.drop("gw1"); k > 0; --k)
        if (auto got = next(); !got || !held.add(*got)) ++run.unconnected;
    if (!f.start_gateway("gw1")) return run;

    auto interval = std::chrono::microseconds(1000000 / rate);
    auto t = std::chrono::steady_clock::now();
    for (int w = 0; w < 30; ++w) {
        window win;
        win.ew = {effective_weights(a), effective_weights(b)};
        auto end = t + 1s;
        while (t < end) {
            std::this_thread::sleep_until(t);  // pacing the arrival rate, not waiting for an event
            t += interval;
            auto got = next();
            if (!got) {
                ++run.failed;
                continue;
            }
            win.picks[got->id]++;
            win.total++;
            if (!held.add(*got)) ++run.unconnected;
        }
        win.ew.push_back(effective_weights(a));
        win.ew.push_back(effective_weights(b));
        win.ramp_a = slow_start_of(a, "gw1");
        win.ramp_b = slow_start_of(b, "gw1");
        bool done = win.ramp_a >= 1.0 && win.ramp_b >= 1.0;
        run.windows.push_back(std::move(win));
        if (run.ramped) break;  // one full window after the ramp
        run.ramped = done;
    }
    return run;
}

// The P2C bound of gateway i over a window: the largest p_drawn among the four snapshots (gw1's
// weight only grows during a window, the others' share of the weights only shrinks).
double window_bound(const window& w, size_t i) {
    double b = 0;
    for (auto& ew : w.ew) b = std::max(b, p_drawn(ew, i));
    return b;
}

// Share of gw1 over the windows in which it was ramping in at least one dispatcher.
double ramp_share(const return_run& r) {
    int gw1 = 0, all = 0;
    for (auto& w : r.windows) {
        bool ramping = (w.ramp_a > 0 && w.ramp_a < 1) || (w.ramp_b > 0 && w.ramp_b < 1);
        if (!ramping) continue;
        gw1 += w.picks.count("gw1") ? w.picks.at("gw1") : 0;
        all += w.total;
    }
    return all > 0 ? double(gw1) / all : 0;
}

void print_run(const char* label, const return_run& r) {
    std::printf(
        "\n(b) gw1 returns, picks through %s\n"
        "| second | gw1 slow start (disp-a / disp-b) | picks | gw1 | gw2 | gw3 | gw4 | gw1 "
        "share | gw1 P2C bound |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        label);
    for (size_t s = 0; s < r.windows.size(); ++s) {
        const auto& w = r.windows[s];
        auto count = [&](const char* id) { return w.picks.count(id) ? w.picks.at(id) : 0; };
        std::printf("| %zu | %.2f / %.2f | %d | %d | %d | %d | %d | %.1f%% | %.1f%% |\n", s + 1,
                    w.ramp_a, w.ramp_b, w.total, count("gw1"), count("gw2"), count("gw3"),
                    count("gw4"), w.total ? 100.0 * count("gw1") / w.total : 0.0,
                    100 * window_bound(w, 0));
    }
    std::printf("gw1's share while ramping: %.1f%%\n", 100 * ramp_share(r));
}

// Every gateway's share of every window stays within its P2C bound, with room for the noise of
// a few hundred picks (3 sigma of a binomial at the bound, plus 2 points).
void expect_bounded(const char* label, const return_run& r) {
    for (size_t s = 0; s < r.windows.size(); ++s) {
        const auto& w = r.windows[s];
        if (w.total == 0) continue;
        for (size_t i = 0; i < gw_ids.size(); ++i) {
            double bound = window_bound(w, i);
            double share = double(w.picks.count(gw_ids[i]) ? w.picks.at(gw_ids[i]) : 0) / w.total;
            double noise = 3 * std::sqrt(bound * (1 - bound) / w.total) + 0.02;
            EXPECT_LE(share, bound + noise)
                << label << ", second " << s + 1 << ", " << gw_ids[i] << ": share " << share
                << " above its two-choices bound " << bound;
        }
    }
}

}  // namespace

// (b) gw1 (weight 100) is killed, both dispatchers take it out, its clients land on the others;
// it restarts, and while both dispatchers re-admit it (rise, then a 4 s slow start) picks come
// at 400/s. Done twice on the same fleet: all picks through one dispatcher, then the same picks
// alternating between both. In every second, each gateway's share stays within what the two
// weighted draws of a pick allow given the effective weights both dispatchers report (gw1's
// shrunk by slow start): a gateway wins only when it is drawn, whatever the load comparison
// says, so two dispatchers that each see only their own picks cannot give it more than each
// gives it alone. And gw1's share over its ramp with two dispatchers is about the one-dispatcher
// figure, not twice it.
TEST(TwoDispatchers, ReturningGatewayIsRampedInByEachWithoutHerding) {
    auto o = fleet_options();
    fault::fleet f(o);
    ASSERT_TRUE(f.start());
    const std::string poll = "{interval: 100ms, timeout: 80ms, rise: 2, fall: 2, slow_start: 4s}";
    dispatcher a(f, "disp-a", poll), b(f, "disp-b", poll);
    ASSERT_TRUE(a.client) << a.proc->log();
    ASSERT_TRUE(b.client) << b.proc->log();
    ASSERT_TRUE(eventually([&] { return a.all_up() && b.all_up(); }, 10s));

    // The fleet's clients before the failure, placed by both dispatchers.
    held_clients held(1500);
    for (int n = 0; n < 1500; ++n) {
        auto& d = n % 2 == 0 ? a : b;
        auto got = d.client->pick(uid(n));
        ASSERT_TRUE(got);
        ASSERT_TRUE(held.add(*got));
    }

    const int rate = 400;
    auto one = gateway_returns(f, a, b, {&a}, held, rate);
    print_run("one dispatcher (disp-a)", one);
    ASSERT_TRUE(one.ramped) << a.proc->log();
    auto two = gateway_returns(f, a, b, {&a, &b}, held, rate);
    print_run("two dispatchers (disp-a and disp-b in turn)", two);
    ASSERT_TRUE(two.ramped) << a.proc->log() << b.proc->log();

    for (auto* r : {&one, &two}) {
        EXPECT_EQ(r->failed, 0);
        EXPECT_EQ(r->unconnected, 0);
    }
    expect_bounded("one dispatcher", one);
    expect_bounded("two dispatchers", two);
    // Not twice: with two dispatchers gw1 gets about what one gives it while ramping.
    double s1 = ramp_share(one), s2 = ramp_share(two);
    EXPECT_GT(s1, 0);
    EXPECT_LT(s2, 1.5 * s1 + 0.02) << "two dispatchers gave the returning gateway " << s2
                                   << " of the picks while ramping, one gave it " << s1;
}
