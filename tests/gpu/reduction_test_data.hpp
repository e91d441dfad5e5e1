#pragma once
// Shared by the gpu tests: synthetic activation streams that stress every corner of the reduction
// (ties, negative and -0.0 maxima, constant neurons, spikes over many octaves, 64-bit ids) and a
// state comparison that is bitwise for everything except the moment sums; the moment-block
// stream and plan of the take_moments tests.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "capture/capture_arrays.hpp"
#include "capture/histogram_state.hpp"
#include "capture/moments.hpp"
#include "capture/params.hpp"
#include "cuda_engine.hpp"

namespace nexplain::gputest {

// ------------------------------------------------------------------ synthetic activations

// Excerpts in stream order: ids increasing with gaps (above 2^32, to exercise 64-bit ids),
// acts [n_ex][T][N] with deliberate ties, negative maxima, -0.0, constant neurons and spikes.
struct Stream {
  std::uint32_t N = 0, T = 0;
  std::vector<std::uint64_t> ids;
  std::vector<float> acts;
  std::size_t size() const { return ids.size(); }
  const float* acts_of(std::size_t first) const { return acts.data() + first * T * N; }
  std::size_t values(std::size_t count) const { return count * T * N; }
};

// The capture parameters of the reduction tests (device and host emulation alike).
inline CaptureParams reduction_params() {
  CaptureParams p;
  p.T = 24;
  p.K = 7;
  p.R = 6;
  p.Q = 3;
  p.quantile_fractions = {0.3, 0.7, 0.95};
  p.seed = 1234;
  p.layer = 5;
  return p;
}

// A stream's activations as both sides of a reduction test see them. With bf16 they are rounded
// first: `acts` holds the rounded values (the CPU state's input), `acts_bf16` their bits (the
// device's). With boundaries, quantile boundaries from a pre-pass over the first 64 excerpts.
struct ReductionInputs {
  std::vector<float> acts;
  std::vector<std::uint16_t> acts_bf16;
  std::vector<double> bounds;
};

inline ReductionInputs reduction_inputs(const CaptureParams& p, const Stream& s, bool with_boundaries, bool bf16) {
  ReductionInputs in;
  in.acts = s.acts;
  if (bf16) {
    in.acts_bf16.resize(in.acts.size());
    for (std::size_t i = 0; i < in.acts.size(); ++i) {
      in.acts_bf16[i] = cuda::float_to_bf16_bits(in.acts[i]);
      in.acts[i] = cuda::bf16_bits_to_float(in.acts_bf16[i]);
    }
  }
  if (with_boundaries) {
    HistogramState pre(s.N);
    const std::size_t n_pre = std::min<std::size_t>(64, s.size());
    pre.update(std::span<const float>(in.acts.data(), s.values(n_pre)), n_pre, s.T);
    in.bounds = pre.boundaries(p.quantile_fractions);
  }
  return in;
}

inline float gelu_new(float x) {
  const double xd = x;
  return static_cast<float>(0.5 * xd * (1.0 + std::tanh(0.7978845608028654 * (xd + 0.044715 * xd * xd * xd))));
}

inline Stream make_stream(std::uint64_t seed, std::uint32_t N, std::uint32_t T, std::size_t n_ex) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> gap(1, 4);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  Stream s;
  s.N = N;
  s.T = T;
  std::uint64_t id = (std::uint64_t{1} << 33) + seed % 1000;
  for (std::size_t e = 0; e < n_ex; ++e) {
    s.ids.push_back(id);
    id += static_cast<std::uint64_t>(gap(rng));
  }
  s.acts.resize(n_ex * T * N);
  for (std::size_t e = 0; e < n_ex; ++e)
    for (std::uint32_t t = 0; t < T; ++t)
      for (std::uint32_t n = 0; n < N; ++n) {
        const float x = normal(rng);
        float v;
        if (n % 11 == 0) {
          v = 0.25f;  // constant neuron: every maximum ties, variance 0
        } else if (n % 7 == 3) {
          v = -0.05f * std::fabs(x) - 0.001f;  // dead neuron: negative maxima
        } else if (n % 13 == 5) {
          v = x > 0.0f ? -0.0f : -0.01f;  // maxima of -0.0
        } else if (n % 5 == 1) {
          v = std::round(gelu_new(x) * 2.0f) / 2.0f;  // many tied maxima
        } else {
          v = gelu_new(x);
          if (uni(rng) < 0.01f) v *= std::exp2(std::floor(uni(rng) * 14.0f) - 4.0f);  // spikes
        }
        s.acts[(static_cast<std::size_t>(e) * T + t) * N + n] = v;
      }
  return s;
}

// The moment-block stream of the take_moments tests: 60 excerpts in each of the moment blocks
// b0, b0 + 2, b0 + 3 and b0 + 5 (b0 = 2^25, so ids pass 2^33), with gaps inside and between the
// blocks, as one MPI rank sees them (it reduces every D-th block).
inline Stream make_block_stream(std::uint64_t seed, std::uint32_t N, std::uint32_t T) {
  Stream s = make_stream(seed, N, T, 240);
  constexpr std::uint64_t kBase = std::uint64_t{1} << 25, kBlocks[] = {0, 2, 3, 5};
  for (std::size_t e = 0; e < s.size(); ++e)
    s.ids[e] = (kBase + kBlocks[e / 60]) * kMomentBlock + (e % 60) * 4 + e % 3;
  return s;
}

// A batch of make_block_stream and how many take_moments follow it. Takes at block ends (the
// MPI driver's pattern), mid-block, twice in a row (the second is empty) and none for a batch
// that crosses a block boundary (excerpts 110..129: blocks b0 + 2 and b0 + 3).
struct TakeStep {
  std::size_t batch;
  int takes;
};
inline std::vector<TakeStep> take_plan() {
  return {{25, 0}, {35, 1}, {50, 0}, {20, 0}, {5, 1}, {45, 2}, {30, 0}, {30, 0}};
}

// Per-neuron moments, every bit (count, mean, M2, M3, M4).
inline ::testing::AssertionResult moments_identical(const std::vector<Moments>& got, const std::vector<Moments>& want,
                                                    const std::string& what) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": " << got.size() << " neurons, expected " << want.size();
  std::size_t bad = 0, first = 0;
  for (std::size_t n = 0; n < got.size(); ++n)
    if (std::memcmp(&got[n], &want[n], sizeof(Moments)) != 0 && bad++ == 0) first = n;
  if (bad == 0) return ::testing::AssertionSuccess();
  const Moments& g = got[first];
  const Moments& w = want[first];
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size()
                                       << " neurons differ; first neuron " << first << ": count " << g.count << " vs "
                                       << w.count << ", mean " << g.mean << " vs " << w.mean << ", m2 " << g.m2
                                       << " vs " << w.m2 << ", m3 " << g.m3 << " vs " << w.m3 << ", m4 " << g.m4
                                       << " vs " << w.m4;
}

// ------------------------------------------------------------------ state comparisons

template <typename V>
inline std::size_t count_bit_mismatches(const V& a, const V& b, std::size_t* first) {
  if (a.size() != b.size()) return std::max(a.size(), b.size()) + 1;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(typename V::value_type)) != 0) {
      if (bad == 0 && first) *first = i;
      ++bad;
    }
  return bad;
}

#define NEXPLAIN_EXACT_ARRAYS(X)                                                                                  \
  X(topk_count) X(topk_ids) X(topk_max) X(topk_acts) X(random_count) X(random_ids) X(random_hash) X(random_max)   \
  X(random_acts) X(quantile_count) X(quantile_ids) X(quantile_hash) X(quantile_max) X(quantile_acts) X(boundaries) \
  X(hist) X(mom_count)

// Everything bitwise except the four moment sums, which must agree to `moment_tol` relative
// (scaled as in the CPU law tests) and are reported as bitwise-identical or not.
inline ::testing::AssertionResult states_match(const CaptureArrays& a, const CaptureArrays& b, double moment_tol,
                                        const char* what) {
  if (a.n_neurons != b.n_neurons) return ::testing::AssertionFailure() << what << ": n_neurons differ";
  std::string errors;
#define X(f)                                                                                            \
  {                                                                                                     \
    std::size_t first = 0;                                                                              \
    const std::size_t bad = count_bit_mismatches(a.f, b.f, &first);                                     \
    if (bad) errors += std::string(" ") + #f + ": " + std::to_string(bad) + " differ (first at " + std::to_string(first) + ");"; \
  }
  NEXPLAIN_EXACT_ARRAYS(X)
#undef X
  std::size_t bitwise = 0, total = 0;
  double worst = 0.0;
  for (std::size_t n = 0; n < a.n_neurons; ++n) {
    const double cnt = static_cast<double>(a.mom_count[n]);
    const double sigma = cnt > 0 ? std::sqrt(std::fabs(a.mom_m2[n]) / cnt) : 0.0;
    const double s1 = sigma + 1e-300, s2 = cnt * sigma * sigma, s3 = s2 * sigma, s4 = s3 * sigma;
    const double va[4] = {a.mom_mean[n], a.mom_m2[n], a.mom_m3[n], a.mom_m4[n]};
    const double vb[4] = {b.mom_mean[n], b.mom_m2[n], b.mom_m3[n], b.mom_m4[n]};
    const double sc[4] = {s1, s2, s3, s4};
    for (int k = 0; k < 4; ++k) {
      ++total;
      if (std::memcmp(&va[k], &vb[k], sizeof(double)) == 0) {
        ++bitwise;
        continue;
      }
      const double rel = std::fabs(va[k] - vb[k]) / (std::fabs(va[k]) + sc[k] + 1e-300);
      worst = std::max(worst, rel);
    }
  }
  std::printf("  %s: moments bitwise identical %zu / %zu, worst relative difference %.3e\n", what, bitwise, total,
              worst);
  if (worst > moment_tol) errors += " moments: worst relative difference " + std::to_string(worst) + ";";
  if (!errors.empty()) return ::testing::AssertionFailure() << what << ":" << errors;
  return ::testing::AssertionSuccess();
}

// The moment-block split must agree too (open block index and both accumulators, bitwise).
inline ::testing::AssertionResult splits_match(const CaptureArrays& a, const CaptureArrays& b) {
  const auto same = [](const std::vector<Moments>& x, const std::vector<Moments>& y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(Moments)) == 0;
  };
  if (a.mom_open_block != b.mom_open_block) return ::testing::AssertionFailure() << "mom_open_block differs";
  if (!same(a.mom_closed, b.mom_closed)) return ::testing::AssertionFailure() << "mom_closed differs";
  if (!same(a.mom_open, b.mom_open)) return ::testing::AssertionFailure() << "mom_open differs";
  return ::testing::AssertionSuccess();
}

}  // namespace nexplain::gputest
