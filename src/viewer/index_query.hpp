#pragma once
// What the index page and /api/.../neurons are asked: filters (layer, score range, status, text
// in the explanation), sort order and the page. Parsed strictly from URL query parameters: an
// unknown parameter or a malformed value is an Error (the server answers 400 with its message),
// never silently ignored, so a script with a typo learns about it.
#include <cstddef>
#include <map>
#include <optional>
#include <string>

namespace nexplain::viewer {

enum class SortKey { neuron, score, top, random };
enum class StatusFilter { all, ok, failed };

struct IndexQuery {
  std::optional<int> layer;
  std::optional<double> min_score, max_score;  // on scores.all; neurons without a score never match a range
  std::string text;                            // case-insensitive (ASCII) substring of the explanation
  StatusFilter status = StatusFilter::all;
  SortKey sort = SortKey::neuron;
  bool descending = false;
  std::size_t page = 1;  // 1-based
  std::size_t per_page = 100;
};

inline constexpr std::size_t kMaxPerPage = 1000;

// Parameters: layer, min, max, q, status (all|ok|failed), sort (neuron|score|top|random),
// order (asc|desc), page, per_page (1..1000). Empty values mean "not given" (an empty form field).
IndexQuery parse_index_query(const std::multimap<std::string, std::string>& params);

// The query as URL parameters (defaults left out), for links that change one thing.
std::string to_query_string(const IndexQuery& q);

const char* sort_key_name(SortKey k);
const char* status_name(StatusFilter s);

}  // namespace nexplain::viewer
