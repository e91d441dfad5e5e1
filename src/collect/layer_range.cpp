#include "collect/layer_range.hpp"

#include <algorithm>
#include <charconv>

#include "core/error.hpp"

namespace nexplain {

namespace {
int parse_int(std::string_view s, const std::string& whole) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty())
    fail("--layers '{}': '{}' is not a layer number (expected e.g. 'all', '5', '0-11' or '0-3,8')", whole, s);
  return v;
}
}  // namespace

std::vector<int> parse_layer_range(const std::string& text, int n_layer) {
  std::vector<int> out;
  if (text.empty() || text == "all") {
    for (int l = 0; l < n_layer; ++l) out.push_back(l);
    return out;
  }
  std::string_view rest = text;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string_view part = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    int lo = 0, hi = 0;
    if (auto dash = part.find('-'); dash != std::string_view::npos) {
      lo = parse_int(part.substr(0, dash), text);
      hi = parse_int(part.substr(dash + 1), text);
    } else {
      lo = hi = parse_int(part, text);
    }
    if (lo > hi) fail("--layers '{}': range {}-{} is empty", text, lo, hi);
    if (lo < 0 || hi >= n_layer)
      fail("--layers '{}': layer {} is out of range: the model has {} layers (0-{})", text, lo < 0 ? lo : hi, n_layer, n_layer - 1);
    for (int l = lo; l <= hi; ++l) out.push_back(l);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace nexplain
