#pragma once
// From logprobs to predicted activations (DESIGN.md simulators (a) and (b)): at a position where
// the model writes an activation, the prediction is the expected value over the tokens "0".."10"
// among the alternatives the server reports there, with their probabilities renormalised to sum
// to 1 over those digit tokens only; 0.0 when none of the alternatives is such a token.
//
// Tokenizers differ in where whitespace goes (" 7", "\t7", "7\n" are all common), so a token
// counts as the number it spells after leading and trailing whitespace is removed. Duplicates
// (" 7" and "7" both present) add their probabilities. Models whose tokenizer splits "10" into
// "1" "0" can never put weight on 10: for those the simulators use the scale 0..9
// (simulator_scale.hpp), and every function here takes the scale's maximum (default 10).
#include <cstddef>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "explain/simulator_scale.hpp"
#include "llm/response.hpp"

namespace nexplain {

// The activation value a token spells: 0..scale_max after trimming whitespace; nullopt otherwise
// ("07", "+3", "3.0", "11", "" are not values; nor is "10" on the 0..9 scale).
std::optional<int> activation_token_value(std::string_view token, int scale_max = kDefaultScaleMax);

// Expected value over the activation tokens of one position's alternatives (token -> logprob).
// Non-finite logprobs are skipped. 0.0 when no alternative is an activation token.
double expected_activation(const std::map<std::string, double>& top_logprobs, int scale_max = kDefaultScaleMax);
double expected_activation(std::span<const TopLogprob> top_logprobs, int scale_max = kDefaultScaleMax);
// The same for one token of a response: its top alternatives, plus the token itself when the
// server left it out of `top` (some servers list only the alternatives).
double expected_activation(const TokenLogprob& token, int scale_max = kDefaultScaleMax);

// Byte offsets at which each token starts in the concatenation of all token strings, plus the
// concatenation's length at the end (size tokens.size() + 1). The concatenation is the text the
// tokens spell; offsets computed this way do not depend on how a server counts text_offset
// (bytes or code points).
std::vector<std::size_t> token_start_offsets(std::span<const TokenLogprob> tokens);
std::string joined_token_text(std::span<const TokenLogprob> tokens);

// The index of the token that covers byte `offset` of the joined text (the last token starting
// at or before it); nullopt when `offset` is past the end.
std::optional<std::size_t> token_covering(std::span<const std::size_t> starts, std::size_t offset);

// expected_activation of the token covering each offset of the joined text; 0.0 for an offset
// no token covers.
std::vector<double> expected_activations_at(std::span<const TokenLogprob> tokens, std::span<const std::size_t> offsets,
                                            int scale_max = kDefaultScaleMax);

}  // namespace nexplain
