#pragma once
// What every planted-model builder (planted.hpp: GPT-2; planted_transformer.hpp: Llama, Qwen2,
// GPT-NeoX) shares besides the SPEC: which residual channel each planted neuron reads, what that
// channel is worth after the block's norm, and the ground truth written as planted.json, one
// shape for every family (the sweep's report and the tests read it without knowing the family).
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/arch_config.hpp"
#include "model/planted.hpp"

namespace nexplain {

// The residual stream every builder plants: dim 0 is a bias channel of this constant value, and a
// feature's channel holds kPlantedChannel where the feature is on (0 elsewhere).
inline constexpr float kPlantedBias = 5.0f;
inline constexpr float kPlantedChannel = 10.0f;

// One channel per distinct feature (a token set, or a position range), numbered 1, 2, ... in
// order of first appearance (dim 0 is the bias channel): neurons planted on the same feature
// share it. Returns each neuron's channel; the number of channels is the largest (0 for none).
std::vector<int> planted_channels(const std::vector<PlantedNeuron>& neurons);

// The value of an "on" feature channel after the norm (LayerNorm: mean removed, divided by the
// standard deviation; RMSNorm: divided by the root mean square; unit gains, zero biases) when `m`
// channels of value `channel` are on at once next to the bias channel of value `bias`, the
// other C - m - 1 dims taken as 0 (the random ones are N(0, 0.02) and small next to these).
double planted_channel_after_norm(NormKind norm, int C, int m, double eps, double bias, double channel);

// planted.json: {"format": "nexplain-planted-v1", "spec", "seed", "config", "neurons": [{"layer",
// "neuron", "kind", "channel", "tokens" | "positions"}], "construction"}. `config` is the
// family's config.json content; `construction` the builder's constants (bias_dim, bias_value,
// reserved_dims, channel_value, target_activation, the gains, a note).
nlohmann::json planted_ground_truth(const std::string& spec_text, std::uint64_t seed, const nlohmann::json& config,
                                    const std::vector<PlantedNeuron>& neurons, const std::vector<int>& channels,
                                    const nlohmann::json& construction);

}  // namespace nexplain
