// The built-in live dashboard page (GET /dashboard): one self-contained HTML document with its
// CSS and JavaScript inline, so it works with no network beyond the node itself.
#pragma once

#include <string_view>

namespace nexus {

std::string_view DashboardHtml();

}  // namespace nexus
