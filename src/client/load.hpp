#pragma once
// `imgate load`: a bounded load generator over the client protocol. N clients log in (directly
// or through the dispatcher), join rooms, and send 1:1 and room messages at a total rate for a
// fixed duration while acking every delivery. Every send is accounted for: it gets a result or
// is counted as missing at the end. Only loopback targets are accepted (validate_load).
// With --reconnect the clients hold their sessions and log in again after every loss (the
// reconnect rule of docs/protocol.md section 5), logging each login/loss/failed attempt to an
// events file and the live counts to a status file (docs/client.md).
#include <cstdint>
#include <map>
#include <string>

#include "client/logic.hpp"

namespace imgate::client {

struct load_report {
    uint32_t clients = 0;
    uint32_t connected = 0;
    uint32_t connect_failed = 0;
    std::string first_connect_error;
    uint64_t rooms_joined = 0;
    uint64_t room_join_errors = 0;
    double send_seconds = 0;
    uint64_t sends = 0;
    uint64_t sends_user = 0;
    uint64_t sends_room = 0;
    uint64_t not_queued = 0;  // the session was closed or its queue full: never written
    std::map<std::string, uint64_t> results;  // by status name
    uint64_t missing = 0;                     // sent, no result by the end of the drain
    uint64_t deliveries = 0;
    uint64_t receipts = 0;
    uint64_t sessions_ended = 0;  // ended before the run did
    std::map<std::string, uint64_t> end_reasons;
    latency_stats send_to_result;
    latency_stats send_to_deliver;
    // --reconnect (and the events of any run)
    uint64_t logins = 0;                           // every login, the first ones included
    uint64_t losses = 0;                           // sessions lost before the run's end
    std::map<std::string, uint64_t> loss_reasons;  // eof, reset, kick:<r>, ...
    uint64_t relogins = 0;                         // logins after a loss
    uint64_t attempts_failed = 0;
    std::map<std::string, uint64_t> failed_by_cause;  // refused, timeout, http_503, ...
    uint32_t stuck = 0;              // this process's clients not connected at the end
    uint64_t lost_with_session = 0;  // sends outstanding when their session was lost
    latency_stats relogin_ms;        // loss -> logged in again (ms)
    // Dispatcher rounds that moved on to the next --dispatcher URL (one per failed URL).
    uint64_t dispatcher_failovers = 0;

    std::string text(const load_params& p) const;
    std::string json(const load_params& p) const;
    // 0 when every send got a result and every client connected (--reconnect: every client
    // connected at the end).
    int exit_code(const load_params& p) const;
};

// Runs the load; prints progress to stderr and the report to stdout.
int run_load(const load_params& p, const std::string& secret_file, bool json, bool quiet);

}  // namespace imgate::client
