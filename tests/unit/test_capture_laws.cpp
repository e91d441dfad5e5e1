// Property tests of the reduction laws (docs/REDUCTION.md): random activation streams, compared
// against a brute-force oracle written straight from the definitions (sort everything, take the
// first K/R/Q) and against each other under re-batching, threading, splitting and merging.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "capture/capture_state.hpp"
#include "capture/float_order.hpp"
#include "capture/hash.hpp"
#include "capture/hist_bins.hpp"
#include "capture/histogram_state.hpp"

using namespace nexplain;

namespace {

// A stream of excerpts in stream order: ids increasing with gaps, acts [n_ex][T][N].
struct Stream {
  std::uint32_t N = 0, T = 0;
  std::vector<std::uint64_t> ids;
  std::vector<float> acts;

  std::size_t size() const { return ids.size(); }
  std::span<const float> acts_of(std::size_t first, std::size_t count) const {
    return {acts.data() + first * T * N, count * T * N};
  }
  std::span<const std::uint64_t> ids_of(std::size_t first, std::size_t count) const {
    return {ids.data() + first, count};
  }
  float at(std::size_t e, std::uint32_t t, std::uint32_t n) const { return acts[(e * T + t) * N + n]; }
};

float gelu_new(float x) {
  const double xd = x;
  return static_cast<float>(0.5 * xd * (1.0 + std::tanh(0.7978845608028654 * (xd + 0.044715 * xd * xd * xd))));
}

// GELU-like values, with deliberate ties (coarse quantisation on some neurons), spikes spread over
// many histogram octaves, and all-negative neurons (negative excerpt maxima).
Stream make_stream(std::uint64_t seed, std::uint32_t N, std::uint32_t T, std::size_t n_ex) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> gap(1, 4);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  Stream s;
  s.N = N;
  s.T = T;
  std::uint64_t id = seed % 1000;
  for (std::size_t e = 0; e < n_ex; ++e) {
    s.ids.push_back(id);
    id += static_cast<std::uint64_t>(gap(rng));
  }
  s.acts.resize(n_ex * T * N);
  for (std::size_t e = 0; e < n_ex; ++e)
    for (std::uint32_t t = 0; t < T; ++t)
      for (std::uint32_t n = 0; n < N; ++n) {
        float x = normal(rng);
        float v;
        if (n % 7 == 3) {
          v = -0.05f * std::fabs(x) - 0.001f;  // dead neuron: negative maxima
        } else if (n % 5 == 1) {
          v = std::round(gelu_new(x) * 2.0f) / 2.0f;  // many tied maxima
        } else {
          v = gelu_new(x);
          if (uni(rng) < 0.01f) v *= std::exp2(std::floor(uni(rng) * 14.0f) - 4.0f);  // spikes
        }
        s.acts[(e * T + t) * N + n] = v;
      }
  return s;
}

void feed(CaptureState& st, const Stream& s, std::size_t first, std::size_t count, std::size_t batch,
          unsigned threads = 1) {
  for (std::size_t b = first; b < first + count; b += batch) {
    const std::size_t c = std::min(batch, first + count - b);
    st.update(s.acts_of(b, c), s.ids_of(b, c), threads);
  }
}

template <typename V>
::testing::AssertionResult bytes_equal_vec(const V& a, const V& b, const char* name) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << name << ": sizes " << a.size() << " vs " << b.size();
  if (!a.empty() && std::memcmp(a.data(), b.data(), a.size() * sizeof(typename V::value_type)) != 0) {
    std::size_t i = 0;
    while (std::memcmp(&a[i], &b[i], sizeof(typename V::value_type)) == 0) ++i;
    return ::testing::AssertionFailure() << name << " differs first at element " << i << ": " << a[i] << " vs " << b[i];
  }
  return ::testing::AssertionSuccess();
}

#define NEXPLAIN_EACH_SAMPLE_ARRAY(X)                                                                             \
  X(topk_count) X(topk_ids) X(topk_max) X(topk_acts) X(random_count) X(random_ids) X(random_hash) X(random_max)   \
  X(random_acts) X(quantile_count) X(quantile_ids) X(quantile_hash) X(quantile_max) X(quantile_acts) X(boundaries) \
  X(hist)
#define NEXPLAIN_EACH_MOMENT_ARRAY(X) X(mom_count) X(mom_mean) X(mom_m2) X(mom_m3) X(mom_m4)

// Byte-identical states: every array, moments included.
::testing::AssertionResult states_identical(const CaptureState& x, const CaptureState& y) {
  const CaptureArrays& a = x.arrays();
  const CaptureArrays& b = y.arrays();
  if (a.n_neurons != b.n_neurons) return ::testing::AssertionFailure() << "n_neurons differ";
#define X(f)                                          \
  if (auto r = bytes_equal_vec(a.f, b.f, #f); !r) return r;
  NEXPLAIN_EACH_SAMPLE_ARRAY(X)
  NEXPLAIN_EACH_MOMENT_ARRAY(X)
#undef X
  return ::testing::AssertionSuccess();
}

// |a - b| <= 1e-9 * (|a| + scale): relative, where `scale` (the data's natural magnitude n*sigma^k)
// stops a central sum that is ~0 by cancellation from demanding an impossible relative accuracy.
bool close(double a, double b, double scale) { return std::fabs(a - b) <= 1e-9 * (std::fabs(a) + scale); }

::testing::AssertionResult moments_close(const CaptureArrays& a, const CaptureArrays& b) {
  for (std::size_t n = 0; n < a.n_neurons; ++n) {
    if (a.mom_count[n] != b.mom_count[n]) return ::testing::AssertionFailure() << "count differs at neuron " << n;
    const double cnt = static_cast<double>(a.mom_count[n]);
    const double sigma = cnt > 0 ? std::sqrt(std::fabs(a.mom_m2[n]) / cnt) : 0.0;
    const double s1 = sigma + 1e-300, s2 = cnt * sigma * sigma, s3 = s2 * sigma, s4 = s3 * sigma;
    if (!close(a.mom_mean[n], b.mom_mean[n], s1) || !close(a.mom_m2[n], b.mom_m2[n], s2) ||
        !close(a.mom_m3[n], b.mom_m3[n], s3) || !close(a.mom_m4[n], b.mom_m4[n], s4))
      return ::testing::AssertionFailure() << "moments differ at neuron " << n << ": mean " << a.mom_mean[n] << " vs "
                                           << b.mom_mean[n] << ", m2 " << a.mom_m2[n] << " vs " << b.mom_m2[n]
                                           << ", m3 " << a.mom_m3[n] << " vs " << b.mom_m3[n] << ", m4 "
                                           << a.mom_m4[n] << " vs " << b.mom_m4[n];
  }
  return ::testing::AssertionSuccess();
}

// Equal up to moment rounding: samples and histograms bitwise, moments close.
::testing::AssertionResult states_equivalent(const CaptureState& x, const CaptureState& y) {
  const CaptureArrays& a = x.arrays();
  const CaptureArrays& b = y.arrays();
  if (a.n_neurons != b.n_neurons) return ::testing::AssertionFailure() << "n_neurons differ";
#define X(f)                                          \
  if (auto r = bytes_equal_vec(a.f, b.f, #f); !r) return r;
  NEXPLAIN_EACH_SAMPLE_ARRAY(X)
#undef X
  return moments_close(a, b);
}

// ---- the oracle: the definitions, by brute force ----
struct Entry {
  std::uint64_t rank, id;
  std::size_t e;  // index in the stream
};

std::vector<Entry> first_k(std::vector<Entry> v, std::size_t k) {
  std::sort(v.begin(), v.end(), [](const Entry& a, const Entry& b) { return a.rank < b.rank || (a.rank == b.rank && a.id < b.id); });
  if (v.size() > k) v.resize(k);
  return v;
}

float excerpt_max(const Stream& s, std::size_t e, std::uint32_t n) {
  float m = s.at(e, 0, n);
  for (std::uint32_t t = 1; t < s.T; ++t) m = s.at(e, t, n) > m ? s.at(e, t, n) : m;
  return m;
}

::testing::AssertionResult list_matches(const Stream& s, std::uint32_t n, const std::vector<Entry>& want,
                                        std::uint32_t count, const std::uint64_t* ids, const float* max,
                                        const std::uint64_t* hash, const float* acts, const char* what) {
  if (count != want.size())
    return ::testing::AssertionFailure() << what << " of neuron " << n << ": count " << count << " vs " << want.size();
  for (std::size_t i = 0; i < want.size(); ++i) {
    const std::size_t e = want[i].e;
    if (ids[i] != want[i].id) return ::testing::AssertionFailure() << what << " of neuron " << n << " slot " << i << ": id " << ids[i] << " vs " << want[i].id;
    const float mx = excerpt_max(s, e, n);
    if (float_bits(max[i]) != float_bits(mx)) return ::testing::AssertionFailure() << what << ": max bits differ";
    if (hash && hash[i] != want[i].rank) return ::testing::AssertionFailure() << what << ": hash differs";
    for (std::uint32_t t = 0; t < s.T; ++t)
      if (float_bits(acts[i * s.T + t]) != float_bits(s.at(e, t, n)))
        return ::testing::AssertionFailure() << what << ": activation bits differ";
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult matches_oracle(const CaptureState& st, const Stream& s) {
  const CaptureParams& p = st.params();
  const CaptureArrays& a = st.arrays();
  const std::uint32_t B = p.n_quantile_bins(), m = p.n_boundaries();
  for (std::uint32_t n = 0; n < s.N; ++n) {
    std::vector<Entry> top, rnd;
    std::vector<std::vector<Entry>> qnt(B);
    std::vector<std::uint64_t> hist(kHistBins, 0);
    for (std::size_t e = 0; e < s.size(); ++e) {
      const float mx = excerpt_max(s, e, n);
      const std::uint64_t id = s.ids[e];
      ++hist[hist_bin_from_bits(float_bits(mx))];
      top.push_back({topk_rank(float_bits(mx)), id, e});
      rnd.push_back({random_hash(p.seed, p.layer, n, id), id, e});
      if (st.has_boundaries()) {
        std::uint32_t bin = 0;
        for (std::uint32_t k = 0; k < m; ++k) bin += static_cast<double>(mx) >= a.boundaries[n * m + k] ? 1 : 0;
        qnt[bin].push_back({quantile_hash(p.seed, p.layer, n, id), id, e});
      }
    }
    const std::size_t T = p.T;
    if (auto r = list_matches(s, n, first_k(top, p.K), a.topk_count[n], &a.topk_ids[n * p.K], &a.topk_max[n * p.K],
                              nullptr, &a.topk_acts[n * p.K * T], "top-K");
        !r)
      return r;
    if (auto r = list_matches(s, n, first_k(rnd, p.R), a.random_count[n], &a.random_ids[n * p.R],
                              &a.random_max[n * p.R], &a.random_hash[n * p.R], &a.random_acts[n * p.R * T], "random");
        !r)
      return r;
    for (std::uint32_t b = 0; b < B; ++b) {
      const std::size_t l = std::size_t{n} * B + b;
      if (auto r = list_matches(s, n, first_k(qnt[b], p.Q), a.quantile_count[l], &a.quantile_ids[l * p.Q],
                                &a.quantile_max[l * p.Q], &a.quantile_hash[l * p.Q], &a.quantile_acts[l * p.Q * T],
                                "quantile");
          !r)
        return r;
    }
    if (!std::equal(hist.begin(), hist.end(), a.hist.begin() + n * kHistBins))
      return ::testing::AssertionFailure() << "histogram of neuron " << n << " differs";
    // Moments: naive two-pass over all values in long double.
    long double sum = 0;
    const std::size_t cnt = s.size() * T;
    for (std::size_t e = 0; e < s.size(); ++e)
      for (std::uint32_t t = 0; t < T; ++t) sum += s.at(e, t, n);
    const long double mean = sum / static_cast<long double>(cnt);
    long double m2 = 0, m3 = 0, m4 = 0;
    for (std::size_t e = 0; e < s.size(); ++e)
      for (std::uint32_t t = 0; t < T; ++t) {
        const long double d = s.at(e, t, n) - mean;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
      }
    if (a.mom_count[n] != cnt) return ::testing::AssertionFailure() << "moment count of neuron " << n;
    const double sigma = std::sqrt(static_cast<double>(m2) / static_cast<double>(cnt));
    const double c = static_cast<double>(cnt);
    if (!close(static_cast<double>(mean), a.mom_mean[n], sigma) ||
        !close(static_cast<double>(m2), a.mom_m2[n], c * sigma * sigma) ||
        !close(static_cast<double>(m3), a.mom_m3[n], c * sigma * sigma * sigma) ||
        !close(static_cast<double>(m4), a.mom_m4[n], c * sigma * sigma * sigma * sigma))
      return ::testing::AssertionFailure() << "moments of neuron " << n << " differ from the naive two-pass: mean "
                                           << static_cast<double>(mean) << " vs " << a.mom_mean[n] << ", m3 "
                                           << static_cast<double>(m3) << " vs " << a.mom_m3[n];
  }
  return ::testing::AssertionSuccess();
}

struct Case {
  CaptureParams params;
  Stream stream;
  std::vector<double> boundaries;
};

// Random small parameters; boundaries from a histogram pre-pass over a hashed half of the stream.
Case make_case(std::uint64_t seed, bool with_boundaries = true, std::uint32_t N = 37) {
  std::mt19937_64 rng(seed * 7919 + 1);
  const auto pick = [&](std::uint32_t lo, std::uint32_t hi) {
    return std::uniform_int_distribution<std::uint32_t>(lo, hi)(rng);
  };
  Case c;
  c.params.T = pick(5, 64);
  c.params.K = pick(1, 6);
  c.params.R = pick(1, 5);
  c.params.Q = pick(1, 3);
  c.params.quantile_fractions = {0.5, 0.9};
  c.params.seed = seed * 0x1234567ULL;
  c.params.layer = pick(0, 47);
  c.stream = make_stream(seed, N, c.params.T, pick(60, 260));
  if (with_boundaries) {
    HistogramState pre(N);
    for (std::size_t e = 0; e < c.stream.size(); ++e)
      if (excerpt_in_prepass(c.params.seed, c.stream.ids[e], 0.5)) pre.update(c.stream.acts_of(e, 1), 1, c.params.T);
    c.boundaries = pre.boundaries(c.params.quantile_fractions);
  }
  return c;
}

class CaptureLaws : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(CaptureLaws, OnePassMatchesTheDefinitions) {
  for (bool with_boundaries : {true, false}) {
    Case c = make_case(GetParam(), with_boundaries);
    CaptureState st(c.params, c.stream.N, c.boundaries);
    feed(st, c.stream, 0, c.stream.size(), 16);
    EXPECT_TRUE(matches_oracle(st, c.stream)) << "T=" << c.params.T << " K=" << c.params.K << " R=" << c.params.R
                                              << " Q=" << c.params.Q << " boundaries=" << with_boundaries;
    EXPECT_EQ(st.excerpts_seen(), c.stream.size());
    if (!with_boundaries) {
      for (auto q : st.arrays().quantile_count) ASSERT_EQ(q, 0u);
    }
  }
}

TEST_P(CaptureLaws, BatchSizeDoesNotChangeOneByte) {
  Case c = make_case(GetParam());
  CaptureState b1(c.params, c.stream.N, c.boundaries), b7(c.params, c.stream.N, c.boundaries),
      b64(c.params, c.stream.N, c.boundaries), all(c.params, c.stream.N, c.boundaries);
  feed(b1, c.stream, 0, c.stream.size(), 1);
  feed(b7, c.stream, 0, c.stream.size(), 7);
  feed(b64, c.stream, 0, c.stream.size(), 64);
  feed(all, c.stream, 0, c.stream.size(), c.stream.size());
  EXPECT_TRUE(states_identical(b1, b7));
  EXPECT_TRUE(states_identical(b1, b64));
  EXPECT_TRUE(states_identical(b1, all));
}

TEST_P(CaptureLaws, ThreadsDoNotChangeOneByte) {
  // 37 neurons exercise unaligned tails; 600 neurons several cache blocks and many ranges.
  for (std::uint32_t N : {37u, 600u}) {
    Case c = make_case(GetParam(), true, N);
    const std::size_t n_ex = std::min<std::size_t>(c.stream.size(), N > 100 ? 40 : c.stream.size());
    CaptureState serial(c.params, N, c.boundaries);
    feed(serial, c.stream, 0, n_ex, 9);
    for (unsigned threads : {2u, 3u, 7u, 0u}) {
      CaptureState par(c.params, N, c.boundaries);
      feed(par, c.stream, 0, n_ex, 9, threads);
      EXPECT_TRUE(states_identical(serial, par)) << threads << " threads, N=" << N;
    }
    // A caller's own split, deliberately unaligned and in reverse order.
    CaptureState ranges(c.params, N, c.boundaries);
    const std::uint32_t cut1 = N / 3 + 1, cut2 = 2 * N / 3 + 5;
    for (std::size_t b = 0; b < n_ex; b += 9) {
      const std::size_t cnt = std::min<std::size_t>(9, n_ex - b);
      ranges.update_range(c.stream.acts_of(b, cnt), c.stream.ids_of(b, cnt), cut2, N);
      ranges.update_range(c.stream.acts_of(b, cnt), c.stream.ids_of(b, cnt), cut1, cut2);
      ranges.update_range(c.stream.acts_of(b, cnt), c.stream.ids_of(b, cnt), 0, cut1);
    }
    EXPECT_TRUE(states_identical(serial, ranges)) << "update_range, N=" << N;
  }
}

TEST_P(CaptureLaws, SplitIntoStatesAndMergedInAnyOrderEqualsOnePass) {
  Case c = make_case(GetParam());
  std::mt19937_64 rng(GetParam() + 99);
  CaptureState one(c.params, c.stream.N, c.boundaries);
  feed(one, c.stream, 0, c.stream.size(), 64);

  for (int trial = 0; trial < 4; ++trial) {
    // Random cut points -> contiguous chunks, each reduced by its own state with its own batch size.
    const std::size_t n_chunks = std::uniform_int_distribution<std::size_t>(2, 9)(rng);
    std::vector<std::size_t> cuts{0, c.stream.size()};
    for (std::size_t i = 1; i < n_chunks; ++i)
      cuts.push_back(std::uniform_int_distribution<std::size_t>(0, c.stream.size())(rng));
    std::sort(cuts.begin(), cuts.end());
    std::vector<CaptureState> parts;
    std::vector<std::size_t> order(cuts.size() - 1);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);  // chunks processed in random order
    for (std::size_t k : order) {
      parts.emplace_back(c.params, c.stream.N, c.boundaries);
      const std::size_t batch = std::uniform_int_distribution<std::size_t>(1, 20)(rng);
      feed(parts.back(), c.stream, cuts[k], cuts[k + 1] - cuts[k], batch);
    }
    // Merge in a random tree order: repeatedly merge two random states.
    while (parts.size() > 1) {
      std::shuffle(parts.begin(), parts.end(), rng);
      CaptureState b = std::move(parts.back());
      parts.pop_back();
      parts.back().merge(b);
    }
    EXPECT_TRUE(states_equivalent(one, parts.front())) << "trial " << trial << ", " << n_chunks << " chunks";
    EXPECT_TRUE(matches_oracle(parts.front(), c.stream)) << "trial " << trial;
  }
}

TEST_P(CaptureLaws, MergeIsCommutativeAndEmptyIsNeutral) {
  Case c = make_case(GetParam());
  const std::size_t half = c.stream.size() / 3;
  CaptureState a(c.params, c.stream.N, c.boundaries), b(c.params, c.stream.N, c.boundaries);
  feed(a, c.stream, 0, half, 5);
  feed(b, c.stream, half, c.stream.size() - half, 11);
  const CaptureState ab = merge(a, b), ba = merge(b, a);
  EXPECT_TRUE(states_equivalent(ab, ba));
  const CaptureState empty(c.params, c.stream.N, c.boundaries);
  EXPECT_TRUE(states_identical(merge(a, empty), a));  // bitwise: an empty side is returned as is
  EXPECT_TRUE(states_identical(merge(empty, a), a));
}

TEST_P(CaptureLaws, BatchesInAnyOrderKeepTheSameSamples) {
  // One state, batches arriving out of stream order (other ranks' ranges, resumes): the samples and
  // histograms are order-free; only moment rounding may move.
  Case c = make_case(GetParam());
  std::mt19937_64 rng(GetParam() + 5);
  std::vector<std::size_t> starts;
  for (std::size_t b = 0; b < c.stream.size(); b += 13) starts.push_back(b);
  std::shuffle(starts.begin(), starts.end(), rng);
  CaptureState st(c.params, c.stream.N, c.boundaries);
  for (std::size_t b : starts) {
    const std::size_t cnt = std::min<std::size_t>(13, c.stream.size() - b);
    st.update(c.stream.acts_of(b, cnt), c.stream.ids_of(b, cnt));
  }
  EXPECT_TRUE(matches_oracle(st, c.stream));
}

TEST_P(CaptureLaws, ExportedArraysRoundTripAndResume) {
  // A checkpoint: export the arrays mid-stream, rebuild, continue: byte-identical to never stopping.
  Case c = make_case(GetParam());
  const std::size_t cut = c.stream.size() / 2;
  CaptureState straight(c.params, c.stream.N, c.boundaries);
  feed(straight, c.stream, 0, c.stream.size(), 8);
  CaptureState first(c.params, c.stream.N, c.boundaries);
  feed(first, c.stream, 0, cut, 8);
  CaptureArrays saved = first.arrays();
  CaptureState resumed(c.params, std::move(saved));
  feed(resumed, c.stream, cut, c.stream.size() - cut, 8);
  CaptureState plain(c.params, c.stream.N, c.boundaries);
  feed(plain, c.stream, 0, cut, 8);
  feed(plain, c.stream, cut, c.stream.size() - cut, 8);
  EXPECT_TRUE(states_identical(resumed, plain));
  // 8 divides neither cut necessarily: the batch split differs from `straight`, the bytes do not.
  EXPECT_TRUE(states_identical(resumed, straight));
}

INSTANTIATE_TEST_SUITE_P(Seeds, CaptureLaws, ::testing::Values(1, 2, 3, 4, 5, 6, 7, 8));

}  // namespace
