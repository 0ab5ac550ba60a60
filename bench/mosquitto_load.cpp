// 1:1 MQTT load against a broker on loopback (driven by bench/vs_mosquitto.sh): the same shape of
// load as `cross_node_bench --mode pairs` drives into a gateway. P publisher/subscriber pairs;
// subscriber i subscribes to `bench/i` (QoS 0) and publisher i publishes PAYLOAD-byte QoS 0
// messages to exactly that topic, keeping at most WINDOW messages in flight per pair. QoS 0 has
// no acknowledgement, so "in flight" is sent minus received by subscriber i, which this program
// sees because both ends of a pair live in it. The program reports the broker's CPU time (utime
// + stime from /proc/PID/stat) over the measured phase only, per delivered message.
//
//   mosquitto_load --port PORT --pid BROKER_PID [--host 127.0.0.1] [--pairs 50] [--window 20]
//                  [--messages 200000] [--payload-bytes 64] [--max-seconds 60]
//                  [--sync-dir DIR]
//
// --sync-dir lets a wrapper observe the measured phase alone (bench/vs_mosquitto.sh attaches
// strace there): after set-up the program creates DIR/ready and waits for DIR/go; after the
// measured phase it prints its figures, creates DIR/done and waits for DIR/exit before it
// disconnects. Each wait is bounded (30 s).
//
// One thread, libmosquitto's non-threaded interface (mosquitto_loop_read / _write on the
// clients' sockets) driven by one epoll set: a thread per client (mosquitto_loop_start) would
// put 2 * P threads on the broker's two cores and the client would pay for their switches.
#include <mosquitto.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/proc_stat.hpp"

namespace {

struct options {
    std::string host = "127.0.0.1", sync_dir;
    int port = 0, pid = 0;
    uint32_t pairs = 50, window = 20, payload = 64, max_seconds = 60;
    uint64_t messages = 200000;
};

// utime and stime of a process in seconds.
struct cpu_times {
    double user = 0, system = 0;
};
cpu_times process_cpu(int pid) {
    auto t = imgate::test::process_cpu_ticks(pid);
    return {imgate::test::ticks_seconds(t.user), imgate::test::ticks_seconds(t.system)};
}

double own_cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto tv = [](timeval t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
    return tv(ru.ru_utime) + tv(ru.ru_stime);
}

struct pair_state;

// One libmosquitto client (publisher or subscriber of a pair) and its epoll registration.
struct endpoint {
    mosquitto* mosq = nullptr;
    pair_state* pair = nullptr;
    bool is_sub = false;
    bool connected = false;
    bool subscribed = false;
    bool want_out = false;  // EPOLLOUT registered
    int connect_rc = -1;
};

// A publisher, its subscriber and the pair's counters.
struct pair_state {
    uint32_t index = 0;
    std::string topic;
    endpoint pub, sub;
    uint64_t quota = 0;                // messages to send in the measured phase
    uint64_t sent = 0;                 // measured-phase publishes
    uint64_t received = 0;             // measured-phase messages seen by the subscriber
    uint64_t probes = 0;               // set-up messages seen by the subscriber
    uint64_t* all_received = nullptr;  // the load's total over every pair
    bool measuring = false;
};

bool touch(const std::string& path) {
    std::ofstream f(path);
    return bool(f);
}
bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}
bool wait_for_file(const std::string& path) {
    for (int i = 0; i < 3000; ++i) {
        if (exists(path)) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

class load {
  public:
    explicit load(options o) : o_(std::move(o)), payload_(o_.payload, 'x') {}

    ~load() {
        for (auto& p : pairs_) {
            for (auto* e : {&p.pub, &p.sub})
                if (e->mosq) {
                    mosquitto_disconnect(e->mosq);
                    mosquitto_loop_write(e->mosq, 1);
                    mosquitto_destroy(e->mosq);
                }
        }
        if (ep_ >= 0) ::close(ep_);
    }

    int run() {
        ep_ = ::epoll_create1(EPOLL_CLOEXEC);
        pairs_.resize(o_.pairs);
        uint64_t per_pair = o_.messages / o_.pairs;
        for (uint32_t i = 0; i < o_.pairs; ++i) {
            auto& p = pairs_[i];
            p.index = i;
            p.topic = "bench/" + std::to_string(i);
            p.quota = per_pair;
            p.all_received = &received_;
            if (!open(p.sub, p, true) || !open(p.pub, p, false)) return 1;
        }
        // Set-up: CONNACKs, then SUBACKs, then one probe per pair through the broker.
        if (!pump_until([&] { return all_of([](endpoint& e) { return e.connected; }); }, "connect"))
            return 1;
        for (auto& p : pairs_) {
            if (mosquitto_subscribe(p.sub.mosq, nullptr, p.topic.c_str(), 0) != MOSQ_ERR_SUCCESS) {
                std::fprintf(stderr, "subscribe %s failed\n", p.topic.c_str());
                return 1;
            }
            update_out(p.sub);
        }
        if (!pump_until([&] { return all_subs([](pair_state& p) { return p.sub.subscribed; }); },
                        "subscribe"))
            return 1;
        for (auto& p : pairs_) {
            publish(p);
            update_out(p.pub);
        }
        if (!pump_until([&] { return all_subs([](pair_state& p) { return p.probes > 0; }); },
                        "probe"))
            return 1;

        if (!o_.sync_dir.empty()) {
            touch(o_.sync_dir + "/ready");
            if (!wait_for_file(o_.sync_dir + "/go")) {
                std::fprintf(stderr, "no %s/go within 30 s\n", o_.sync_dir.c_str());
                return 1;
            }
        }

        auto cpu0 = process_cpu(o_.pid);
        double own0 = own_cpu_seconds();
        auto t0 = std::chrono::steady_clock::now();
        for (auto& p : pairs_) {
            p.measuring = true;
            top_up(p);
        }
        uint64_t total = per_pair * o_.pairs;
        auto deadline = t0 + std::chrono::seconds(o_.max_seconds);
        auto last_progress = t0;
        uint64_t last_received = 0;
        while (received_ < total) {
            auto now = std::chrono::steady_clock::now();
            if (now >= deadline) break;
            if (received_ != last_received) {
                last_received = received_;
                last_progress = now;
            } else if (sent_ == total && now - last_progress > std::chrono::seconds(2)) {
                break;  // QoS 0 may drop: nothing more is coming
            }
            if (!pump_once(50)) return 1;
        }
        auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        auto cpu1 = process_cpu(o_.pid);
        double own = own_cpu_seconds() - own0;
        double user = cpu1.user - cpu0.user, sys = cpu1.system - cpu0.system;

        std::printf(
            "mqtt pairs=%u window=%u messages=%llu sent=%llu delivered_copies=%llu lost=%llu "
            "elapsed_s=%.2f msgs_per_s=%.0f\n",
            o_.pairs, o_.window, (unsigned long long)total, (unsigned long long)sent_,
            (unsigned long long)received_, (unsigned long long)(sent_ - received_), secs,
            double(received_) / secs);
        std::printf("broker pid %d cpu_s=%.3f user_s=%.3f system_s=%.3f client_cpu_s=%.3f\n",
                    o_.pid, user + sys, user, sys, own);
        if (received_ == 0) {
            std::printf("nothing delivered\n");
            return 1;
        }
        std::printf("cpu_us_per_delivered_copy=%.3f user_us=%.3f system_us=%.3f\n",
                    (user + sys) * 1e6 / double(received_), user * 1e6 / double(received_),
                    sys * 1e6 / double(received_));
        std::fflush(stdout);
        if (!o_.sync_dir.empty()) {
            touch(o_.sync_dir + "/done");
            wait_for_file(o_.sync_dir + "/exit");
        }
        return received_ == total ? 0 : 1;
    }

  private:
    template <class F>
    bool all_of(F f) {
        for (auto& p : pairs_)
            if (!f(p.pub) || !f(p.sub)) return false;
        return true;
    }
    template <class F>
    bool all_subs(F f) {
        for (auto& p : pairs_)
            if (!f(p)) return false;
        return true;
    }

    bool open(endpoint& e, pair_state& p, bool is_sub) {
        std::string id = (is_sub ? "bench-sub-" : "bench-pub-") + std::to_string(p.index);
        e.pair = &p;
        e.is_sub = is_sub;
        e.mosq = mosquitto_new(id.c_str(), true, &e);
        if (!e.mosq) return false;
        // The imgate bench client sets TCP_NODELAY too.
        mosquitto_int_option(e.mosq, MOSQ_OPT_TCP_NODELAY, 1);
        mosquitto_connect_callback_set(e.mosq, [](mosquitto*, void* ud, int rc) {
            auto* e = static_cast<endpoint*>(ud);
            e->connect_rc = rc;
            e->connected = rc == 0;
        });
        mosquitto_subscribe_callback_set(e.mosq, [](mosquitto*, void* ud, int, int, const int*) {
            static_cast<endpoint*>(ud)->subscribed = true;
        });
        mosquitto_message_callback_set(e.mosq, [](mosquitto*, void* ud, const mosquitto_message*) {
            auto* e = static_cast<endpoint*>(ud);
            if (e->pair->measuring) {
                ++e->pair->received;
                ++*e->pair->all_received;
            } else {
                ++e->pair->probes;
            }
        });
        int rc = mosquitto_connect(e.mosq, o_.host.c_str(), o_.port, 60);
        if (rc != MOSQ_ERR_SUCCESS) {
            std::fprintf(stderr, "connect %s: %s\n", id.c_str(), mosquitto_strerror(rc));
            return false;
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = &e;
        ::epoll_ctl(ep_, EPOLL_CTL_ADD, mosquitto_socket(e.mosq), &ev);
        update_out(e);
        return true;
    }

    // Registers EPOLLOUT while libmosquitto holds unwritten packets for the client.
    void update_out(endpoint& e) {
        bool want = mosquitto_want_write(e.mosq);
        if (want == e.want_out) return;
        e.want_out = want;
        epoll_event ev{};
        ev.events = want ? uint32_t(EPOLLIN | EPOLLOUT) : uint32_t(EPOLLIN);
        ev.data.ptr = &e;
        ::epoll_ctl(ep_, EPOLL_CTL_MOD, mosquitto_socket(e.mosq), &ev);
    }

    void publish(pair_state& p) {
        mosquitto_publish(p.pub.mosq, nullptr, p.topic.c_str(), int(payload_.size()),
                          payload_.data(), 0, false);
    }

    void top_up(pair_state& p) {
        bool any = false;
        while (p.sent < p.quota && p.sent - p.received < o_.window) {
            publish(p);
            ++p.sent;
            ++sent_;
            any = true;
        }
        if (any) update_out(p.pub);
    }

    // One epoll round: reads every readable client until it has nothing complete (libmosquitto
    // reads one packet per call), writes the writable ones, tops the touched pairs up.
    bool pump_once(int timeout_ms) {
        epoll_event evs[256];
        int n = ::epoll_wait(ep_, evs, 256, timeout_ms);
        for (int i = 0; i < n; ++i) {
            auto* e = static_cast<endpoint*>(evs[i].data.ptr);
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                for (int k = 0; k < 1024; ++k) {
                    uint64_t before = e->pair->received + e->pair->probes;
                    bool was_connected = e->connected, was_subscribed = e->subscribed;
                    int rc = mosquitto_loop_read(e->mosq, 1);
                    if (rc != MOSQ_ERR_SUCCESS) {
                        std::fprintf(stderr, "read: %s\n", mosquitto_strerror(rc));
                        return false;
                    }
                    if (e->pair->received + e->pair->probes == before &&
                        e->connected == was_connected && e->subscribed == was_subscribed)
                        break;
                }
            }
            if (evs[i].events & EPOLLOUT) {
                int rc = mosquitto_loop_write(e->mosq, 1);
                if (rc != MOSQ_ERR_SUCCESS) {
                    std::fprintf(stderr, "write: %s\n", mosquitto_strerror(rc));
                    return false;
                }
            }
            update_out(*e);
            if (e->pair->measuring) top_up(*e->pair);
        }
        auto now = std::chrono::steady_clock::now();
        if (now - last_misc_ > std::chrono::seconds(1)) {
            last_misc_ = now;
            for (auto& p : pairs_) {
                mosquitto_loop_misc(p.pub.mosq);
                mosquitto_loop_misc(p.sub.mosq);
            }
        }
        return true;
    }

    template <class Done>
    bool pump_until(Done done, const char* what) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) {
                std::fprintf(stderr, "set-up (%s) did not finish within 30 s\n", what);
                return false;
            }
            if (!pump_once(50)) return false;
        }
        return true;
    }

    options o_;
    std::string payload_;
    std::vector<pair_state> pairs_;
    int ep_ = -1;
    uint64_t sent_ = 0, received_ = 0;
    std::chrono::steady_clock::time_point last_misc_{};
};

}  // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--host")
            o.host = v;
        else if (k == "--port")
            o.port = std::stoi(v);
        else if (k == "--pid")
            o.pid = std::stoi(v);
        else if (k == "--pairs")
            o.pairs = std::stoul(v);
        else if (k == "--window")
            o.window = std::stoul(v);
        else if (k == "--messages")
            o.messages = std::stoull(v);
        else if (k == "--payload-bytes")
            o.payload = std::stoul(v);
        else if (k == "--max-seconds")
            o.max_seconds = std::stoul(v);
        else if (k == "--sync-dir")
            o.sync_dir = v;
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    if (o.port == 0 || o.pid == 0 || o.pairs == 0 || o.window == 0) {
        std::fprintf(stderr, "see the usage at the top of bench/mosquitto_load.cpp\n");
        return 2;
    }
    mosquitto_lib_init();
    int rc;
    {
        load l(o);
        rc = l.run();
    }
    mosquitto_lib_cleanup();
    return rc;
}
