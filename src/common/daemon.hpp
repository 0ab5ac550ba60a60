#pragma once
// What every daemon shares around its io_context: signals (stop/reload), systemd notification
// (READY/RELOADING/STOPPING/watchdog) and a guarded co_spawn.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <string>

namespace imgate {

namespace asio = boost::asio;

// Completion handler for co_spawn that logs whatever escaped the coroutine instead of dropping it.
struct log_exceptions {
    std::string what;
    void operator()(std::exception_ptr e) const;
};

template <class Executor, class Awaitable>
void spawn(Executor&& ex, Awaitable&& a, std::string what) {
    asio::co_spawn(std::forward<Executor>(ex), std::forward<Awaitable>(a),
                   log_exceptions{std::move(what)});
}

// Writes json to path atomically (path.tmp, then rename) once a daemon listens: tests and
// scripts wait for the file (--ready-file) instead of polling ports.
bool write_ready_file(const std::string& path, const std::string& json);

// Owns the SIGTERM/SIGINT/SIGHUP handling and the systemd watchdog timer of one io_context.
class daemon_control {
  public:
    daemon_control(asio::io_context& io, std::function<void()> on_stop,
                   std::function<void()> on_reload);
    void start();
    void stop_watching();  // cancels the signal set and the watchdog timer

    // systemd notifications; no-ops when not started by systemd (NOTIFY_SOCKET unset).
    static void notify_ready(const std::string& status = "");
    static void notify_reloading();
    static void notify_stopping();
    static void notify_status(const std::string& status);

  private:
    void wait_signal();
    void arm_watchdog();

    asio::io_context& io_;
    asio::signal_set signals_;
    asio::steady_timer watchdog_;
    std::function<void()> on_stop_;
    std::function<void()> on_reload_;
    uint64_t watchdog_usec_ = 0;
    bool stopping_ = false;
};

}  // namespace imgate
