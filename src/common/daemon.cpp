#include "common/daemon.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <csignal>
#include <ctime>
#include <filesystem>
#include <fstream>

namespace imgate {

void log_exceptions::operator()(std::exception_ptr e) const {
    if (!e) return;
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        spdlog::error("{}: unexpected exception: {}", what, ex.what());
    } catch (...) {
        spdlog::error("{}: unexpected non-standard exception", what);
    }
}

daemon_control::daemon_control(asio::io_context& io, std::function<void()> on_stop,
                               std::function<void()> on_reload)
    : io_(io),
      signals_(io, SIGTERM, SIGINT, SIGHUP),
      watchdog_(io),
      on_stop_(std::move(on_stop)),
      on_reload_(std::move(on_reload)) {}

void daemon_control::start() {
    wait_signal();
    if (sd_watchdog_enabled(0, &watchdog_usec_) > 0 && watchdog_usec_ > 0) arm_watchdog();
}

void daemon_control::stop_watching() {
    boost::system::error_code ec;
    signals_.cancel(ec);
    watchdog_.cancel();
}

void daemon_control::wait_signal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
            spdlog::info("SIGHUP: reloading configuration");
            if (on_reload_) on_reload_();
        } else if (!stopping_) {
            stopping_ = true;
            spdlog::info("{}: stopping gracefully", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            if (on_stop_) on_stop_();
        } else {
            spdlog::warn("second stop signal: exiting now");
            std::_Exit(1);
        }
        wait_signal();
    });
}

void daemon_control::arm_watchdog() {
    // Ping at half the interval from the event loop itself: a stuck loop stops the pings.
    watchdog_.expires_after(std::chrono::microseconds(watchdog_usec_ / 2));
    watchdog_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        sd_notify(0, "WATCHDOG=1");
        arm_watchdog();
    });
}

bool write_ready_file(const std::string& path, const std::string& json) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        if (!out) return false;
        out << json << "\n";
        if (!out.flush()) return false;
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    return !ec;
}

void daemon_control::notify_ready(const std::string& status) {
    std::string msg = "READY=1";
    if (!status.empty()) msg += "\nSTATUS=" + status;
    sd_notify(0, msg.c_str());
}

void daemon_control::notify_reloading() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t usec = uint64_t(ts.tv_sec) * 1000000 + uint64_t(ts.tv_nsec) / 1000;
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", static_cast<unsigned long long>(usec));
}

void daemon_control::notify_stopping() {
    sd_notify(0, "STOPPING=1");
}

void daemon_control::notify_status(const std::string& status) {
    sd_notifyf(0, "STATUS=%s", status.c_str());
}

}  // namespace imgate
