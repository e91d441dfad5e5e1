#include "explain/logprob_parse.hpp"

#include <algorithm>
#include <cmath>

namespace nexplain {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Sentencepiece vocabularies mark a leading space with U+2581; servers usually decode it to a
// space, but some report the raw piece.
constexpr std::string_view kSpMarker = "\xE2\x96\x81";

std::string_view trim(std::string_view s) {
  for (;;) {
    if (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    else if (s.starts_with(kSpMarker)) s.remove_prefix(kSpMarker.size());
    else break;
  }
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Accumulates p * value over activation tokens given as (token, logprob) pairs. The largest
// logprob is subtracted before exponentiating so tiny probabilities do not all underflow to 0.
template <typename Pairs>
double expected_from_pairs(const Pairs& pairs, int scale_max) {
  double best = -INFINITY;
  for (const auto& [tok, lp] : pairs)
    if (std::isfinite(lp) && activation_token_value(tok, scale_max)) best = std::max(best, lp);
  if (!std::isfinite(best)) return 0.0;
  double num = 0.0, den = 0.0;
  for (const auto& [tok, lp] : pairs) {
    if (!std::isfinite(lp)) continue;
    const auto v = activation_token_value(tok, scale_max);
    if (!v) continue;
    const double p = std::exp(lp - best);
    num += p * *v;
    den += p;
  }
  return num / den;  // den >= 1: the best token contributes exp(0)
}

}  // namespace

std::optional<int> activation_token_value(std::string_view token, int scale_max) {
  const std::string_view t = trim(token);
  if (t.size() == 1 && t[0] >= '0' && t[0] <= '9' && t[0] - '0' <= scale_max) return t[0] - '0';
  if (t == "10" && scale_max >= 10) return 10;
  return std::nullopt;
}

double expected_activation(const std::map<std::string, double>& top_logprobs, int scale_max) {
  return expected_from_pairs(top_logprobs, scale_max);
}

double expected_activation(std::span<const TopLogprob> top_logprobs, int scale_max) {
  std::vector<std::pair<std::string_view, double>> pairs;
  pairs.reserve(top_logprobs.size());
  for (const auto& t : top_logprobs) pairs.emplace_back(t.token, t.logprob);
  return expected_from_pairs(pairs, scale_max);
}

double expected_activation(const TokenLogprob& token, int scale_max) {
  std::vector<std::pair<std::string_view, double>> pairs;
  pairs.reserve(token.top.size() + 1);
  bool listed = false;
  for (const auto& t : token.top) {
    pairs.emplace_back(t.token, t.logprob);
    listed = listed || t.token == token.token;
  }
  if (!listed) pairs.emplace_back(token.token, token.logprob);
  return expected_from_pairs(pairs, scale_max);
}

std::vector<std::size_t> token_start_offsets(std::span<const TokenLogprob> tokens) {
  std::vector<std::size_t> starts;
  starts.reserve(tokens.size() + 1);
  std::size_t at = 0;
  for (const auto& t : tokens) {
    starts.push_back(at);
    at += t.token.size();
  }
  starts.push_back(at);
  return starts;
}

std::string joined_token_text(std::span<const TokenLogprob> tokens) {
  std::string s;
  for (const auto& t : tokens) s += t.token;
  return s;
}

std::optional<std::size_t> token_covering(std::span<const std::size_t> starts, std::size_t offset) {
  if (starts.size() < 2 || offset >= starts.back()) return std::nullopt;
  // starts[0..n-1] are token starts (non-decreasing; empty tokens repeat a value), starts[n] the end.
  const auto token_starts = starts.first(starts.size() - 1);
  const auto it = std::upper_bound(token_starts.begin(), token_starts.end(), offset);
  return static_cast<std::size_t>(it - token_starts.begin()) - 1;
}

std::vector<double> expected_activations_at(std::span<const TokenLogprob> tokens, std::span<const std::size_t> offsets,
                                            int scale_max) {
  const auto starts = token_start_offsets(tokens);
  std::vector<double> out;
  out.reserve(offsets.size());
  for (std::size_t off : offsets) {
    const auto i = token_covering(starts, off);
    out.push_back(i ? expected_activation(tokens[*i], scale_max) : 0.0);
  }
  return out;
}

}  // namespace nexplain
