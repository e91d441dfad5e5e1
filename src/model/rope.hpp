#pragma once
// Rotary position embeddings (RoPE): the inverse frequencies of a config and the cos/sin tables
// both forwards apply to q and k. Header-only on purpose: the CUDA engine (cuda/, linked before
// nexplain_lib, so it may use only inline code of src/) builds its tables with these very
// functions, so the CPU and the device rotate by the same float values.
#include <cmath>
#include <cstddef>
#include <vector>

#include "model/arch_config.hpp"

namespace nexplain {

// The rotary inverse frequencies, as HF's ROPE_INIT_FUNCTIONS computes them for this config
// (size rotary_dim / 2). `seq_len` matters only for "dynamic" scaling, whose base grows with the
// sequence length once it exceeds max_positions.
inline std::vector<double> rope_inv_freq(const ArchConfig& c, int seq_len) {
  const int dim = c.rope.rotary_dim;
  const auto& r = c.rope;
  double base = r.theta;
  // "dynamic" (NTK-aware): HF recomputes the base from the current length once it exceeds
  // max_position_embeddings: base * (factor * L / max - (factor - 1)) ^ (dim / (dim - 2)).
  if (r.scaling == RopeScalingKind::Dynamic && seq_len > c.max_positions)
    base *= std::pow(r.factor * seq_len / c.max_positions - (r.factor - 1), static_cast<double>(dim) / (dim - 2));
  std::vector<double> inv(static_cast<std::size_t>(dim / 2));
  for (int i = 0; i < dim / 2; ++i) inv[static_cast<std::size_t>(i)] = 1.0 / std::pow(base, (2.0 * i) / dim);
  if (r.scaling == RopeScalingKind::Linear) {
    for (auto& f : inv) f /= r.factor;  // positions divided by factor
  } else if (r.scaling == RopeScalingKind::Llama3) {
    // Llama 3.1: long wavelengths (beyond the original context / low_freq_factor) are slowed by
    // `factor`, short ones (below context / high_freq_factor) kept, the band between blended.
    const double old_ctx = r.original_max_position_embeddings;
    const double low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
    for (auto& f : inv) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = f / r.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        f = (1 - smooth) * f / r.factor + smooth * f;
      }
    }
  }
  return inv;
}

// cos/sin of t * inv_freq for positions t < T, row-major [T, rotary_dim / 2]. As in HF, the
// angle is a float32 product of the position and the float32 inverse frequency; its cosine and
// sine are then taken accurately (in double, rounded once).
inline void rope_tables(const ArchConfig& c, int T, std::vector<float>& cos, std::vector<float>& sin) {
  const std::vector<double> inv = rope_inv_freq(c, T);
  const auto half = static_cast<std::size_t>(c.rope.rotary_dim / 2);
  cos.resize(static_cast<std::size_t>(T) * half);
  sin.resize(cos.size());
  for (int t = 0; t < T; ++t)
    for (std::size_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(t) * static_cast<float>(inv[i]);
      cos[static_cast<std::size_t>(t) * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin[static_cast<std::size_t>(t) * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
}

}  // namespace nexplain
