#include "capture/params.hpp"

#include <cmath>
#include <cstddef>

#include "core/error.hpp"

namespace nexplain {

void CaptureParams::validate() const {
  if (T == 0) fail("capture parameters: T (tokens per excerpt) must be at least 1");
  for (std::size_t i = 0; i < quantile_fractions.size(); ++i) {
    const double f = quantile_fractions[i];
    if (!(f > 0.0 && f < 1.0)) fail("capture parameters: quantile fraction {} is {}, expected inside (0, 1)", i, f);
    if (i > 0 && !(f > quantile_fractions[i - 1]))
      fail("capture parameters: quantile fractions must be strictly increasing ({} then {})", quantile_fractions[i - 1], f);
  }
  // Per-neuron slices are indexed with 32-bit arithmetic on the GPU; keep them far below 2^31.
  const auto per_neuron = [&](std::uint64_t slots) { return slots * T; };
  constexpr std::uint64_t kLimit = std::uint64_t{1} << 31;
  if (per_neuron(K) >= kLimit || per_neuron(R) >= kLimit ||
      per_neuron(std::uint64_t{Q} * n_quantile_bins()) >= kLimit)
    fail("capture parameters: T={} with K={}, R={}, Q={} gives over 2^31 activations per neuron", T, K, R, Q);
}

}  // namespace nexplain
