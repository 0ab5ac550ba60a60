// Cross-node delivery soak (issue 11, item 8), driven by bench/soak.sh. Not a test: a bounded
// program that runs mixed traffic over a 3-gateway loopback fleet and judges every SEND against
// the ground truth it owns (which sessions it holds open), so that a fleet answering `offline`
// for a user who is online -- or dropping DELIVERs, or never answering -- is counted, not hidden.
//
//   soak --clients H:P,H:P,H:P --admins H:P,H:P,H:P --secret-file F [--ids ascii|realistic]
//        [--duration 10m] [--call-timeout 2s] [--users 200] [--rooms 12] [--second-device 0.25]
//        [--never-online 0.05] [--rate 20] [--stream-rate 10] [--room-rate 2] [--churn-rate 0.5]
//        [--room-churn-rate 1] [--stable 1500ms] [--deliver-wait 3s] [--seed 1]
//
// Judging a SEND (sent at T, answered at R): the target (a user's sessions, or a room's member
// sessions) must not have changed -- login started, LOGIN_RESULT, logout, JOIN/LEAVE sent or
// answered -- in [T - stable, R]. Then a target with sessions must be `delivered` with `reached`
// = that many sessions, each of which gets the DELIVER (by server_msg_id) within deliver-wait;
// a target without sessions must be `offline`. Anything else is "ambiguous" and not judged.
#include <csignal>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "client/http_client.hpp"
#include "client/logic.hpp"
#include "client/session.hpp"
#include "common/awaitable.hpp"
#include "common/config.hpp"
#include "common/daemon.hpp"
#include "common/jwt.hpp"
#include "common/protocol.hpp"

namespace asio = boost::asio;
using namespace imgate;
using sclock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

struct options {
    std::vector<std::string> clients, admins;  // one per gateway, gw1 first
    std::string secret_file;
    std::string ids = "realistic";
    milliseconds duration{600000};
    milliseconds call_timeout{2000};  // the fleet's cluster_rpc.call_timeout
    uint32_t users = 200;
    uint32_t rooms = 12;
    double second_device = 0.25;  // share of users with a second device on another gateway
    double never_online = 0.05;   // share of users that never log in (sends to them: offline)
    double rate = 20;             // mixed 1:1 sends per second (all senders together)
    double stream_rate = 10;      // one-way 1:1 stream, gw3 senders -> gw1 receivers
    double room_rate = 2;
    double churn_rate = 0.5;     // logouts per second (each logs back in after 1-5 s)
    double room_churn_rate = 1;  // joins/leaves per second
    double move_share = 0.3;     // share of re-logins that land on another gateway
    milliseconds stable{1500};   // how long a target must be unchanged before a send is judged
    milliseconds deliver_wait{3000};
    milliseconds offline_min{1000}, offline_max{5000};
    milliseconds report_every{10000};
    uint64_t seed = 1;
    // The stream's direction. Nothing is ever forwarded the other way (no sender on gw1 targets
    // anyone on gw3, no room send starts on gw1), so the gw1 -> gw3 link carries one-way
    // traffic only (RECEIPT, PRESENCE, ROOM_INTEREST): the shape that trips a read watchdog.
    int stream_from = 2, stream_to = 0;
    uint32_t stream_receivers = 2;
};

struct slot {  // one (user, device): what the soak knows about its session
    enum class state { offline, connecting, online };
    uint32_t user = 0;
    std::string device;
    int gw = 0;
    int prev_gw = -1;  // the gateway before the last move: its directory may still name us
    state st = state::offline;
    sclock::time_point last_change;
    uint64_t instance = 0;  // current session attempt; 0 after a planned logout
    std::shared_ptr<client::client_session> sess;
    std::set<uint32_t> rooms, joining, leaving;
};

struct user_rec {
    std::string id;
    std::vector<uint32_t> slots;
    bool never_online = false;
    bool stream_receiver = false;  // pinned on stream_to, single device, never churned, never sends
};

struct room_rec {
    std::string id;
    std::set<uint32_t> members;  // slots whose JOIN was answered ok (and not left since)
    sclock::time_point last_change;
};

struct send_rec {
    proto::target_kind kind = proto::target_kind::user;
    uint32_t target = 0;
    bool stream = false;
    uint32_t sender_slot = 0;
    uint64_t sender_inst = 0;
    sclock::time_point sent, answered_at, check_at;
    bool answered = false;
    proto::code status = proto::code::ok;
    uint32_t reached = 0;
    uint64_t server_msg_id = 0;
    std::vector<std::pair<uint32_t, uint64_t>> expect;  // (slot, instance) that must get DELIVER
    bool check_deliver = false;
    uint32_t receipts = 0;
};

// One gateway's /metrics as series -> value ("name{labels}" keys).
using metric_map = std::map<std::string, double>;

metric_map parse_metrics(const std::string& text) {
    metric_map out;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string::npos) eol = text.size();
        std::string line = text.substr(pos, eol - pos);
        pos = eol + 1;
        if (line.empty() || line[0] == '#') continue;
        size_t sp = line.rfind(' ');
        if (sp == std::string::npos) continue;
        try {
            out[line.substr(0, sp)] += std::stod(line.substr(sp + 1));
        } catch (...) {
        }
    }
    return out;
}

std::string label_of(const std::string& key, const std::string& label) {
    auto p = key.find(label + "=\"");
    if (p == std::string::npos) return "";
    p += label.size() + 2;
    return key.substr(p, key.find('"', p) - p);
}

class soak {
  public:
    soak(asio::io_context& io, options o) : io_(io), o_(std::move(o)), rng_(o_.seed) {
        secret_ = read_secret_file(o_.secret_file);
        for (auto& c : o_.clients) {
            auto ep = parse_endpoint(c);
            if (!ep) throw std::runtime_error("bad --clients address " + c);
            eps_.push_back(*ep);
        }
        build_population();
    }

    asio::awaitable<void> main() {
        auto ok = co_await setup();
        if (ok) {
            co_await traffic();
            co_await drain();
        }
        after_ = co_await scrape_all();
        shutdown_sessions();
        setup_ok_ = ok;
        finished_ = true;
    }

    // SIGINT/SIGTERM: end the traffic now and report what was seen so far.
    void interrupt() {
        if (!interrupted_) {
            interrupted_ = true;
            std::fprintf(stderr, "[soak] interrupted: stopping the traffic, draining, reporting\n");
        }
        stop_.cancel();
    }

    int report();

  private:
    static constexpr const char* gw_name[] = {"gw1", "gw2", "gw3"};
    const char* gname(int g) const { return g >= 0 && g < 3 ? gw_name[g] : "gw?"; }

    double secs_since_start() const {
        return std::chrono::duration<double>(sclock::now() - t0_).count();
    }

    // ---- population ----

    std::string user_id(uint32_t i) const {
        if (o_.ids == "ascii") return "user" + std::to_string(i);
        switch (i % 4) {
            case 0:
                return "user" + std::to_string(i) + "@example.com";
            case 1:
                return "Zo\xc3\xab-" + std::to_string(i);  // Zoë-i
            case 2:
                return "\xe7\x8e\x8b\xe4\xbc\x9f" + std::to_string(i);  // 王伟i
            default:
                return "user" + std::to_string(i);
        }
    }
    std::string room_id(uint32_t i) const {
        if (o_.ids == "ascii") return "room-" + std::to_string(i);
        switch (i % 3) {
            case 0:
                return "room-" + std::to_string(i);
            case 1:
                return "Caf\xc3\xa9-Zo\xc3\xab-" + std::to_string(i);  // Café-Zoë-i
            default:
                return "\xe9\xa1\xb9\xe7\x9b\xae\xe7\xbb\x84" + std::to_string(i);  // 项目组i
        }
    }

    void build_population() {
        std::uniform_real_distribution<double> u01(0, 1);
        for (uint32_t i = 0; i < o_.users; ++i) {
            user_rec u;
            u.id = user_id(i);
            u.stream_receiver = i < o_.stream_receivers;
            u.never_online = !u.stream_receiver && u01(rng_) < o_.never_online;
            int home = u.stream_receiver ? o_.stream_to : int(i % 3);
            auto add = [&](const char* dev, int g) {
                slot s;
                s.user = i;
                s.device = dev;
                s.gw = g;
                u.slots.push_back(uint32_t(slots_.size()));
                slots_.push_back(std::move(s));
            };
            add("phone", home);
            if (!u.stream_receiver && u01(rng_) < o_.second_device)
                add("tablet", (home + 1 + int(rng_() % 2)) % 3);
            users_.push_back(std::move(u));
        }
        for (uint32_t r = 0; r < o_.rooms; ++r) {
            room_rec rr;
            rr.id = room_id(r);
            room_index_[rr.id] = r;
            rooms_.push_back(std::move(rr));
        }
    }

    std::string token(const slot& s) const {
        auto now = jwt::now_seconds();
        auto life = std::chrono::duration_cast<std::chrono::seconds>(o_.duration).count() + 3600;
        return jwt::sign(jwt::claims{users_[s.user].id, s.device, now + life}, secret_, now);
    }

    // ---- sessions ----

    void start_login(uint32_t si, int gw) {
        slot& s = slots_[si];
        if (gw != s.gw) s.prev_gw = s.gw;
        s.gw = gw;
        s.st = slot::state::connecting;
        s.last_change = sclock::now();
        s.instance = ++next_instance_;
        ++logins_;
        imgate::spawn(io_, run_slot(si, s.instance), "soak session");
    }

    // Everything the slot's session was in is now in flux (rooms it was in lose a member).
    void went_offline(uint32_t si) {
        slot& s = slots_[si];
        auto now = sclock::now();
        for (auto* set : {&s.rooms, &s.joining, &s.leaving})
            for (uint32_t r : *set) {
                rooms_[r].members.erase(si);
                rooms_[r].last_change = now;
            }
        s.rooms.clear();
        s.joining.clear();
        s.leaving.clear();
        s.st = slot::state::offline;
        s.last_change = now;
        s.sess.reset();
    }

    void logout(uint32_t si) {
        slot& s = slots_[si];
        auto sess = s.sess;
        s.instance = 0;  // run_slot sees it was planned
        went_offline(si);
        if (sess) sess->close();
        ++logouts_;
    }

    bool slot_live(uint32_t si, uint64_t inst) const {
        return slots_[si].instance == inst && slots_[si].st == slot::state::online;
    }

    client::session_events make_events(uint32_t si, uint64_t inst) {
        client::session_events ev;
        ev.on_deliver = [this, si, inst](const proto::deliver_msg& m) { on_deliver(si, inst, m); };
        ev.on_send_result = [this](const proto::send_result_msg& m) { on_result(m); };
        ev.on_receipt = [this](const proto::receipt_msg& m) { on_receipt(m); };
        ev.on_room_result = [this, si, inst](const proto::room_result_msg& m) {
            on_room_result(si, inst, m);
        };
        ev.on_error = [this](const proto::error_msg& m) {
            ++error_frames_[proto::to_string(m.status)];
        };
        return ev;
    }

    asio::awaitable<void> run_slot(uint32_t si, uint64_t inst) {
        client::session_options so;
        so.connect_timeout = milliseconds(5000);
        auto sess = std::make_shared<client::client_session>(io_.get_executor(), so);
        slots_[si].sess = sess;
        const endpoint& ep = eps_[slots_[si].gw];
        std::string detail;
        auto ec = co_await sess->connect(ep.host, ep.port, &detail);
        client::login_outcome lo;
        if (!ec) lo = co_await sess->login(token(slots_[si]));
        if (slots_[si].instance != inst) {  // logged out (or shut down) meanwhile
            sess->close();
            co_return;
        }
        if (ec || !lo.ok) {
            ++login_failures_;
            note(login_failure_examples_, users_[slots_[si].user].id + "/" + slots_[si].device +
                                              " on " + gname(slots_[si].gw) + ": " +
                                              (ec ? detail : lo.detail));
            slots_[si].instance = 0;
            went_offline(si);
            if (running_)
                imgate::spawn(io_, login_later(si, milliseconds(1000), -1), "soak relogin");
            co_return;
        }
        slots_[si].st = slot::state::online;
        slots_[si].last_change = sclock::now();
        if (!heartbeat_ms_) heartbeat_ms_ = lo.result.heartbeat_ms;
        auto ev = make_events(si, inst);
        auto end = co_await sess->run(std::move(ev));
        if (slots_[si].instance != inst) co_return;  // a planned logout, already accounted
        // The gateway (or the connection) ended a session the soak meant to keep.
        ++unexpected_ends_[end.describe()];
        slots_[si].instance = 0;
        went_offline(si);
        if (running_) imgate::spawn(io_, login_later(si, milliseconds(1000), -1), "soak relogin");
    }

    asio::awaitable<void> login_later(uint32_t si, milliseconds delay, int gw) {
        co_await sleep(delay);
        slot& s = slots_[si];
        if (!running_ || s.st != slot::state::offline || s.instance != 0) co_return;
        start_login(si, gw < 0 ? s.gw : gw);
    }

    asio::awaitable<void> churn_cycle(uint32_t si) {
        logout(si);
        std::uniform_int_distribution<int64_t> off(o_.offline_min.count(), o_.offline_max.count());
        int g = slots_[si].gw;
        if (std::uniform_real_distribution<double>(0, 1)(rng_) < o_.move_share)
            g = (g + 1 + int(rng_() % 2)) % 3;
        co_await login_later(si, milliseconds(off(rng_)), g);
    }

    asio::awaitable<void> sleep(milliseconds d) {
        asio::steady_timer t(io_);
        t.expires_after(d);
        co_await t.async_wait(use_tuple);
    }

    // ---- events ----

    void on_deliver(uint32_t, uint64_t inst, const proto::deliver_msg& m) {
        ++deliveries_;
        auto& v = delivered_[m.server_msg_id];
        if (v.empty()) delivered_order_.push_back({sclock::now(), m.server_msg_id});
        for (auto i : v)
            if (i == inst) {
                ++duplicate_delivers_;
                return;
            }
        v.push_back(inst);
    }

    void on_receipt(const proto::receipt_msg& m) {
        ++receipts_total_;
        auto it = sends_.find(m.client_msg_id);
        if (it != sends_.end()) ++it->second.receipts;
    }

    void on_room_result(uint32_t si, uint64_t inst, const proto::room_result_msg& m) {
        if (!slot_live(si, inst)) return;
        auto it = room_index_.find(m.room);
        if (it == room_index_.end()) {
            ++room_errors_["unknown room in ROOM_RESULT"];
            return;
        }
        uint32_t r = it->second;
        slot& s = slots_[si];
        auto now = sclock::now();
        if (s.joining.erase(r)) {
            if (m.status == proto::code::ok) {
                s.rooms.insert(r);
                rooms_[r].members.insert(si);
            } else {
                ++room_errors_[std::string("join ") + proto::to_string(m.status)];
            }
            rooms_[r].last_change = now;
        } else if (s.leaving.erase(r)) {
            if (m.status != proto::code::ok)
                ++room_errors_[std::string("leave ") + proto::to_string(m.status)];
            s.rooms.erase(r);
            rooms_[r].members.erase(si);
            rooms_[r].last_change = now;
        }
    }

    std::string describe_target(const send_rec& r) const {
        if (r.kind == proto::target_kind::room) return "room " + rooms_[r.target].id;
        std::string s = users_[r.target].id + " (";
        bool first = true;
        for (uint32_t si : users_[r.target].slots) {
            const slot& x = slots_[si];
            if (x.st != slot::state::online) continue;
            char buf[64];
            std::snprintf(buf, sizeof buf, "%s%s on %s for %.1f s", first ? "" : ", ",
                          x.device.c_str(), gname(x.gw),
                          std::chrono::duration<double>(r.answered_at - x.last_change).count());
            s += buf;
            first = false;
        }
        return s + (first ? "no session)" : ")");
    }

    void note(std::vector<std::string>& v, std::string what) {
        if (v.size() >= 5) return;
        char buf[32];
        std::snprintf(buf, sizeof buf, "t=%.1fs ", secs_since_start());
        v.push_back(buf + what);
    }

    void on_result(const proto::send_result_msg& m) {
        auto it = sends_.find(m.client_msg_id);
        if (it == sends_.end()) {
            ++late_results_;  // already counted missing (or never ours)
            return;
        }
        send_rec& r = it->second;
        if (r.answered) {
            ++duplicate_results_;
            return;
        }
        r.answered = true;
        r.answered_at = sclock::now();
        r.status = m.status;
        r.reached = m.reached;
        r.server_msg_id = m.server_msg_id;
        r.check_at = r.answered_at + o_.deliver_wait;
        ++status_counts_[proto::to_string(m.status)];
        judge(r);
    }

    // Compares the answer with what the soak knows (see the top of this file).
    void judge(send_rec& r) {
        auto cutoff = r.sent - o_.stable;
        bool stable = true;
        std::vector<std::pair<uint32_t, uint64_t>> expect;
        if (r.kind == proto::target_kind::user) {
            for (uint32_t si : users_[r.target].slots) {
                const slot& s = slots_[si];
                if (s.st == slot::state::connecting || s.last_change > cutoff)
                    stable = false;
                else if (s.st == slot::state::online)
                    expect.push_back({si, s.instance});
            }
        } else {
            const room_rec& rr = rooms_[r.target];
            if (rr.last_change > cutoff) stable = false;
            for (uint32_t si : rr.members) {
                if (si == r.sender_slot && slots_[si].instance == r.sender_inst) continue;
                expect.push_back({si, slots_[si].instance});
            }
        }
        if (!stable) {
            ++ambiguous_;
            return;
        }
        ++judged_;
        std::string what = std::string(r.stream ? "stream " : "") + "SEND from " +
                           gname(slots_[r.sender_slot].gw) + " to " + describe_target(r) + ": ";
        if (expect.empty()) {
            ++expected_offline_;
            if (r.status == proto::code::offline) return;
            if (r.status == proto::code::ok) {
                ++false_delivered_;
                note(false_delivered_examples_,
                     what + "delivered, reached " + std::to_string(r.reached));
            } else {
                ++judged_errors_[proto::to_string(r.status)];
            }
            return;
        }
        ++expected_delivered_;
        if (r.status == proto::code::ok) {
            if (r.reached != expect.size()) {
                ++wrong_reached_;
                note(wrong_reached_examples_, what + "reached " + std::to_string(r.reached) +
                                                  ", expected " + std::to_string(expect.size()));
            }
            r.expect = std::move(expect);
            r.check_deliver = true;
        } else if (r.status == proto::code::offline) {
            ++false_offline_;
            if (r.stream) ++false_offline_stream_;
            note(false_offline_examples_, what + "offline");
        } else {
            ++judged_errors_[proto::to_string(r.status)];
        }
    }

    milliseconds result_deadline() const { return o_.call_timeout + milliseconds(3000); }

    void sweep() {
        auto now = sclock::now();
        for (auto it = sends_.begin(); it != sends_.end();) {
            send_rec& r = it->second;
            if (!r.answered) {
                if (now - r.sent > result_deadline()) {
                    if (slot_live(r.sender_slot, r.sender_inst)) {
                        ++missing_results_;
                        note(missing_result_examples_,
                             "no SEND_RESULT for client_msg_id " + std::to_string(it->first) +
                                 " from " + gname(slots_[r.sender_slot].gw) + " to " +
                                 (r.kind == proto::target_kind::user ? users_[r.target].id
                                                                     : rooms_[r.target].id));
                    } else {
                        ++sender_left_;
                    }
                    it = sends_.erase(it);
                    continue;
                }
            } else if (now >= r.check_at) {
                if (r.check_deliver) {
                    auto d = delivered_.find(r.server_msg_id);
                    for (auto [si, inst] : r.expect) {
                        ++delivers_expected_;
                        bool got = false;
                        if (d != delivered_.end())
                            for (auto i : d->second) got = got || i == inst;
                        if (got) {
                            ++delivers_ok_;
                        } else if (slot_live(si, inst)) {
                            ++missing_delivers_;
                            note(missing_deliver_examples_,
                                 "server_msg_id " + std::to_string(r.server_msg_id) + " never " +
                                     "reached " + users_[slots_[si].user].id + "/" +
                                     slots_[si].device + " on " + gname(slots_[si].gw));
                        } else {
                            ++delivers_unverifiable_;
                        }
                    }
                    if (r.kind == proto::target_kind::user &&
                        slot_live(r.sender_slot, r.sender_inst)) {
                        receipts_expected_ += r.expect.size();
                        receipts_judged_ += std::min<uint64_t>(r.receipts, r.expect.size());
                    }
                }
                it = sends_.erase(it);
                continue;
            }
            ++it;
        }
        // DELIVERs are kept long enough for every send that could still be checked.
        auto keep = result_deadline() + o_.deliver_wait + milliseconds(10000);
        while (!delivered_order_.empty() && now - delivered_order_.front().first > keep) {
            delivered_.erase(delivered_order_.front().second);
            delivered_order_.pop_front();
        }
    }

    // ---- traffic ----

    template <class Pred>
    std::optional<uint32_t> pick_slot(Pred ok) {
        for (int i = 0; i < 64; ++i) {
            uint32_t si = uint32_t(rng_() % slots_.size());
            const slot& s = slots_[si];
            if (s.st == slot::state::online && s.sess && !users_[s.user].stream_receiver && ok(s))
                return si;
        }
        return std::nullopt;
    }

    // False when a send from gateway g to user u could make g forward to stream_from: the one
    // link that must stay one-way.
    bool may_target(int g, uint32_t u) const {
        if (g != o_.stream_to) return true;
        for (uint32_t si : users_[u].slots)
            if (slots_[si].gw == o_.stream_from || slots_[si].prev_gw == o_.stream_from)
                return false;
        return true;
    }

    void do_send(uint32_t si, proto::target_kind kind, uint32_t target, bool stream) {
        slot& s = slots_[si];
        uint64_t cmid = ++next_cmid_;
        const std::string& tid =
            kind == proto::target_kind::user ? users_[target].id : rooms_[target].id;
        if (!s.sess->send(kind, tid, "soak " + std::to_string(cmid), cmid)) {
            ++not_queued_;
            return;
        }
        send_rec r;
        r.kind = kind;
        r.target = target;
        r.stream = stream;
        r.sender_slot = si;
        r.sender_inst = s.instance;
        r.sent = sclock::now();
        sends_.emplace(cmid, std::move(r));
        ++(kind == proto::target_kind::room ? sends_room_ : stream ? sends_stream_ : sends_mixed_);
    }

    void send_mixed() {
        auto si = pick_slot([](const slot&) { return true; });
        if (!si) return;
        const slot& s = slots_[*si];
        for (int i = 0; i < 64; ++i) {
            uint32_t u = uint32_t(rng_() % users_.size());
            if (u != s.user && may_target(s.gw, u))
                return do_send(*si, proto::target_kind::user, u, false);
        }
    }

    void send_stream() {
        int from = o_.stream_from;
        auto si = pick_slot([from](const slot& s) { return s.gw == from; });
        if (!si) return;
        uint32_t u = uint32_t(rng_() % std::max<uint32_t>(1, o_.stream_receivers));
        do_send(*si, proto::target_kind::user, u, true);
    }

    void send_room() {
        if (rooms_.empty()) return;
        int quiet = o_.stream_to;
        auto si = pick_slot([quiet](const slot& s) { return s.gw != quiet; });
        if (!si) return;
        do_send(*si, proto::target_kind::room, uint32_t(rng_() % rooms_.size()), false);
    }

    void churn() {
        auto si = pick_slot([](const slot&) { return true; });
        if (si) imgate::spawn(io_, churn_cycle(*si), "soak churn");
    }

    void join(uint32_t si, uint32_t r) {
        slot& s = slots_[si];
        if (!s.sess->join(rooms_[r].id)) return;
        s.joining.insert(r);
        rooms_[r].last_change = sclock::now();
        ++joins_;
    }

    void room_churn() {
        if (rooms_.empty()) return;
        auto si = pick_slot([](const slot& s) { return s.joining.empty() && s.leaving.empty(); });
        if (!si) return;
        slot& s = slots_[*si];
        bool leave = !s.rooms.empty() && (s.rooms.size() >= 3 || rng_() % 2 == 0);
        if (leave) {
            auto it = s.rooms.begin();
            std::advance(it, rng_() % s.rooms.size());
            uint32_t r = *it;
            if (!s.sess->leave(rooms_[r].id)) return;
            s.leaving.insert(r);
            rooms_[r].last_change = sclock::now();
            ++leaves_;
        } else {
            uint32_t r = uint32_t(rng_() % rooms_.size());
            if (!s.rooms.count(r)) join(*si, r);
        }
    }

    // Calls act() rate times a second until the run ends; never more than rate x duration + 1.
    asio::awaitable<void> rate_loop(double rate, std::function<void()> act) {
        if (rate <= 0) co_return;
        auto start = sclock::now();
        double dur_s = std::chrono::duration<double>(o_.duration).count();
        uint64_t bound = uint64_t(rate * dur_s) + 1, done = 0;
        auto tick = milliseconds(std::max<int64_t>(20, int64_t(1000.0 / rate)));
        asio::steady_timer t(io_);
        while (running_ && done < bound) {
            t.expires_after(tick);
            co_await t.async_wait(use_tuple);
            if (!running_) break;
            double el = std::chrono::duration<double>(sclock::now() - start).count();
            uint64_t due = std::min<uint64_t>(bound, uint64_t(el * rate));
            for (; done < due && running_; ++done) act();
        }
    }

    asio::awaitable<void> sweeper() {
        while (!finished_) {
            co_await sleep(milliseconds(200));
            sweep();
        }
    }

    size_t online_count() const {
        size_t n = 0;
        for (auto& s : slots_) n += s.st == slot::state::online;
        return n;
    }

    void progress() {
        std::string st;
        for (auto& [k, v] : status_counts_) st += " " + k + "=" + std::to_string(v);
        std::fprintf(stderr,
                     "[soak] t=%.0fs online=%zu/%zu sends=%llu results:%s | judged=%llu "
                     "false_offline=%llu wrong_reached=%llu missing_delivers=%llu "
                     "missing_results=%llu ambiguous=%llu\n",
                     secs_since_start(), online_count(), slots_.size(),
                     (unsigned long long)(sends_mixed_ + sends_stream_ + sends_room_), st.c_str(),
                     (unsigned long long)judged_, (unsigned long long)false_offline_,
                     (unsigned long long)wrong_reached_, (unsigned long long)missing_delivers_,
                     (unsigned long long)missing_results_, (unsigned long long)ambiguous_);
    }

    asio::awaitable<void> reporter() {
        while (running_) {
            asio::steady_timer t(io_);
            t.expires_after(o_.report_every);
            co_await t.async_wait(use_tuple);
            if (running_) progress();
        }
    }

    // ---- metrics ----

    asio::awaitable<std::vector<metric_map>> scrape_all() {
        std::vector<metric_map> out;
        for (auto& a : o_.admins) {
            auto ep = parse_endpoint(a);
            metric_map m;
            if (ep) {
                auto r =
                    co_await client::http_request(io_.get_executor(), "GET", ep->host, ep->port,
                                                  "/metrics", "", {}, milliseconds(3000));
                if (r.ok && r.status == 200)
                    m = parse_metrics(r.body);
                else
                    ++scrape_failures_;
            } else {
                ++scrape_failures_;
            }
            out.push_back(std::move(m));
        }
        co_return out;
    }

    // ---- phases ----

    asio::awaitable<bool> setup() {
        t0_ = sclock::now();
        // "Before" is a meshed fleet: every gateway's outbound links are up.
        size_t want = o_.admins.size() - 1;
        for (int i = 0; i < 100 && !interrupted_; ++i) {
            before_ = co_await scrape_all();
            bool meshed = scrape_failures_ == 0;
            for (auto& m : before_) meshed = meshed && m["imgate_rpc_links_up"] >= double(want);
            if (meshed) break;
            scrape_failures_ = 0;
            co_await sleep(milliseconds(100));
        }
        if (scrape_failures_) {
            std::fprintf(stderr, "[soak] cannot read the gateways' /metrics\n");
            co_return false;
        }
        // Log everyone in, paced so the logins don't starve the gateways.
        running_ = true;
        size_t started = 0;
        for (uint32_t si = 0; si < slots_.size() && !interrupted_; ++si) {
            if (users_[slots_[si].user].never_online) continue;
            start_login(si, slots_[si].gw);
            if (++started % 25 == 0) co_await sleep(milliseconds(100));
        }
        for (int i = 0; i < 200 && !interrupted_ && online_count() < started; ++i)
            co_await sleep(milliseconds(100));
        std::fprintf(stderr,
                     "[soak] %zu of %zu sessions online (%zu users never log in), "
                     "heartbeat %u ms\n",
                     online_count(), started, slots_.size() - started, heartbeat_ms_);
        if (online_count() < started) {
            std::fprintf(stderr, "[soak] not every session could log in\n");
            running_ = false;
            co_return false;
        }
        // Each session (but the stream receivers) starts in one room.
        for (uint32_t si = 0; si < slots_.size() && !rooms_.empty(); ++si)
            if (slots_[si].st == slot::state::online && !users_[slots_[si].user].stream_receiver)
                join(si, uint32_t(rng_() % rooms_.size()));
        co_await sleep(o_.stable + milliseconds(500));
        co_return !interrupted_;
    }

    asio::awaitable<void> traffic() {
        t_traffic_ = sclock::now();
        std::fprintf(stderr, "[soak] traffic for %.0f s\n",
                     std::chrono::duration<double>(o_.duration).count());
        std::function<void()> a1 = [this] { send_mixed(); };
        std::function<void()> a2 = [this] { send_stream(); };
        std::function<void()> a3 = [this] { send_room(); };
        std::function<void()> a4 = [this] { churn(); };
        std::function<void()> a5 = [this] { room_churn(); };
        imgate::spawn(io_, rate_loop(o_.rate, a1), "soak 1:1");
        imgate::spawn(io_, rate_loop(o_.stream_rate, a2), "soak stream");
        imgate::spawn(io_, rate_loop(o_.room_rate, a3), "soak rooms");
        imgate::spawn(io_, rate_loop(o_.churn_rate, a4), "soak churn");
        imgate::spawn(io_, rate_loop(o_.room_churn_rate, a5), "soak room churn");
        imgate::spawn(io_, reporter(), "soak reporter");
        imgate::spawn(io_, sweeper(), "soak sweeper");
        if (!interrupted_) {
            stop_.expires_after(o_.duration);
            co_await stop_.async_wait(use_tuple);
        }
        running_ = false;
        t_traffic_end_ = sclock::now();
    }

    // No new traffic; every send still open gets its result deadline and its DELIVER check.
    asio::awaitable<void> drain() {
        auto until = sclock::now() + result_deadline() + o_.deliver_wait + milliseconds(500);
        while (!sends_.empty() && sclock::now() < until) co_await sleep(milliseconds(200));
        sweep();
        progress();
    }

    void shutdown_sessions() {
        for (auto& s : slots_) {
            s.instance = 0;
            if (s.sess) s.sess->close();
            s.sess.reset();
        }
    }

    asio::io_context& io_;
    options o_;
    asio::steady_timer stop_{io_};  // the end of the traffic phase (cancelled on SIGINT)
    bool finished_ = false;
    std::mt19937_64 rng_;
    std::string secret_;
    std::vector<endpoint> eps_;
    std::vector<slot> slots_;
    std::vector<user_rec> users_;
    std::vector<room_rec> rooms_;
    std::unordered_map<std::string, uint32_t> room_index_;
    std::unordered_map<uint64_t, send_rec> sends_;  // open: awaiting a result or the check
    std::unordered_map<uint64_t, std::vector<uint64_t>> delivered_;  // server_msg_id -> instances
    std::deque<std::pair<sclock::time_point, uint64_t>> delivered_order_;
    std::vector<metric_map> before_, after_;
    sclock::time_point t0_, t_traffic_, t_traffic_end_;
    bool running_ = false, interrupted_ = false, setup_ok_ = false;
    uint32_t heartbeat_ms_ = 0;
    uint64_t next_instance_ = 0, next_cmid_ = 0;
    uint64_t logins_ = 0, login_failures_ = 0, logouts_ = 0, joins_ = 0, leaves_ = 0;
    uint64_t sends_mixed_ = 0, sends_stream_ = 0, sends_room_ = 0, not_queued_ = 0;
    uint64_t deliveries_ = 0, duplicate_delivers_ = 0, receipts_total_ = 0;
    uint64_t late_results_ = 0, duplicate_results_ = 0, sender_left_ = 0, missing_results_ = 0;
    uint64_t judged_ = 0, ambiguous_ = 0, expected_offline_ = 0, expected_delivered_ = 0;
    uint64_t false_offline_ = 0, false_offline_stream_ = 0, false_delivered_ = 0,
             wrong_reached_ = 0;
    uint64_t delivers_expected_ = 0, delivers_ok_ = 0, missing_delivers_ = 0,
             delivers_unverifiable_ = 0;
    uint64_t receipts_expected_ = 0, receipts_judged_ = 0;
    uint64_t scrape_failures_ = 0;
    std::map<std::string, uint64_t> status_counts_, judged_errors_, unexpected_ends_, error_frames_,
        room_errors_;
    std::vector<std::string> false_offline_examples_, false_delivered_examples_,
        wrong_reached_examples_, missing_result_examples_, missing_deliver_examples_,
        login_failure_examples_;
};

int soak::report() {
    using ull = unsigned long long;
    auto run_s = std::chrono::duration<double>(t_traffic_end_ - t_traffic_).count();
    std::printf(
        "== soak summary: ids=%s traffic %.1f s%s, 3 gateways, %zu users, %zu sessions, "
        "%zu rooms, seed %llu\n",
        o_.ids.c_str(), setup_ok_ ? run_s : 0.0, interrupted_ ? " (interrupted)" : "",
        users_.size(), slots_.size(), rooms_.size(), (ull)o_.seed);
    std::printf(
        "sends: %llu (1:1 mixed %llu, one-way stream %s->%s %llu, room %llu), "
        "not queued %llu\n",
        (ull)(sends_mixed_ + sends_stream_ + sends_room_), (ull)sends_mixed_, gname(o_.stream_from),
        gname(o_.stream_to), (ull)sends_stream_, (ull)sends_room_, (ull)not_queued_);
    std::string st;
    for (auto& [k, v] : status_counts_) st += " " + k + " " + std::to_string(v);
    std::printf("results by status:%s\n", st.empty() ? " none" : st.c_str());
    std::printf(
        "judged %llu (expected delivered %llu, expected offline %llu); ambiguous %llu "
        "(target changed within %lld ms of the send)\n",
        (ull)judged_, (ull)expected_delivered_, (ull)expected_offline_, (ull)ambiguous_,
        (long long)o_.stable.count());
    std::string je;
    for (auto& [k, v] : judged_errors_) je += " " + k + " " + std::to_string(v);
    std::printf(
        "false offline: %llu (of them one-way stream: %llu)   wrong reached: %llu   "
        "false delivered: %llu   error statuses on judged sends:%s\n",
        (ull)false_offline_, (ull)false_offline_stream_, (ull)wrong_reached_, (ull)false_delivered_,
        je.empty() ? " none" : je.c_str());
    std::printf(
        "DELIVERs on judged delivered sends: %llu expected, %llu received, %llu missing "
        "(%llu unverifiable: recipient left; %llu duplicates; %llu DELIVERs in all)\n",
        (ull)delivers_expected_, (ull)delivers_ok_, (ull)missing_delivers_,
        (ull)delivers_unverifiable_, (ull)duplicate_delivers_, (ull)deliveries_);
    std::printf(
        "missing results: %llu (deadline %.1f s; %llu more unanswered after their sender "
        "logged out; %llu late or unknown results; %llu duplicates)\n",
        (ull)missing_results_, std::chrono::duration<double>(result_deadline()).count(),
        (ull)sender_left_, (ull)late_results_, (ull)duplicate_results_);
    std::printf(
        "receipts: %llu of %llu expected on judged delivered 1:1 sends; %llu received in "
        "all\n",
        (ull)receipts_judged_, (ull)receipts_expected_, (ull)receipts_total_);
    std::string ue, ef, re;
    for (auto& [k, v] : unexpected_ends_) ue += " [" + k + "] " + std::to_string(v);
    for (auto& [k, v] : error_frames_) ef += " " + k + " " + std::to_string(v);
    for (auto& [k, v] : room_errors_) re += " " + k + " " + std::to_string(v);
    std::printf(
        "sessions: logins %llu (failed %llu), churn logouts %llu, joins %llu, leaves "
        "%llu, unexpected ends:%s, ERROR frames:%s, room errors:%s\n",
        (ull)logins_, (ull)login_failures_, (ull)logouts_, (ull)joins_, (ull)leaves_,
        ue.empty() ? " none" : ue.c_str(), ef.empty() ? " none" : ef.c_str(),
        re.empty() ? " none" : re.c_str());

    // RPC counters over the whole run (from the meshed fleet before the logins to the end).
    double closes = 0, proto_errs = 0, reconnects = 0;
    std::map<std::string, double> by_reason, fwd;
    std::string per_gw;
    bool scraped = scrape_failures_ == 0 && before_.size() == after_.size() && !after_.empty();
    for (size_t g = 0; scraped && g < after_.size(); ++g) {
        double gc = 0, gp = 0, gr = 0, gd = 0;
        for (auto& [k, v] : after_[g]) {
            double d = v - (before_[g].count(k) ? before_[g].at(k) : 0.0);
            if (d == 0) continue;
            if (k.rfind("imgate_rpc_links_closed_total", 0) == 0) {
                by_reason[label_of(k, "reason")] += d;
                gc += d;
            } else if (k.rfind("imgate_rpc_protocol_errors_total", 0) == 0) {
                gp += d;
            } else if (k.rfind("imgate_rpc_link_connects_total", 0) == 0) {
                gr += d;
            } else if (k.rfind("imgate_rpc_receipts_dropped_total", 0) == 0) {
                gd += d;
            } else if (k.rfind("imgate_rpc_forwards_total", 0) == 0) {
                fwd[label_of(k, "result")] += d;
            }
        }
        closes += gc;
        proto_errs += gp;
        reconnects += gr;
        char buf[160];
        std::snprintf(buf, sizeof buf,
                      "%s%s: closes %.0f, protocol errors %.0f, reconnects %.0f, "
                      "receipts dropped %.0f",
                      g ? "; " : "", gname(int(g)), gc, gp, gr, gd);
        per_gw += buf;
    }
    if (scraped) {
        std::string br, fw;
        for (auto& [k, v] : by_reason) br += " " + k + "=" + std::to_string(int64_t(v));
        for (auto& [k, v] : fwd) fw += " " + k + "=" + std::to_string(int64_t(v));
        std::printf("rpc link closes by reason:%s; protocol errors %.0f; reconnects %.0f\n",
                    br.empty() ? " none" : br.c_str(), proto_errs, reconnects);
        std::printf("rpc per gateway: %s\n", per_gw.c_str());
        std::printf("rpc forwards by combined result:%s\n", fw.empty() ? " none" : fw.c_str());
    } else {
        std::printf("rpc: could not read every gateway's /metrics before and after\n");
    }
    auto examples = [](const char* what, const std::vector<std::string>& v) {
        for (auto& e : v) std::printf("  %s: %s\n", what, e.c_str());
    };
    examples("false offline", false_offline_examples_);
    examples("wrong reached", wrong_reached_examples_);
    examples("false delivered", false_delivered_examples_);
    examples("missing result", missing_result_examples_);
    examples("missing DELIVER", missing_deliver_examples_);
    examples("login failure", login_failure_examples_);

    std::vector<std::string> why;
    auto fail_if = [&](double n, const char* what) {
        if (n > 0) why.push_back(std::to_string(int64_t(n)) + " " + what);
    };
    if (!setup_ok_) why.push_back("set-up failed");
    if (!scraped) why.push_back("no rpc metrics");
    fail_if(double(false_offline_), "false offline");
    fail_if(double(wrong_reached_), "wrong reached");
    fail_if(double(false_delivered_), "false delivered");
    fail_if(double(missing_results_), "missing results");
    fail_if(double(missing_delivers_), "missing DELIVERs");
    fail_if(closes + proto_errs, "rpc link closes/protocol errors");
    fail_if(reconnects, "rpc reconnects");
    if (setup_ok_ && judged_ == 0) why.push_back("nothing judged");
    std::string w;
    for (auto& x : why) w += (w.empty() ? "" : ", ") + x;
    std::printf("verdict: %s%s%s\n", why.empty() ? "PASS" : "FAIL", why.empty() ? "" : " -- ",
                w.c_str());
    std::fflush(stdout);
    return why.empty() ? 0 : 1;
}

bool parse_options(int argc, char** argv, options& o) {
    for (int i = 1; i < argc; ++i) {
        std::string k = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr, "option %s needs a value\n", k.c_str());
            return false;
        }
        std::string v = argv[++i];
        auto dur = [&](milliseconds& out) {
            auto d = client::parse_duration(v);
            if (!d) throw std::invalid_argument("bad duration for " + k + ": " + v);
            out = *d;
        };
        try {
            if (k == "--clients")
                o.clients = client::split_list(v);
            else if (k == "--admins")
                o.admins = client::split_list(v);
            else if (k == "--secret-file")
                o.secret_file = v;
            else if (k == "--ids")
                o.ids = v;
            else if (k == "--duration")
                dur(o.duration);
            else if (k == "--call-timeout")
                dur(o.call_timeout);
            else if (k == "--stable")
                dur(o.stable);
            else if (k == "--deliver-wait")
                dur(o.deliver_wait);
            else if (k == "--report-every")
                dur(o.report_every);
            else if (k == "--users")
                o.users = uint32_t(std::stoul(v));
            else if (k == "--rooms")
                o.rooms = uint32_t(std::stoul(v));
            else if (k == "--second-device")
                o.second_device = std::stod(v);
            else if (k == "--never-online")
                o.never_online = std::stod(v);
            else if (k == "--rate")
                o.rate = std::stod(v);
            else if (k == "--stream-rate")
                o.stream_rate = std::stod(v);
            else if (k == "--room-rate")
                o.room_rate = std::stod(v);
            else if (k == "--churn-rate")
                o.churn_rate = std::stod(v);
            else if (k == "--room-churn-rate")
                o.room_churn_rate = std::stod(v);
            else if (k == "--seed")
                o.seed = std::stoull(v);
            else {
                std::fprintf(stderr, "unknown option %s (see the top of bench/soak.cpp)\n",
                             k.c_str());
                return false;
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s: %s\n", k.c_str(), e.what());
            return false;
        }
    }
    if (o.clients.size() != 3 || o.admins.size() != 3 || o.secret_file.empty()) {
        std::fprintf(stderr, "need --clients and --admins of 3 gateways and --secret-file\n");
        return false;
    }
    for (auto& a : o.clients)
        if (auto ep = parse_endpoint(a); !ep || !client::is_loopback_host(ep->host)) {
            std::fprintf(stderr, "only loopback gateways: %s\n", a.c_str());
            return false;
        }
    if (o.ids != "ascii" && o.ids != "realistic") {
        std::fprintf(stderr, "--ids is ascii or realistic\n");
        return false;
    }
    // Bounded traffic: a few hundred sessions and modest rates on a 2-core machine.
    if (o.users < 8 || o.users > 5000 || o.rate > 1000 || o.stream_rate > 1000 ||
        o.room_rate > 200 || o.churn_rate > 50 || o.room_churn_rate > 100 ||
        o.duration > milliseconds(24LL * 3600 * 1000) || o.stream_receivers >= o.users) {
        std::fprintf(stderr,
                     "sizes or rates out of bounds (users 8-5000, rates <= 1000/s, "
                     "duration <= 24h)\n");
        return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    if (!parse_options(argc, argv, o)) return 2;
    asio::io_context io;
    std::unique_ptr<soak> s;
    try {
        s = std::make_unique<soak>(io, o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "soak: %s\n", e.what());
        return 2;
    }
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code ec, int) {
        if (!ec) s->interrupt();
    });
    bool done = false;
    auto whole = [&]() -> asio::awaitable<void> {
        co_await s->main();
        done = true;
        signals.cancel();
        io.stop();  // sessions' timers and relogin waits are abandoned, not awaited
    };
    imgate::spawn(io, whole(), "soak");
    io.run();
    if (!done) return 1;
    return s->report();
}
