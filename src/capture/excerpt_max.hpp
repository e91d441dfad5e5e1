#pragma once
// The excerpt maximum of a neuron, the quantity top-K, the histogram and the quantile bins rank
// by. Normative definition (the CUDA backend must use the same fold, not fmaxf, for NaN/-0.0 to
// agree): m = x_0; for t = 1..T-1: m = (x_t > m) ? x_t : m.
// Internal helper shared by the CPU reductions; it iterates rows and vectorises across neurons.
#include <cstddef>
#include <cstdint>

namespace nexplain::capture_detail {

// rows: the excerpt's first activation row ([T][row_stride] floats); writes out[j] for neurons
// begin + j, j < end - begin.
inline void excerpt_max_rows(const float* rows, std::size_t row_stride, std::uint32_t T, std::size_t begin,
                             std::size_t end, float* out) {
  const std::size_t w = end - begin;
  const float* r0 = rows + begin;
  for (std::size_t j = 0; j < w; ++j) out[j] = r0[j];
  for (std::uint32_t t = 1; t < T; ++t) {
    const float* r = rows + t * row_stride + begin;
    for (std::size_t j = 0; j < w; ++j) out[j] = r[j] > out[j] ? r[j] : out[j];
  }
}

}  // namespace nexplain::capture_detail
