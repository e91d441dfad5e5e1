#include "capture/capture_state.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <thread>
#include <utility>

#include "capture/float_order.hpp"
#include "capture/hash.hpp"
#include "capture/hist_bins.hpp"
#include "capture/moments.hpp"
#include "capture/quantiles.hpp"
#include "capture/sample_list.hpp"
#include "core/error.hpp"

namespace nexplain {

using capture_detail::Candidate;
using capture_detail::rank_before;
using capture_detail::SampleList;

namespace {

// Neurons per cache block in update. Each of an excerpt's T rows is read in runs of 4 KiB, long
// enough for the hardware prefetchers (256-neuron runs were 1.4x slower, memory-latency bound),
// and the block's T rows (64 x 4 KiB = 256 KiB) stay in L2 for the second moment pass.
constexpr std::uint32_t kBlock = 1024;
// Thread ranges start at multiples of 16 neurons, so no two threads write one cache line of the
// per-neuron arrays (counts, moments).
constexpr std::uint32_t kRangeAlign = 16;

bool candidate_less(const Candidate& a, const Candidate& b) { return rank_before(a.rank, a.id, b.rank, b.id); }

// Views of neuron n's lists inside the arrays.
SampleList topk_list(CaptureArrays& a, const CaptureParams& p, std::size_t n) {
  return {a.topk_ids.data() + n * p.K, a.topk_max.data() + n * p.K, nullptr,
          a.topk_acts.data() + n * p.K * p.T, a.topk_count.data() + n, p.K, p.T};
}
SampleList random_list(CaptureArrays& a, const CaptureParams& p, std::size_t n) {
  return {a.random_ids.data() + n * p.R, a.random_max.data() + n * p.R, a.random_hash.data() + n * p.R,
          a.random_acts.data() + n * p.R * p.T, a.random_count.data() + n, p.R, p.T};
}
SampleList quantile_list(CaptureArrays& a, const CaptureParams& p, std::size_t n, std::size_t bin) {
  const std::size_t list = n * p.n_quantile_bins() + bin;
  return {a.quantile_ids.data() + list * p.Q, a.quantile_max.data() + list * p.Q,
          a.quantile_hash.data() + list * p.Q, a.quantile_acts.data() + list * p.Q * p.T,
          a.quantile_count.data() + list, p.Q, p.T};
}

// The entries of a list of another state as (already sorted) candidates.
void list_candidates(const std::uint64_t* ids, const float* max, const std::uint64_t* hash, const float* acts,
                     std::uint32_t count, std::uint32_t T, std::vector<Candidate>& out) {
  out.clear();
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::uint64_t rank = hash ? hash[i] : topk_rank(float_bits(max[i]));
    out.push_back({rank, ids[i], hash ? hash[i] : 0, max[i], acts + std::size_t{i} * T, 1});
  }
}

Moments load_moments(const CaptureArrays& a, std::size_t n) {
  return {a.mom_count[n], a.mom_mean[n], a.mom_m2[n], a.mom_m3[n], a.mom_m4[n]};
}
void store_moments(CaptureArrays& a, std::size_t n, const Moments& m) {
  a.mom_count[n] = m.count;
  a.mom_mean[n] = m.mean;
  a.mom_m2[n] = m.m2;
  a.mom_m3[n] = m.m3;
  a.mom_m4[n] = m.m4;
}

std::vector<ExcerptRecord> list_record(const std::uint64_t* ids, const float* max, const std::uint64_t* hash,
                                       const float* acts, std::uint32_t count, std::uint32_t T) {
  std::vector<ExcerptRecord> out(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    out[i].excerpt_id = ids[i];
    out[i].max = max[i];
    out[i].hash = hash ? hash[i] : 0;
    out[i].acts.assign(acts + std::size_t{i} * T, acts + std::size_t{i + 1} * T);
  }
  return out;
}

// One excerpt, neurons [b0, b0 + w): its maxima (the normative fold of excerpt_max.hpp) and its
// local moments (the normative two-pass rule of excerpt_moments), vectorised across neurons with
// each neuron's operations in exactly the scalar order. Then combined into the running moments.
struct BlockScratch {
  double sum[kBlock], mean[kBlock], m2[kBlock], m3[kBlock], m4[kBlock];
};

constexpr std::uint64_t kNoBlock = std::numeric_limits<std::uint64_t>::max();

// open/closed/open_block: the per-neuron moment-block accumulators of CaptureState; `block` is
// this excerpt's moment block. A new block closes the neuron's open one (folded in block order).
void excerpt_block(const float* rows, std::size_t N, std::uint32_t T, std::size_t b0, std::size_t w, float* mx,
                   BlockScratch& s, std::uint64_t block, Moments* open, Moments* closed, std::uint64_t* open_block) {
  {
    const float* r0 = rows + b0;
    for (std::size_t j = 0; j < w; ++j) {
      mx[j] = r0[j];
      s.sum[j] = 0.0;
    }
  }
  for (std::uint32_t t = 0; t < T; ++t) {
    const float* r = rows + t * N + b0;
    for (std::size_t j = 0; j < w; ++j) {
      const float x = r[j];
      s.sum[j] += static_cast<double>(x);
      mx[j] = x > mx[j] ? x : mx[j];
    }
  }
  const double Td = static_cast<double>(T);
  for (std::size_t j = 0; j < w; ++j) {
    s.mean[j] = s.sum[j] / Td;
    s.m2[j] = s.m3[j] = s.m4[j] = 0.0;
  }
  for (std::uint32_t t = 0; t < T; ++t) {
    const float* r = rows + t * N + b0;
    for (std::size_t j = 0; j < w; ++j) {
      const double d = static_cast<double>(r[j]) - s.mean[j];
      const double d2 = d * d;
      s.m2[j] += d2;
      s.m3[j] += d2 * d;
      s.m4[j] += d2 * d2;
    }
  }
  for (std::size_t j = 0; j < w; ++j) {
    const Moments local{T, s.mean[j], s.m2[j], s.m3[j], s.m4[j]};
    const std::size_t n = b0 + j;
    if (open_block[n] != block) {
      closed[n] = combine_moments(closed[n], open[n]);
      open[n] = Moments{};
      open_block[n] = block;
    }
    open[n] = combine_moments(open[n], local);
  }
}

}  // namespace

CaptureState::CaptureState(const CaptureParams& params, std::uint32_t n_neurons, std::vector<double> boundaries)
    : params_(params) {
  params_.validate();
  if (!boundaries.empty() && boundaries.size() != std::size_t{n_neurons} * params_.n_boundaries())
    fail("capture state: {} quantile boundaries for {} neurons x {} fractions", boundaries.size(), n_neurons,
         params_.n_boundaries());
  arrays_ = CaptureArrays::empty(params_, n_neurons, std::move(boundaries));
  init_hash_prefixes();
}

CaptureState::CaptureState(const CaptureParams& params, CaptureArrays arrays)
    : params_(params), arrays_(std::move(arrays)) {
  params_.validate();
  arrays_.check_shapes(params_);
  init_hash_prefixes();
}

void CaptureState::init_hash_prefixes() {
  const std::uint32_t N = arrays_.n_neurons;
  // Arrays without the moment-block split (new, from a file or a device) have no open block.
  if (arrays_.mom_closed.empty()) {
    arrays_.mom_closed.resize(N);
    arrays_.mom_open.assign(N, Moments{});
    arrays_.mom_open_block.assign(N, kNoBlock);
    for (std::uint32_t n = 0; n < N; ++n) arrays_.mom_closed[n] = load_moments(arrays_, n);
  }
  random_prefix_.resize(N);
  quantile_prefix_.resize(N);
  for (std::uint32_t n = 0; n < N; ++n) {
    random_prefix_[n] = hash_prefix(params_.seed, params_.layer, n);
    quantile_prefix_[n] = hash_prefix(params_.seed ^ kQuantileSeedSalt, params_.layer, n);
  }
}

std::uint64_t CaptureState::excerpts_seen() const {
  return arrays_.n_neurons == 0 ? 0 : arrays_.mom_count[0] / params_.T;
}

void CaptureState::check_batch(std::span<const float> acts, std::span<const std::uint64_t> ids) const {
  const std::size_t expected = ids.size() * params_.T * std::size_t{arrays_.n_neurons};
  if (acts.size() != expected)
    fail("capture update (layer {}): {} activations for {} excerpts x {} tokens x {} neurons (expected {})",
         params_.layer, acts.size(), ids.size(), params_.T, arrays_.n_neurons, expected);
  for (std::size_t e = 0; e < ids.size(); ++e) {
    if (ids[e] == kNoExcerpt) fail("capture update (layer {}): excerpt id {} is reserved", params_.layer, ids[e]);
    if (e > 0 && ids[e] <= ids[e - 1])
      fail("capture update (layer {}): excerpt ids must be strictly increasing in a batch ({} after {})",
           params_.layer, ids[e], ids[e - 1]);
  }
}

void CaptureState::update(std::span<const float> acts, std::span<const std::uint64_t> ids, unsigned n_threads) {
  check_batch(acts, ids);
  const std::uint32_t N = arrays_.n_neurons;
  if (n_threads == 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
  // Ranges of whole alignment units; never more threads than units.
  const std::uint32_t units = (N + kRangeAlign - 1) / kRangeAlign;
  const std::uint32_t n_ranges = std::max(1u, std::min<std::uint32_t>(n_threads, units));
  if (n_ranges <= 1) {
    update_unchecked(acts, ids, 0, N);
    return;
  }
  std::vector<std::exception_ptr> errors(n_ranges);
  std::vector<std::thread> threads;
  threads.reserve(n_ranges - 1);
  const auto run = [&](std::uint32_t r) {
    const std::uint32_t begin = std::min(N, static_cast<std::uint32_t>(std::uint64_t{units} * r / n_ranges) * kRangeAlign);
    const std::uint32_t end = std::min(N, static_cast<std::uint32_t>(std::uint64_t{units} * (r + 1) / n_ranges) * kRangeAlign);
    try {
      update_unchecked(acts, ids, begin, end);
    } catch (...) {
      errors[r] = std::current_exception();
    }
  };
  for (std::uint32_t r = 1; r < n_ranges; ++r) threads.emplace_back(run, r);
  run(0);
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

void CaptureState::update_range(std::span<const float> acts, std::span<const std::uint64_t> ids, std::uint32_t begin,
                                std::uint32_t end) {
  if (begin > end || end > arrays_.n_neurons)
    fail("capture update (layer {}): neuron range [{}, {}) outside [0, {})", params_.layer, begin, end,
         arrays_.n_neurons);
  check_batch(acts, ids);
  update_unchecked(acts, ids, begin, end);
}

void CaptureState::update_unchecked(std::span<const float> acts, std::span<const std::uint64_t> ids,
                                    std::uint32_t begin, std::uint32_t end) {
  const std::size_t n_ex = ids.size();
  if (n_ex == 0 || begin >= end) return;
  const CaptureParams& p = params_;
  CaptureArrays& a = arrays_;
  const std::size_t N = a.n_neurons, T = p.T;
  const std::uint32_t m = p.n_boundaries(), B = p.n_quantile_bins();
  const bool quantiles = !a.boundaries.empty() && p.Q > 0;

  std::vector<std::uint64_t> id_word(n_ex);  // hash_word(id): shared by every neuron
  for (std::size_t e = 0; e < n_ex; ++e) id_word[e] = hash_word(ids[e]);
  std::vector<float> maxima(n_ex * kBlock);  // [excerpt][neuron in block]
  auto scratch = std::make_unique<BlockScratch>();
  std::vector<Candidate> top, rnd, qnt;
  std::vector<std::uint32_t> qnt_bin;
  top.reserve(n_ex);
  rnd.reserve(n_ex);
  qnt.reserve(n_ex);
  qnt_bin.reserve(n_ex);

  for (std::size_t b0 = begin; b0 < end; b0 += kBlock) {
    const std::size_t w = std::min<std::size_t>(kBlock, end - b0);
    // Pass over the activations: maxima and moments, excerpt by excerpt in stream order.
    for (std::size_t e = 0; e < n_ex; ++e)
      excerpt_block(acts.data() + e * T * N, N, p.T, b0, w, maxima.data() + e * kBlock, *scratch, moment_block(ids[e]),
                    a.mom_open.data(), a.mom_closed.data(), a.mom_open_block.data());
    for (std::size_t n = b0; n < b0 + w; ++n) store_moments(a, n, combine_moments(a.mom_closed[n], a.mom_open[n]));

    // Per neuron: histogram, then the threshold tests; only winners gather their T activations.
    for (std::size_t j = 0; j < w; ++j) {
      const std::size_t n = b0 + j;
      SampleList top_list = topk_list(a, p, n);
      SampleList rnd_list = random_list(a, p, n);
      std::uint64_t* hist = a.hist.data() + n * kHistBins;
      const double* bounds = quantiles ? a.boundaries.data() + n * m : nullptr;
      const std::uint64_t rp = random_prefix_[n], qp = quantile_prefix_[n];
      top.clear();
      rnd.clear();
      qnt.clear();
      qnt_bin.clear();
      for (std::size_t e = 0; e < n_ex; ++e) {
        const float mx = maxima[e * kBlock + j];
        const std::uint32_t bits = float_bits(mx);
        ++hist[hist_bin_from_bits(bits)];
        const float* src = acts.data() + e * T * N + n;
        const std::uint64_t id = ids[e];
        const std::uint64_t tr = topk_rank(bits);
        if (top_list.admits(tr, id)) top.push_back({tr, id, 0, mx, src, N});
        const std::uint64_t h = hash_absorb_mixed(rp, id_word[e]);
        if (rnd_list.admits(h, id)) rnd.push_back({h, id, h, mx, src, N});
        if (quantiles) {
          const std::uint32_t qb = quantile_bin(mx, bounds, m);
          const std::uint64_t hq = hash_absorb_mixed(qp, id_word[e]);
          if (quantile_list(a, p, n, qb).admits(hq, id)) {
            qnt.push_back({hq, id, hq, mx, src, N});
            qnt_bin.push_back(qb);
          }
        }
      }
      if (!top.empty()) {
        std::sort(top.begin(), top.end(), candidate_less);
        top_list.merge_sorted(top.data(), top.size());
      }
      if (!rnd.empty()) {
        std::sort(rnd.begin(), rnd.end(), candidate_less);
        rnd_list.merge_sorted(rnd.data(), rnd.size());
      }
      for (std::uint32_t qb = 0; qb < B && !qnt.empty(); ++qb) {
        // Few candidates per batch: gather this bin's in place at the front, sorted.
        std::size_t k = 0;
        for (std::size_t c = 0; c < qnt.size(); ++c)
          if (qnt_bin[c] == qb) std::swap(qnt[k], qnt[c]), std::swap(qnt_bin[k], qnt_bin[c]), ++k;
        if (k == 0) continue;
        std::sort(qnt.begin(), qnt.begin() + static_cast<std::ptrdiff_t>(k), candidate_less);
        quantile_list(a, p, n, qb).merge_sorted(qnt.data(), k);
        qnt.erase(qnt.begin(), qnt.begin() + static_cast<std::ptrdiff_t>(k));
        qnt_bin.erase(qnt_bin.begin(), qnt_bin.begin() + static_cast<std::ptrdiff_t>(k));
      }
    }
  }
}

void CaptureState::merge(const CaptureState& other) {
  if (&other == this) fail("capture merge (layer {}): a state cannot be merged with itself", params_.layer);
  if (!(params_ == other.params_))
    fail("capture merge: parameters differ (layer {} vs {}, T {} vs {}, K {} vs {}, R {} vs {}, Q {} vs {}, seed {} vs {})",
         params_.layer, other.params_.layer, params_.T, other.params_.T, params_.K, other.params_.K, params_.R,
         other.params_.R, params_.Q, other.params_.Q, params_.seed, other.params_.seed);
  if (arrays_.n_neurons != other.arrays_.n_neurons)
    fail("capture merge (layer {}): {} neurons against {}", params_.layer, arrays_.n_neurons, other.arrays_.n_neurons);
  const auto& ba = arrays_.boundaries;
  const auto& bb = other.arrays_.boundaries;
  if (ba.size() != bb.size() || (!ba.empty() && std::memcmp(ba.data(), bb.data(), ba.size() * sizeof(double)) != 0))
    fail("capture merge (layer {}): the states were built with different quantile boundaries", params_.layer);

  const CaptureParams& p = params_;
  CaptureArrays& a = arrays_;
  const CaptureArrays& o = other.arrays_;
  const std::size_t N = a.n_neurons, T = p.T, B = p.n_quantile_bins(), Q = p.Q;
  for (std::size_t i = 0; i < a.hist.size(); ++i) a.hist[i] += o.hist[i];
  std::vector<Candidate> cand;
  for (std::size_t n = 0; n < N; ++n) {
    // An empty side is a bitwise identity, block split included (so a state can continue its
    // open block); otherwise both sides' open blocks are closed and the totals combined, which
    // agrees with one pass within rounding (the law's tolerance).
    if (o.mom_count[n] != 0 && a.mom_count[n] == 0) {
      a.mom_closed[n] = o.mom_closed[n];
      a.mom_open[n] = o.mom_open[n];
      a.mom_open_block[n] = o.mom_open_block[n];
      store_moments(a, n, load_moments(o, n));
    } else if (o.mom_count[n] != 0) {
      a.mom_closed[n] = combine_moments(load_moments(a, n), load_moments(o, n));
      a.mom_open[n] = Moments{};
      a.mom_open_block[n] = kNoBlock;
      store_moments(a, n, a.mom_closed[n]);
    }
    list_candidates(o.topk_ids.data() + n * p.K, o.topk_max.data() + n * p.K, nullptr,
                    o.topk_acts.data() + n * p.K * T, o.topk_count[n], p.T, cand);
    topk_list(a, p, n).merge_sorted(cand.data(), cand.size());
    list_candidates(o.random_ids.data() + n * p.R, o.random_max.data() + n * p.R, o.random_hash.data() + n * p.R,
                    o.random_acts.data() + n * p.R * T, o.random_count[n], p.T, cand);
    random_list(a, p, n).merge_sorted(cand.data(), cand.size());
    for (std::size_t qb = 0; qb < B; ++qb) {
      const std::size_t list = n * B + qb;
      list_candidates(o.quantile_ids.data() + list * Q, o.quantile_max.data() + list * Q,
                      o.quantile_hash.data() + list * Q, o.quantile_acts.data() + list * Q * T,
                      o.quantile_count[list], p.T, cand);
      quantile_list(a, p, n, qb).merge_sorted(cand.data(), cand.size());
    }
  }
}

std::vector<Moments> CaptureState::take_moments() {
  const std::size_t N = arrays_.n_neurons;
  std::vector<Moments> out(N);
  for (std::size_t n = 0; n < N; ++n) {
    out[n] = load_moments(arrays_, n);
    arrays_.mom_closed[n] = arrays_.mom_open[n] = Moments{};
    arrays_.mom_open_block[n] = kNoBlock;
    store_moments(arrays_, n, Moments{});
  }
  return out;
}

void CaptureState::fold_moments(const std::vector<Moments>& block) {
  const std::size_t N = arrays_.n_neurons;
  if (block.size() != N)
    fail("capture state (layer {}): {} moments folded into {} neurons", params_.layer, block.size(), N);
  for (std::size_t n = 0; n < N; ++n) {
    arrays_.mom_closed[n] = combine_moments(load_moments(arrays_, n), block[n]);
    arrays_.mom_open[n] = Moments{};
    arrays_.mom_open_block[n] = kNoBlock;
    store_moments(arrays_, n, arrays_.mom_closed[n]);
  }
}

CaptureArrays CaptureState::release() && { return std::move(arrays_); }

NeuronRecord CaptureState::record(std::uint32_t neuron) const {
  const CaptureParams& p = params_;
  const CaptureArrays& a = arrays_;
  if (neuron >= a.n_neurons) fail("capture record: neuron {} of layer {} out of range (< {})", neuron, p.layer, a.n_neurons);
  const std::size_t n = neuron, T = p.T, B = p.n_quantile_bins(), Q = p.Q, m = p.n_boundaries();
  NeuronRecord r;
  r.layer = p.layer;
  r.neuron = neuron;
  r.top = list_record(a.topk_ids.data() + n * p.K, a.topk_max.data() + n * p.K, nullptr,
                      a.topk_acts.data() + n * p.K * T, a.topk_count[n], p.T);
  r.random = list_record(a.random_ids.data() + n * p.R, a.random_max.data() + n * p.R, a.random_hash.data() + n * p.R,
                         a.random_acts.data() + n * p.R * T, a.random_count[n], p.T);
  r.quantile.resize(B);
  for (std::size_t qb = 0; qb < B; ++qb) {
    const std::size_t list = n * B + qb;
    r.quantile[qb] = list_record(a.quantile_ids.data() + list * Q, a.quantile_max.data() + list * Q,
                                 a.quantile_hash.data() + list * Q, a.quantile_acts.data() + list * Q * T,
                                 a.quantile_count[list], p.T);
  }
  if (!a.boundaries.empty()) r.boundaries.assign(a.boundaries.begin() + n * m, a.boundaries.begin() + (n + 1) * m);
  r.histogram.assign(a.hist.begin() + n * kHistBins, a.hist.begin() + (n + 1) * kHistBins);
  const Moments mom = load_moments(a, n);
  r.stats.count = mom.count;
  r.stats.mean = mom.mean;
  r.stats.variance = moments_variance(mom);
  r.stats.skewness = moments_skewness(mom);
  r.stats.kurtosis = moments_kurtosis(mom);
  r.stats.m2 = mom.m2;
  r.stats.m3 = mom.m3;
  r.stats.m4 = mom.m4;
  return r;
}

CaptureState merge(CaptureState a, const CaptureState& b) {
  a.merge(b);
  return a;
}

}  // namespace nexplain
