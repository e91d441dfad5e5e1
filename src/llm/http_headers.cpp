#include "llm/http_headers.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

namespace nexplain {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A non-negative decimal number filling all of `s` ("12", "0.5", "1e3").
std::optional<double> parse_number(std::string_view s) {
  if (s.empty() || s.front() == '-' || s.front() == '+') return std::nullopt;
  double v = 0.0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace

void HeaderMap::add_line(std::string_view line) {
  line = trim(line);
  if (line.empty()) return;
  if (line.size() >= 5 && line.substr(0, 5) == "HTTP/") {
    fields_.clear();
    return;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return;  // folded continuation lines are obsolete; ignore
  set(line.substr(0, colon), line.substr(colon + 1));
}

void HeaderMap::set(std::string_view name, std::string_view value) {
  fields_[lower(trim(name))] = std::string(trim(value));
}

std::optional<std::string> HeaderMap::get(std::string_view name) const {
  const auto it = fields_.find(lower(name));
  if (it == fields_.end()) return std::nullopt;
  return it->second;
}

std::optional<double> parse_duration(std::string_view text) {
  text = trim(text);
  if (text.empty()) return std::nullopt;
  if (auto plain = parse_number(text)) return plain;
  double total = 0.0;
  while (!text.empty()) {
    std::size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    if (i == 0) return std::nullopt;
    const auto number = parse_number(text.substr(0, i));
    if (!number) return std::nullopt;
    text.remove_prefix(i);
    std::size_t j = 0;
    while (j < text.size() && !std::isdigit(static_cast<unsigned char>(text[j])) && text[j] != '.') ++j;
    const std::string_view unit = text.substr(0, j);
    text.remove_prefix(j);
    double scale = 0.0;
    if (unit == "h") scale = 3600.0;
    else if (unit == "m") scale = 60.0;
    else if (unit == "s") scale = 1.0;
    else if (unit == "ms") scale = 1e-3;
    else if (unit == "us" || unit == "\xc2\xb5s") scale = 1e-6;  // "µs" in UTF-8
    else if (unit == "ns") scale = 1e-9;
    else return std::nullopt;
    total += *number * scale;
  }
  return total;
}

std::optional<double> parse_retry_after(std::string_view text, std::time_t now) {
  text = trim(text);
  if (text.empty()) return std::nullopt;
  if (auto secs = parse_number(text)) return secs;
  // curl_getdate understands RFC 1123, RFC 850 and asctime dates, the three HTTP allows.
  const std::string date(text);
  const std::time_t t = curl_getdate(date.c_str(), nullptr);
  if (t == -1) return std::nullopt;
  return std::max(0.0, static_cast<double>(t - now));
}

RateLimitHeaders parse_rate_limit_headers(const HeaderMap& h) {
  RateLimitHeaders r;
  auto number = [&](const char* name) -> std::optional<double> {
    if (auto v = h.get(name)) return parse_number(trim(*v));
    return std::nullopt;
  };
  auto duration = [&](const char* name) -> std::optional<double> {
    if (auto v = h.get(name)) return parse_duration(*v);
    return std::nullopt;
  };
  r.limit_requests = number("x-ratelimit-limit-requests");
  r.limit_tokens = number("x-ratelimit-limit-tokens");
  r.remaining_requests = number("x-ratelimit-remaining-requests");
  r.remaining_tokens = number("x-ratelimit-remaining-tokens");
  r.reset_requests_s = duration("x-ratelimit-reset-requests");
  r.reset_tokens_s = duration("x-ratelimit-reset-tokens");
  return r;
}

}  // namespace nexplain
