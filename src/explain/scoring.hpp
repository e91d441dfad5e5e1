#pragma once
// Scores of a simulated neuron against the true one (DESIGN.md "Explanation, simulation,
// scoring"). Every score is computed over all tokens of all scored excerpts concatenated, not as a
// mean of per-excerpt scores: a short excerpt must not weigh as much as the whole neuron.
#include <span>
#include <vector>

namespace nexplain {

// Pearson correlation of `truth` and `pred` in double precision. NaN when the inputs are empty or
// either side is constant (a single element is constant). Sizes must match (Error otherwise).
double correlation(std::span<const double> truth, std::span<const double> pred);

// 1 - mean((t-p)^2) / mean(t^2): an R^2-like score that, unlike correlation, punishes a wrong
// scale. NaN when mean(t^2) == 0 (empty or all-zero truth).
double score_squared(std::span<const double> truth, std::span<const double> pred);

// 1 - mean|t-p| / mean|t|: the same idea with absolute errors. NaN when mean|t| == 0.
double score_absolute(std::span<const double> truth, std::span<const double> pred);

// One excerpt's true and simulated activations, token by token (same length).
struct ScoredExcerpt {
  std::vector<double> truth;
  std::vector<double> pred;
};

// Everything reported per neuron. NaN marks "undefined" (constant side, no data); summaries count
// NaNs separately instead of treating them as zero.
struct ScoreSet {
  double all;            // correlation over top + random excerpts
  double top;            // correlation over the top excerpts only
  double random;         // correlation over the random excerpts only
  double squared_all;    // score_squared over top + random
  double absolute_all;   // score_absolute over top + random
};

// Scores a neuron from its scored top and random excerpts (either list may be empty).
ScoreSet score_neuron(std::span<const ScoredExcerpt> top, std::span<const ScoredExcerpt> random);

}  // namespace nexplain
