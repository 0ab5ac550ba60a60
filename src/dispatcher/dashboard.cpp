#include "dispatcher/dashboard.hpp"

#include <cstddef>

namespace imgate::disp {

namespace detail {
// Defined in the build directory by cmake/ImgateDashboard.cmake from dashboard.html.
extern const char dashboard_html_data[];
extern const std::size_t dashboard_html_size;
}  // namespace detail

const std::string& dashboard_html() {
    static const std::string html(detail::dashboard_html_data, detail::dashboard_html_size);
    return html;
}

}  // namespace imgate::disp
