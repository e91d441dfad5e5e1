#include "explain/activation_format.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace nexplain {

double max_activation(std::span<const ActivationExcerpt> excerpts) {
  double m = 0.0;
  bool any = false;
  for (const auto& e : excerpts) {
    for (float a : e.activations) {
      if (!std::isfinite(a)) continue;
      m = any ? std::max(m, static_cast<double>(a)) : static_cast<double>(a);
      any = true;
    }
  }
  return any ? m : 0.0;
}

int normalize_activation(float x, double m) {
  if (!(m > 0.0) || !std::isfinite(m) || !(x > 0.0f)) return 0;  // also maps NaN to 0
  const double xd = static_cast<double>(x);
  if (xd >= m) return 10;
  return std::min(10, static_cast<int>(std::floor(10.0 * xd / m)));
}

std::vector<int> normalize_activations(std::span<const float> activations, double m) {
  std::vector<int> out;
  out.reserve(activations.size());
  for (float x : activations) out.push_back(normalize_activation(x, m));
  return out;
}

std::string escape_token(std::string_view token) {
  std::string s;
  s.reserve(token.size());
  for (char c : token) {
    switch (c) {
      case '\t': s += "\\t"; break;
      case '\n': s += "\\n"; break;
      case '\r': s += "\\r"; break;
      case '\\': s += "\\\\"; break;
      default: s += c;
    }
  }
  return s;
}

std::string unescape_token(std::string_view shown) {
  std::string s;
  s.reserve(shown.size());
  for (std::size_t i = 0; i < shown.size(); ++i) {
    if (shown[i] == '\\' && i + 1 < shown.size()) {
      const char n = shown[i + 1];
      const char c = n == 't' ? '\t' : n == 'n' ? '\n' : n == 'r' ? '\r' : n == '\\' ? '\\' : '\0';
      if (c != '\0') {
        s += c;
        ++i;
        continue;
      }
    }
    s += shown[i];  // a lone backslash a model wrote is kept as is
  }
  return s;
}

std::string format_excerpt(const std::vector<std::string>& tokens, std::span<const int> values, bool skip_zeros) {
  if (tokens.size() != values.size()) {
    fail("format_excerpt: {} tokens but {} values", tokens.size(), values.size());
  }
  std::string s = "<start>\n";
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (skip_zeros && values[i] == 0) continue;
    s += escape_token(tokens[i]);
    s += '\t';
    s += std::to_string(values[i]);
    s += '\n';
  }
  s += "<end>\n";
  return s;
}

std::string format_excerpt_for_simulation(const std::vector<std::string>& tokens, std::string_view placeholder) {
  std::string s = "<start>\n";
  for (const auto& t : tokens) {
    s += escape_token(t);
    s += '\t';
    s += placeholder;
    s += '\n';
  }
  s += "<end>\n";
  return s;
}

bool needs_sparse_repeat(std::size_t nonzero, std::size_t total, double sparse_fraction) {
  // Integer-free comparison so that exactly 20% is not "under 20%".
  return total > 0 && static_cast<double>(nonzero) < sparse_fraction * static_cast<double>(total);
}

std::string format_activation_records(std::span<const ActivationExcerpt> excerpts, const ActivationFormatOptions& options) {
  const double m = std::isnan(options.max) ? max_activation(excerpts) : options.max;
  std::vector<std::vector<int>> values;
  values.reserve(excerpts.size());
  std::size_t nonzero = 0, total = 0;
  for (std::size_t i = 0; i < excerpts.size(); ++i) {
    const auto& e = excerpts[i];
    if (e.tokens.size() != e.activations.size()) {
      fail("activation excerpt {}: {} tokens but {} activations", i, e.tokens.size(), e.activations.size());
    }
    values.push_back(normalize_activations(e.activations, m));
    nonzero += static_cast<std::size_t>(std::count_if(values.back().begin(), values.back().end(), [](int v) { return v != 0; }));
    total += values.back().size();
  }
  std::string s;
  for (std::size_t i = 0; i < excerpts.size(); ++i) {
    if (i > 0) s += '\n';
    s += format_excerpt(excerpts[i].tokens, values[i]);
  }
  if (needs_sparse_repeat(nonzero, total, options.sparse_fraction)) {
    s += '\n';
    s += options.sparse_intro;
    s += '\n';
    for (std::size_t i = 0; i < excerpts.size(); ++i) {
      if (i > 0) s += '\n';
      s += format_excerpt(excerpts[i].tokens, values[i], /*skip_zeros=*/true);
    }
  }
  return s;
}

}  // namespace nexplain
