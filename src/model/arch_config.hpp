#pragma once
// One description of a decoder-only transformer, read from a HuggingFace config.json of any
// family we run (gpt2, llama, gpt_neox, qwen2). The families differ only in a few choices -- the
// norm, how positions enter, the MLP's shape, its activation, how the residual stream is summed,
// where biases are -- so those choices are *data* here, and one forward pass
// (transformer_cpu.hpp) reads them instead of having a copy of the block per family.
//
// Everything that would change a neuron's value and that we do not compute exactly (yarn or
// longrope RoPE scaling, sliding-window attention, unknown activations) is refused on load with
// an error naming the file and the key, rather than approximated.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nexplain {

enum class NormKind { LayerNorm, RMSNorm };
enum class PositionKind { Learned, Rotary };  // GPT-2's wpe table / RoPE on q and k
enum class MlpKind { Plain, Gated };          // down(act(up x)) / down(act(gate x) * up x)
enum class ActKind { GeluTanh, GeluErf, Silu, Relu };
// Sequential: x += attn(norm1 x); x += mlp(norm2 x).  Parallel (GPT-NeoX, GPT-J):
// x = mlp(norm2 x) + attn(norm1 x) + x, both branches reading the same x.
enum class ResidualKind { Sequential, Parallel };
enum class RopeScalingKind { None, Linear, Dynamic, Llama3 };

const char* kind_name(NormKind k);
const char* kind_name(PositionKind k);
const char* kind_name(MlpKind k);
const char* kind_name(ActKind k);
const char* kind_name(ResidualKind k);
const char* kind_name(RopeScalingKind k);

struct RopeConfig {
  double theta = 10000.0;
  int rotary_dim = 0;  // leading dims of each head that rotate (GPT-NeoX: head_dim * rotary_pct)
  RopeScalingKind scaling = RopeScalingKind::None;
  double factor = 1.0;
  // llama3 only.
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int original_max_position_embeddings = 0;
};

struct ArchConfig {
  std::string model_type;  // "gpt2", "llama", "gpt_neox", "qwen2"
  int hidden = 0;          // residual width C
  int n_layer = 0;
  int n_head = 0;
  int n_kv_head = 0;       // grouped-query attention: n_head / n_kv_head query heads share a k/v head
  int head_dim = 0;
  int intermediate = 0;    // MLP hidden width = neurons per layer
  int max_positions = 0;   // a hard limit only for learned positions (the table's size)
  int vocab_size = 0;
  double norm_eps = 1e-5;

  NormKind norm = NormKind::LayerNorm;
  PositionKind position = PositionKind::Learned;
  RopeConfig rope;  // when position == Rotary
  MlpKind mlp = MlpKind::Plain;
  ActKind act = ActKind::GeluTanh;
  ResidualKind residual = ResidualKind::Sequential;
  bool qkv_bias = false, o_bias = false, mlp_bias = false;
  bool tied_embeddings = false;  // LM head = the token embedding
  // The checkpoint's parameter dtype as config.json states it ("float32", "bfloat16", ...;
  // "torch_dtype" or transformers 5's "dtype"); "" when not stated. For memory plans.
  std::string dtype;

  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_kv_head * head_dim; }
  int qkv_dim() const { return q_dim() + 2 * kv_dim(); }
  std::int64_t n_neurons() const { return static_cast<std::int64_t>(n_layer) * intermediate; }
  // Parameter counts (no buffers): for memory plans and tests.
  std::int64_t block_params() const;
  std::int64_t embedding_params() const;  // token (+ learned position) embeddings
  std::int64_t head_params() const;       // final norm + untied LM head
  std::int64_t total_params() const { return embedding_params() + n_layer * block_params() + head_params(); }

  // `source` (the file path) prefixes every error: "<source>: missing field 'hidden_size'".
  static ArchConfig from_json(const nlohmann::json& j, const std::string& source = "config.json");
  // `path` is a config.json file or a model directory containing one.
  static ArchConfig load(const std::filesystem::path& path);

  // Throws Error (prefixed with `source`) unless every size is positive and consistent.
  void validate(const std::string& source = "config") const;
  // The decoded description (for provenance and `nexplain plan`).
  nlohmann::json to_json() const;
  // A config.json as HF writes it for this family (transformers 4 spelling, which 5 also
  // reads); from_json(to_hf_json()) gives this config back. For TransformerWeights::save.
  nlohmann::json to_hf_json() const;
};

// The rotary inverse frequencies and cos/sin tables of a config: model/rope.hpp (header-only,
// for the CUDA engine too).

}  // namespace nexplain
