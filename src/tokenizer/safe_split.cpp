#include "tokenizer/safe_split.hpp"

#include <algorithm>

namespace nexplain {

namespace {
bool solid(char c) { return c > ' ' && c < 0x7F; }  // printable ASCII, not space
}  // namespace

bool is_safe_split(std::string_view t, std::size_t p) {
  if (p < 2 || p + 1 >= t.size()) return false;
  if (t[p - 1] == '\n' && solid(t[p - 2]) && solid(t[p])) return true;
  return t[p] == ' ' && solid(t[p - 1]) && solid(t[p + 1]);
}

std::size_t find_safe_split(std::string_view text, std::size_t min_pos, std::size_t max_pos) {
  if (text.size() < 3) return 0;
  max_pos = std::min(max_pos, text.size() - 2);
  min_pos = std::max<std::size_t>(min_pos, 2);
  for (std::size_t p = max_pos; p >= min_pos && p > 0; --p)
    if (is_safe_split(text, p)) return p;
  return 0;
}

std::vector<std::string_view> split_safely(std::string_view text, std::size_t target) {
  std::vector<std::string_view> pieces;
  target = std::max<std::size_t>(target, 1);
  while (text.size() > target) {
    // Prefer a cut in the second half of the target so pieces stay near `target`; fall back to
    // any cut before it, then to the first one after it.
    std::size_t p = find_safe_split(text, target / 2, target);
    if (p == 0) p = find_safe_split(text, 1, target / 2);
    if (p == 0) {
      for (std::size_t q = target + 1; q + 1 < text.size(); ++q)
        if (is_safe_split(text, q)) {
          p = q;
          break;
        }
    }
    if (p == 0) break;
    pieces.push_back(text.substr(0, p));
    text.remove_prefix(p);
  }
  if (!text.empty()) pieces.push_back(text);
  return pieces;
}

}  // namespace nexplain
