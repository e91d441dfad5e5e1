#include "viewer/index_query.hpp"

#include <algorithm>
#include <charconv>
#include <iterator>
#include <cmath>

#include <fmt/format.h>

#include "core/error.hpp"
#include "viewer/html_escape.hpp"

namespace nexplain::viewer {

namespace {

long long parse_int(const std::string& name, const std::string& v, long long lo, long long hi) {
  long long x = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size() || x < lo || x > hi)
    fail("query parameter {}='{}': expected an integer in [{}, {}]", name, v, lo, hi);
  return x;
}

double parse_double(const std::string& name, const std::string& v) {
  double x = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size() || !std::isfinite(x))
    fail("query parameter {}='{}': expected a finite number", name, v);
  return x;
}

}  // namespace

const char* sort_key_name(SortKey k) {
  switch (k) {
    case SortKey::score: return "score";
    case SortKey::top: return "top";
    case SortKey::random: return "random";
    case SortKey::neuron: break;
  }
  return "neuron";
}

const char* status_name(StatusFilter s) {
  switch (s) {
    case StatusFilter::ok: return "ok";
    case StatusFilter::failed: return "failed";
    case StatusFilter::all: break;
  }
  return "all";
}

IndexQuery parse_index_query(const std::multimap<std::string, std::string>& params) {
  IndexQuery q;
  for (const auto& [name, value] : params) {
    static const char* const kKnown[] = {"layer", "min", "max", "q", "status", "sort", "order", "page", "per_page"};
    if (std::find(std::begin(kKnown), std::end(kKnown), name) == std::end(kKnown))
      fail("unknown query parameter '{}' (known: layer, min, max, q, status, sort, order, page, per_page)", name);
    if (params.count(name) > 1) fail("query parameter {} is given {} times", name, params.count(name));
    if (value.empty()) continue;
    if (name == "layer") {
      q.layer = static_cast<int>(parse_int(name, value, 0, 1 << 20));
    } else if (name == "min") {
      q.min_score = parse_double(name, value);
    } else if (name == "max") {
      q.max_score = parse_double(name, value);
    } else if (name == "q") {
      if (value.size() > 1000) fail("query parameter q: longer than 1000 bytes");
      q.text = value;
    } else if (name == "status") {
      if (value == "all") q.status = StatusFilter::all;
      else if (value == "ok") q.status = StatusFilter::ok;
      else if (value == "failed") q.status = StatusFilter::failed;
      else fail("query parameter status='{}': expected all, ok or failed", value);
    } else if (name == "sort") {
      if (value == "neuron") q.sort = SortKey::neuron;
      else if (value == "score") q.sort = SortKey::score;
      else if (value == "top") q.sort = SortKey::top;
      else if (value == "random") q.sort = SortKey::random;
      else fail("query parameter sort='{}': expected neuron, score, top or random", value);
    } else if (name == "order") {
      if (value == "asc") q.descending = false;
      else if (value == "desc") q.descending = true;
      else fail("query parameter order='{}': expected asc or desc", value);
    } else if (name == "page") {
      q.page = static_cast<std::size_t>(parse_int(name, value, 1, 1'000'000'000));
    } else if (name == "per_page") {
      q.per_page = static_cast<std::size_t>(parse_int(name, value, 1, kMaxPerPage));
    }
  }
  if (q.min_score && q.max_score && *q.min_score > *q.max_score)
    fail("query parameters min={} > max={}: the score range is empty", *q.min_score, *q.max_score);
  return q;
}

std::string to_query_string(const IndexQuery& q) {
  std::string s;
  auto add = [&](const char* name, const std::string& v) {
    s += s.empty() ? "?" : "&";
    s += name;
    s += '=';
    s += url_encode(v);
  };
  if (q.layer) add("layer", std::to_string(*q.layer));
  if (q.min_score) add("min", fmt::format("{}", *q.min_score));
  if (q.max_score) add("max", fmt::format("{}", *q.max_score));
  if (!q.text.empty()) add("q", q.text);
  if (q.status != StatusFilter::all) add("status", status_name(q.status));
  if (q.sort != SortKey::neuron) add("sort", sort_key_name(q.sort));
  if (q.descending) add("order", "desc");
  if (q.page != 1) add("page", std::to_string(q.page));
  if (q.per_page != 100) add("per_page", std::to_string(q.per_page));
  return s;
}

}  // namespace nexplain::viewer
