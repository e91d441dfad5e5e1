#pragma once
// What one layer's reduction keeps per neuron. Two states can only be merged when their
// parameters are equal (and their quantile boundaries bitwise equal).
#include <cstdint>
#include <vector>

namespace nexplain {

struct CaptureParams {
  std::uint32_t T = 64;  // tokens per excerpt
  std::uint32_t K = 20;  // top-K excerpts by excerpt max
  std::uint32_t R = 20;  // random excerpts (smallest random_hash)
  // Quantile fractions f_1 < ... < f_m in (0, 1) of the excerpt-max distribution: m boundaries,
  // m + 1 quantile bins [0,f_1) [f_1,f_2) ... [f_m,1].
  std::vector<double> quantile_fractions{0.5, 0.9, 0.99, 0.999};
  std::uint32_t Q = 5;     // excerpts per quantile bin (smallest quantile_hash)
  std::uint64_t seed = 0;  // seeds random_hash / quantile_hash
  std::uint32_t layer = 0;

  std::uint32_t n_boundaries() const { return static_cast<std::uint32_t>(quantile_fractions.size()); }
  std::uint32_t n_quantile_bins() const { return n_boundaries() + 1; }

  // Throws Error naming the bad field: T >= 1; fractions strictly increasing inside (0, 1);
  // T*K, T*R, T*Q*bins per neuron below 2^31 (sizes stay sane for HDF5 chunks and GPU indexing).
  void validate() const;

  bool operator==(const CaptureParams&) const = default;
};

}  // namespace nexplain
