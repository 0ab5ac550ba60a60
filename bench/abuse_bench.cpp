// Hostile clients against one real gateway (issue 12), loopback only, every loop bounded in count
// and time: the RSS of connections holding pre-login partial frames, and the gateway's CPU under a
// JOIN/LEAVE flood from one session, and from a flooder that logs in again after every flood
// close (with and without limits.flood_penalty). Run by bench/abuse_bench.sh; numbers in
// docs/benchmarks.md "Hostile clients (issue 12)".
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "tests/integration/abuse_support.hpp"
#include "tests/integration/fault_fixture.hpp"

using namespace imgate;
using namespace imgate::test;
using namespace imgate::test::fault;
using namespace imgate::test::abuse;
using namespace std::chrono_literals;

namespace {

struct options {
    std::string gateway_bin;
    uint32_t declared = 8192 + 2;  // max_token_bytes + the str16 prefix: the pre-login limit
    int connections = 1000;
    double seconds = 5;
};

[[noreturn]] void fail(const std::string& what, fleet* f = nullptr) {
    std::fprintf(stderr, "abuse_bench: %s\n", what.c_str());
    if (f && !f->ids().empty()) std::fprintf(stderr, "%s\n", f->gw("gw1").log().c_str());
    std::exit(1);
}

fleet::options gateway(const options& o, const std::string& yaml) {
    fleet::options fo;
    fo.gateway_yaml = yaml;
    fo.gateway_binary = o.gateway_bin;
    return fo;
}

// `n` connections, each sending a header declaring `declared` bytes and all but 200 of them; the
// gateway's RSS before and after (a fresh session's PING round trip shows all were read).
void prelogin_rss(const options& o, uint32_t declared) {
    fleet f(gateway(o, "limits: {max_connections: 3000}\ntimeouts: {login_timeout: 30s}\n"));
    if (!f.start()) fail("gateway did not start", &f);
    pid_t pid = f.gw("gw1").pid();
    long before = status_kb(pid, "VmRSS");
    std::vector<raw_conn> conns(size_t(o.connections));
    std::string rest(declared > 200 ? declared - 200 : 0, 't');
    for (auto& c : conns) {
        if (!c.connect(f.client_addr("gw1"))) fail("connect failed (descriptor limit?)");
        c.send(header(declared), 100ms);
        c.send(rest, 100ms);  // may fail: a header over the limit is refused at once
    }
    auto probe = f.client("gw1", "probe");
    if (!probe || !ping_ok(*probe, 1)) fail("probe session failed", &f);
    long after = status_kb(pid, "VmRSS");
    int closed = 0;
    for (auto& c : conns)
        if (c.is_closed()) ++closed;
    std::printf(
        "%d pre-login partial frames declaring %u bytes: VmRSS %ld -> %ld KiB (+%ld KiB, %.2f KiB "
        "per connection), %d closed by the gateway\n",
        o.connections, declared, before, after, after - before,
        double(after - before) / o.connections, closed);
}

std::string join_leave_batch() {
    std::string unit =
        proto::encode(proto::join_msg{"r"}, 7) + proto::encode(proto::leave_msg{"r"}, 8);
    std::string batch;
    while (batch.size() < 64 * 1024) batch += unit;
    return batch;
}

// One session floods JOIN/LEAVE for o.seconds; the gateway's CPU over that interval.
void single_flood(const options& o) {
    fleet f(gateway(o, ""));
    if (!f.start()) fail("gateway did not start", &f);
    raw_conn c = logged_in_raw(f.client_addr("gw1"), "mallory@example.com");
    if (c.is_closed()) fail("flooder could not log in", &f);
    auto& gw = f.gw("gw1");
    const std::string batch = join_leave_batch();
    double cpu0 = gw.cpu_seconds();
    auto t0 = std::chrono::steady_clock::now();
    auto end = t0 + std::chrono::duration<double>(o.seconds);
    size_t batches = 0;
    double closed_after = -1;
    while (std::chrono::steady_clock::now() < end) {
        if (!c.is_closed()) {
            if (c.send(batch, 50ms)) ++batches;
            c.pump();
            if (c.is_closed())
                closed_after =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        } else {
            // Closed: the measuring interval runs on with the gateway idle.
            std::this_thread::sleep_for(50ms);
        }
    }
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cpu = gw.cpu_seconds() - cpu0;
    std::printf(
        "one session's join/leave flood, %.1f s: %zu x 64 KiB written, %s; "
        "gateway CPU %.3f s = %.1f%% of a core\n",
        wall, batches,
        closed_after < 0 ? "close not seen by the flooder"
                         : ("closed after " + std::to_string(closed_after) + " s").c_str(),
        cpu, 100 * cpu / wall);
}

// The flooder logs in again after every flood close (or refused LOGIN) and floods on.
// penalty: the limits.flood_penalty value written to the config, empty: the key is left out
// (a build before it rejects the key).
// extra: more limits: keys ("login_rate: 20, ").
void reconnect_flood(const options& o, const std::string& penalty, const std::string& extra = "") {
    std::string yaml =
        penalty.empty() ? "" : "limits: {" + extra + "flood_penalty: " + penalty + "}\n";
    fleet f(gateway(o, yaml));
    if (!f.start()) {
        std::printf("reconnect flood with flood_penalty %s: this gateway does not start with it\n",
                    penalty.c_str());
        return;
    }
    auto& gw = f.gw("gw1");
    const std::string batch = join_leave_batch();
    std::optional<raw_conn> c;
    size_t logins = 0, refused_logins = 0, batches = 0;
    double cpu0 = gw.cpu_seconds();
    auto t0 = std::chrono::steady_clock::now();
    auto end = t0 + std::chrono::duration<double>(o.seconds);
    // Bounded in time and in login attempts.
    while (std::chrono::steady_clock::now() < end && logins + refused_logins < 200000) {
        if (!c || c->is_closed()) {
            c.reset();
            c.emplace(logged_in_raw(f.client_addr("gw1"), "mallory@example.com"));
            if (c->is_closed()) {
                ++refused_logins;
                continue;
            }
            ++logins;
        }
        if (c->send(batch, 50ms)) ++batches;
        c->pump();
    }
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cpu = gw.cpu_seconds() - cpu0;
    std::printf(
        "join/leave flood for %.1f s, logging in again after each close (%sflood_penalty %s): %zu "
        "logins, %zu refused, %zu x 64 KiB written, %g flood closes; gateway CPU %.3f s = %.1f%% "
        "of a core\n",
        wall, extra.c_str(), penalty.empty() ? "not set" : penalty.c_str(), logins, refused_logins,
        batches, f.gw_metric("gw1", "imgate_gateway_flood_closes_total"), cpu, 100 * cpu / wall);
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    std::vector<std::string> penalties{"0s", "30s"};
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) fail("missing value for " + a);
            return argv[++i];
        };
        if (a == "--gateway-bin")
            o.gateway_bin = next();
        else if (a == "--declared")
            o.declared = uint32_t(std::stoul(next()));
        else if (a == "--connections")
            o.connections = std::clamp(std::stoi(next()), 1, 2000);
        else if (a == "--seconds")
            o.seconds = std::clamp(std::stod(next()), 0.5, 60.0);
        else if (a == "--no-penalty-key")
            penalties = {""};
        else
            fail("unknown argument " + a +
                 " (--gateway-bin PATH --declared N --connections N --seconds S "
                 "--no-penalty-key)");
    }
    if (o.gateway_bin.empty()) fail("--gateway-bin is required");
    if (!raise_fd_limit(rlim_t(o.connections) * 2 + 512))
        fail("cannot raise the descriptor limit for " + std::to_string(o.connections) +
             " connections");
    prelogin_rss(o, o.declared);
    prelogin_rss(o, 64 * 1024);
    single_flood(o);
    for (auto& p : penalties) reconnect_flood(o, p);
    // The refused LOGINs of a flooder that reconnects at once still cost accepts and closes:
    // the per-address login rate is what bounds those.
    if (penalties.size() > 1) reconnect_flood(o, "30s", "login_rate: 20, login_burst: 20, ");
}
