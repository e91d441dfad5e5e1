#pragma once
// Quantile boundaries of the excerpt-max distribution from the fixed histograms. Deterministic
// (integer counts in, a fixed sequence of double operations out), so every rank computing them
// from the same merged histogram gets the same bits.
#include <cstdint>
#include <span>
#include <vector>

namespace nexplain {

// counts: [n_neurons][kHistBins]; fractions f_1 < ... < f_m in (0, 1) (else Error).
// Returns [n_neurons][m]. For a neuron with n excerpts and fraction f: r = f * n; i = the first bin
// whose inclusive cumulative count c_i > r; boundary = lo_i + (hi_i - lo_i) * (r - c_{i-1}) / count_i
// with [lo_i, hi_i) = [hist_bin_lower(i), hist_bin_upper(i)), i.e. linear interpolation inside the
// bin. A neuron with no counts gets +inf for every boundary (all its excerpts fall in bin 0).
std::vector<double> quantile_boundaries(std::span<const std::uint64_t> counts, std::uint32_t n_neurons,
                                        std::span<const double> fractions);

// The quantile bin of an excerpt max: the number of boundaries b with b <= (double)max.
inline std::uint32_t quantile_bin(float max, const double* boundaries, std::uint32_t m) {
  std::uint32_t bin = 0;
  for (std::uint32_t i = 0; i < m; ++i) bin += static_cast<double>(max) >= boundaries[i] ? 1u : 0u;
  return bin;
}

}  // namespace nexplain
