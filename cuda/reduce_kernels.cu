// The device reduction: CaptureState::update (src/capture/capture_state.cpp) on the GPU, with the
// same results bit for bit. Two kernels per layer and batch:
//
//   excerpt_stats  one thread per (excerpt, neuron): the excerpt max (the normative fold of
//                  capture/excerpt_max.hpp) and the excerpt's local moments (the two-pass rule of
//                  capture/moments.hpp) into scratch arrays [B][N].
//   neuron_update  one thread per neuron, which owns that neuron's slice of every state array:
//                  combines the local moments per moment block (closed + open, as CaptureState)
//                  in excerpt order, counts the
//                  maxima into the histogram, tests every excerpt against the lists' thresholds as
//                  they were before the batch (as CaptureState does), and, for the rare lists
//                  with candidates, selects the best `cap` candidates in (rank, id) order and
//                  merges them back to front exactly as SampleList::merge_sorted, gathering a
//                  winner's T activations from the batch.
//
// And, for the MPI collect's moment blocks (docs/MPI.md), take_moments: one thread per neuron
// hands out the moments since the last take (CaptureState::take_moments) and empties them.
//
// Moments must reproduce the CPU's double arithmetic without fused multiply-adds. nvcc contracts
// a*b+c into an FMA by default (and the build cannot pass --fmad=false for one file), so every
// moment operation goes through StrictDouble, whose operators are the __dadd_rn/__dmul_rn
// intrinsics that are never contracted. The formulas below are moments.hpp's, token for token.
//
// Parallel list tests (the `tests` state of excerpt_stats, ForwardTuning::parallel_list_tests):
// the histogram counts and the threshold tests depend on no excerpt order (integer counts; the
// thresholds are the lists' before the batch), so excerpt_stats can do them too, one thread per
// (excerpt, neuron): the histogram with integer atomics, the tests into flags[e][n]. neuron_update
// then only walks the moment chain and compacts the flags into candidates. Same results bit for
// bit; what changes is that the per-excerpt dependent loads of a neuron's lists leave the serial
// per-neuron loop (bench/NOTES.md: the neuron update was the largest phase).
//
// Every thread's work is a __host__ __device__ function, so the same code also runs on the CPU
// (emulate_* below): tests check the algorithm bit for bit on machines without a GPU.
#include <cuda_bf16.h>

#include <cstring>

#include "capture/float_order.hpp"
#include "capture/hash.hpp"
#include "capture/hist_bins.hpp"
#include "capture/moments.hpp"
#include "cuda_check.hpp"
#include "kernels.hpp"

namespace nexplain::cuda::kernels {

namespace {

constexpr int kStatsThreads = 128;
constexpr int kNeuronThreads = 64;

#define NX_HD __host__ __device__ __forceinline__

NX_HD float load_f(const float* p, std::size_t i) { return p[i]; }
NX_HD float load_f(const __nv_bfloat16* p, std::size_t i) { return __bfloat162float(p[i]); }

NX_HD std::uint32_t bits_of(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

// ---------------------------------------------------------------- exact double arithmetic
// On the device: round-to-nearest intrinsics, never fused. On the host (emulation): plain double
// operations (x86-64 without -mfma never contracts).
struct SD {
  double v;
  NX_HD SD(double x = 0.0) : v(x) {}  // NOLINT: implicit on purpose, as a double literal
};
#ifdef __CUDA_ARCH__
NX_HD SD operator+(SD a, SD b) { return SD(__dadd_rn(a.v, b.v)); }
NX_HD SD operator-(SD a, SD b) { return SD(__dsub_rn(a.v, b.v)); }
NX_HD SD operator*(SD a, SD b) { return SD(__dmul_rn(a.v, b.v)); }
NX_HD SD operator/(SD a, SD b) { return SD(__ddiv_rn(a.v, b.v)); }
#else
NX_HD SD operator+(SD a, SD b) { return SD(a.v + b.v); }
NX_HD SD operator-(SD a, SD b) { return SD(a.v - b.v); }
NX_HD SD operator*(SD a, SD b) { return SD(a.v * b.v); }
NX_HD SD operator/(SD a, SD b) { return SD(a.v / b.v); }
#endif

struct DMoments {
  std::uint64_t count;
  SD mean, m2, m3, m4;
};

// capture/moments.hpp combine_moments, operation for operation.
__host__ __device__ DMoments combine(const DMoments& a, const DMoments& b) {
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  const SD na = static_cast<double>(a.count);
  const SD nb = static_cast<double>(b.count);
  const SD n = na + nb;
  const SD delta = b.mean - a.mean;
  const SD dn = delta / n;
  const SD dn2 = dn * dn;
  const SD nanb = na * nb;
  const SD t1 = delta * dn * nanb;  // delta^2 na nb / n
  DMoments r;
  r.count = a.count + b.count;
  r.mean = a.mean + nb * dn;
  r.m2 = a.m2 + b.m2 + t1;
  r.m3 = a.m3 + b.m3 + t1 * dn * (na - nb) + SD(3.0) * dn * (na * b.m2 - nb * a.m2);
  r.m4 = a.m4 + b.m4 + t1 * dn2 * (na * na - nanb + nb * nb) + SD(6.0) * dn2 * (na * na * b.m2 + nb * nb * a.m2) +
         SD(4.0) * dn * (na * b.m3 - nb * a.m3);
  return r;
}

// ---------------------------------------------------------------- sample lists
NX_HD bool rank_before(std::uint64_t ra, std::uint64_t ia, std::uint64_t rb, std::uint64_t ib) {
  return ra < rb || (ra == rb && ia < ib);
}

// One bounded list of one neuron inside the state arrays (capture/sample_list.hpp's SampleList).
struct List {
  std::uint64_t* ids;
  float* max;
  std::uint64_t* hash;  // nullptr for top-K: the rank derives from max
  float* acts;          // [cap][T]
  std::uint32_t* count;
  std::uint32_t cap;
  std::uint32_t T;

  NX_HD std::uint64_t rank(std::uint32_t i) const { return hash ? hash[i] : topk_rank(bits_of(max[i])); }
  NX_HD bool admits(std::uint64_t r, std::uint64_t id) const {
    if (*count < cap) return true;
    if (cap == 0) return false;
    return rank_before(r, id, rank(cap - 1), ids[cap - 1]);
  }
};

NX_HD List topk_list(const StateView& s, std::size_t n) {
  return {s.topk_ids + n * s.K, s.topk_max + n * s.K, nullptr, s.topk_acts + n * s.K * s.T, s.topk_count + n, s.K, s.T};
}
NX_HD List random_list(const StateView& s, std::size_t n) {
  return {s.random_ids + n * s.R,          s.random_max + n * s.R, s.random_hash + n * s.R,
          s.random_acts + n * s.R * s.T,   s.random_count + n,     s.R,
          s.T};
}
NX_HD List quantile_list(const StateView& s, std::size_t n, std::uint32_t bin) {
  const std::size_t l = n * s.bins + bin;
  return {s.quantile_ids + l * s.Q,        s.quantile_max + l * s.Q, s.quantile_hash + l * s.Q,
          s.quantile_acts + l * s.Q * s.T, s.quantile_count + l,     s.Q,
          s.T};
}

// capture/quantiles.hpp quantile_bin: the number of boundaries b with b <= (double)max.
NX_HD std::uint32_t quantile_bin(float max, const double* b, std::uint32_t m) {
  std::uint32_t bin = 0;
  for (std::uint32_t i = 0; i < m; ++i) bin += static_cast<double>(max) >= b[i] ? 1u : 0u;
  return bin;
}

// Candidate entries in the scratch: excerpt index (low 32 bits), list flags (bits 32..39),
// quantile bin (bits 40..63).
constexpr std::uint64_t kFlagTop = 1, kFlagRandom = 2, kFlagQuantile = 4;
NX_HD std::uint64_t pack_cand(std::uint32_t e, std::uint64_t flags, std::uint64_t bin) {
  return static_cast<std::uint64_t>(e) | (flags << 32) | (bin << 40);
}

// Everything one neuron's thread needs to know about the batch.
template <typename A>
struct NeuronBatch {
  std::size_t n, N;
  int B;
  std::uint32_t T;
  const A* acts;
  const std::uint64_t* ids;
  const std::uint64_t* words;
  const float* maxima;
  const std::uint64_t* cand;
  std::uint32_t nc;
  std::uint32_t* sel;

  NX_HD float max_of(std::uint32_t e) const { return maxima[static_cast<std::size_t>(e) * N + n]; }
  // The rank of excerpt e in a list: topk_rank of its max (top) or its hash under `prefix`.
  NX_HD std::uint64_t rank_of(std::uint32_t e, bool top, std::uint64_t prefix) const {
    return top ? topk_rank(bits_of(max_of(e))) : hash_absorb_mixed(prefix, words[e]);
  }
};

// Activation copies of the merge, in chunks of kChunk values: all loads of a chunk are issued
// before its stores, so they overlap instead of each waiting for the previous store (the
// compiler cannot reorder them itself: source and destination may alias as far as it knows).
constexpr std::size_t kChunk = 16;

// dst[0..T) = src[0..T) (an old entry moving to another slot; the two never overlap).
NX_HD void copy_slot(float* dst, const float* src, std::size_t T) {
  for (std::size_t t0 = 0; t0 < T; t0 += kChunk) {
    float v[kChunk];
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (std::size_t u = 0; u < kChunk; ++u) v[u] = t0 + u < T ? src[t0 + u] : 0.0f;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (std::size_t u = 0; u < kChunk; ++u)
      if (t0 + u < T) dst[t0 + u] = v[u];
  }
}

// dst[t] = acts[(row0 + t) * N + n], t < T: a winner's activations, column n of the batch.
template <typename A>
NX_HD void gather_column(float* dst, const A* acts, std::size_t row0, std::size_t N, std::size_t n, std::size_t T) {
  for (std::size_t t0 = 0; t0 < T; t0 += kChunk) {
    float v[kChunk];
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (std::size_t u = 0; u < kChunk; ++u) v[u] = t0 + u < T ? load_f(acts, (row0 + t0 + u) * N + n) : 0.0f;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (std::size_t u = 0; u < kChunk; ++u)
      if (t0 + u < T) dst[t0 + u] = v[u];
  }
}

// A list's admission threshold as it was before the batch, held in registers: the same
// decisions as List::admits on the unchanged list.
struct Threshold {
  bool always = false, never = false;
  std::uint64_t rank = 0, id = 0;
  NX_HD static Threshold of(const List& L) {
    Threshold t;
    t.always = *L.count < L.cap;
    t.never = !t.always && L.cap == 0;
    if (!t.always && !t.never) {
      t.rank = L.rank(L.cap - 1);
      t.id = L.ids[L.cap - 1];
    }
    return t;
  }
  NX_HD bool admits(std::uint64_t r, std::uint64_t i) const { return always || (!never && rank_before(r, i, rank, id)); }
};

// Selects the best min(cap, matching candidates) candidates of one list in ascending (rank, id)
// order (into b.sel[k * N + n]) and merges them into the list as SampleList::merge_sorted does.
// Candidates beyond the best `cap` could never be kept, so leaving them out changes nothing.
template <typename A>
__host__ __device__ void select_and_merge(const NeuronBatch<A>& b, const List& L, std::uint64_t flag, std::uint64_t bin,
                                 bool top, std::uint64_t prefix) {
  std::uint32_t ns = 0;
  bool have_prev = false;
  std::uint64_t prev_r = 0, prev_id = 0;
  while (ns < L.cap) {
    bool found = false;
    std::uint64_t best_r = 0, best_id = 0;
    std::uint32_t best_e = 0;
    for (std::uint32_t j = 0; j < b.nc; ++j) {
      const std::uint64_t c = b.cand[static_cast<std::size_t>(j) * b.N + b.n];
      if (!((c >> 32) & flag)) continue;
      if (flag == kFlagQuantile && (c >> 40) != bin) continue;
      const auto e = static_cast<std::uint32_t>(c);
      const std::uint64_t r = b.rank_of(e, top, prefix);
      const std::uint64_t id = b.ids[e];
      if (have_prev && !rank_before(prev_r, prev_id, r, id)) continue;  // already selected
      if (!found || rank_before(r, id, best_r, best_id)) {
        found = true;
        best_r = r;
        best_id = id;
        best_e = e;
      }
    }
    if (!found) break;
    b.sel[static_cast<std::size_t>(ns) * b.N + b.n] = best_e;
    ++ns;
    have_prev = true;
    prev_r = best_r;
    prev_id = best_id;
  }
  if (ns == 0) return;

  // Back-to-front merge in place: an old entry only moves to a higher slot, and a slot is written
  // only after its old entry has moved (k >= i throughout), so nothing is overwritten unread.
  const std::uint32_t n_old = *L.count;
  const std::uint32_t total = n_old + ns;
  const std::uint32_t keep = total < L.cap ? total : L.cap;
  std::uint32_t i = n_old, j = ns, k = total;
  const std::size_t T = L.T;
  while (j > 0) {
    --k;
    const std::uint32_t e = b.sel[static_cast<std::size_t>(j - 1) * b.N + b.n];
    const std::uint64_t r = b.rank_of(e, top, prefix);
    const std::uint64_t id = b.ids[e];
    const bool take_old = i > 0 && rank_before(r, id, L.rank(i - 1), L.ids[i - 1]);
    if (take_old) {
      --i;
      if (k < keep && k != i) {
        L.ids[k] = L.ids[i];
        L.max[k] = L.max[i];
        if (L.hash) L.hash[k] = L.hash[i];
        copy_slot(L.acts + k * T, L.acts + i * T, T);
      }
    } else {
      --j;
      if (k < keep) {
        L.ids[k] = id;
        L.max[k] = b.max_of(e);
        if (L.hash) L.hash[k] = r;
        gather_column(L.acts + k * T, b.acts, static_cast<std::size_t>(e) * b.T, b.N, b.n, T);
      }
    }
  }
  *L.count = keep;
}

// ---------------------------------------------------------------- per-thread work
// One excerpt's histogram count and list tests for neuron n (parallel list tests): what the loop
// of neuron_update_thread does for excerpt e, against the lists as they were before the batch.
NX_HD void excerpt_tests_thread(const StateView& s, const std::uint64_t* ids, const std::uint64_t* words, float mx,
                                const ScratchView& w, std::size_t e, std::uint32_t n) {
  const std::size_t N = s.N;
  const std::uint32_t bits = bits_of(mx);
  std::uint64_t* h = s.hist + static_cast<std::size_t>(n) * kHistBins + hist_bin_from_bits(bits);
#ifdef __CUDA_ARCH__
  atomicAdd(reinterpret_cast<unsigned long long*>(h), 1ull);
#else
  ++*h;
#endif
  const std::uint64_t id = ids[e];
  std::uint64_t flags = 0, bin = 0;
  if (Threshold::of(topk_list(s, n)).admits(topk_rank(bits), id)) flags |= kFlagTop;
  if (Threshold::of(random_list(s, n)).admits(hash_absorb_mixed(hash_prefix(s.seed, s.layer, n), words[e]), id))
    flags |= kFlagRandom;
  if (s.quantiles) {
    bin = quantile_bin(mx, s.boundaries + static_cast<std::size_t>(n) * s.m, s.m);
    const std::uint64_t qp = hash_prefix(s.seed ^ kQuantileSeedSalt, s.layer, n);
    if (quantile_list(s, n, static_cast<std::uint32_t>(bin)).admits(hash_absorb_mixed(qp, words[e]), id))
      flags |= kFlagQuantile;
  }
  w.flags[e * N + n] = flags ? pack_cand(static_cast<std::uint32_t>(e), flags, bin) : 0;
}

template <typename A>
__host__ __device__ void excerpt_stats_thread(const A* __restrict__ acts, std::uint32_t T, std::uint32_t N,
                                              bool moments, const ScratchView& w, std::size_t e, std::uint32_t n) {
  const std::size_t NN = N;
  const std::size_t base = e * T * NN + n;  // acts[(e*T + t)*N + n] = base + t*N
  float mx = load_f(acts, base);
  SD s = 0.0;
  for (std::uint32_t t = 0; t < T; ++t) {
    const float x = load_f(acts, base + t * NN);
    s = s + SD(static_cast<double>(x));
    mx = x > mx ? x : mx;  // the normative fold (not fmaxf: NaN and -0.0 must agree with the CPU)
  }
  const std::size_t o = e * NN + n;
  w.maxima[o] = mx;
  if (!moments) return;
  const SD mean = s / SD(static_cast<double>(T));
  SD m2 = 0.0, m3 = 0.0, m4 = 0.0;
  for (std::uint32_t t = 0; t < T; ++t) {
    const SD d = SD(static_cast<double>(load_f(acts, base + t * NN))) - mean;
    const SD d2 = d * d;
    m2 = m2 + d2;
    m3 = m3 + d2 * d;
    m4 = m4 + d2 * d2;
  }
  w.lmean[o] = mean.v;
  w.lm2[o] = m2.v;
  w.lm3[o] = m3.v;
  w.lm4[o] = m4.v;
}

template <typename A>
__host__ __device__ void neuron_update_thread(const StateView& s, const A* __restrict__ acts, int B,
                                              const std::uint64_t* __restrict__ ids,
                                              const std::uint64_t* __restrict__ words, const ScratchView& w,
                                              std::size_t n, bool tests_done) {
  const std::size_t N = s.N;

  // One pass over the batch's excerpts, in order, doing two independent things (interleaved so
  // that the moments' long chain of double operations overlaps the loads of the other):
  //  1. moments: CaptureState's moment-block rule (capture_state.cpp excerpt_block): each
  //     excerpt's local moments combined into the open block's in excerpt order; an excerpt of
  //     another block first folds the open block into the closed total (combine with an empty
  //     side returns the other side bitwise, so no special case for the first block);
  //  2. histogram and threshold tests against the lists as they were before this batch.
  DMoments closed{s.mom_count[n], s.mom_mean[n], s.mom_m2[n], s.mom_m3[n], s.mom_m4[n]};
  DMoments open{s.mom_open_count[n], s.mom_open_mean[n], s.mom_open_m2[n], s.mom_open_m3[n], s.mom_open_m4[n]};
  std::uint64_t open_block = s.mom_open_block[n];
  const std::uint64_t rp = hash_prefix(s.seed, s.layer, n);
  const std::uint64_t qp = hash_prefix(s.seed ^ kQuantileSeedSalt, s.layer, n);
  const List top = topk_list(s, n);
  const List rnd = random_list(s, n);
  const Threshold top_th = Threshold::of(top);
  const Threshold rnd_th = Threshold::of(rnd);
  std::uint64_t* __restrict__ hist = s.hist + n * kHistBins;
  const double* bounds = s.quantiles ? s.boundaries + n * s.m : nullptr;
  const float* __restrict__ maxima = w.maxima;
  const double* __restrict__ lmean = w.lmean;
  const double* __restrict__ lm2 = w.lm2;
  const double* __restrict__ lm3 = w.lm3;
  const double* __restrict__ lm4 = w.lm4;
  std::uint32_t nc = 0;
  std::uint64_t any = 0;
  // Histogram counts are integers, so they may be added in any grouping: runs of equal bins
  // (maxima of a neuron cluster in a few bins) are added at once.
  std::uint32_t run_bin = 0;
  std::uint64_t run_count = 0;
  for (int e = 0; e < B; ++e) {
    {
      const std::size_t o = static_cast<std::size_t>(e) * N + n;
      const DMoments local{s.T, lmean[o], lm2[o], lm3[o], lm4[o]};
      const std::uint64_t block = ids[e] / kMomentBlock;  // moment_block(id), not callable on the device
      if (block != open_block) {
        closed = combine(closed, open);
        open = local;  // = combine(empty, local), bitwise
        open_block = block;
      } else {
        open = combine(open, local);
      }
    }
    if (tests_done) {  // excerpt_stats counted the histogram and flagged the candidates
      const std::uint64_t c = w.flags[static_cast<std::size_t>(e) * N + n];
      if (c) {
        w.cand[static_cast<std::size_t>(nc) * N + n] = c;
        ++nc;
        any |= (c >> 32) & 0xffu;
      }
      continue;
    }
    const float mx = maxima[static_cast<std::size_t>(e) * N + n];
    const std::uint32_t bits = bits_of(mx);
    const std::uint32_t hb = hist_bin_from_bits(bits);
    if (hb != run_bin) {
      if (run_count) hist[run_bin] += run_count;
      run_bin = hb;
      run_count = 0;
    }
    ++run_count;
    const std::uint64_t id = ids[e];
    std::uint64_t flags = 0, bin = 0;
    if (top_th.admits(topk_rank(bits), id)) flags |= kFlagTop;
    if (rnd_th.admits(hash_absorb_mixed(rp, words[e]), id)) flags |= kFlagRandom;
    if (s.quantiles) {
      bin = quantile_bin(mx, bounds, s.m);
      if (quantile_list(s, n, static_cast<std::uint32_t>(bin)).admits(hash_absorb_mixed(qp, words[e]), id))
        flags |= kFlagQuantile;
    }
    if (flags) {
      w.cand[static_cast<std::size_t>(nc) * N + n] = pack_cand(static_cast<std::uint32_t>(e), flags, bin);
      ++nc;
      any |= flags;
    }
  }
  if (run_count) hist[run_bin] += run_count;
  s.mom_count[n] = closed.count;
  s.mom_mean[n] = closed.mean.v;
  s.mom_m2[n] = closed.m2.v;
  s.mom_m3[n] = closed.m3.v;
  s.mom_m4[n] = closed.m4.v;
  s.mom_open_count[n] = open.count;
  s.mom_open_mean[n] = open.mean.v;
  s.mom_open_m2[n] = open.m2.v;
  s.mom_open_m3[n] = open.m3.v;
  s.mom_open_m4[n] = open.m4.v;
  s.mom_open_block[n] = open_block;
  if (nc == 0) return;

  // 3. The lists that have candidates: select the best and merge.
  const NeuronBatch<A> b{n, N, B, s.T, acts, ids, words, w.maxima, w.cand, nc, w.sel};
  if (any & kFlagTop) select_and_merge(b, top, kFlagTop, 0, true, 0);
  if (any & kFlagRandom) select_and_merge(b, rnd, kFlagRandom, 0, false, rp);
  if (any & kFlagQuantile)
    for (std::uint32_t q = 0; q < s.bins; ++q) select_and_merge(b, quantile_list(s, n, q), kFlagQuantile, q, false, qp);
}

NX_HD void hist_update_thread(std::uint64_t* __restrict__ hist, const float* __restrict__ maxima, int B,
                              std::uint32_t N, std::size_t n) {
  std::uint64_t* h = hist + n * kHistBins;
  for (int e = 0; e < B; ++e) ++h[hist_bin_from_bits(bits_of(maxima[static_cast<std::size_t>(e) * N + n]))];
}

// CaptureState::take_moments for neuron n (capture_state.cpp): the CPU returns its stored total,
// which every update, merge and fold leaves equal to combine_moments(closed, open); here the total
// is not stored, so it is that combine, with the same operations (the first take of a block that
// never closed is open alone: combine with an empty side returns the other side bitwise). Then
// the state holds no moments and no open block, as the CPU's, so the next excerpt opens a block.
NX_HD void take_moments_thread(const StateView& s, Moments* __restrict__ out, std::size_t n) {
  const DMoments closed{s.mom_count[n], s.mom_mean[n], s.mom_m2[n], s.mom_m3[n], s.mom_m4[n]};
  const DMoments open{s.mom_open_count[n], s.mom_open_mean[n], s.mom_open_m2[n], s.mom_open_m3[n], s.mom_open_m4[n]};
  const DMoments total = combine(closed, open);
  out[n].count = total.count;
  out[n].mean = total.mean.v;
  out[n].m2 = total.m2.v;
  out[n].m3 = total.m3.v;
  out[n].m4 = total.m4.v;
  s.mom_count[n] = 0;
  s.mom_mean[n] = s.mom_m2[n] = s.mom_m3[n] = s.mom_m4[n] = 0.0;
  s.mom_open_count[n] = 0;
  s.mom_open_mean[n] = s.mom_open_m2[n] = s.mom_open_m3[n] = s.mom_open_m4[n] = 0.0;
  s.mom_open_block[n] = kNoOpenBlock;
}

// ---------------------------------------------------------------- kernels
template <typename A>
__global__ void excerpt_stats_kernel(const A* __restrict__ acts, std::uint32_t T, std::uint32_t N, bool moments,
                                     ScratchView w) {
  const std::uint32_t n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  excerpt_stats_thread(acts, T, N, moments, w, blockIdx.y, n);
}

template <typename A>
__global__ void excerpt_stats_tests_kernel(const A* __restrict__ acts, std::uint32_t T, StateView s,
                                           const std::uint64_t* __restrict__ ids,
                                           const std::uint64_t* __restrict__ words, ScratchView w) {
  const std::uint32_t n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= s.N) return;
  excerpt_stats_thread(acts, T, s.N, true, w, blockIdx.y, n);
  excerpt_tests_thread(s, ids, words, w.maxima[static_cast<std::size_t>(blockIdx.y) * s.N + n], w, blockIdx.y, n);
}

template <typename A>
__global__ void neuron_update_kernel(StateView s, const A* __restrict__ acts, int B, const std::uint64_t* __restrict__ ids,
                                     const std::uint64_t* __restrict__ words, ScratchView w, bool tests_done) {
  const std::uint32_t n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= s.N) return;
  neuron_update_thread(s, acts, B, ids, words, w, n, tests_done);
}

__global__ void hist_update_kernel(std::uint64_t* __restrict__ hist, const float* __restrict__ maxima, int B,
                                   std::uint32_t N) {
  const std::uint32_t n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  hist_update_thread(hist, maxima, B, N, n);
}

__global__ void take_moments_kernel(StateView s, Moments* __restrict__ out) {
  const std::uint32_t n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= s.N) return;
  take_moments_thread(s, out, n);
}

unsigned blocks_for(std::uint32_t N, int threads) { return (N + threads - 1) / threads; }

}  // namespace

void excerpt_stats(const void* acts, bool bf16, int B, std::uint32_t T, std::uint32_t N, bool moments,
                   const ScratchView& w, cudaStream_t s) {
  if (B <= 0 || N == 0) return;
  if (B > 65535) throw_logic_error(__FILE__, __LINE__, "excerpt_stats: more than 65535 excerpts in one batch");
  const dim3 grid(blocks_for(N, kStatsThreads), static_cast<unsigned>(B));
  if (bf16)
    excerpt_stats_kernel<<<grid, kStatsThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(acts), T, N, moments, w);
  else
    excerpt_stats_kernel<<<grid, kStatsThreads, 0, s>>>(static_cast<const float*>(acts), T, N, moments, w);
  NX_CUDA_LAUNCHED("excerpt_stats");
}

void excerpt_stats_tests(const StateView& st, const void* acts, bool bf16, int B, const std::uint64_t* ids,
                         const std::uint64_t* words, const ScratchView& w, cudaStream_t s) {
  if (B <= 0 || st.N == 0) return;
  if (B > 65535) throw_logic_error(__FILE__, __LINE__, "excerpt_stats_tests: more than 65535 excerpts in one batch");
  const dim3 grid(blocks_for(st.N, kStatsThreads), static_cast<unsigned>(B));
  if (bf16)
    excerpt_stats_tests_kernel<<<grid, kStatsThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(acts), st.T, st, ids,
                                                               words, w);
  else
    excerpt_stats_tests_kernel<<<grid, kStatsThreads, 0, s>>>(static_cast<const float*>(acts), st.T, st, ids, words, w);
  NX_CUDA_LAUNCHED("excerpt_stats_tests");
}

void neuron_update(const StateView& st, const void* acts, bool bf16, int B, const std::uint64_t* ids,
                   const std::uint64_t* words, const ScratchView& w, cudaStream_t s, bool tests_done) {
  if (B <= 0 || st.N == 0) return;
  const unsigned grid = blocks_for(st.N, kNeuronThreads);
  if (bf16)
    neuron_update_kernel<<<grid, kNeuronThreads, 0, s>>>(st, static_cast<const __nv_bfloat16*>(acts), B, ids, words, w,
                                                         tests_done);
  else
    neuron_update_kernel<<<grid, kNeuronThreads, 0, s>>>(st, static_cast<const float*>(acts), B, ids, words, w,
                                                         tests_done);
  NX_CUDA_LAUNCHED("neuron_update");
}

void hist_update(std::uint64_t* hist, const float* maxima, int B, std::uint32_t N, cudaStream_t s) {
  if (B <= 0 || N == 0) return;
  hist_update_kernel<<<blocks_for(N, kNeuronThreads), kNeuronThreads, 0, s>>>(hist, maxima, B, N);
  NX_CUDA_LAUNCHED("hist_update");
}

void take_moments(const StateView& st, Moments* out, cudaStream_t s) {
  if (st.N == 0) return;
  take_moments_kernel<<<blocks_for(st.N, kNeuronThreads), kNeuronThreads, 0, s>>>(st, out);
  NX_CUDA_LAUNCHED("take_moments");
}

// ---------------------------------------------------------------- host emulation

void emulate_excerpt_stats(const void* acts, bool bf16, int B, std::uint32_t T, std::uint32_t N, bool moments,
                           const ScratchView& w) {
  for (int e = 0; e < B; ++e)
    for (std::uint32_t n = 0; n < N; ++n) {
      if (bf16)
        excerpt_stats_thread(static_cast<const __nv_bfloat16*>(acts), T, N, moments, w, static_cast<std::size_t>(e), n);
      else
        excerpt_stats_thread(static_cast<const float*>(acts), T, N, moments, w, static_cast<std::size_t>(e), n);
    }
}

void emulate_excerpt_stats_tests(const StateView& st, const void* acts, bool bf16, int B, const std::uint64_t* ids,
                                 const std::uint64_t* words, const ScratchView& w) {
  // Excerpts in reverse order: the device runs them in any order, and the result must not care.
  for (int e = B - 1; e >= 0; --e)
    for (std::uint32_t n = 0; n < st.N; ++n) {
      const auto ee = static_cast<std::size_t>(e);
      if (bf16)
        excerpt_stats_thread(static_cast<const __nv_bfloat16*>(acts), st.T, st.N, true, w, ee, n);
      else
        excerpt_stats_thread(static_cast<const float*>(acts), st.T, st.N, true, w, ee, n);
      excerpt_tests_thread(st, ids, words, w.maxima[ee * st.N + n], w, ee, n);
    }
}

void emulate_neuron_update(const StateView& st, const void* acts, bool bf16, int B, const std::uint64_t* ids,
                           const std::uint64_t* words, const ScratchView& w, bool tests_done) {
  for (std::uint32_t n = 0; n < st.N; ++n) {
    if (bf16)
      neuron_update_thread(st, static_cast<const __nv_bfloat16*>(acts), B, ids, words, w, n, tests_done);
    else
      neuron_update_thread(st, static_cast<const float*>(acts), B, ids, words, w, n, tests_done);
  }
}

void emulate_hist_update(std::uint64_t* hist, const float* maxima, int B, std::uint32_t N) {
  for (std::uint32_t n = 0; n < N; ++n) hist_update_thread(hist, maxima, B, N, n);
}

void emulate_take_moments(const StateView& st, Moments* out) {
  for (std::uint32_t n = 0; n < st.N; ++n) take_moments_thread(st, out, n);
}

}  // namespace nexplain::cuda::kernels
