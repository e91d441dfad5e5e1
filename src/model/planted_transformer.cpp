#include "model/planted_transformer.hpp"

#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/atomic_file.hpp"
#include "core/error.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

constexpr float kBias = 5.0f;     // value of the bias channel (dim 0)
constexpr float kChannel = 10.0f; // value of a feature channel when on
constexpr float kGate = 1.0f;     // g: silu(g h) is close to linear at the channel's values
constexpr double kTarget = 10.0;  // planted neuron with only its own channel on
constexpr double kMinOn = 3.0;    // weakest allowed when several planted features share a token

double silu(double x) { return x / (1 + std::exp(-x)); }

// RMSNorm output of an "on" channel when m channels are on at once (the random dims ignored:
// embeddings N(0, 0.02) and block outputs are small next to 5 and 10).
double rms_on(int C, int m, double eps) {
  const double ms = (kBias * kBias + m * kChannel * kChannel) / C;
  return kChannel / std::sqrt(ms + eps);
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
  if (config.norm != NormKind::RMSNorm || config.mlp != MlpKind::Gated || config.act != ActKind::Silu)
    fail("planted models of model_type \"{}\" are not supported here (RMSNorm + SiLU-gated MLP: llama, qwen2; GPT-2 "
         "has its own builder)",
         config.model_type);
  for (const auto& p : neurons)
    if (p.kind == "position") fail("--planted: position features are not supported for {}", config.model_type);

  PlantedTransformer m;
  m.weights = TransformerWeights::random(config, seed);
  m.neurons = neurons;
  auto& w = m.weights;
  const int C = config.hidden, I = config.intermediate;
  const auto Cs = static_cast<std::size_t>(C), Is = static_cast<std::size_t>(I);

  // One channel per distinct token set; neurons planted on the same set share it.
  std::map<std::string, int> channel_of_key;
  std::vector<int> channel(neurons.size());
  for (std::size_t i = 0; i < neurons.size(); ++i) {
    const auto key = fmt::format("{}", fmt::join(neurons[i].tokens, ","));
    channel[i] = channel_of_key.emplace(key, static_cast<int>(channel_of_key.size()) + 1).first->second;
  }
  const int F = static_cast<int>(channel_of_key.size());
  if (F + 1 > C / 2)
    fail("--planted: {} distinct features need {} reserved residual dims, but hidden_size={} allows at most {}", F,
         F + 1, C, C / 2 - 1);
  std::map<std::uint32_t, std::set<int>> token_channels;
  for (std::size_t i = 0; i < neurons.size(); ++i)
    for (auto t : neurons[i].tokens) token_channels[t].insert(channel[i]);
  int worst = 1;
  for (const auto& [t, s] : token_channels) worst = std::max(worst, static_cast<int>(s.size()));

  const double v1 = rms_on(C, 1, config.norm_eps);
  const double up_gain = kTarget / (silu(kGate * v1) * v1);
  const double vw = rms_on(C, worst, config.norm_eps);
  const double weakest = silu(kGate * vw) * up_gain * vw;
  if (!neurons.empty() && weakest < kMinOn)
    fail("--planted: with hidden_size={} and up to {} features on the same token, a planted neuron would reach only "
         "{:.2f} (need >= {}); use a wider model or fewer overlapping features",
         C, worst, weakest, kMinOn);

  // Reserved dims: the embedding carries only the planted signal; no block writes into them.
  for (int d = 0; d <= F; ++d) {
    for (int t = 0; t < config.vocab_size; ++t) w.tok_embed[static_cast<std::size_t>(t) * Cs + d] = d == 0 ? kBias : 0.0f;
    for (auto& b : w.blocks)
      for (LinearWeights* lw : {&b.o, &b.down}) {  // [out = C, in] rows
        std::fill_n(lw->w.begin() + static_cast<std::ptrdiff_t>(d * static_cast<std::size_t>(lw->in)), lw->in, 0.0f);
        if (!lw->b.empty()) lw->b[static_cast<std::size_t>(d)] = 0.0f;
      }
  }
  for (std::size_t i = 0; i < neurons.size(); ++i) {
    const auto& p = neurons[i];
    const auto d = static_cast<std::size_t>(channel[i]), n = static_cast<std::size_t>(p.neuron);
    for (auto t : p.tokens) w.tok_embed[static_cast<std::size_t>(t) * Cs + d] = kChannel;
    auto& b = w.blocks[static_cast<std::size_t>(p.layer)];
    float* gate = b.up.w.data() + n * Cs;         // [gate | up] rows, each [C]
    float* up = b.up.w.data() + (Is + n) * Cs;
    std::fill_n(gate, C, 0.0f);
    std::fill_n(up, C, 0.0f);
    gate[d] = kGate;
    up[d] = static_cast<float>(up_gain);
    if (!b.up.b.empty()) b.up.b[n] = b.up.b[Is + n] = 0.0f;
    for (std::size_t r = 0; r < Cs; ++r) b.down.w[r * Is + n] = 0.0f;  // down is [C, I]
  }

  nlohmann::json list = nlohmann::json::array();
  for (std::size_t i = 0; i < neurons.size(); ++i)
    list.push_back({{"layer", neurons[i].layer}, {"neuron", neurons[i].neuron}, {"kind", neurons[i].kind},
                    {"channel", channel[i]}, {"tokens", neurons[i].tokens}});
  m.ground_truth = {
      {"format", "nexplain-planted-v1"},
      {"spec", spec_text},
      {"seed", seed},
      {"config", config.to_hf_json()},
      {"neurons", list},
      {"construction",
       {{"bias_dim", 0},
        {"bias_value", kBias},
        {"reserved_dims", F + 1},
        {"channel_value", kChannel},
        {"gate_gain", kGate},
        {"up_gain", up_gain},
        {"target_activation", kTarget},
        {"note", "a planted neuron is silu(g h) * u h of its channel after RMSNorm: ~kTarget on its tokens (less "
                 "when several planted features share one), exactly 0 elsewhere"}}},
  };
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
