#pragma once
// What the explain stage produces per neuron: one line of the journal and of results.jsonl
// (docs/FORMAT.md). Everything in it is a function of the records and the model answers, never
// of timing, rank count or resume points: costs are usage x configured prices (a cached answer
// costs what it cost the first time), so a resumed sweep writes identical results.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "explain/scoring.hpp"

namespace nexplain {

struct SimulatedExcerpt {
  std::uint64_t excerpt_id = 0;
  std::string split;              // "valid_top" | "valid_random"
  std::vector<double> predicted;  // 0..10 per token
};

struct StageUsage {
  std::uint64_t requests = 0;
  std::uint64_t prompt_tokens = 0;
  std::uint64_t completion_tokens = 0;
  double cost_usd = 0.0;
};

struct NeuronResult {
  std::uint32_t layer = 0;
  std::uint32_t neuron = 0;
  bool ok = false;
  std::string error;  // why it failed (final), empty when ok
  std::string explanation;
  std::string explainer;  // "offline" or the model name
  std::string simulator;  // "offline" or "<kind>:<model>"
  ScoreSet scores{};
  std::vector<SimulatedExcerpt> simulated;
  StageUsage explain_usage, simulate_usage;

  std::string key() const { return std::to_string(layer) + "/" + std::to_string(neuron); }
  nlohmann::json to_json() const;
  static NeuronResult from_json(const nlohmann::json& j);
};

}  // namespace nexplain
