#include "dispatcher/dashboard.hpp"

namespace imgate::disp {

const std::string& dashboard_html() {
    static const std::string html =
        "<!doctype html><title>imgate</title><p>Dashboard not built yet. See <a "
        "href=\"/status\">/status</a>.";
    return html;
}

}  // namespace imgate::disp
