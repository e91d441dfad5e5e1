#pragma once
// The offline explainer (no network): writes an explanation in the offline grammar
// (offline_simulator.hpp) from token statistics of the train excerpts.
//
// Candidates are read off the tokens where the neuron is active (activation >= a fraction of the
// maximum): the token itself, the token in the context of the one before it, and ranges of
// positions where most excerpts are active. Each is a clause of the grammar, in its variants
// (loose or exact match, full or weak strength). Clauses are then chosen greedily: each round
// adds the one that most raises the Pearson correlation, over all train tokens, between the
// activations and what the offline simulator would predict from the explanation so far; it stops
// when no clause adds at least `min_gain`. Because the fit is judged by the simulator's own rule,
// a token that is frequent in the excerpts but fires rarely is not chosen (it would predict
// activations where there are none), which is the "normalised by frequency" the method needs,
// and a loose match is turned into (exact) exactly when variants of the token appear without
// firing.
#include <span>
#include <string>

#include "explain/explainer.hpp"
#include "explain/offline_simulator.hpp"

namespace nexplain {

struct OfflineExplainerOptions {
  std::size_t max_clauses = 6;
  double min_gain = 0.02;            // smallest rise in train correlation that earns a clause
  double active_fraction = 0.3;      // a token is "active" at >= this fraction of the max
  std::size_t max_candidates = 40;   // per kind (tokens, tokens in context), by activation mass
};

class OfflineExplainer : public Explainer {
 public:
  explicit OfflineExplainer(OfflineExplainerOptions options = {}) : options_(options) {}
  std::string name() const override { return "offline"; }
  // explanation = render_offline_explanation(fit(train)); raw notes the train correlation.
  ExplanationResult explain(std::span<const ActivationExcerpt> train) override;

  // The chosen clauses, token clauses without context first (the order render/parse keep).
  // Empty when the excerpts have no positive activation.
  OfflineExplanation fit(std::span<const ActivationExcerpt> train, double* train_correlation = nullptr) const;

 private:
  OfflineExplainerOptions options_;
};

}  // namespace nexplain
