#pragma once
// The GPT-2 architecture hyper-parameters, read from a HuggingFace `config.json`.
// Only what the forward pass needs is kept; every field is checked on load so that a
// checkpoint we cannot run faithfully fails here, with a message naming the field, rather than
// producing silently wrong activations later.
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace nexplain {

struct Gpt2Config {
  int n_embd = 0;       // residual width C
  int n_layer = 0;      // transformer blocks
  int n_head = 0;       // attention heads; head_dim = n_embd / n_head
  int n_inner = 0;      // MLP hidden width (= neurons per layer); HF's null means 4 * n_embd
  int n_positions = 0;  // longest sequence the position table covers
  int vocab_size = 0;
  double layer_norm_epsilon = 1e-5;
  // Only "gelu_new" (HF's name for GPT-2's tanh approximation of GELU) is supported.
  std::string activation_function = "gelu_new";

  int head_dim() const { return n_embd / n_head; }
  std::int64_t n_neurons() const { return static_cast<std::int64_t>(n_layer) * n_inner; }

  // Parses an HF GPT-2 config object. `source` (usually the file path) prefixes every error:
  // "<source>: missing field 'n_embd'". Rejects model_type other than "gpt2", unsupported
  // activation functions and attention variants (scale_attn_by_inverse_layer_idx,
  // reorder_and_upcast_attn, scale_attn_weights=false), and inconsistent sizes.
  static Gpt2Config from_json(const nlohmann::json& j, const std::string& source = "config.json");
  // `path` is a config.json file or a model directory containing one.
  static Gpt2Config load(const std::filesystem::path& path);

  // Throws Error (prefixed with `source`) unless every size is positive and n_embd % n_head == 0.
  void validate(const std::string& source = "config") const;

  // The fields above plus model_type, as HF writes them (n_inner is always explicit).
  // Used for planted.json and by ArchConfig::to_hf_json (a saved GPT-2's config.json).
  nlohmann::json to_json() const;

  bool operator==(const Gpt2Config&) const = default;
};

}  // namespace nexplain
