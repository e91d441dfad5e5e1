#include "explain/offline_explainer.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "core/error.hpp"
#include "explain/scoring.hpp"

namespace nexplain {

namespace {

struct Candidate {
  OfflineExplanation clause;      // a single clause
  std::vector<double> prediction;  // over all train tokens, concatenated
};

// Keys sorted by mass (descending), ties by key, at most `limit`.
template <typename Key>
std::vector<Key> by_mass(const std::map<Key, double>& mass, std::size_t limit) {
  std::vector<std::pair<Key, double>> v(mass.begin(), mass.end());
  std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::vector<Key> out;
  for (std::size_t i = 0; i < v.size() && i < limit; ++i) out.push_back(v[i].first);
  return out;
}

double finite_or_zero(float x) { return std::isfinite(x) ? static_cast<double>(x) : 0.0; }

}  // namespace

OfflineExplanation OfflineExplainer::fit(std::span<const ActivationExcerpt> train, double* train_correlation) const {
  std::vector<double> truth;
  double m = 0.0;
  for (std::size_t i = 0; i < train.size(); ++i) {
    const auto& e = train[i];
    if (e.tokens.size() != e.activations.size())
      fail("offline explainer: excerpt {} has {} tokens but {} activations", i, e.tokens.size(), e.activations.size());
    for (float a : e.activations) {
      truth.push_back(finite_or_zero(a));
      m = std::max(m, truth.back());
    }
  }
  if (train_correlation) *train_correlation = std::nan("");
  if (!(m > 0.0)) return {};
  const double active = options_.active_fraction * m;

  // Activation mass of each candidate at the active tokens, and how often each position is active.
  std::map<std::string, double> unigram;
  std::map<std::pair<std::string, std::string>, double> bigram;  // (token, previous)
  std::map<std::size_t, std::size_t> active_at, present_at;
  for (const auto& e : train) {
    for (std::size_t t = 0; t < e.tokens.size(); ++t) {
      ++present_at[t];
      const double a = finite_or_zero(e.activations[t]);
      if (a < active) continue;
      ++active_at[t];
      unigram[e.tokens[t]] += a;
      if (t > 0) bigram[{e.tokens[t], e.tokens[t - 1]}] += a;
    }
  }

  std::vector<OfflineExplanation> clauses;
  const auto add_token_variants = [&](TokenClause c) {
    for (bool weak : {false, true}) {
      for (bool exact : {false, true}) {
        c.exact = exact;
        c.weak = weak;
        clauses.push_back(OfflineExplanation{{c}, {}});
      }
    }
  };
  for (const auto& tok : by_mass(unigram, options_.max_candidates)) {
    if (tok.empty()) continue;  // an empty token cannot be quoted usefully
    add_token_variants(TokenClause{tok, std::nullopt});
  }
  for (const auto& [tok, prev] : by_mass(bigram, options_.max_candidates)) {
    if (tok.empty() || prev.empty()) continue;
    add_token_variants(TokenClause{tok, prev});
  }
  // Positions active in at least 3/4 of the excerpts that reach them (and in 3 or more), ranges
  // between them. Looser rules let a neuron with broad activity collect chance positions.
  std::vector<int> positions;
  for (const auto& [p, n] : active_at)
    if (4 * n >= 3 * present_at[p] && n >= 3) positions.push_back(static_cast<int>(p));
  for (std::size_t a = 0; a < positions.size(); ++a)
    for (std::size_t b = a; b < positions.size(); ++b)
      clauses.push_back(OfflineExplanation{{}, {PositionClause{positions[a], positions[b]}}});

  std::vector<Candidate> candidates;
  candidates.reserve(clauses.size());
  for (auto& c : clauses) {
    Candidate cand{std::move(c), {}};
    cand.prediction.reserve(truth.size());
    for (const auto& e : train) {
      const auto p = predict_offline(cand.clause, e.tokens);
      cand.prediction.insert(cand.prediction.end(), p.begin(), p.end());
    }
    candidates.push_back(std::move(cand));
  }

  // Greedy forward selection on train correlation, judged by the simulator's own predictions
  // (a clause set predicts the maximum over its clauses, as predict_offline does).
  OfflineExplanation chosen;
  std::vector<double> current(truth.size(), 0.0), trial(truth.size());
  double r_current = 0.0;  // "nothing" predicts a constant: no better than chance
  std::vector<bool> used(candidates.size(), false);
  for (std::size_t round = 0; round < options_.max_clauses; ++round) {
    double best_r = r_current + options_.min_gain;
    std::size_t best = candidates.size();
    for (std::size_t c = 0; c < candidates.size(); ++c) {
      if (used[c]) continue;
      for (std::size_t i = 0; i < truth.size(); ++i) trial[i] = std::max(current[i], candidates[c].prediction[i]);
      const double r = correlation(truth, trial);
      if (std::isfinite(r) && r > best_r) {
        best_r = r;
        best = c;
      }
    }
    if (best == candidates.size()) break;
    used[best] = true;
    for (std::size_t i = 0; i < truth.size(); ++i) current[i] = std::max(current[i], candidates[best].prediction[i]);
    r_current = best_r;
    const auto& cl = candidates[best].clause;
    chosen.tokens.insert(chosen.tokens.end(), cl.tokens.begin(), cl.tokens.end());
    chosen.positions.insert(chosen.positions.end(), cl.positions.begin(), cl.positions.end());
    if (r_current >= 1.0) break;
  }
  // The renderer lists plain token clauses before context clauses; keep the same order here.
  std::stable_partition(chosen.tokens.begin(), chosen.tokens.end(), [](const TokenClause& c) { return !c.after; });
  if (train_correlation && (!chosen.tokens.empty() || !chosen.positions.empty())) *train_correlation = r_current;
  return chosen;
}

ExplanationResult OfflineExplainer::explain(std::span<const ActivationExcerpt> train) {
  double r = 0.0;
  const OfflineExplanation e = fit(train, &r);
  ExplanationResult out;
  out.explanation = render_offline_explanation(e);
  out.raw = fmt::format("offline explainer: {} token clause(s), {} position clause(s), train correlation {:.4f}",
                        e.tokens.size(), e.positions.size(), r);
  return out;
}

}  // namespace nexplain
