#include "capture/quantiles.hpp"

#include <cstddef>
#include <limits>

#include "capture/hist_bins.hpp"
#include "core/error.hpp"

namespace nexplain {

std::vector<double> quantile_boundaries(std::span<const std::uint64_t> counts, std::uint32_t n_neurons,
                                        std::span<const double> fractions) {
  if (counts.size() != std::size_t{n_neurons} * kHistBins)
    fail("quantile_boundaries: {} histogram counts for {} neurons, expected {}", counts.size(), n_neurons,
         std::size_t{n_neurons} * kHistBins);
  for (std::size_t k = 0; k < fractions.size(); ++k) {
    if (!(fractions[k] > 0.0 && fractions[k] < 1.0))
      fail("quantile_boundaries: fraction {} is {}, expected inside (0, 1)", k, fractions[k]);
    if (k > 0 && !(fractions[k] > fractions[k - 1])) fail("quantile_boundaries: fractions must be strictly increasing");
  }
  const std::size_t m = fractions.size();
  std::vector<double> out(std::size_t{n_neurons} * m);
  for (std::size_t n = 0; n < n_neurons; ++n) {
    const std::uint64_t* c = counts.data() + n * kHistBins;
    std::uint64_t total = 0;
    std::uint32_t last_nonempty = 0;
    for (std::uint32_t i = 0; i < kHistBins; ++i) {
      total += c[i];
      if (c[i] > 0) last_nonempty = i;
    }
    double* b = out.data() + n * m;
    if (total == 0) {
      for (std::size_t k = 0; k < m; ++k) b[k] = std::numeric_limits<double>::infinity();
      continue;
    }
    for (std::size_t k = 0; k < m; ++k) {
      const double r = fractions[k] * static_cast<double>(total);
      std::uint64_t before = 0;  // inclusive cumulative count of the bins before i
      std::uint32_t i = 0;
      for (; i < kHistBins; ++i) {
        if (static_cast<double>(before + c[i]) > r) break;
        before += c[i];
      }
      if (i == kHistBins) {
        // f * total rounded up to total (f within an ulp of 1): the top of the last occupied bin.
        b[k] = hist_bin_upper(last_nonempty);
        continue;
      }
      const double lo = hist_bin_lower(i), hi = hist_bin_upper(i);
      b[k] = lo + (hi - lo) * ((r - static_cast<double>(before)) / static_cast<double>(c[i]));
    }
  }
  return out;
}

}  // namespace nexplain
