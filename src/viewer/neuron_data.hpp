#pragma once
// The data of one neuron's page, as the JSON document that /api/run/<i>/neuron/<L>/<N> answers
// and the neuron page renders: the result line (explanation, scores, models, cost), the top and
// random excerpts with token strings and activations, the scored excerpts with real and simulated
// activations side by side, the histogram of excerpt maxima and the moments. docs/VIEWER.md
// describes the fields.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "capture/neuron_record.hpp"

namespace nexplain::viewer {

// Token ids -> display strings (the tokenizer's, or "<id>" without one).
using TokenText = std::function<std::string(std::uint32_t)>;
// Excerpt id -> its T token ids (from the records file).
using ExcerptTokens = std::function<std::vector<std::uint32_t>(std::uint64_t)>;

struct NeighbourKeys {
  std::optional<std::pair<std::uint32_t, std::uint32_t>> previous, next;
};

// `result`: the neuron's result object (null when not explained yet); `record`: its records
// (nullopt when no records file is known). At least one of them must be present.
nlohmann::json build_neuron_json(std::uint32_t layer, std::uint32_t neuron, const nlohmann::json& result,
                                 const std::optional<NeuronRecord>& record, const ExcerptTokens& excerpt_tokens,
                                 const TokenText& token_text, const NeighbourKeys& neighbours);

}  // namespace nexplain::viewer
