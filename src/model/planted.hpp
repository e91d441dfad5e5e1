#pragma once
// Planted-feature GPT-2 models: small random GPT-2s in which chosen MLP neurons are exact
// detectors of chosen tokens, token sets or positions. They are ground truth for the whole
// pipeline (collect must find those neurons' top excerpts at the planted tokens; explain should
// name the token) without downloading a real model. See docs/MODEL.md for the construction.
//
// SPEC: entries separated by ';', each  L<layer>.N<neuron>=<kind>:<args>
//   token:<id>                  fires on one token id             L0.N5=token:464
//   tokens:<id>,<id>,...        fires on any of a set (a-b ranges allowed)   L1.N17=tokens:11,13
//   position:<p> | position:<a>-<b>   fires at positions a..b (inclusive), any token   L0.N3=position:0-3
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/gpt2_config.hpp"
#include "model/transformer_weights.hpp"

namespace nexplain {

struct PlantedNeuron {
  int layer = 0;
  int neuron = 0;
  std::string kind;                   // "token", "tokens" or "position"
  std::vector<std::uint32_t> tokens;  // sorted, for token / tokens
  int pos_first = 0, pos_last = -1;   // inclusive, for position

  // Whether this neuron is built to fire on `token` at `position`.
  bool fires_on(std::uint32_t token, int position) const;
};

// Parses SPEC and checks it against the config (layer < n_layer, neuron < n_inner,
// token < vocab_size, position < n_positions, no neuron planted twice). Errors quote the entry.
std::vector<PlantedNeuron> parse_planted_spec(const std::string& spec, const Gpt2Config& config);

struct PlantedModel {
  TransformerWeights weights;  // a GPT-2 (config.model_type "gpt2")
  std::vector<PlantedNeuron> neurons;
  nlohmann::json ground_truth;  // the content of planted.json
};

// Random GPT-2 (deterministic in `seed`: the same weights for a seed on every platform and in
// every version since the builder first wrote them) with the neurons planted. Throws Error when the model
// is too narrow for the requested features (each distinct feature reserves one residual dim).
PlantedModel build_planted_model(const Gpt2Config& config, const std::vector<PlantedNeuron>& neurons,
                                 std::uint64_t seed, const std::string& spec_text = "");

// Writes config.json, model.safetensors (HF layout) and planted.json into `dir` (created).
void write_planted_model(const std::filesystem::path& dir, const PlantedModel& model);

}  // namespace nexplain
