#include "explain/scoring.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace nexplain {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_sizes(std::span<const double> truth, std::span<const double> pred, const char* what) {
  if (truth.size() != pred.size()) {
    fail("{}: true and simulated activations differ in length ({} vs {})", what, truth.size(), pred.size());
  }
}

// Exact test rather than variance == 0: the mean of a constant sequence is not always exactly
// that constant in floating point, so a computed variance could be a tiny positive number and
// turn "undefined" into a meaningless large correlation.
bool is_constant(std::span<const double> v) {
  return std::all_of(v.begin(), v.end(), [&](double x) { return x == v.front(); });
}

double mean(std::span<const double> v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

}  // namespace

double correlation(std::span<const double> truth, std::span<const double> pred) {
  check_sizes(truth, pred, "correlation");
  if (truth.empty() || is_constant(truth) || is_constant(pred)) return kNaN;
  // Two passes (mean first, then centred sums): the one-pass formula cancels catastrophically
  // when activations have a large offset relative to their spread.
  const double mt = mean(truth), mp = mean(pred);
  double stp = 0.0, stt = 0.0, spp = 0.0;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    const double dt = truth[i] - mt, dp = pred[i] - mp;
    stp += dt * dp;
    stt += dt * dt;
    spp += dp * dp;
  }
  if (stt <= 0.0 || spp <= 0.0) return kNaN;
  // Rounding can push |r| a hair above 1; clamp so callers may rely on the range.
  return std::clamp(stp / std::sqrt(stt * spp), -1.0, 1.0);
}

double score_squared(std::span<const double> truth, std::span<const double> pred) {
  check_sizes(truth, pred, "score_squared");
  double err = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    const double d = truth[i] - pred[i];
    err += d * d;
    norm += truth[i] * truth[i];
  }
  if (norm == 0.0) return kNaN;
  // The 1/n factors of both means cancel.
  return 1.0 - err / norm;
}

double score_absolute(std::span<const double> truth, std::span<const double> pred) {
  check_sizes(truth, pred, "score_absolute");
  double err = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    err += std::fabs(truth[i] - pred[i]);
    norm += std::fabs(truth[i]);
  }
  if (norm == 0.0) return kNaN;
  return 1.0 - err / norm;
}

namespace {

void append(std::span<const ScoredExcerpt> excerpts, std::vector<double>& truth, std::vector<double>& pred) {
  for (const auto& e : excerpts) {
    if (e.truth.size() != e.pred.size()) {
      fail("score_neuron: an excerpt has {} true but {} simulated activations", e.truth.size(), e.pred.size());
    }
    truth.insert(truth.end(), e.truth.begin(), e.truth.end());
    pred.insert(pred.end(), e.pred.begin(), e.pred.end());
  }
}

}  // namespace

ScoreSet score_neuron(std::span<const ScoredExcerpt> top, std::span<const ScoredExcerpt> random) {
  std::vector<double> top_t, top_p, rnd_t, rnd_p;
  append(top, top_t, top_p);
  append(random, rnd_t, rnd_p);
  std::vector<double> all_t = top_t, all_p = top_p;
  all_t.insert(all_t.end(), rnd_t.begin(), rnd_t.end());
  all_p.insert(all_p.end(), rnd_p.begin(), rnd_p.end());
  ScoreSet s{};
  s.all = correlation(all_t, all_p);
  s.top = correlation(top_t, top_p);
  s.random = correlation(rnd_t, rnd_p);
  s.squared_all = score_squared(all_t, all_p);
  s.absolute_all = score_absolute(all_t, all_p);
  return s;
}

}  // namespace nexplain
