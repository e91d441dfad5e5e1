#include "model/planted_transformer.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "model/planted_construction.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

constexpr double kTarget = 10.0;   // planted neuron with only its own channel on
constexpr double kMinOn = 3.0;     // weakest allowed when several planted features share a token
constexpr float kGate = 1.0f;      // gated: g, silu(g h) is close to linear at the channel's values
constexpr float kThreshold = 2.0f; // plain: the normalized channel value above which a neuron fires

double silu(double x) { return x / (1 + std::exp(-x)); }

// The MLP activations of the plain readout, as the forward computes them (transformer_cpu.cpp).
double activate(ActKind k, double x) {
  switch (k) {
    case ActKind::GeluTanh: return x / (1 + std::exp(-2 * 0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case ActKind::GeluErf: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case ActKind::Silu: return silu(x);
    case ActKind::Relu: return x > 0 ? x : 0;
  }
  return x;
}

// Element (row `out`, column `in`) of a linear layer's weight, whichever orientation it has.
float& weight(LinearWeights& L, int out, int in) {
  const auto o = static_cast<std::size_t>(out), i = static_cast<std::size_t>(in);
  return L.in_major ? L.w[i * static_cast<std::size_t>(L.out) + o] : L.w[o * static_cast<std::size_t>(L.in) + i];
}

// How a planted neuron reads its channel h (after the MLP's norm): the two MLP shapes we build.
enum class Readout {
  Gated,  // silu(g h) * u h: gate row g e_d, up row u e_d; exactly 0 when h is 0 (RMSNorm: off is 0)
  Plain,  // act(a h - a threshold): up row a e_d, bias -a threshold; ~0 when off (LayerNorm: off < 0)
};

Readout readout_of(const ArchConfig& c) {
  // A learned position table would need its reserved dims cleared too and could carry position
  // features: that is GPT-2's builder (planted.hpp).
  if (c.position != PositionKind::Rotary)
    fail("planted models of model_type \"{}\" (learned positions) are built by the GPT-2 builder, not here",
         c.model_type);
  if (c.norm == NormKind::RMSNorm && c.mlp == MlpKind::Gated && c.act == ActKind::Silu) return Readout::Gated;
  // The threshold needs the up projection's bias; off, the LayerNorm'd channel is slightly
  // negative, so the activation must be ~0 there and ~linear far above it (GELU, ReLU).
  if (c.norm == NormKind::LayerNorm && c.mlp == MlpKind::Plain && c.mlp_bias && c.act != ActKind::Silu)
    return Readout::Plain;
  fail("planted models of model_type \"{}\" ({} norm, {} MLP, {}{}) are not supported here: RMSNorm + SiLU-gated "
       "MLP (llama, qwen2) or LayerNorm + plain MLP with biases and GELU/ReLU (gpt_neox); GPT-2 has its own builder",
       c.model_type, kind_name(c.norm), kind_name(c.mlp), kind_name(c.act), c.mlp_bias ? "" : ", no MLP bias");
}

}  // namespace

std::vector<PlantedNeuron> parse_planted_spec(const std::string& spec, const ArchConfig& config) {
  // The GPT-2 parser checks exactly these sizes; hand it the same ones.
  Gpt2Config sizes;
  sizes.n_layer = config.n_layer;
  sizes.n_inner = config.intermediate;
  sizes.vocab_size = config.vocab_size;
  sizes.n_positions = config.max_positions;
  sizes.n_embd = config.hidden;
  sizes.n_head = 1;
  auto neurons = parse_planted_spec(spec, sizes);
  for (const auto& p : neurons)
    if (p.kind == "position")
      fail("--planted: L{}.N{}: position features need a learned position table; {} uses RoPE", p.layer, p.neuron,
           config.model_type);
  return neurons;
}

PlantedTransformer build_planted_transformer(const ArchConfig& config, const std::vector<PlantedNeuron>& neurons,
                                             std::uint64_t seed, const std::string& spec_text) {
  const Readout readout = readout_of(config);
  for (const auto& p : neurons)
    if (p.kind == "position") fail("--planted: position features are not supported for {}", config.model_type);

  PlantedTransformer m;
  m.weights = TransformerWeights::random(config, seed);
  m.neurons = neurons;
  auto& w = m.weights;
  const int C = config.hidden, I = config.intermediate;
  const auto Cs = static_cast<std::size_t>(C);

  // One channel per distinct token set; neurons planted on the same set share it.
  const std::vector<int> channel = planted_channels(neurons);
  const int F = channel.empty() ? 0 : *std::max_element(channel.begin(), channel.end());
  if (F + 1 > C / 2)
    fail("--planted: {} distinct features need {} reserved residual dims, but hidden_size={} allows at most {}", F,
         F + 1, C, C / 2 - 1);
  std::map<std::uint32_t, std::set<int>> token_channels;
  for (std::size_t i = 0; i < neurons.size(); ++i)
    for (auto t : neurons[i].tokens) token_channels[t].insert(channel[i]);
  int worst = 1;
  for (const auto& [t, s] : token_channels) worst = std::max(worst, static_cast<int>(s.size()));

  // The neuron's value with its channel on, `m` channels on in all, for a readout gain.
  const auto on_value = [&](int m_on, double gain) {
    const double h = planted_channel_after_norm(config.norm, C, m_on, config.norm_eps, kPlantedBias, kPlantedChannel);
    return readout == Readout::Gated ? silu(kGate * h) * gain * h : activate(config.act, gain * (h - kThreshold));
  };
  const double h1 = planted_channel_after_norm(config.norm, C, 1, config.norm_eps, kPlantedBias, kPlantedChannel);
  // Gated: u with silu(g h1) u h1 = target. Plain: a with a (h1 - threshold) = target (GELU and
  // ReLU are ~the identity there).
  const double gain = readout == Readout::Gated ? kTarget / (silu(kGate * h1) * h1) : kTarget / (h1 - kThreshold);
  const double weakest = on_value(worst, gain);
  if (!neurons.empty() && ((readout == Readout::Plain && h1 <= kThreshold) || weakest < kMinOn))
    fail("--planted: with hidden_size={} and up to {} features on the same token, a planted neuron would reach only "
         "{:.2f} (need >= {}); use a wider model or fewer overlapping features",
         C, worst, weakest, kMinOn);

  // Reserved dims: the embedding carries only the planted signal; no block writes into them
  // (with a parallel residual too: both branches write through o and down).
  for (int d = 0; d <= F; ++d) {
    for (int t = 0; t < config.vocab_size; ++t) w.tok_embed[static_cast<std::size_t>(t) * Cs + d] = d == 0 ? kPlantedBias : 0.0f;
    for (auto& b : w.blocks)
      for (LinearWeights* lw : {&b.o, &b.down}) {
        for (int i = 0; i < lw->in; ++i) weight(*lw, d, i) = 0.0f;
        if (!lw->b.empty()) lw->b[static_cast<std::size_t>(d)] = 0.0f;
      }
  }
  for (std::size_t i = 0; i < neurons.size(); ++i) {
    const auto& p = neurons[i];
    const int d = channel[i], n = p.neuron;
    for (auto t : p.tokens) w.tok_embed[static_cast<std::size_t>(t) * Cs + static_cast<std::size_t>(d)] = kPlantedChannel;
    auto& b = w.blocks[static_cast<std::size_t>(p.layer)];
    if (readout == Readout::Gated) {  // up is [gate | up]: rows n and I + n
      for (int c = 0; c < C; ++c) weight(b.up, n, c) = weight(b.up, I + n, c) = 0.0f;
      weight(b.up, n, d) = kGate;
      weight(b.up, I + n, d) = static_cast<float>(gain);
      if (!b.up.b.empty()) b.up.b[static_cast<std::size_t>(n)] = b.up.b[static_cast<std::size_t>(I + n)] = 0.0f;
    } else {
      for (int c = 0; c < C; ++c) weight(b.up, n, c) = 0.0f;
      weight(b.up, n, d) = static_cast<float>(gain);
      b.up.b[static_cast<std::size_t>(n)] = static_cast<float>(-gain * kThreshold);
    }
    for (int r = 0; r < C; ++r) weight(b.down, r, n) = 0.0f;  // its large value must not disturb the model
  }

  nlohmann::json construction = {{"bias_dim", 0},
                                 {"bias_value", kPlantedBias},
                                 {"reserved_dims", F + 1},
                                 {"channel_value", kPlantedChannel},
                                 {"target_activation", kTarget}};
  if (readout == Readout::Gated) {
    construction["gate_gain"] = kGate;
    construction["up_gain"] = gain;
    construction["note"] =
        "a planted neuron is silu(g h) * u h of its channel after RMSNorm: ~kTarget on its tokens (less when several "
        "planted features share one), exactly 0 elsewhere";
  } else {
    construction["threshold"] = kThreshold;
    construction["gain"] = gain;
    construction["note"] = fmt::format(
        "a planted neuron is {}(a (h - threshold)) of its channel h after LayerNorm: ~kTarget on its tokens (less "
        "when several planted features share one), ~0 elsewhere (h is slightly negative there)",
        kind_name(config.act));
  }
  m.ground_truth = planted_ground_truth(spec_text, seed, config.to_hf_json(), neurons, channel, construction);
  return m;
}

void write_planted_transformer(const fs::path& dir, const PlantedTransformer& model,
                               const TransformerWeights::SaveOptions& opts) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create the output directory: {}", dir.string(), ec.message());
  model.weights.save(dir, opts);
  write_file_atomic(dir / "planted.json", model.ground_truth.dump(2) + "\n");
}

}  // namespace nexplain
