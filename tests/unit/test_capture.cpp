// Hand-checked cases of the per-neuron reduction (docs/REDUCTION.md): hash and binning
// definitions pinned to fixed values (the CUDA backend must reproduce them bit for bit), top-K tie
// rules, short streams, negative values, moments against a naive computation, quantile boundaries
// against exact quantiles, and the errors a driver bug would trigger.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "capture/capture_state.hpp"
#include "capture/float_order.hpp"
#include "capture/hash.hpp"
#include "capture/hist_bins.hpp"
#include "capture/histogram_state.hpp"
#include "capture/moments.hpp"
#include "capture/quantiles.hpp"
#include "core/error.hpp"

using namespace nexplain;

namespace {

// ---------------------------------------------------------------- hash
// splitmix64 seeded with 0 yields 0xe220a8397b1dcdaf first: mix64 is the published finaliser.
static_assert(mix64(kHashGolden) == 0xe220a8397b1dcdafULL);
static_assert(mix64(0) == 0);

TEST(CaptureHash, PinnedValues) {
  // Changing any of these changes every random and quantile sample ever recorded.
  EXPECT_EQ(hash64(0, 0, 0, 0), 0x3b9d11eb55856bafULL);
  EXPECT_EQ(hash64(42, 5, 1234, 987654321), 0xedaa6359d807b61bULL);
  EXPECT_EQ(random_hash(42, 5, 1234, 987654321), 0xedaa6359d807b61bULL);
  EXPECT_EQ(quantile_hash(42, 5, 1234, 987654321), 0xd23efd3ead5c38acULL);
  static_assert(hash64(1, 2, 3, 4) == hash_absorb(hash_prefix(1, 2, 3), 4));
  static_assert(hash_absorb(77, 5) == hash_absorb_mixed(77, hash_word(5)));
}

TEST(CaptureHash, InputsAreNotInterchangeable) {
  EXPECT_NE(hash64(0, 0, 1, 2), hash64(0, 0, 2, 1));
  EXPECT_NE(hash64(0, 1, 0, 0), hash64(0, 0, 1, 0));
  EXPECT_NE(hash64(1, 0, 0, 0), hash64(0, 0, 0, 1));
  EXPECT_NE(random_hash(3, 4, 5, 6), quantile_hash(3, 4, 5, 6));
}

TEST(CaptureHash, PrepassSubsetDependsOnTheIdOnly) {
  int selected = 0;
  for (std::uint64_t id = 0; id < 100000; ++id) {
    selected += excerpt_in_prepass(7, id, 0.25);
    ASSERT_FALSE(excerpt_in_prepass(7, id, 0.0));
    ASSERT_TRUE(excerpt_in_prepass(7, id, 1.0));
  }
  EXPECT_EQ(selected, 25014);  // pinned; ~25% as asked
  // Pinned pattern for ids 0..9 at rate 0.25: 0010011100.
  const bool want[10] = {false, false, true, false, false, true, true, true, false, false};
  for (std::uint64_t id = 0; id < 10; ++id) EXPECT_EQ(excerpt_in_prepass(7, id, 0.25), want[id]) << id;
  // Nested: a lower rate selects a subset of a higher rate's excerpts.
  for (std::uint64_t id = 0; id < 10000; ++id)
    if (excerpt_in_prepass(9, id, 0.1)) {
      ASSERT_TRUE(excerpt_in_prepass(9, id, 0.3));
    }
}

// ---------------------------------------------------------------- float order, histogram bins
TEST(CaptureFloatOrder, IsNumericOrderAndTotal) {
  const float v[] = {-std::numeric_limits<float>::infinity(), -3.5f, -1e-30f, -0.0f, 0.0f, 1e-30f, 0.17f, 2.0f,
                     std::numeric_limits<float>::infinity()};
  for (std::size_t i = 1; i < std::size(v); ++i)
    EXPECT_LT(float_order_key(float_bits(v[i - 1])), float_order_key(float_bits(v[i]))) << v[i - 1] << " " << v[i];
  EXPECT_GT(topk_rank(float_bits(-1.0f)), topk_rank(float_bits(1.0f)));  // rank ascending = value descending
}

TEST(CaptureHistBins, HandValues) {
  const auto bin = [](float x) { return hist_bin_from_bits(float_bits(x)); };
  EXPECT_EQ(kHistBins, 82u);
  EXPECT_EQ(bin(-0.17f), 0u);
  EXPECT_EQ(bin(-0.0f), 0u);
  EXPECT_EQ(bin(0.0f), 0u);
  EXPECT_EQ(bin(std::ldexp(1.0f, -11)), 0u);
  EXPECT_EQ(bin(std::nextafter(std::ldexp(1.0f, -10), 0.0f)), 0u);
  EXPECT_EQ(bin(std::ldexp(1.0f, -10)), 1u);
  EXPECT_EQ(bin(1.0f), 41u);  // 1 + 4 * (0 + 10)
  EXPECT_EQ(bin(1.2499999f), 41u);
  EXPECT_EQ(bin(1.25f), 42u);
  EXPECT_EQ(bin(1.75f), 44u);
  EXPECT_EQ(bin(3.0f), 47u);  // 2^1 * 1.5: 1 + 4 * (1 + 10) + 2
  EXPECT_EQ(bin(1023.9f), 80u);
  EXPECT_EQ(bin(1024.0f), 81u);
  EXPECT_EQ(bin(std::numeric_limits<float>::infinity()), 81u);
  // Every bin's lower edge lands in it and the float just below lands in the bin before.
  for (std::uint32_t b = 1; b < kHistBins; ++b) {
    const float lo = static_cast<float>(hist_bin_lower(b));
    ASSERT_EQ(static_cast<double>(lo), hist_bin_lower(b));  // edges are exact floats
    EXPECT_EQ(bin(lo), b);
    EXPECT_EQ(bin(std::nextafter(lo, 0.0f)), b - 1);
    EXPECT_EQ(hist_bin_upper(b - 1), hist_bin_lower(b));
  }
}

// ---------------------------------------------------------------- top-K by hand
// Builds [n_ex * T][N] activations from per-(excerpt, neuron) token lists.
std::vector<float> acts_from(const std::vector<std::vector<std::vector<float>>>& by_excerpt_neuron_token,
                             std::uint32_t N, std::uint32_t T) {
  std::vector<float> a(by_excerpt_neuron_token.size() * T * N);
  for (std::size_t e = 0; e < by_excerpt_neuron_token.size(); ++e)
    for (std::uint32_t n = 0; n < N; ++n)
      for (std::uint32_t t = 0; t < T; ++t) a[(e * T + t) * N + n] = by_excerpt_neuron_token[e][n][t];
  return a;
}

CaptureParams small_params(std::uint32_t T, std::uint32_t K) {
  CaptureParams p;
  p.T = T;
  p.K = K;
  p.R = 2;
  p.Q = 1;
  p.seed = 11;
  p.layer = 3;
  return p;
}

TEST(CaptureTopK, TiesGoToTheLowerExcerptId) {
  // One neuron, T = 3, K = 2. Maxima: id 10 -> 5, id 20 -> 7, id 30 -> 7, id 40 -> 5, id 50 -> 7.
  CaptureState st(small_params(3, 2), 1);
  const std::vector<std::uint64_t> ids1{10, 30, 50}, ids2{20, 40};
  st.update(acts_from({{{1, 5, 2}}, {{7, 0, 7}}, {{-1, 7, 6}}}, 1, 3), ids1);
  st.update(acts_from({{{7, 1, 2}}, {{5, 5, 5}}}, 1, 3), ids2);
  const auto& a = st.arrays();
  ASSERT_EQ(a.topk_count[0], 2u);
  EXPECT_EQ(a.topk_ids[0], 20u);  // 7 with the lowest id, though it arrived after 30 and 50
  EXPECT_EQ(a.topk_ids[1], 30u);
  EXPECT_EQ(a.topk_max[0], 7.0f);
  EXPECT_EQ(a.topk_max[1], 7.0f);
  EXPECT_EQ(std::vector<float>(a.topk_acts.begin(), a.topk_acts.begin() + 3), (std::vector<float>{7, 1, 2}));
  EXPECT_EQ(std::vector<float>(a.topk_acts.begin() + 3, a.topk_acts.begin() + 6), (std::vector<float>{7, 0, 7}));
  // The same through the record view.
  const NeuronRecord r = st.record(0);
  ASSERT_EQ(r.top.size(), 2u);
  EXPECT_EQ(r.top[0].excerpt_id, 20u);
  EXPECT_EQ(r.top[1].acts, (std::vector<float>{7, 0, 7}));
  EXPECT_EQ(r.layer, 3u);
}

TEST(CaptureTopK, FewerExcerptsThanKAndNegativeValues) {
  // Two neurons, T = 2, K = 5, only 3 excerpts; neuron 1 is all negative.
  CaptureState st(small_params(2, 5), 2);
  const std::vector<std::uint64_t> ids{100, 101, 205};
  st.update(acts_from({{{0.5f, 0.25f}, {-0.1f, -0.05f}},
                       {{0.75f, -0.17f}, {-0.02f, -0.16f}},
                       {{0.1f, 0.2f}, {-0.07f, -0.08f}}},
                      2, 2),
            ids);
  const auto& a = st.arrays();
  EXPECT_EQ(a.topk_count[0], 3u);
  EXPECT_EQ(a.topk_count[1], 3u);
  EXPECT_EQ((std::vector<std::uint64_t>(a.topk_ids.begin(), a.topk_ids.begin() + 5)),
            (std::vector<std::uint64_t>{101, 100, 205, kNoExcerpt, kNoExcerpt}));
  EXPECT_EQ((std::vector<std::uint64_t>(a.topk_ids.begin() + 5, a.topk_ids.end())),
            (std::vector<std::uint64_t>{101, 100, 205, kNoExcerpt, kNoExcerpt}));
  EXPECT_EQ(a.topk_max[5], -0.02f);
  EXPECT_EQ(a.topk_max[6], -0.05f);
  EXPECT_EQ(a.topk_max[7], -0.07f);
  EXPECT_EQ(a.topk_max[8], -std::numeric_limits<float>::infinity());  // canonical unused slot
  EXPECT_EQ(a.topk_acts[5 * 2 + 0], -0.02f);
  EXPECT_EQ(a.topk_acts[5 * 2 + 1], -0.16f);
  EXPECT_EQ(a.topk_acts[8 * 2], 0.0f);
  // R = 2: the two smallest hashes among the three, by definition.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> h;
  for (auto id : ids) h.push_back({random_hash(11, 3, 1, id), id});
  std::sort(h.begin(), h.end());
  EXPECT_EQ(a.random_count[1], 2u);
  EXPECT_EQ(a.random_ids[2], h[0].second);
  EXPECT_EQ(a.random_hash[2], h[0].first);
  EXPECT_EQ(a.random_ids[3], h[1].second);
  // All negative maxima sit in histogram bin 0.
  EXPECT_EQ(a.hist[kHistBins + 0], 3u);
  // No boundaries given: no quantile samples.
  EXPECT_FALSE(st.has_boundaries());
  for (auto c : a.quantile_count) EXPECT_EQ(c, 0u);
}

TEST(CaptureQuantiles, SamplesComeFromTheirBins) {
  // One neuron, T = 1, boundaries {1.0, 2.0}: bin = number of boundaries <= max.
  CaptureParams p = small_params(1, 1);
  p.quantile_fractions = {0.5, 0.9};
  p.Q = 2;
  CaptureState st(p, 1, {1.0, 2.0});
  std::vector<std::uint64_t> ids;
  std::vector<float> acts;
  for (std::uint64_t id = 0; id < 30; ++id) {
    ids.push_back(id);
    acts.push_back(static_cast<float>(id % 3) + (id % 2 ? 0.0f : 0.5f));  // 0.5 1 2.5 0 1.5 2 ...
  }
  st.update(acts, ids);
  const NeuronRecord r = st.record(0);
  ASSERT_EQ(r.quantile.size(), 3u);
  for (std::uint32_t b = 0; b < 3; ++b) {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> want;
    for (std::uint64_t id = 0; id < 30; ++id) {
      const float x = acts[id];
      const std::uint32_t bin = (x >= 1.0f) + (x >= 2.0f);
      if (bin == b) want.push_back({quantile_hash(p.seed, p.layer, 0, id), id});
    }
    std::sort(want.begin(), want.end());
    ASSERT_EQ(r.quantile[b].size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(r.quantile[b][i].excerpt_id, want[i].second);
      EXPECT_EQ(r.quantile[b][i].hash, want[i].first);
    }
  }
  EXPECT_EQ(r.boundaries, (std::vector<double>{1.0, 2.0}));
}

// ---------------------------------------------------------------- moments
TEST(CaptureMoments, MatchANaiveTwoPassAndScipyDefinitions) {
  std::mt19937_64 rng(5);
  std::gamma_distribution<double> gamma(2.0, 1.5);  // skewed: M3 well away from 0
  const std::uint32_t T = 17, n_ex = 301;
  CaptureParams p = small_params(T, 3);
  CaptureState st(p, 1);
  std::vector<float> all;
  for (std::uint32_t e = 0; e < n_ex; ++e) {
    std::vector<float> a(T);
    for (auto& x : a) x = static_cast<float>(gamma(rng) - 2.0);
    all.insert(all.end(), a.begin(), a.end());
    const std::vector<std::uint64_t> id{e};
    st.update(a, id);
  }
  long double s = 0;
  for (float x : all) s += x;
  const long double n = all.size(), mean = s / n;
  long double m2 = 0, m3 = 0, m4 = 0;
  for (float x : all) {
    const long double d = x - mean;
    m2 += d * d;
    m3 += d * d * d;
    m4 += d * d * d * d;
  }
  const NeuronRecord r = st.record(0);
  EXPECT_EQ(r.stats.count, all.size());
  EXPECT_NEAR(r.stats.mean, static_cast<double>(mean), 1e-12 * std::sqrt(static_cast<double>(m2 / n)));
  EXPECT_NEAR(r.stats.m2 / static_cast<double>(m2), 1.0, 1e-12);
  EXPECT_NEAR(r.stats.m3 / static_cast<double>(m3), 1.0, 1e-11);
  EXPECT_NEAR(r.stats.m4 / static_cast<double>(m4), 1.0, 1e-12);
  const double var = static_cast<double>(m2 / n);
  EXPECT_NEAR(r.stats.variance / var, 1.0, 1e-12);
  EXPECT_NEAR(r.stats.skewness, static_cast<double>(m3 / n) / std::pow(var, 1.5), 1e-10);
  EXPECT_NEAR(r.stats.kurtosis, static_cast<double>(m4 / n) / (var * var) - 3.0, 1e-10);
  // Gamma(k = 2): skewness 2/sqrt(2) = 1.414, excess kurtosis 6/k = 3 (loosely: a sample of 5117).
  EXPECT_NEAR(r.stats.skewness, 1.414, 0.25);
  EXPECT_NEAR(r.stats.kurtosis, 3.0, 1.2);
}

TEST(CaptureMoments, HandValuesAndDegenerateCases) {
  // {1, 2, 3, 4}: mean 2.5, M2 = 5, M3 = 0, M4 = 2 * (1.5^4 + 0.5^4) = 10.25.
  const float x[] = {1, 2, 3, 4};
  const Moments m = excerpt_moments(x, 1, 4);
  EXPECT_EQ(m.count, 4u);
  EXPECT_EQ(m.mean, 2.5);
  EXPECT_EQ(m.m2, 5.0);
  EXPECT_EQ(m.m3, 0.0);
  EXPECT_EQ(m.m4, 10.25);
  EXPECT_EQ(moments_variance(m), 1.25);
  EXPECT_EQ(moments_kurtosis(m), 10.25 / 4 / (1.25 * 1.25) - 3.0);
  // Combining halves gives the same numbers.
  const Moments h = combine_moments(excerpt_moments(x, 1, 2), excerpt_moments(x + 2, 1, 2));
  EXPECT_EQ(h.count, 4u);
  EXPECT_DOUBLE_EQ(h.mean, 2.5);
  EXPECT_DOUBLE_EQ(h.m2, 5.0);
  EXPECT_NEAR(h.m3, 0.0, 1e-15);
  EXPECT_DOUBLE_EQ(h.m4, 10.25);
  // Constant data: skewness and kurtosis undefined (NaN), variance 0; empty: all NaN.
  const float c[] = {3, 3, 3};
  const Moments k = excerpt_moments(c, 1, 3);
  EXPECT_EQ(moments_variance(k), 0.0);
  EXPECT_TRUE(std::isnan(moments_skewness(k)));
  EXPECT_TRUE(std::isnan(moments_kurtosis(k)));
  EXPECT_TRUE(std::isnan(moments_variance(Moments{})));
  // An empty side is the identity, bitwise.
  const Moments e = combine_moments(Moments{}, m);
  EXPECT_EQ(e.mean, m.mean);
  EXPECT_EQ(e.m4, m.m4);
}

// ---------------------------------------------------------------- quantile boundaries
TEST(CaptureQuantileBoundaries, InterpolateInsideTheBin) {
  std::vector<std::uint64_t> counts(kHistBins, 0);
  counts[hist_bin_from_bits(float_bits(1.0f))] = 4;  // [1, 1.25)
  const std::vector<double> f{0.5, 0.75};
  const auto b = quantile_boundaries(counts, 1, f);
  EXPECT_EQ(b[0], 1.125);  // r = 2 of 4: half way
  EXPECT_EQ(b[1], 1.1875);
  // An empty neuron: +inf, so every excerpt falls in quantile bin 0.
  std::vector<std::uint64_t> two(2 * kHistBins, 0);
  two[kHistBins + 41] = 1;
  const auto e = quantile_boundaries(two, 2, f);
  EXPECT_TRUE(std::isinf(e[0]) && e[0] > 0);
  EXPECT_EQ(e[2], 1.125);  // r = 0.5 of a single count
}

TEST(CaptureQuantileBoundaries, WithinABinWidthOfExactQuantiles) {
  // Log-normal excerpt maxima spanning many octaves (plus some negatives in bin 0).
  std::mt19937_64 rng(17);
  std::lognormal_distribution<float> logn(0.0f, 1.2f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const std::uint32_t N = 3;
  const std::size_t n_ex = 200000;
  std::vector<float> maxima(n_ex * N);
  for (std::size_t i = 0; i < maxima.size(); ++i) maxima[i] = u(rng) < 0.1f ? -0.01f : logn(rng);
  HistogramState h(N);
  h.update_maxima(maxima, n_ex);
  EXPECT_EQ(h.excerpts_seen(), n_ex);
  const std::vector<double> f{0.5, 0.9, 0.99, 0.999};
  const auto b = h.boundaries(f);
  for (std::uint32_t n = 0; n < N; ++n) {
    std::vector<float> col(n_ex);
    for (std::size_t e = 0; e < n_ex; ++e) col[e] = maxima[e * N + n];
    std::sort(col.begin(), col.end());
    for (std::size_t k = 0; k < f.size(); ++k) {
      const float exact = col[static_cast<std::size_t>(f[k] * n_ex)];
      const std::uint32_t bin = hist_bin_from_bits(float_bits(exact));
      const double width = hist_bin_upper(bin) - hist_bin_lower(bin);
      EXPECT_NEAR(b[n * f.size() + k], exact, width) << "neuron " << n << " fraction " << f[k];
      // And the fraction of maxima below the boundary is close to f (the point of the exercise).
      const double below = static_cast<double>(std::lower_bound(col.begin(), col.end(), b[n * f.size() + k]) - col.begin()) / n_ex;
      EXPECT_NEAR(below, f[k], 0.1 * (1.0 - f[k]) + 1e-4) << "neuron " << n << " fraction " << f[k];
    }
  }
}

TEST(CaptureHistogramState, MergeAndActivationUpdateAgree) {
  const std::uint32_t N = 4, T = 3;
  std::vector<float> acts(5 * T * N);
  for (std::size_t i = 0; i < acts.size(); ++i) acts[i] = static_cast<float>((i * 37) % 23) / 7.0f - 0.5f;
  HistogramState whole(N), a(N), b(N);
  whole.update(acts, 5, T);
  a.update(std::span<const float>(acts).subspan(0, 2 * T * N), 2, T);
  b.update(std::span<const float>(acts).subspan(2 * T * N), 3, T);
  b.merge(a);
  EXPECT_EQ(whole.counts(), b.counts());
  EXPECT_EQ(whole.excerpts_seen(), 5u);
  // The main state's histogram is the same thing.
  CaptureParams p = small_params(T, 2);
  CaptureState st(p, N);
  const std::vector<std::uint64_t> ids{1, 2, 3, 4, 5};
  st.update(acts, ids);
  EXPECT_EQ(st.arrays().hist, whole.counts());
}

// ---------------------------------------------------------------- errors a driver bug would hit
TEST(CaptureErrors, BadBatchesAndMismatchedMerges) {
  CaptureParams p = small_params(2, 2);
  CaptureState st(p, 3);
  const std::vector<float> acts(2 * 2 * 3, 1.0f);
  const std::vector<std::uint64_t> dup{5, 5}, down{6, 5}, ok{5, 6}, reserved{1, kNoExcerpt};
  EXPECT_THROW(st.update(acts, dup), Error);
  EXPECT_THROW(st.update(acts, down), Error);
  EXPECT_THROW(st.update(acts, reserved), Error);
  EXPECT_THROW(st.update(std::span<const float>(acts).subspan(1), ok), Error);
  EXPECT_THROW(st.update_range(acts, ok, 2, 4), Error);
  EXPECT_NO_THROW(st.update(acts, ok));
  EXPECT_THROW(st.merge(st), Error);
  CaptureParams q = p;
  q.seed = 12;
  EXPECT_THROW(st.merge(CaptureState(q, 3)), Error);
  EXPECT_THROW(st.merge(CaptureState(p, 4)), Error);
  p.quantile_fractions = {0.5};
  EXPECT_THROW(CaptureState(p, 3, {1.0, 2.0}), Error);  // 3 neurons x 1 boundary expected
  CaptureState with(p, 3, {1.0, 2.0, 3.0}), other(p, 3, {1.0, 2.0, 3.5});
  EXPECT_THROW(with.merge(other), Error);
  p.quantile_fractions = {0.9, 0.5};
  EXPECT_THROW(p.validate(), Error);
  p.quantile_fractions = {0.5, 1.0};
  EXPECT_THROW(p.validate(), Error);
  p.quantile_fractions = {0.5};
  p.T = 0;
  EXPECT_THROW(p.validate(), Error);
  // Arrays of the wrong shape are refused by name.
  CaptureArrays a = CaptureArrays::empty(small_params(2, 2), 3);
  a.topk_acts.pop_back();
  try {
    CaptureState bad(small_params(2, 2), std::move(a));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("topk_acts"), std::string::npos) << e.what();
  }
}

TEST(CaptureArrays, ShapesAndBytes) {
  CaptureParams p;  // defaults: T 64, K 20, R 20, Q 5, 4 fractions
  const CaptureArrays a = CaptureArrays::empty(p, 10);
  EXPECT_EQ(a.topk_acts.size(), 10u * 20 * 64);
  EXPECT_EQ(a.quantile_acts.size(), 10u * 5 * 5 * 64);
  EXPECT_EQ(a.quantile_count.size(), 10u * 5);
  EXPECT_EQ(a.hist.size(), 10u * kHistBins);
  EXPECT_TRUE(a.boundaries.empty());
  // Per neuron: acts (20 + 20 + 25) * 64 * 4 B dominate.
  EXPECT_GT(a.bytes(), 10u * 65 * 64 * 4);
  EXPECT_LT(a.bytes(), 10u * 65 * 64 * 4 + 10u * 3000);
}

}  // namespace
