#pragma once
// The parameters of any supported family (ArchConfig) as float32 host arrays in one generic
// layout, so that a single forward pass serves them all:
//
// - every block has norm1, a fused q|k|v projection, o, a fused "up" projection (gated MLPs:
//   gate rows then up rows, so one GEMM gives both), down, norm2;
// - q|k|v is fused at load time: Llama/Qwen2's separate q_proj/k_proj/v_proj are stacked, and
//   GPT-NeoX's per-head interleaved query_key_value ([h0: q k v][h1: q k v]...) is permuted to
//   [all q | all k | all v], the layout GPT-2's c_attn already has;
// - a linear weight keeps the checkpoint's orientation (GPT-2's Conv1D is [in, out],
//   nn.Linear is [out, in]); `in_major` says which, and the GEMM transposes accordingly, so
//   loading never transposes a matrix and GPT-2 runs on the checkpoint's own Conv1D layout.
//
// Tensors come from model.safetensors or a sharded model.safetensors.index.json (Checkpoint),
// memory-mapped: only the tensors of the requested layers are read from disk. F32, F16, BF16
// and F64 are converted to float32.
#include <cstdint>
#include <filesystem>
#include <vector>

#include "model/arch_config.hpp"

namespace nexplain {

struct LinearWeights {
  std::vector<float> w;  // in_major ? [in, out] : [out, in]
  std::vector<float> b;  // [out], or empty when the layer has no bias
  int in = 0, out = 0;
  bool in_major = false;
  bool empty() const { return w.empty(); }
};

struct NormWeights {
  std::vector<float> w;  // [C]
  std::vector<float> b;  // [C] for LayerNorm, empty for RMSNorm
};

struct TransformerBlockWeights {
  NormWeights norm1;   // before attention (ln_1 / input_layernorm)
  LinearWeights qkv;   // out = q_dim + 2 kv_dim: [q | k | v]
  LinearWeights o;     // out = C
  NormWeights norm2;   // before the MLP (ln_2 / post_attention_layernorm)
  LinearWeights up;    // out = I (plain) or 2I (gated: [gate | up])
  LinearWeights down;  // in = I (the neurons), out = C
};

// Which parts to load: a pipeline stage owning layers [first_layer, last_layer] needs neither
// the other blocks nor, unless it starts at layer 0, the embeddings.
struct TransformerLoadOptions {
  int first_layer = 0;
  int last_layer = -1;     // inclusive; -1 = the last layer
  bool embeddings = true;  // token (+ learned position) embeddings; also the LM head when tied
  bool head = true;        // final norm and (untied) LM head
};

struct TransformerWeights {
  ArchConfig config;
  std::vector<float> tok_embed;  // [vocab, C]
  std::vector<float> pos_embed;  // [max_positions, C], learned positions only
  NormWeights final_norm;
  LinearWeights lm_head;         // [vocab, C] (out-major); empty when tied to tok_embed
  std::vector<TransformerBlockWeights> blocks;  // size n_layer; unloaded blocks stay empty

  // Loads config.json + the checkpoint in `model_dir`. Every tensor is checked (present, shape
  // as the config implies) before any is converted; errors name the file, tensor and shapes.
  static TransformerWeights load(const std::filesystem::path& model_dir, const TransformerLoadOptions& opts = {});

  // Writes `dir`/config.json (ArchConfig::to_hf_json) and the tensors under the family's HF
  // names (GPT-2's without the "transformer." prefix; q/k/v, gate/up and NeoX's fused
  // query_key_value split back), as model.safetensors or, when a shard would exceed
  // max_shard_bytes, model-0000i-of-0000n.safetensors + model.safetensors.index.json; F32 or BF16
  // (round to nearest even). Every part must be loaded. `dir` must exist. Files are atomic.
  struct SaveOptions {
    bool bf16 = false;
    std::uint64_t max_shard_bytes = 0;  // 0 = one file
  };
  void save(const std::filesystem::path& dir, const SaveOptions& opts) const;
  void save(const std::filesystem::path& dir) const { save(dir, SaveOptions{}); }

  // A random model of any family (N(0, stddev) matrices and embeddings, residual projections
  // o and down scaled by 1/sqrt(2 n_layer), zero biases, unit norm gains), deterministic in
  // `seed` on every platform. For tests: e.g. a tiny Llama with more layers than the fixture.
  static TransformerWeights random(const ArchConfig& config, std::uint64_t seed, float stddev = 0.02f);

  bool has_block(int layer) const;
  bool has_embeddings() const { return !tok_embed.empty(); }
  bool has_head() const { return !final_norm.w.empty() && (config.tied_embeddings ? has_embeddings() : !lm_head.empty()); }
};

}  // namespace nexplain
