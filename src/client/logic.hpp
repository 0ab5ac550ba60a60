#pragma once
// Socket-free pieces of the `imgate` tool: argument parsing and validation, the load generator's
// address guard, the dispatcher answer and fail-over order, latency
// statistics, and the text/JSON renderings of received messages. Unit-tested without a network.
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/backoff.hpp"
#include "common/config.hpp"
#include "common/protocol.hpp"

namespace imgate::client {

// The doubling back-off shared with the gateway's RPC links (common/backoff.hpp); the reconnect
// rule below wraps it.
using imgate::backoff;

// "1500ms", "2s", "5m", "1h", or a bare number of seconds ("30", "0.5"). nullopt when invalid
// or negative.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s);

// "a,b,,c" -> {"a","b","c"} (empty items dropped, surrounding spaces trimmed).
std::vector<std::string> split_list(std::string_view s);

// True for a literal address in 127.0.0.0/8 or ::1 (and "localhost"). The load generator only
// ever talks to such addresses.
bool is_loopback_host(std::string_view host);

// Networks a load may target besides loopback (`imgate load --allow-target CIDR`): private ranges
// (10/8, 172.16/12, 192.168/16, fc00::/7) that one of this machine's own interfaces is on, such
// as the bridge of `make run-hosts`. A load can thus reach namespaces made on this machine, never
// a network beyond it.
struct target_networks {
    std::vector<boost::asio::ip::network_v4> v4;
    std::vector<boost::asio::ip::network_v6> v6;
    bool empty() const { return v4.empty() && v6.empty(); }
    // Loopback, or an address literal inside one of the networks.
    bool allows(std::string_view host) const;
};

// Parses --allow-target values against the machine's interface addresses into out; "" or an
// error naming the value and why it is refused.
std::string parse_target_networks(const std::vector<std::string>& cidrs,
                                  const std::vector<boost::asio::ip::address>& local,
                                  target_networks& out);

// The addresses of this machine's interfaces (getifaddrs); empty on failure.
std::vector<boost::asio::ip::address> local_interface_addresses();

// An http[s]://host[:port][/prefix] URL: the dispatcher (plain HTTP, or HTTPS when it serves
// TLS itself or sits behind a TLS terminator).
struct http_url {
    std::string host;
    uint16_t port = 80;
    std::string prefix;  // path prefix without trailing '/', may be empty
    bool tls = false;    // https://
    std::string authority() const;
    std::string origin() const;  // "http[s]://authority"
};
std::optional<http_url> parse_http_url(std::string_view s, std::string* err = nullptr);

// A ws[s]://host[:port][/path] URL as the dispatcher hands it out for the WebSocket transports.
struct ws_url {
    bool secure = false;  // wss://
    std::string host;
    uint16_t port = 80;
    std::string path = "/";  // the request target, "/" when absent
};
std::optional<ws_url> parse_ws_url(std::string_view s, std::string* err = nullptr);

// The transport chosen on the command line: at most one of --tls, --ws, --wss (or --transport
// NAME on get-gateway), plus what to trust for TLS (the gateway's tls/wss and an https dispatcher).
struct transport_args {
    bool tls = false;
    bool ws = false;
    bool wss = false;
    std::string name;  // --transport NAME (get-gateway); may also be given with the flags if equal
    std::string ca_file;
    bool insecure = false;  // no certificate verification: local tests only
};
// The transport, or nullopt with err set (two flags, an unknown name).
std::optional<transport> chosen_transport(const transport_args& a, std::string* err);
inline bool is_tls(transport t) {
    return t == transport::tls || t == transport::wss;
}
inline bool is_ws(transport t) {
    return t == transport::ws || t == transport::wss;
}

// WebSocket transports carry exactly one frame (12-byte header + body) per binary message.
// Returns "" when msg is one well-formed frame whose body fits max_body, else why not.
std::string check_ws_message(std::string_view msg, uint32_t max_body);
// The size of the frame at the start of `bytes` (header + declared body); 0 if under 12 bytes.
size_t frame_size_at(std::string_view bytes);

// One gateway address as the dispatcher hands it out.
struct gateway_addr {
    std::string id;
    std::string host;
    uint16_t port = 0;
    std::string path;               // WebSocket request target from the answer's url ("" means "/")
    std::string to_string() const;  // "id host:port" or "host:port" when id is empty
    bool operator==(const gateway_addr&) const = default;
};

// The reconnect policy a dispatcher hands out with every answer ("reconnect":{base_ms,jitter_ms,
// max_ms}); the defaults are what a client uses before it has seen one (docs/protocol.md
// section 5).
struct reconnect_policy {
    std::chrono::milliseconds base{500};     // wait after the 1st failed round (doubles per round)
    std::chrono::milliseconds jitter{1000};  // uniform [0, jitter] added to every own wait
    std::chrono::milliseconds max{30000};    // cap of the doubling part
    static constexpr std::chrono::milliseconds limit{600000};  // 10 min: larger values are refused
    bool operator==(const reconnect_policy&) const = default;
};
// The policy in a "reconnect" JSON value; nullopt (keep what you had) when it is not an object of
// integers with base > 0, max >= base, jitter >= 0, all <= 10 min.
std::optional<reconnect_policy> parse_reconnect_policy(const std::string& json_object);

// The reconnect rule (contract A, docs/protocol.md section 5) without sockets or clocks: the
// policy in force, the count of failed rounds since the last loss, and the injected random source.
// A hint from the server is waited exactly (it is already spread per client); the client's own
// waits add uniform [0, jitter].
class reconnect_schedule {
  public:
    using random_source = backoff::random_source;  // uniform [0, 1]
    explicit reconnect_schedule(random_source random01, reconnect_policy p = {})
        : random01_(std::move(random01)), policy_(p) {}

    void set_policy(const reconnect_policy& p) { policy_ = p; }
    const reconnect_policy& policy() const { return policy_; }
    // The wait before the first attempt after a session was lost: the hint when the server gave
    // one (KICK/REDIRECT reconnect_after_ms), else uniform [0, jitter]. Restarts the round count.
    std::chrono::milliseconds after_loss(std::optional<std::chrono::milliseconds> hint = {});
    // The wait after the n-th failed round since the loss (n counted here):
    // min(max, base * 2^(n-1)) + uniform [0, jitter], or exactly the hint when the round got one
    // (a 503 retry_after_ms / Retry-After, a REDIRECT after a rate refusal).
    std::chrono::milliseconds after_failed_round(
        std::optional<std::chrono::milliseconds> hint = {});
    // A session is up again: the next loss starts over.
    void reset() { failed_rounds_ = 0; }
    uint32_t failed_rounds() const { return failed_rounds_; }

  private:
    std::chrono::milliseconds jitter();

    random_source random01_;
    reconnect_policy policy_;
    uint32_t failed_rounds_ = 0;
};

// The answer of GET /get-tcp-ip: a pick plus alternates to fail over to without another call.
struct gateway_answer {
    gateway_addr primary;
    std::vector<gateway_addr> alternates;
    std::string transport_name;  // the answer's "transport" ("" when absent: a tcp-only dispatcher)
    // The answer's "reconnect" policy; nullopt when absent or invalid (the client keeps its own).
    std::optional<reconnect_policy> reconnect;
};

// Parses the 200 body; nullopt (and err) when a field is missing or has the wrong type. For
// ws/wss an address's "url" (ws[s]://host:port/path), when present, gives host, port and path.
// A bad "reconnect" value does not fail the answer: it is ignored (reconnect stays nullopt).
std::optional<gateway_answer> parse_gateway_answer(std::string_view body, std::string* err);
// "" when the answer is for transport `want` (an answer without "transport" is tcp), else why
// not: connecting with TLS to a plaintext port (or the reverse) would only fail later, unclearly.
std::string check_answer_transport(const gateway_answer& a, transport want);

// Builds the query string of GET /get-tcp-ip (percent-encoded). transport= is only sent for a
// transport other than tcp, so a tcp client still works with a dispatcher that predates it.
std::string get_gateway_query(const std::string& user, const std::string& region,
                              const std::vector<std::string>& exclude,
                              transport via = transport::tcp);

std::string percent_encode(std::string_view s);

// Fail-over order over one dispatcher answer, and the exclude list for the next call. Remembers
// which gateways failed across answers so a re-ask excludes them all (bounded).
class failover_plan {
  public:
    static constexpr size_t max_exclude = 16;

    // Starts a new round from an answer: primary first, then alternates, duplicates and
    // already-failed ids skipped (a failed gateway is only retried when nothing else is left).
    void start(const gateway_answer& a);
    // Next address to try in this round; nullopt when the round is exhausted.
    std::optional<gateway_addr> next();
    void mark_failed(const gateway_addr& g);
    // Resets the failure memory (after a successful session; the fleet may have healed).
    void forget_failures() {
        failed_.clear();
        exclude_.clear();
    }
    // Ids of failed gateways, for the dispatcher's exclude= (addresses without an id can't be
    // excluded there; they are only tried last).
    const std::vector<std::string>& exclude() const { return exclude_; }

  private:
    std::vector<gateway_addr> order_;
    size_t pos_ = 0;
    std::vector<std::string> failed_;   // ids, or host:port when there is no id
    std::vector<std::string> exclude_;  // ids only
};

// Latency samples with bounded memory: exact up to `capacity` samples, reservoir-sampled beyond
// (uniform, with the injected random source), so percentiles stay unbiased over long runs.
class latency_stats {
  public:
    explicit latency_stats(size_t capacity = 1 << 20, uint64_t seed = 1)
        : capacity_(capacity), rng_(seed) {}
    void add(uint64_t us);
    uint64_t count() const { return count_; }
    uint64_t max() const { return max_; }
    double mean() const { return count_ ? double(sum_) / double(count_) : 0.0; }
    // Nearest-rank percentile, q in [0, 100]; 0 when empty.
    uint64_t percentile(double q) const;

  private:
    size_t capacity_;
    std::mt19937_64 rng_;
    mutable std::vector<uint64_t> samples_;
    mutable bool sorted_ = true;
    uint64_t count_ = 0;
    uint64_t sum_ = 0;
    uint64_t max_ = 0;
};

// Hard limits of `imgate load` and its validated parameters.
struct load_params {
    static constexpr uint32_t max_clients = 20000;           // per process
    static constexpr uint32_t max_sharded_clients = 200000;  // --clients of a run with --shard
    static constexpr uint32_t max_shards = 64;
    static constexpr size_t max_run_id = 32;
    static constexpr uint32_t max_duration_s = 600;
    static constexpr uint32_t max_rate = 200000;
    static constexpr uint32_t min_payload = 32;  // room for the latency stamp
    static constexpr uint32_t max_payload = 65536;

    std::vector<endpoint> gateways;        // direct mode
    std::vector<std::string> dispatchers;  // dispatcher mode when gateways is empty (fail-over)
    transport via = transport::tcp;        // every client's transport
    std::string ca_file;                   // TLS trust for tls/wss and an https dispatcher
    bool insecure = false;
    uint32_t clients = 100;
    uint32_t rooms = 10;
    double rate = 100;  // sends per second, all clients together
    double duration_s = 10;
    uint32_t payload_bytes = 64;
    double room_share = 0.1;  // fraction of sends that go to a room
    uint32_t connect_concurrency = 256;
    // Clients bind to 127.0.0.1 .. 127.0.0.<n> in turn (IPv4 targets), so gateway limits per
    // source address (login rate) and the ephemeral port range see many "machines". 0: off.
    uint32_t source_spread = 64;
    // --allow-target: networks besides loopback that targets may be in (then no source spread).
    target_networks allowed;
    // --reconnect: hold sessions for the duration and log in again after every loss (rule A/C).
    bool reconnect = false;
    uint32_t reconnect_concurrency = 1000;  // reconnects (dispatcher round + logins) in flight
    // --shard I/N: this process runs global clients [I*C/N, (I+1)*C/N) of --clients C.
    uint32_t shard_index = 0;
    uint32_t shard_count = 1;
    std::string run_id;       // user-id prefix shared by the shards ("" = random)
    std::string events_file;  // --events: one JSON line per login/lost/attempt_failed
    std::string status_file;  // --status-file: rewritten every 200 ms
    uint32_t first_client() const {
        return uint32_t(uint64_t(shard_index) * clients / shard_count);
    }
    uint32_t local_clients() const {
        return uint32_t(uint64_t(shard_index + 1) * clients / shard_count) - first_client();
    }
};
// "I/N" -> {I, N}; nullopt when malformed (the range is checked by validate_load).
std::optional<std::pair<uint32_t, uint32_t>> parse_shard(std::string_view s);
// A run id: 1..32 of [A-Za-z0-9_-].
bool valid_run_id(std::string_view s);

// Returns an error message for invalid parameters or any non-loopback target, "" when valid.
std::string validate_load(const load_params& p);

// Exit codes of `imgate send`.
inline constexpr int exit_delivered = 0;
inline constexpr int exit_error = 1;
inline constexpr int exit_offline = 2;
inline constexpr int exit_receipts_missing = 3;
int send_exit_code(proto::code status);

// One line per received message, human text or a JSON object (no trailing newline).
std::string render_deliver(const proto::deliver_msg& m, bool json);
std::string render_push(const proto::push_msg& m, bool json);
std::string render_send_result(const proto::send_result_msg& r, const std::string& target,
                               bool room, bool json);
std::string render_receipt(const proto::receipt_msg& r, bool json);

// Load-generator payload: "imgL" + 8-byte send time (ns since the run's epoch) + padding. The
// receiver recovers the send time to measure send->deliver latency.
std::string make_load_payload(uint64_t sent_ns, uint32_t size);
std::optional<uint64_t> read_load_payload(std::string_view payload);

}  // namespace imgate::client
