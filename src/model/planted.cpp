// Planted-feature models. The construction, in residual-stream terms (C = n_embd):
//
//  * Dim 0 is a "bias" channel: wpe[p, 0] = kPlantedBias for every position. It dominates the
//    LayerNorm statistics when nothing else is on, so a switched-off channel normalises to a
//    small negative value instead of to unit-variance noise.
//  * Dims 1..F are feature channels, one per distinct feature (a token set or a position
//    range): wte[t, d] = kPlantedChannel for the planted tokens, wpe[p, d] = kPlantedChannel for the planted
//    positions, 0 otherwise.
//  * No block writes into dims 0..F (those columns of both c_proj weights and biases are zeroed),
//    so every channel holds exactly its embedding value at every layer: a neuron in layer L > 0
//    reads the same channel as one in layer 0.
//  * A planted neuron reads only its channel: W_fc[:, n] = a * e_d and b_fc[n] = -a * kThreshold,
//    with `a` chosen so the post-GELU value is kTarget when its channel alone is on. After ln_2
//    the channel is ~ -0.1 when off and ~ 4..8 when on (depending on C and how many other
//    channels share the token/position), so the neuron is ~0 off and >= kMinOn on.
//    Its c_proj row is zeroed so its large activation does not perturb the rest of the model.
//  * Everything else keeps GPT-2's small random init (std 0.02), so ordinary neurons vary
//    weakly (|activation| well under 1) and never look like detectors.
#include "model/planted.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>


#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "model/planted_construction.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

constexpr float kThreshold = 2.0f;   // ln_2 output above which a planted neuron fires
constexpr float kTarget = 10.0f;     // planted activation with only its own channel on
constexpr float kMinOn = 3.0f;       // weakest allowed activation when several channels share a token

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\n") - b + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : s) {
    if (ch == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(ch);
    }
  }
  out.push_back(cur);
  return out;
}

// A whole-string non-negative integer, or an Error quoting the entry.
std::int64_t parse_uint(const std::string& text, const std::string& what, const std::string& entry) {
  const std::string t = trim(text);
  std::int64_t v = -1;
  const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || p != t.data() + t.size() || v < 0)
    fail("--planted entry '{}': {} '{}' is not a non-negative integer", entry, what, t);
  return v;
}

// "a" or "a-b" -> [a, b]
std::pair<std::int64_t, std::int64_t> parse_range(const std::string& text, const std::string& what,
                                                  const std::string& entry) {
  const auto dash = text.find('-');
  if (dash == std::string::npos) {
    const auto v = parse_uint(text, what, entry);
    return {v, v};
  }
  const auto a = parse_uint(text.substr(0, dash), what, entry);
  const auto b = parse_uint(text.substr(dash + 1), what, entry);
  if (b < a) fail("--planted entry '{}': range {} is empty (expected first-last with first <= last)", entry, trim(text));
  return {a, b};
}

// LayerNorm output of an "on" channel when `m` channels (its own included) are on at once.
double ln_on(int C, int m, double eps) {
  return planted_channel_after_norm(NormKind::LayerNorm, C, m, eps, kPlantedBias, kPlantedChannel);
}

// splitmix64 + Box-Muller (both normals of a pair used): the generator GPT-2 planted models have
// always been drawn from. TransformerWeights::random draws from mt19937_64 instead; keeping this
// one means a (spec, sizes, seed) still gives exactly the model it gave before, so planted
// models already on disk, and results recorded from them, stay reproducible.
struct SplitMix {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>((next() >> 11) + 1) * 0x1.0p-53; }  // (0, 1]
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

// HF's GPT-2 init (N(0, 0.02) embeddings and matrices, the residual projections attn.c_proj and
// mlp.c_proj scaled by 1/sqrt(2 n_layer), zero biases, unit LayerNorm gains), drawn in the
// checkpoint's order: wte, wpe, then per block c_attn, attn.c_proj, c_fc, mlp.c_proj, each
// row-major in its Conv1D [in, out] layout. TransformerWeights::random lays out every array
// (shapes, orientation, zero biases, unit gains); only the values are drawn again here.
TransformerWeights random_gpt2(const ArchConfig& config, std::uint64_t seed) {
  TransformerWeights w = TransformerWeights::random(config, seed);
  constexpr float kStd = 0.02f;
  // Computed in float, as the builder always has: the last bit of the scale is part of the model.
  const float proj_std = kStd / std::sqrt(2.0f * static_cast<float>(config.n_layer));
  SplitMix rng{seed};
  auto draw = [&](std::vector<float>& a, float sd) {
    for (auto& v : a) v = static_cast<float>(rng.normal() * static_cast<double>(sd));
  };
  draw(w.tok_embed, kStd);
  draw(w.pos_embed, kStd);
  for (auto& b : w.blocks) {
    draw(b.qkv.w, kStd);
    draw(b.o.w, proj_std);
    draw(b.up.w, kStd);
    draw(b.down.w, proj_std);
  }
  return w;
}

}  // namespace

bool PlantedNeuron::fires_on(std::uint32_t token, int position) const {
  if (kind == "position") return position >= pos_first && position <= pos_last;
  return std::binary_search(tokens.begin(), tokens.end(), token);
}

std::vector<PlantedNeuron> parse_planted_spec(const std::string& spec, const Gpt2Config& config) {
  std::vector<PlantedNeuron> out;
  std::set<std::pair<int, int>> seen;
  for (const auto& raw : split(spec, ';')) {
    const std::string entry = trim(raw);
    if (entry.empty()) continue;
    const auto eq = entry.find('=');
    const auto dot = entry.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq || entry[0] != 'L' || entry[dot + 1] != 'N')
      fail("--planted entry '{}': expected L<layer>.N<neuron>=<kind>:<args>, e.g. L0.N5=token:464", entry);
    PlantedNeuron p;
    const auto layer = parse_uint(entry.substr(1, dot - 1), "layer", entry);
    const auto neuron = parse_uint(entry.substr(dot + 2, eq - dot - 2), "neuron", entry);
    if (layer >= config.n_layer)
      fail("--planted entry '{}': layer {} is out of range (the model has n_layer={})", entry, layer, config.n_layer);
    if (neuron >= config.n_inner)
      fail("--planted entry '{}': neuron {} is out of range (the model has n_inner={})", entry, neuron, config.n_inner);
    p.layer = static_cast<int>(layer);
    p.neuron = static_cast<int>(neuron);
    if (!seen.insert({p.layer, p.neuron}).second)
      fail("--planted entry '{}': neuron L{}.N{} is planted twice", entry, p.layer, p.neuron);

    const std::string rhs = entry.substr(eq + 1);
    const auto colon = rhs.find(':');
    if (colon == std::string::npos)
      fail("--planted entry '{}': expected <kind>:<args> after '=' (kinds: token, tokens, position)", entry);
    p.kind = trim(rhs.substr(0, colon));
    const std::string args = rhs.substr(colon + 1);
    if (p.kind == "token" || p.kind == "tokens") {
      std::set<std::uint32_t> ids;
      for (const auto& item : split(args, ',')) {
        const auto [a, b] = parse_range(item, "token id", entry);
        if (b >= config.vocab_size)
          fail("--planted entry '{}': token id {} is out of range (vocab_size {})", entry, b, config.vocab_size);
        for (auto t = a; t <= b; ++t) ids.insert(static_cast<std::uint32_t>(t));
      }
      if (p.kind == "token" && ids.size() != 1)
        fail("--planted entry '{}': 'token' takes one id (use 'tokens:' for a set)", entry);
      p.tokens.assign(ids.begin(), ids.end());
    } else if (p.kind == "position") {
      const auto [a, b] = parse_range(args, "position", entry);
      if (b >= config.n_positions)
        fail("--planted entry '{}': position {} is out of range (n_positions {})", entry, b, config.n_positions);
      p.pos_first = static_cast<int>(a);
      p.pos_last = static_cast<int>(b);
    } else {
      fail("--planted entry '{}': unknown kind '{}' (expected token, tokens or position)", entry, p.kind);
    }
    out.push_back(std::move(p));
  }
  return out;
}

PlantedModel build_planted_model(const Gpt2Config& config, const std::vector<PlantedNeuron>& neurons,
                                 std::uint64_t seed, const std::string& spec_text) {
  PlantedModel m;
  m.weights = random_gpt2(ArchConfig::from_json(config.to_json(), "make-model (gpt2)"), seed);
  m.neurons = neurons;
  auto& w = m.weights;
  const int C = config.n_embd, I = config.n_inner;

  // One channel per distinct feature; neurons planted on the same feature share it.
  const std::vector<int> channel = planted_channels(neurons);
  const int F = channel.empty() ? 0 : *std::max_element(channel.begin(), channel.end());
  // Half the residual stays random so the rest of the model is still a model.
  if (F + 1 > C / 2)
    fail("--planted: {} distinct features need {} reserved residual dims, but n_embd={} allows at most {}; "
         "use a larger --n-embd",
         F, F + 1, C, C / 2 - 1);

  // How many channels can be on at one (token, position): the weakest "on" case.
  std::map<std::uint32_t, std::set<int>> token_channels;
  std::vector<std::set<int>> position_channels(static_cast<std::size_t>(config.n_positions));
  for (std::size_t i = 0; i < neurons.size(); ++i) {
    const auto& p = neurons[i];
    if (p.kind == "position")
      for (int q = p.pos_first; q <= p.pos_last; ++q) position_channels[static_cast<std::size_t>(q)].insert(channel[i]);
    else
      for (auto t : p.tokens) token_channels[t].insert(channel[i]);
  }
  std::size_t max_tok = 0, max_pos = 0;
  for (const auto& [t, s] : token_channels) max_tok = std::max(max_tok, s.size());
  for (const auto& s : position_channels) max_pos = std::max(max_pos, s.size());
  const int worst = static_cast<int>(max_tok + max_pos);

  const double eps = config.layer_norm_epsilon;
  const double on1 = ln_on(C, 1, eps);
  const auto gain = static_cast<float>(kTarget / (on1 - kThreshold));
  if (!neurons.empty()) {
    const double weakest = gain * (ln_on(C, std::max(worst, 1), eps) - kThreshold);
    if (on1 <= kThreshold || weakest < kMinOn)
      fail("--planted: with n_embd={} and up to {} features active on the same token/position, a planted neuron "
           "would reach only {:.2f} (need >= {}); use a larger --n-embd or fewer overlapping features",
           C, worst, weakest, kMinOn);
  }

  // Reserved dims: embeddings carry only the planted signal, and no block writes into them.
  const std::size_t Cs = static_cast<std::size_t>(C);
  for (int d = 0; d <= F; ++d) {
    for (int t = 0; t < config.vocab_size; ++t) w.tok_embed[static_cast<std::size_t>(t) * Cs + d] = 0.0f;
    for (int q = 0; q < config.n_positions; ++q)
      w.pos_embed[static_cast<std::size_t>(q) * Cs + d] = d == 0 ? kPlantedBias : 0.0f;
    for (auto& b : w.blocks) {  // attn.c_proj (o) and mlp.c_proj (down), Conv1D [in, C]
      for (int i = 0; i < C; ++i) b.o.w[static_cast<std::size_t>(i) * Cs + d] = 0.0f;
      b.o.b[static_cast<std::size_t>(d)] = 0.0f;
      for (int i = 0; i < I; ++i) b.down.w[static_cast<std::size_t>(i) * Cs + d] = 0.0f;
      b.down.b[static_cast<std::size_t>(d)] = 0.0f;
    }
  }
  for (std::size_t i = 0; i < neurons.size(); ++i) {
    const auto& p = neurons[i];
    const int d = channel[i];
    if (p.kind == "position")
      for (int q = p.pos_first; q <= p.pos_last; ++q) w.pos_embed[static_cast<std::size_t>(q) * Cs + d] = kPlantedChannel;
    else
      for (auto t : p.tokens) w.tok_embed[static_cast<std::size_t>(t) * Cs + d] = kPlantedChannel;
    auto& b = w.blocks[static_cast<std::size_t>(p.layer)];
    const std::size_t n = static_cast<std::size_t>(p.neuron), Is = static_cast<std::size_t>(I);
    // mlp.c_fc (up) is Conv1D [C, I]: neuron n is column n.
    for (int r = 0; r < C; ++r) b.up.w[static_cast<std::size_t>(r) * Is + n] = 0.0f;
    b.up.w[static_cast<std::size_t>(d) * Is + n] = gain;
    b.up.b[n] = -gain * kThreshold;
    for (int c = 0; c < C; ++c) b.down.w[n * Cs + static_cast<std::size_t>(c)] = 0.0f;
  }

  m.ground_truth = planted_ground_truth(
      spec_text, seed, config.to_json(), neurons, channel,
      {{"bias_dim", 0},
       {"bias_value", kPlantedBias},
       {"reserved_dims", F + 1},
       {"channel_value", kPlantedChannel},
       {"threshold", kThreshold},
       {"gain", gain},
       {"target_activation", kTarget},
       {"note", "a planted neuron is ~kTarget on its token/position (less when several planted features "
                "share it) and ~0 elsewhere; other neurons keep GPT-2's random init (std 0.02)"}});
  return m;
}

void write_planted_model(const fs::path& dir, const PlantedModel& model) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create the output directory: {}", dir.string(), ec.message());
  model.weights.save(dir);
  write_file_atomic(dir / "planted.json", model.ground_truth.dump(2) + "\n");
}

}  // namespace nexplain
