#pragma once
// Export of records in the data model of OpenAI's neuron-explainer (NeuronRecord /
// ActivationRecord JSON, one file per neuron at <dir>/<layer>/<neuron>.json), so existing tools
// and notebooks built around that release read nexplain's records unchanged.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "capture/neuron_record.hpp"

namespace nexplain {

// token id -> its text (what the neuron-explainer shows for a token).
using TokenText = std::function<std::string(std::uint32_t)>;
// excerpt id -> its T token ids.
using ExcerptTokens = std::function<std::vector<std::uint32_t>(std::uint64_t)>;

// One neuron as an OpenAI NeuronRecord object (field names as in neuron-explainer's
// activations.py; "dataclass_name" keys included so its loader accepts the files).
nlohmann::json to_openai_neuron_record(const NeuronRecord& r, const ExcerptTokens& excerpt, const TokenText& text);

}  // namespace nexplain
