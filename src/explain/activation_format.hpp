#pragma once
// How activation records are shown to an LLM (DESIGN.md "Explanation, simulation, scoring"):
// activations become integers 0..10 relative to the largest one shown, and each excerpt is a
// block of `token<TAB>value` lines between <start> and <end>. Prompts (the lead's) wrap these
// blocks in their own instructions; this file only fixes the block format so that every
// explainer and simulator, and the parsers of their answers, agree on it.
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nexplain {

// One excerpt as shown: the decoded token strings and the neuron's activation at each.
struct ActivationExcerpt {
  std::vector<std::string> tokens;
  std::vector<float> activations;  // same length as tokens
};

// The normalising maximum: the largest activation over all shown excerpts (0 when none).
double max_activation(std::span<const ActivationExcerpt> excerpts);

// min(10, floor(10 * max(x, 0) / m)) for each x; all 0 when m <= 0 (or not finite).
// Computed in double: 10*x is exact for a float x, so the only rounding is the division, and
// x == m always gives exactly 10.
int normalize_activation(float x, double m);
std::vector<int> normalize_activations(std::span<const float> activations, double m);

// A token as it appears on a line: tab, newline, carriage return and backslash are written as
// \t \n \r \\ so that a token can neither split its line nor fake a value column. Parsers of
// model answers undo it with unescape_token.
std::string escape_token(std::string_view token);
std::string unescape_token(std::string_view shown);

// One <start> ... <end> block, a `token<TAB>value` line per token (value = the integer). With
// skip_zeros, tokens whose value is 0 are left out (used by the sparse repeat).
std::string format_excerpt(const std::vector<std::string>& tokens, std::span<const int> values, bool skip_zeros = false);

// The block a simulator must complete: every line is `token<TAB>unknown` (DESIGN.md simulator
// (a)); `placeholder` replaces "unknown" when a prompt wants another word.
std::string format_excerpt_for_simulation(const std::vector<std::string>& tokens, std::string_view placeholder = "unknown");

struct ActivationFormatOptions {
  // Normalising maximum; NaN (the default) = max_activation of the excerpts being formatted.
  // An explainer that shows several groups on one scale passes the overall maximum.
  double max = std::numeric_limits<double>::quiet_NaN();
  // When fewer than this fraction of all shown values are non-zero, the excerpts are repeated
  // with the zeros removed, so that a sparse neuron's few active tokens are not lost in noise.
  double sparse_fraction = 0.2;
  // The sentence between the full blocks and the sparse repeat.
  std::string sparse_intro = "Again, keeping only the tokens with a non-zero activation:";
};

// Normalises the excerpts and formats them as consecutive blocks (blocks separated by a newline),
// adding the sparse repeat when it applies. Throws Error when an excerpt's token and activation
// counts differ.
std::string format_activation_records(std::span<const ActivationExcerpt> excerpts,
                                      const ActivationFormatOptions& options = {});

// Whether format_activation_records adds the zero-free repeat for these values (all excerpts'
// normalised values together): non-zero count < sparse_fraction * total count.
bool needs_sparse_repeat(std::size_t nonzero, std::size_t total, double sparse_fraction);

}  // namespace nexplain
