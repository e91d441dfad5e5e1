#include "model/transformer_weights.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <random>
#include <string>

#include <fmt/format.h>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "io/safetensors.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

using Shape = std::vector<std::int64_t>;

// One destination array and the checkpoint tensors it is made of. Several parts are
// concatenated in order (q, k, v stacked; gate, up stacked: with [out, in] weights and [out]
// biases, stacking along `out` is plain concatenation). `neox_heads` > 0 marks GPT-NeoX's fused
// query_key_value, whose rows are permuted from per-head [q k v] to [all q | all k | all v].
enum class Kind { Matrix, ResidualMatrix, Bias, NormGain, NormBias };
struct Param {
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  std::vector<float>* dst;
  int neox_heads = 0;
  Kind kind = Kind::Matrix;  // for random(): how to initialise it
};

std::int64_t numel(const Shape& s) {
  std::int64_t n = 1;
  for (auto v : s) n *= v;
  return n;
}

// Tensor names per family, as HF saves them (Checkpoint also accepts GPT-2's names with the
// "transformer." prefix).
struct Names {
  std::string embed, pos, final_w, final_b, lm_head;
  std::string layer_prefix;  // fmt pattern with the layer index
  std::string norm1, norm2;  // without ".weight"/".bias"
};

Names names_for(const ArchConfig& c) {
  if (c.model_type == "gpt2")
    return {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias", "", "h.{}.", "ln_1", "ln_2"};
  if (c.model_type == "gpt_neox")
    return {"gpt_neox.embed_in.weight", "", "gpt_neox.final_layer_norm.weight", "gpt_neox.final_layer_norm.bias",
            "embed_out.weight", "gpt_neox.layers.{}.", "input_layernorm", "post_attention_layernorm"};
  return {"model.embed_tokens.weight", "", "model.norm.weight", "", "lm_head.weight", "model.layers.{}.",
          "input_layernorm", "post_attention_layernorm"};
}

void norm_params(const ArchConfig& c, const std::string& stem, NormWeights& n, std::vector<Param>& out) {
  const Shape C{c.hidden};
  out.push_back({{stem + ".weight"}, {C}, &n.w, 0, Kind::NormGain});
  if (c.norm == NormKind::LayerNorm) out.push_back({{stem + ".bias"}, {C}, &n.b, 0, Kind::NormBias});
}

// A linear layer from one or more checkpoint tensors. `parts` are (name stem, out rows); for
// in_major (GPT-2 Conv1D) there is always one part, of shape [in, out].
void linear_params(const ArchConfig& c, LinearWeights& lw, int in, const std::vector<std::pair<std::string, int>>& parts,
                   bool bias, bool in_major, std::vector<Param>& out, int neox_heads = 0, bool residual = false) {
  (void)c;
  lw.in = in;
  lw.out = 0;
  lw.in_major = in_major;
  Param w{{}, {}, &lw.w, neox_heads, residual ? Kind::ResidualMatrix : Kind::Matrix};
  Param b{{}, {}, &lw.b, neox_heads, Kind::Bias};
  for (const auto& [stem, rows] : parts) {
    lw.out += rows;
    w.names.push_back(stem + ".weight");
    w.shapes.push_back(in_major ? Shape{in, rows} : Shape{rows, in});
    b.names.push_back(stem + ".bias");
    b.shapes.push_back(Shape{rows});
  }
  out.push_back(std::move(w));
  if (bias) out.push_back(std::move(b));
}

void block_params(const ArchConfig& c, const Names& n, int layer, TransformerBlockWeights& bw, std::vector<Param>& out) {
  const std::string p = fmt::format(fmt::runtime(n.layer_prefix), layer);
  const int C = c.hidden, I = c.intermediate, qd = c.q_dim(), kvd = c.kv_dim();
  norm_params(c, p + n.norm1, bw.norm1, out);
  norm_params(c, p + n.norm2, bw.norm2, out);
  if (c.model_type == "gpt2") {
    linear_params(c, bw.qkv, C, {{p + "attn.c_attn", 3 * C}}, true, true, out);
    linear_params(c, bw.o, C, {{p + "attn.c_proj", C}}, true, true, out, 0, true);
    linear_params(c, bw.up, C, {{p + "mlp.c_fc", I}}, true, true, out);
    linear_params(c, bw.down, I, {{p + "mlp.c_proj", C}}, true, true, out, 0, true);
  } else if (c.model_type == "gpt_neox") {
    linear_params(c, bw.qkv, C, {{p + "attention.query_key_value", 3 * C}}, c.qkv_bias, false, out, c.n_head);
    linear_params(c, bw.o, C, {{p + "attention.dense", C}}, c.o_bias, false, out, 0, true);
    linear_params(c, bw.up, C, {{p + "mlp.dense_h_to_4h", I}}, c.mlp_bias, false, out);
    linear_params(c, bw.down, I, {{p + "mlp.dense_4h_to_h", C}}, c.mlp_bias, false, out, 0, true);
  } else {  // llama, qwen2
    const std::string a = p + "self_attn.";
    linear_params(c, bw.qkv, C, {{a + "q_proj", qd}, {a + "k_proj", kvd}, {a + "v_proj", kvd}}, c.qkv_bias, false, out);
    linear_params(c, bw.o, qd, {{a + "o_proj", C}}, c.o_bias, false, out, 0, true);
    linear_params(c, bw.up, C, {{p + "mlp.gate_proj", I}, {p + "mlp.up_proj", I}}, c.mlp_bias, false, out);
    linear_params(c, bw.down, I, {{p + "mlp.down_proj", C}}, c.mlp_bias, false, out, 0, true);
  }
}

// GPT-NeoX stores query_key_value rows as [head 0: q k v][head 1: q k v]...; the forward wants
// [q of all heads | k of all heads | v of all heads]. `row` = values per row (in, or 1 for bias).
// `to_blocks` false undoes it (for save).
void neox_permute(std::vector<float>& a, int heads, std::int64_t row, bool to_blocks) {
  const std::int64_t hd = static_cast<std::int64_t>(a.size()) / row / (3 * heads);
  std::vector<float> out(a.size());
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t part = 0; part < 3; ++part)
      for (std::int64_t d = 0; d < hd; ++d) {
        const std::int64_t interleaved = (h * 3 + part) * hd + d, blocks = part * heads * hd + h * hd + d;
        const std::int64_t src = to_blocks ? interleaved : blocks, dst = to_blocks ? blocks : interleaved;
        std::copy_n(a.data() + src * row, row, out.data() + dst * row);
      }
  a.swap(out);
}

// Every parameter the options ask for, in checkpoint order: embeddings, blocks, head. Load,
// save and random all walk this one list, so they cannot disagree about names or layouts.
std::vector<Param> params(TransformerWeights& w, const TransformerLoadOptions& opts, int last) {
  const auto& c = w.config;
  const Names n = names_for(c);
  std::vector<Param> ps;
  const std::int64_t C = c.hidden;
  if (opts.embeddings) {
    ps.push_back({{n.embed}, {{c.vocab_size, C}}, &w.tok_embed});
    if (c.position == PositionKind::Learned) ps.push_back({{n.pos}, {{c.max_positions, C}}, &w.pos_embed});
  }
  for (int l = opts.first_layer; l <= last; ++l) block_params(c, n, l, w.blocks[static_cast<std::size_t>(l)], ps);
  if (opts.head) {
    ps.push_back({{n.final_w}, {{C}}, &w.final_norm.w, 0, Kind::NormGain});
    if (c.norm == NormKind::LayerNorm) ps.push_back({{n.final_b}, {{C}}, &w.final_norm.b, 0, Kind::NormBias});
    if (!c.tied_embeddings) {
      w.lm_head.in = c.hidden;
      w.lm_head.out = c.vocab_size;
      ps.push_back({{n.lm_head}, {{c.vocab_size, C}}, &w.lm_head.w});
    }
  }
  return ps;
}

std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest, ties to even (finite values)
  return static_cast<std::uint16_t>(u >> 16);
}

}  // namespace

bool TransformerWeights::has_block(int layer) const {
  if (layer < 0 || static_cast<std::size_t>(layer) >= blocks.size()) return false;
  const auto& b = blocks[static_cast<std::size_t>(layer)];
  return !b.qkv.empty() && !b.up.empty() && !b.down.empty();
}

TransformerWeights TransformerWeights::load(const fs::path& model_dir, const TransformerLoadOptions& opts) {
  TransformerWeights w;
  w.config = ArchConfig::load(model_dir / "config.json");
  const auto& c = w.config;
  const int last = opts.last_layer < 0 ? c.n_layer - 1 : opts.last_layer;
  if (opts.first_layer < 0 || last >= c.n_layer || opts.first_layer > last + 1)
    fail("{}: layer range [{}, {}] is outside the model's {} layers", model_dir.string(), opts.first_layer,
         opts.last_layer, c.n_layer);
  w.blocks.resize(static_cast<std::size_t>(c.n_layer));
  const std::vector<Param> ps = params(w, opts, last);

  const Checkpoint ckpt = Checkpoint::open(model_dir);
  // Check every tensor before converting any, so a broken checkpoint fails fast and completely.
  for (const auto& p : ps)
    for (std::size_t i = 0; i < p.names.size(); ++i) {
      const TensorInfo* t = ckpt.find(p.names[i]);
      if (!t)
        fail("{}: tensor '{}' (shape {}) is missing from the checkpoint ({} model)", model_dir.string(), p.names[i],
             shape_str(p.shapes[i]), c.model_type);
      if (t->shape != p.shapes[i])
        fail("{}: tensor '{}' has shape {}, but config.json (hidden {}, intermediate {}, heads {}/{} x {}, vocab {}) "
             "expects {}",
             ckpt.file_of(p.names[i]).path().string(), t->name, shape_str(t->shape), c.hidden, c.intermediate,
             c.n_head, c.n_kv_head, c.head_dim, c.vocab_size, shape_str(p.shapes[i]));
    }
  for (const auto& p : ps) {
    std::int64_t total = 0;
    for (const auto& s : p.shapes) total += numel(s);
    p.dst->resize(static_cast<std::size_t>(total));
    float* at = p.dst->data();
    for (std::size_t i = 0; i < p.names.size(); ++i) {
      ckpt.to_float(p.names[i], at);
      at += numel(p.shapes[i]);
    }
    if (p.neox_heads > 0) neox_permute(*p.dst, p.neox_heads, p.shapes[0].size() == 2 ? p.shapes[0][1] : 1, true);
  }
  return w;
}

void TransformerWeights::save(const fs::path& dir, const SaveOptions& opts) const {
  config.validate("TransformerWeights::save");
  if (blocks.size() != static_cast<std::size_t>(config.n_layer))
    fail("{}: cannot save: {} blocks present, config says {} layers", dir.string(), blocks.size(), config.n_layer);
  // params() hands out mutable pointers for load(); here they are only read.
  auto& self = const_cast<TransformerWeights&>(*this);
  const auto ps = params(self, TransformerLoadOptions{}, config.n_layer - 1);

  struct Out {
    std::string name;
    Shape shape;
    std::vector<float> f32;
    std::vector<std::uint16_t> bf16;
  };
  std::deque<Out> outs;  // stable addresses for TensorToWrite
  for (const auto& p : ps) {
    std::int64_t total = 0;
    for (const auto& sh : p.shapes) total += numel(sh);
    if (p.dst->size() != static_cast<std::size_t>(total))
      fail("{}: cannot save: tensor '{}' holds {} values, expected {}", dir.string(), p.names[0], p.dst->size(), total);
    std::vector<float> data = *p.dst;
    if (p.neox_heads > 0) neox_permute(data, p.neox_heads, p.shapes[0].size() == 2 ? p.shapes[0][1] : 1, false);
    std::int64_t at = 0;
    for (std::size_t i = 0; i < p.names.size(); ++i) {
      Out& o = outs.emplace_back();
      o.name = p.names[i];
      o.shape = p.shapes[i];
      const auto n = numel(o.shape);
      if (opts.bf16)
        for (std::int64_t k = 0; k < n; ++k) o.bf16.push_back(to_bf16(data[static_cast<std::size_t>(at + k)]));
      else
        o.f32.assign(data.begin() + at, data.begin() + at + n);
      at += n;
    }
  }

  // Shards in tensor order, each up to max_shard_bytes (a larger tensor gets a shard alone).
  std::vector<std::vector<TensorToWrite>> shards(1);
  std::uint64_t shard_bytes = 0, total_bytes = 0;
  for (const Out& o : outs) {
    const std::uint64_t bytes = static_cast<std::uint64_t>(numel(o.shape)) * (opts.bf16 ? 2 : 4);
    if (opts.max_shard_bytes > 0 && shard_bytes > 0 && shard_bytes + bytes > opts.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back({o.name, opts.bf16 ? StDtype::BF16 : StDtype::F32, o.shape,
                             opts.bf16 ? static_cast<const void*>(o.bf16.data()) : o.f32.data()});
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  nlohmann::json cfg = config.to_hf_json();
  cfg["torch_dtype"] = opts.bf16 ? "bfloat16" : "float32";
  write_file_atomic(dir / "config.json", cfg.dump(2) + "\n");
  if (shards.size() == 1) {
    write_safetensors(dir / "model.safetensors", shards[0], {{"format", "pt"}});
    return;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  for (std::size_t s = 0; s < shards.size(); ++s) {
    const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
    for (const auto& t : shards[s]) weight_map[t.name] = file;
    write_safetensors(dir / file, shards[s], {{"format", "pt"}});
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  write_file_atomic(dir / "model.safetensors.index.json", index.dump(2) + "\n");
}

TransformerWeights TransformerWeights::random(const ArchConfig& config, std::uint64_t seed, float stddev) {
  config.validate("TransformerWeights::random");
  TransformerWeights w;
  w.config = config;
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  // mt19937_64 is specified bit for bit by the standard (std::normal_distribution is not), and
  // Box-Muller turns its uniforms into normals.
  std::mt19937_64 rng(seed);
  auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 1) * 0x1.0p-53; };  // (0, 1]
  auto normal = [&] { return std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform()); };
  const double residual_std = stddev / std::sqrt(2.0 * config.n_layer);
  for (const auto& p : params(w, TransformerLoadOptions{}, config.n_layer - 1)) {
    std::int64_t total = 0;
    for (const auto& sh : p.shapes) total += numel(sh);
    p.dst->assign(static_cast<std::size_t>(total), 0.0f);
    if (p.kind == Kind::NormGain) std::fill(p.dst->begin(), p.dst->end(), 1.0f);
    if (p.kind == Kind::Matrix || p.kind == Kind::ResidualMatrix) {
      const double sd = p.kind == Kind::ResidualMatrix ? residual_std : stddev;
      for (auto& v : *p.dst) v = static_cast<float>(normal() * sd);
    }
  }
  return w;
}

}  // namespace nexplain
