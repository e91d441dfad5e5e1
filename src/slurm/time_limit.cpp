#include "slurm/time_limit.hpp"

#include <cctype>
#include <vector>

#include "core/error.hpp"

namespace nexplain {

namespace {

std::vector<std::int64_t> numbers(const std::string& text, const std::string& whole) {
  std::vector<std::int64_t> out;
  std::string cur;
  for (char ch : text + ":") {
    if (ch == ':') {
      if (cur.empty() || cur.size() > 9) fail("time limit '{}': expected [days-]hours:minutes:seconds or minutes", whole);
      out.push_back(std::stoll(cur));
      cur.clear();
    } else if (std::isdigit(static_cast<unsigned char>(ch))) {
      cur += ch;
    } else {
      fail("time limit '{}': unexpected '{}' (expected [days-]hours:minutes:seconds or minutes)", whole, ch);
    }
  }
  return out;
}

}  // namespace

std::int64_t parse_slurm_time(const std::string& text) {
  const auto dash = text.find('-');
  if (dash != std::string::npos) {
    // days-hours[:minutes[:seconds]]
    const auto d = numbers(text.substr(0, dash), text);
    const auto r = numbers(text.substr(dash + 1), text);
    if (d.size() != 1 || r.size() > 3) fail("time limit '{}': expected days-hours[:minutes[:seconds]]", text);
    std::int64_t s = d[0] * 86400 + r[0] * 3600;
    if (r.size() > 1) s += r[1] * 60;
    if (r.size() > 2) s += r[2];
    return s;
  }
  const auto n = numbers(text, text);
  switch (n.size()) {
    case 1: return n[0] * 60;                        // minutes
    case 2: return n[0] * 60 + n[1];                 // minutes:seconds
    case 3: return n[0] * 3600 + n[1] * 60 + n[2];   // hours:minutes:seconds
    default: fail("time limit '{}': too many ':' fields", text);
  }
}

}  // namespace nexplain
