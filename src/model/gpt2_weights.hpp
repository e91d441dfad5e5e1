#pragma once
// All GPT-2 parameters as float32 host arrays in HuggingFace's Conv1D layout, i.e. every linear
// weight is stored [in_features, out_features] row-major and applied as y = x W + b. Keeping the
// checkpoint's own layout means loading is a plain copy and the GEMMs read weights directly.
#include <cstdint>
#include <filesystem>
#include <vector>

#include "model/gpt2_config.hpp"

namespace nexplain {

struct Gpt2BlockWeights {
  std::vector<float> ln_1_w, ln_1_b;            // [C]
  std::vector<float> attn_w, attn_b;            // attn.c_attn: [C, 3C], [3C]  (q | k | v)
  std::vector<float> attn_proj_w, attn_proj_b;  // attn.c_proj: [C, C], [C]
  std::vector<float> ln_2_w, ln_2_b;            // [C]
  std::vector<float> fc_w, fc_b;                // mlp.c_fc:   [C, n_inner], [n_inner]
  std::vector<float> proj_w, proj_b;            // mlp.c_proj: [n_inner, C], [C]
};

// Which parts of a checkpoint to load. A pipeline stage that owns layers [first_layer,
// last_layer] needs neither the other blocks nor (unless it starts at layer 0) the embeddings.
struct Gpt2LoadOptions {
  int first_layer = 0;
  int last_layer = -1;       // inclusive; -1 = the last layer
  bool embeddings = true;    // wte, wpe (also needed for logits: the LM head is tied to wte)
  bool final_norm = true;    // ln_f
};

struct Gpt2Weights {
  Gpt2Config config;
  std::vector<float> wte;           // [vocab_size, C]
  std::vector<float> wpe;           // [n_positions, C]
  std::vector<float> ln_f_w, ln_f_b;  // [C]
  // One entry per layer (size n_layer); blocks outside the loaded range are left empty.
  std::vector<Gpt2BlockWeights> blocks;

  // Loads config.json + model.safetensors (or a sharded index) from `model_dir`. Tensor names
  // may carry HF's "transformer." prefix or not; F32/F16/BF16/F64 are converted to float32.
  // Every tensor's shape is checked against the config: a missing tensor or a wrong shape is an
  // Error naming the file, the tensor, its shape and the expected shape.
  static Gpt2Weights load(const std::filesystem::path& model_dir, const Gpt2LoadOptions& opts = {});

  // Writes `dir`/config.json and `dir`/model.safetensors (F32, names without the
  // "transformer." prefix, like openai-community/gpt2), each atomically. `dir` must exist.
  // Requires every part to be present.
  void save(const std::filesystem::path& dir) const;

  // A freshly initialised model (as HF's GPT-2 init: N(0, stddev) weights, zero biases, unit
  // LayerNorm gains), deterministic in `seed`. Used by the planted-model builder and tests.
  static Gpt2Weights random(const Gpt2Config& config, std::uint64_t seed, float stddev = 0.02f);

  bool has_block(int layer) const;  // true when that block's tensors are loaded
};

}  // namespace nexplain
