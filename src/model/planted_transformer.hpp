#pragma once
// Planted-feature models of the RoPE families (Llama, Qwen2, GPT-NeoX): the counterpart of
// planted.hpp (GPT-2), so the whole pipeline can be tested end to end on these families with
// known ground truth. Same SPEC syntax and planted.json (planted_construction.hpp); token and
// token-set features only (RoPE models have no position embedding to carry a position feature).
//
// Construction (residual width C; docs/MODEL.md):
//  * dim 0 is a bias channel: tok_embed[t, 0] = 5 for every token, so a token's RMS is never 0
//    and its LayerNorm statistics are dominated by known values;
//  * dims 1..F are feature channels: tok_embed[t, d] = 10 for the planted tokens, 0 otherwise;
//  * o_proj and down_proj never write dims 0..F (their rows and biases are zeroed), so every
//    layer sees the same channel values -- with GPT-NeoX's parallel residual too, where both
//    branches add into the stream through exactly these two projections;
//  * a planted neuron reads only its channel h (after the MLP's norm), and its down_proj column
//    is zeroed so it does not disturb the model:
//    - Llama, Qwen2 (RMSNorm, SiLU-gated MLP): gate row = g e_d, up row = u e_d, so neuron =
//      silu(g h) * u h. Off, h is exactly 0 and so is the neuron;
//    - GPT-NeoX (LayerNorm with bias, plain MLP with biases, exact-erf GELU): up row = a e_d,
//      bias = -a * 2, so neuron = gelu(a (h - 2)). Off, h is slightly negative (the mean the
//      LayerNorm removes) and the neuron ~0 (|gelu(-4)| < 1e-4), as in GPT-2's builder;
//    on, u or a is chosen so the neuron is 10 when its channel alone is on (lower, >= 3
//    enforced, when several planted features share a token).
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

// A random model of `config` (llama, qwen2: RMSNorm + gated MLP; gpt_neox: LayerNorm + plain
// MLP) with the neurons planted. Error when the family's blocks are neither (GPT-2 has its own
// builder) or the model is too narrow for the features.
PlantedTransformer build_planted_transformer(const ArchConfig& config, const std::vector<PlantedNeuron>& neurons,
                                             std::uint64_t seed, const std::string& spec_text = "");

// Writes config.json, the safetensors (TransformerWeights::save) and planted.json into `dir`.
void write_planted_transformer(const std::filesystem::path& dir, const PlantedTransformer& model,
                               const TransformerWeights::SaveOptions& opts = {});

}  // namespace nexplain
