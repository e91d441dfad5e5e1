#pragma once
// Planted-feature models of the gated, RMSNorm families (Llama, Qwen2): the counterpart of
// planted.hpp (GPT-2) for a Llama-shaped model, so the whole pipeline can be tested end to end
// on a Llama with known ground truth. Same SPEC syntax and planted.json format; token and token
// set features only (RoPE models have no position embedding to carry a position feature).
//
// Construction (residual width C; docs/MODEL.md):
//  * dim 0 is a bias channel: tok_embed[t, 0] = 5 for every token, so a token's RMS is never 0;
//  * dims 1..F are feature channels: tok_embed[t, d] = 10 for the planted tokens, 0 otherwise;
//  * o_proj and down_proj never write dims 0..F (their rows are zeroed), so every layer sees
//    the same channel values;
//  * a planted neuron reads only its channel through both halves of the gated MLP:
//    gate row = g e_d, up row = u e_d, so neuron = silu(g h_d) * u h_d with h_d the channel after
//    RMSNorm. Off, h_d is exactly 0 and so is the neuron (silu(0) * 0); on, u is chosen so the
//    neuron is 10 when its channel alone is on (lower, >= 3 enforced, when several planted
//    features share a token); its down_proj column is zeroed so it does not disturb the model.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/planted.hpp"
#include "model/transformer_weights.hpp"

namespace nexplain {

// SPEC (planted.hpp) checked against this config: layer, neuron and token in range, no
// position features.
std::vector<PlantedNeuron> parse_planted_spec(const std::string& spec, const ArchConfig& config);

struct PlantedTransformer {
  TransformerWeights weights;
  std::vector<PlantedNeuron> neurons;
  nlohmann::json ground_truth;  // planted.json
};

// A random model of `config` (llama or qwen2: RMSNorm, gated MLP) with the neurons planted.
// Error when the family is not supported or the model is too narrow for the features.
PlantedTransformer build_planted_transformer(const ArchConfig& config, const std::vector<PlantedNeuron>& neurons,
                                             std::uint64_t seed, const std::string& spec_text = "");

// Writes config.json, the safetensors (TransformerWeights::save) and planted.json into `dir`.
void write_planted_transformer(const std::filesystem::path& dir, const PlantedTransformer& model,
                               const TransformerWeights::SaveOptions& opts = {});

}  // namespace nexplain
