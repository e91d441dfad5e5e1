#include "viewer/heatmap.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "viewer/html_escape.hpp"

namespace nexplain::viewer {

std::string render_heatmap(const nlohmann::json& tokens, const nlohmann::json& values, double scale, long mark,
                           const std::string& label) {
  std::string out = "<div class=\"excerpt\">";
  if (!label.empty()) out += "<span class=\"label\">" + escape_html(label) + "</span>";
  const std::size_t n = std::min(tokens.is_array() ? tokens.size() : 0, values.is_array() ? values.size() : 0);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& v = values[i];
    const std::string text = tokens[i].is_string() ? tokens[i].get<std::string>() : std::string();
    std::string style, title = "undefined";
    if (v.is_number()) {
      const double x = v.get<double>();
      const double a = scale > 0 ? std::clamp(std::abs(x) / scale, 0.0, 1.0) : 0.0;
      style = x >= 0 ? fmt::format("background-color:rgba(0,170,60,{:.3f})", a)
                     : fmt::format("background-color:rgba(220,40,40,{:.3f})", a);
      title = fmt::format("{:.4g}", x);
    }
    out += fmt::format("<span class=\"tok{}\" style=\"{}\" title=\"{}\" data-value=\"{}\">{}</span>",
                       static_cast<long>(i) == mark ? " max" : "", style, escape_html(title), escape_html(title),
                       escape_token(text));
  }
  out += "</div>\n";
  return out;
}

}  // namespace nexplain::viewer
