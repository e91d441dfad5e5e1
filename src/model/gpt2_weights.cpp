#include "model/gpt2_weights.hpp"

#include <cmath>
#include <string>

#include <fmt/format.h>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "io/safetensors.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

// Every parameter of a GPT-2 with its HF name (without the "transformer." prefix), expected
// shape and where it lives in Gpt2Weights. Load, save and the shape checks all walk this one
// list, so they cannot disagree about names or layouts.
struct Param {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float>* data;
};

void block_params(Gpt2BlockWeights& b, int layer, const Gpt2Config& c, std::vector<Param>& out) {
  const std::int64_t C = c.n_embd, I = c.n_inner;
  const std::string p = fmt::format("h.{}.", layer);
  auto* bw = &b;
  out.push_back({p + "ln_1.weight", {C}, &bw->ln_1_w});
  out.push_back({p + "ln_1.bias", {C}, &bw->ln_1_b});
  out.push_back({p + "attn.c_attn.weight", {C, 3 * C}, &bw->attn_w});
  out.push_back({p + "attn.c_attn.bias", {3 * C}, &bw->attn_b});
  out.push_back({p + "attn.c_proj.weight", {C, C}, &bw->attn_proj_w});
  out.push_back({p + "attn.c_proj.bias", {C}, &bw->attn_proj_b});
  out.push_back({p + "ln_2.weight", {C}, &bw->ln_2_w});
  out.push_back({p + "ln_2.bias", {C}, &bw->ln_2_b});
  out.push_back({p + "mlp.c_fc.weight", {C, I}, &bw->fc_w});
  out.push_back({p + "mlp.c_fc.bias", {I}, &bw->fc_b});
  out.push_back({p + "mlp.c_proj.weight", {I, C}, &bw->proj_w});
  out.push_back({p + "mlp.c_proj.bias", {C}, &bw->proj_b});
}

std::vector<Param> params(Gpt2Weights& m, const Gpt2LoadOptions& o) {
  const auto& c = m.config;
  const std::int64_t C = c.n_embd;
  std::vector<Param> out;
  if (o.embeddings) {
    out.push_back({"wte.weight", {c.vocab_size, C}, &m.wte});
    out.push_back({"wpe.weight", {c.n_positions, C}, &m.wpe});
  }
  const int last = o.last_layer < 0 ? c.n_layer - 1 : o.last_layer;
  for (int l = o.first_layer; l <= last; ++l) block_params(m.blocks[static_cast<std::size_t>(l)], l, c, out);
  if (o.final_norm) {
    out.push_back({"ln_f.weight", {C}, &m.ln_f_w});
    out.push_back({"ln_f.bias", {C}, &m.ln_f_b});
  }
  return out;
}

std::int64_t numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

// splitmix64: a tiny, fully specified generator, so a seed gives the same model on every
// platform and standard library (std::normal_distribution is implementation-defined).
struct SplitMix {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>((next() >> 11) + 1) * 0x1.0p-53; }  // (0, 1]
  // Box-Muller: each pair of uniforms gives two independent normals; the second is kept.
  double spare = 0;
  bool has_spare = false;
  double normal() {
    if (has_spare) {
      has_spare = false;
      return spare;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform())), theta = 6.283185307179586 * uniform();
    spare = r * std::sin(theta);
    has_spare = true;
    return r * std::cos(theta);
  }
};

}  // namespace

bool Gpt2Weights::has_block(int layer) const {
  if (layer < 0 || static_cast<std::size_t>(layer) >= blocks.size()) return false;
  const auto& b = blocks[static_cast<std::size_t>(layer)];
  return !b.fc_w.empty() && !b.attn_w.empty();
}

Gpt2Weights Gpt2Weights::load(const fs::path& model_dir, const Gpt2LoadOptions& opts) {
  Gpt2Weights w;
  w.config = Gpt2Config::load(model_dir / "config.json");
  const auto& c = w.config;
  const int last = opts.last_layer < 0 ? c.n_layer - 1 : opts.last_layer;
  if (opts.first_layer < 0 || last >= c.n_layer || opts.first_layer > last + 1)
    fail("{}: layer range [{}, {}] is outside the model's {} layers", model_dir.string(), opts.first_layer,
         opts.last_layer, c.n_layer);
  w.blocks.resize(static_cast<std::size_t>(c.n_layer));

  const Checkpoint ckpt = Checkpoint::open(model_dir);
  Gpt2LoadOptions o = opts;
  o.last_layer = last;
  const auto ps = params(w, o);
  // Check every tensor before converting any, so a broken checkpoint fails fast and completely.
  for (const auto& p : ps) {
    const TensorInfo* t = ckpt.find(p.name);
    if (!t)
      fail("{}: tensor '{}' (shape {}) is missing from the checkpoint", model_dir.string(), p.name,
           shape_str(p.shape));
    if (t->shape != p.shape)
      fail("{}: tensor '{}' has shape {}, but config.json (n_embd={}, n_inner={}, n_positions={}, vocab_size={}) "
           "expects {}",
           ckpt.file_of(p.name).path().string(), t->name, shape_str(t->shape), c.n_embd, c.n_inner, c.n_positions,
           c.vocab_size, shape_str(p.shape));
  }
  for (const auto& p : ps) {
    p.data->resize(static_cast<std::size_t>(numel(p.shape)));
    ckpt.to_float(p.name, p.data->data());
  }
  return w;
}

void Gpt2Weights::save(const fs::path& dir) const {
  config.validate("Gpt2Weights::save");
  if (blocks.size() != static_cast<std::size_t>(config.n_layer))
    fail("{}: cannot save: {} blocks present, config says n_layer={}", dir.string(), blocks.size(), config.n_layer);
  // params() hands out mutable pointers for load(); here they are only read.
  const auto ps = params(const_cast<Gpt2Weights&>(*this), Gpt2LoadOptions{});
  std::vector<TensorToWrite> tensors;
  for (const auto& p : ps) {
    if (p.data->size() != static_cast<std::size_t>(numel(p.shape)))
      fail("{}: cannot save: tensor '{}' holds {} values, expected shape {}", dir.string(), p.name, p.data->size(),
           shape_str(p.shape));
    tensors.push_back({p.name, StDtype::F32, p.shape, p.data->data()});
  }
  // HF needs more than the architecture to load a directory: the class and token ids too.
  nlohmann::json cfg = config.to_json();
  cfg["architectures"] = {"GPT2LMHeadModel"};
  cfg["bos_token_id"] = 50256;
  cfg["eos_token_id"] = 50256;
  cfg["tie_word_embeddings"] = true;
  cfg["initializer_range"] = 0.02;
  write_file_atomic(dir / "config.json", cfg.dump(2) + "\n");
  write_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
}

Gpt2Weights Gpt2Weights::random(const Gpt2Config& config, std::uint64_t seed, float stddev) {
  config.validate("Gpt2Weights::random");
  Gpt2Weights w;
  w.config = config;
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  SplitMix rng{seed};
  // HF's GPT-2 init: N(0, stddev) matrices and embeddings, zero biases, unit LayerNorm gains,
  // and residual projections scaled by 1/sqrt(2 n_layer) so the stream's variance does not grow
  // with depth.
  const float proj_std = stddev / std::sqrt(2.0f * static_cast<float>(config.n_layer));
  for (const auto& p : params(w, Gpt2LoadOptions{})) {
    const auto n = static_cast<std::size_t>(numel(p.shape));
    const bool is_ln_gain = p.name.find("ln_") != std::string::npos && p.name.ends_with(".weight");
    if (is_ln_gain) {
      p.data->assign(n, 1.0f);
    } else if (p.shape.size() == 1) {
      p.data->assign(n, 0.0f);
    } else {
      const bool residual_proj = p.name.ends_with("c_proj.weight");
      const double sd = residual_proj ? proj_std : stddev;
      p.data->resize(n);
      for (auto& v : *p.data) v = static_cast<float>(rng.normal() * sd);
    }
  }
  return w;
}

}  // namespace nexplain
