#pragma once
// Shared by the gpu forward tests (CUDA builds only): the device check, the tolerances of each
// precision, and the parity check of the device forward against the CPU forward (TransformerCpu,
// the oracle) and, where a fixture has them, HF's own activations.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cuda_engine.hpp"
#include "device_info.hpp"
#include "io/safetensors.hpp"
#include "model/activation_sink.hpp"
#include "model/arch_config.hpp"
#include "model/transformer_cpu.hpp"
#include "model/transformer_weights.hpp"

namespace nexplain::gputest {

inline const cuda::DeviceInfo& gpu() {
  static const cuda::DeviceInfo info = cuda::query_device();
  return info;
}
#define NEXPLAIN_REQUIRE_GPU() \
  if (!::nexplain::gputest::gpu().available) GTEST_SKIP() << "no CUDA device: " << ::nexplain::gputest::gpu().reason

inline std::vector<std::uint32_t> random_tokens(std::size_t n, std::uint32_t vocab, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::uint32_t> tok(0, vocab - 1);
  std::vector<std::uint32_t> t(n);
  for (auto& x : t) x = tok(rng);
  return t;
}

struct Diff {
  double max_abs = 0.0, max_ref = 0.0;
  double ratio() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
};

inline Diff compare(const std::vector<float>& ours, const std::vector<float>& ref) {
  Diff d;
  EXPECT_EQ(ours.size(), ref.size());
  for (std::size_t i = 0; i < std::min(ours.size(), ref.size()); ++i) {
    d.max_abs = std::max(d.max_abs, std::fabs(static_cast<double>(ours[i]) - ref[i]));
    d.max_ref = std::max(d.max_ref, std::fabs(static_cast<double>(ref[i])));
  }
  return d;
}

// max |device - reference| / max |reference| allowed, per precision.
inline double tolerance(cuda::Precision p) {
  switch (p) {
    case cuda::Precision::fp32: return 1e-4;
    case cuda::Precision::tf32: return 2e-3;
    case cuda::Precision::bf16: return 2e-2;
  }
  return 0.0;
}

inline constexpr cuda::Precision kAllPrecisions[] = {cuda::Precision::fp32, cuda::Precision::tf32,
                                                     cuda::Precision::bf16};

// A GPT-2 config of the given sizes (through the HF config parser, as collect reads one).
inline ArchConfig gpt2_config(int n_layer, int n_embd = 768, int n_head = 12, int vocab = 50257,
                              int n_positions = 1024) {
  return ArchConfig::from_json({{"model_type", "gpt2"},
                                {"n_embd", n_embd},
                                {"n_layer", n_layer},
                                {"n_head", n_head},
                                {"n_positions", n_positions},
                                {"vocab_size", vocab}});
}

// What a fixture holds for HF parity: its expected.safetensors and the name stem of the neurons
// ("mlp_act" for GPT-2, "mlp_neuron" for the others; tensor "<stem>.<layer>").
struct HfReference {
  const SafetensorsFile* expected = nullptr;
  std::string neuron_key;
};

// The device forward in every precision against the CPU forward on the same tokens, every layer;
// with `hf`, against HF's activations too (same tolerances: for fp32 that is issue 10's
// max|ours - HF| <= 1e-4 max|HF|). `tuning` applies to every precision.
inline void check_forward(const TransformerWeights& w, const std::vector<std::uint32_t>& tokens, int B, int T,
                          const std::string& what, const HfReference* hf = nullptr,
                          const cuda::ForwardTuning* tuning = nullptr) {
  TransformerCpu cpu(w, 0);
  CollectingSink sink;
  cpu.forward(tokens.data(), B, T, ForwardOptions{}, sink);
  const int L = w.config.n_layer;
  std::vector<int> layers(static_cast<std::size_t>(L));
  for (int l = 0; l < L; ++l) layers[static_cast<std::size_t>(l)] = l;
  std::printf("%s (%s, B=%d T=%d): layer, precision, max|gpu-cpu|, max|cpu|, ratio, limit%s\n", what.c_str(),
              w.config.model_type.c_str(), B, T, hf ? ", ratio vs HF" : "");
  for (const auto prec : kAllPrecisions) {
    cuda::TransformerDevice dev(w, 0, L - 1, prec);
    if (tuning) dev.set_tuning(*tuning);
    const auto acts = dev.forward_host(tokens.data(), B, T, layers);
    if (tuning) std::printf("  %s: %s\n", cuda::precision_name(prec), dev.tuning_summary().c_str());
    for (int l : layers) {
      const Diff d = compare(acts.at(l), sink.mlp.at(l));
      std::string hf_txt;
      if (hf) {
        const Diff h = compare(acts.at(l), hf->expected->to_float(hf->neuron_key + "." + std::to_string(l)));
        hf_txt = "  " + std::to_string(h.ratio());
        EXPECT_LE(h.max_abs, tolerance(prec) * h.max_ref)
            << what << " layer " << l << " " << cuda::precision_name(prec) << " vs HF";
      }
      std::printf("  %d  %s  %.3e  %.3e  %.3e  %.0e%s\n", l, cuda::precision_name(prec), d.max_abs, d.max_ref,
                  d.ratio(), tolerance(prec), hf_txt.c_str());
      EXPECT_LE(d.max_abs, tolerance(prec) * d.max_ref) << what << " layer " << l << " " << cuda::precision_name(prec);
      EXPECT_GT(d.max_ref, 0.0) << what << " layer " << l << ": all-zero neurons prove nothing";
    }
  }
  std::fflush(stdout);
}

}  // namespace nexplain::gputest
