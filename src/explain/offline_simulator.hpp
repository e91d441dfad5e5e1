#pragma once
// The offline simulator (DESIGN.md simulator (d)): predicts a neuron's activations from the
// explanation TEXT and the excerpt tokens alone, without a network and without ever seeing the
// records. It understands a small grammar, which the offline explainer writes; both sides go
// through the types below, so they cannot drift apart. docs/EXPLAIN.md documents the grammar.
//
// Grammar (everything outside it is ignored, so free text from an LLM degrades gracefully):
//  - A quoted string "..." names a token (JSON string escapes: \" \\ \n \t \r \uXXXX; curly
//    quotes also delimit). `the token "X"`, `the tokens "X", "Y" and "Z"`, `words like "X"`.
//  - Modifiers in parentheses right after a quoted string: (exact) turns off the loose match,
//    (weak) predicts half strength; combine as (exact, weak).
//  - Context: `"X" after "Y"` (also "following", "preceded by", "when preceded by", "right
//    after"): X only where the previous token is Y.
//  - Positions (counted from 0 in the excerpt): `position 3`, `positions 0-3` (also "to",
//    "through"), `the first token`, `the first N tokens`, `the start of the excerpt` (= position 0).
//
// Prediction for a token (0..10, the maximum over all clauses):
//  - token clause, exact match of the token text: 10 (5 when weak);
//  - loose match (ASCII case and surrounding whitespace ignored; never for whitespace-only
//    tokens), unless the clause is (exact): 0.4 of that;
//  - with context, the previous token must match too (the weaker of the two matches counts);
//  - position clause: 10 at the named positions.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "explain/simulator.hpp"

namespace nexplain {

struct TokenClause {
  std::string token;                 // the token text, exactly as it appears in excerpts
  std::optional<std::string> after;  // the previous token, for context clauses
  bool exact = false;                // no loose (case/space-insensitive) matching
  bool weak = false;                 // half strength
  bool operator==(const TokenClause&) const = default;
};

struct PositionClause {
  int first = 0;
  int last = 0;  // inclusive
  bool operator==(const PositionClause&) const = default;
};

struct OfflineExplanation {
  std::vector<TokenClause> tokens;
  std::vector<PositionClause> positions;
  bool operator==(const OfflineExplanation&) const = default;
};

inline constexpr double kOfflineFull = 10.0;        // exact match / position
inline constexpr double kOfflineWeakFactor = 0.5;   // (weak)
inline constexpr double kOfflineLooseFactor = 0.4;  // loose match

// The explanation in the grammar: `the tokens "X" (exact), "Y"; "Z" after "W"; the tokens at
// positions 0-1 (the start of the excerpt)`. An empty explanation renders as "nothing in
// particular" (which predicts 0 everywhere).
std::string render_offline_explanation(const OfflineExplanation& e);

// Reads the grammar out of any text. parse(render(e)) == e for every e whose clauses are distinct.
OfflineExplanation parse_offline_explanation(std::string_view text);

// Predictions (0..10) for one excerpt.
std::vector<double> predict_offline(const OfflineExplanation& e, const std::vector<std::string>& tokens);

// How well `token` matches the clause text `want`: 1 exact, kOfflineLooseFactor loose (unless
// exact_only), 0 otherwise.
double offline_token_match(std::string_view want, std::string_view token, bool exact_only);

class OfflineSimulator : public Simulator {
 public:
  std::string name() const override { return "offline"; }
  std::vector<std::vector<double>> simulate(const std::string& explanation,
                                            const std::vector<std::vector<std::string>>& excerpts_tokens) override;
};

}  // namespace nexplain
