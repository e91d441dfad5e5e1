#pragma once
// Streaming central moments (count, mean, M2, M3, M4) of token activations, in double.
// Everything is built from one pairwise combination rule (Chan et al. 1979 for M2, Pébay 2008
// for M3/M4): adding an excerpt to a running state and merging two states are the same formula,
// so merged results agree with a single pass up to rounding, and a fixed order of excerpts gives
// bitwise-identical results however the stream is split into batches.
// Plain arithmetic on doubles, constexpr: CUDA device code can call it unchanged; to reproduce the
// CPU bits there compile with --fmad=false (the CPU build must not contract to FMA either).
#include <cmath>
#include <cstdint>

namespace nexplain {

// Moment blocks (docs/REDUCTION.md): excerpt ids [b * kMomentBlock, (b + 1) * kMomentBlock) form
// block b. Within a block, excerpt moments are combined in id order; blocks are combined into the
// total strictly in block order. The grouping is fixed by the ids alone (not by batches, threads
// or ranks), so data-parallel runs that reduce whole blocks on different ranks and fold them in
// block order get the same bits as one process.
inline constexpr std::uint64_t kMomentBlock = 256;
constexpr std::uint64_t moment_block(std::uint64_t excerpt_id) { return excerpt_id / kMomentBlock; }

struct Moments {
  std::uint64_t count = 0;  // number of values
  double mean = 0.0;
  double m2 = 0.0;  // sum (x - mean)^2
  double m3 = 0.0;  // sum (x - mean)^3
  double m4 = 0.0;  // sum (x - mean)^4
};

// The moments of the union of two disjoint data sets. An empty side returns the other side
// unchanged (bitwise), so the first excerpt of a stream is stored exactly as computed.
constexpr Moments combine_moments(const Moments& a, const Moments& b) {
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  const double na = static_cast<double>(a.count);
  const double nb = static_cast<double>(b.count);
  const double n = na + nb;
  const double delta = b.mean - a.mean;
  const double dn = delta / n;
  const double dn2 = dn * dn;
  const double nanb = na * nb;
  const double t1 = delta * dn * nanb;  // delta^2 na nb / n
  Moments r;
  r.count = a.count + b.count;
  r.mean = a.mean + nb * dn;
  r.m2 = a.m2 + b.m2 + t1;
  r.m3 = a.m3 + b.m3 + t1 * dn * (na - nb) + 3.0 * dn * (na * b.m2 - nb * a.m2);
  r.m4 = a.m4 + b.m4 + t1 * dn2 * (na * na - nanb + nb * nb) + 6.0 * dn2 * (na * na * b.m2 + nb * nb * a.m2) +
         4.0 * dn * (na * b.m3 - nb * a.m3);
  return r;
}

// The moments of one excerpt's T activations x[0], x[stride], ..., x[(T-1)*stride]: the
// normative per-excerpt rule (CaptureState vectorises it across neurons with the same operation
// order per neuron). Two passes in double, strictly in token order:
//   s = 0; for t: s += (double)x_t;  mean = s / T
//   for t: d = (double)x_t - mean; d2 = d*d; M2 += d2; M3 += d2*d; M4 += d2*d2   (all from 0)
constexpr Moments excerpt_moments(const float* x, std::uint64_t stride, std::uint32_t T) {
  Moments r;
  if (T == 0) return r;
  double s = 0.0;
  for (std::uint32_t t = 0; t < T; ++t) s += static_cast<double>(x[t * stride]);
  r.count = T;
  r.mean = s / static_cast<double>(T);
  for (std::uint32_t t = 0; t < T; ++t) {
    const double d = static_cast<double>(x[t * stride]) - r.mean;
    const double d2 = d * d;
    r.m2 += d2;
    r.m3 += d2 * d;
    r.m4 += d2 * d2;
  }
  return r;
}

// Population statistics (the normalisation scipy.stats uses by default: bias=True):
//   variance = M2/n, skewness = (M3/n) / variance^1.5, kurtosis = (M4/n) / variance^2 - 3 (excess).
// NaN when undefined (n = 0, or variance 0 for skewness and kurtosis).
inline double moments_variance(const Moments& m) {
  return m.count == 0 ? NAN : m.m2 / static_cast<double>(m.count);
}
inline double moments_skewness(const Moments& m) {
  const double var = moments_variance(m);
  if (!(var > 0.0)) return NAN;
  return (m.m3 / static_cast<double>(m.count)) / (var * std::sqrt(var));
}
inline double moments_kurtosis(const Moments& m) {
  const double var = moments_variance(m);
  if (!(var > 0.0)) return NAN;
  return (m.m4 / static_cast<double>(m.count)) / (var * var) - 3.0;
}

}  // namespace nexplain
