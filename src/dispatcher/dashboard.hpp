#pragma once
// The self-contained fleet dashboard served at GET / on the dispatcher's admin listener.
#include <string>

namespace imgate::disp {

const std::string& dashboard_html();

}  // namespace imgate::disp
