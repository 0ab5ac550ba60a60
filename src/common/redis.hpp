#pragma once
// A Redis connection for the gateway's optional shared engine (docs/architecture.md, "Redis
// mode"): hiredis (libhiredis-dev, the only Redis client Debian 12 packages) parses and writes
// RESP; this file adapts its async API to Asio. One connection pipelines every command in order,
// reconnects with backoff, and bounds both what it queues and how long an answer may take.
#include <boost/asio/any_io_executor.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/metrics.hpp"

namespace imgate::redis {

// An owned copy of one hiredis reply.
struct reply {
    enum class kind { nil, status, error, integer, string, array };
    kind type = kind::nil;
    long long integer = 0;
    std::string str;  // status, error and string replies
    std::vector<reply> elements;

    bool is_error() const { return type == kind::error; }
    bool is_nil() const { return type == kind::nil; }
};

// One command, an argument per element (binary-safe: sent with lengths, never formatted).
using argv = std::vector<std::string>;
// Called exactly once per command, on the connection's executor. ec is set (and the reply nil)
// when the command never got an answer: not connected, queue full, timed out, connection lost,
// stopped. A Redis error reply (-ERR ...) is not an ec: it is a reply of kind error.
using reply_handler = std::function<void(boost::system::error_code, const reply&)>;

// Errors of the connection itself (category "redis").
enum class errc {
    not_connected = 1,  // no connection now; the command was not sent
    queue_full,         // max_pending commands already wait for their answers
    timed_out,          // no answer within command_timeout: the connection was dropped
    connection_lost,    // the connection broke before the answer came
    stopped,            // stop() was called
    protocol,           // hiredis could not parse what the server sent
};
const boost::system::error_category& redis_category();
boost::system::error_code make_error_code(errc e);

struct options {
    // host:port (TCP) or a unix socket path (unix_path non-empty wins).
    std::string host = "127.0.0.1";
    uint16_t port = 6379;
    std::string unix_path;
    std::string password;  // AUTH after connecting when non-empty
    uint32_t db = 0;       // SELECT after connecting when non-zero
    std::chrono::milliseconds connect_timeout{1000};
    // The oldest unanswered command may wait this long; past it the connection is closed (every
    // waiting command fails timed_out) and a new one is made.
    std::chrono::milliseconds command_timeout{1000};
    std::chrono::milliseconds backoff_min{100};  // reconnect backoff, doubled up to max, jittered
    std::chrono::milliseconds backoff_max{5000};
    size_t max_pending = 100000;  // commands sent and not yet answered
    std::string name = "redis";   // label value of the metrics and log prefix
};

// What the directory and the event sink need from Redis; the connection implements it, unit
// tests use fakes.
class commands {
  public:
    virtual ~commands() = default;
    // Sends one command (thread-safe; the handler runs on the connection's executor).
    virtual void command(argv args, reply_handler h) = 0;
    // Whether a connection is up (and authenticated) now.
    virtual bool connected() const = 0;
};

// Owns one hiredis async context and the Asio descriptor watching its socket. Everything runs on
// its executor (give it a strand when the io_context has several threads). Metrics (label
// name=options.name): imgate_redis_up, imgate_redis_connects_total,
// imgate_redis_commands_total{result=ok|error|failed}, imgate_redis_pending.
class connection final : public commands, public std::enable_shared_from_this<connection> {
  public:
    static std::shared_ptr<connection> create(boost::asio::any_io_executor ex, options o,
                                              metrics_registry& m);
    // Stops like stop(), on the executor (the state lives until that ran).
    ~connection() override;

    // Connects, and reconnects after any loss until stop(). on_up runs (on the executor) each
    // time a connection is ready for commands, on_down each time one is lost or an attempt
    // fails (not on stop()); both optional, set before start().
    void set_on_up(std::function<void()> f);
    void set_on_down(std::function<void(boost::system::error_code)> f);
    void start();
    // Fails every waiting command with errc::stopped and closes the connection; idempotent.
    void stop();

    // Refuses (asio::error::invalid_argument) an empty argv and the commands that would break
    // one-reply-per-command pipelining or the session set up at connect (SUBSCRIBE family,
    // MONITOR, CLIENT REPLY, HELLO, RESET, SELECT: the db is options.db).
    void command(argv args, reply_handler h) override;
    bool connected() const override;

    const options& opts() const;

  private:
    struct impl;
    explicit connection(std::shared_ptr<impl> i);
    std::shared_ptr<impl> impl_;
};

}  // namespace imgate::redis

namespace boost::system {
template <>
struct is_error_code_enum<imgate::redis::errc> : std::true_type {};
}  // namespace boost::system
