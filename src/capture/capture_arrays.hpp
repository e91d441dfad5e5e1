#pragma once
// The reduction state of one layer as plain structure-of-arrays: the exchange format between the
// CPU state, the CUDA backend (which exports its device state into it), checkpoints and the
// HDF5 records file (whose datasets mirror these arrays one to one; see docs/REDUCTION.md).
// All arrays are row-major and neuron-major: neuron n's data is one contiguous slice.
//
// Sample lists (top-K, random, each quantile bin) hold their first `count` slots sorted
//   top-K:    by (max desc, excerpt id asc)      [max compared by float_order_key]
//   random:   by (hash asc, excerpt id asc)
//   quantile: by (hash asc, excerpt id asc)      per bin
// Unused slots are canonical, so equal states are byte-identical:
//   id = kNoExcerpt, hash = kNoExcerpt, max = -inf, acts = 0.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "capture/moments.hpp"
#include "capture/params.hpp"

namespace nexplain {

inline constexpr std::uint64_t kNoExcerpt = std::numeric_limits<std::uint64_t>::max();

struct CaptureArrays {
  std::uint32_t n_neurons = 0;  // N; the other dimensions come from CaptureParams (B = m + 1)

  std::vector<std::uint32_t> topk_count;  // [N]
  std::vector<std::uint64_t> topk_ids;    // [N][K]
  std::vector<float> topk_max;            // [N][K]
  std::vector<float> topk_acts;           // [N][K][T]

  std::vector<std::uint32_t> random_count;  // [N]
  std::vector<std::uint64_t> random_ids;    // [N][R]
  std::vector<std::uint64_t> random_hash;   // [N][R]  random_hash(seed, layer, n, id)
  std::vector<float> random_max;            // [N][R]
  std::vector<float> random_acts;           // [N][R][T]

  std::vector<std::uint32_t> quantile_count;  // [N][B]
  std::vector<std::uint64_t> quantile_ids;    // [N][B][Q]
  std::vector<std::uint64_t> quantile_hash;   // [N][B][Q]  quantile_hash(seed, layer, n, id)
  std::vector<float> quantile_max;            // [N][B][Q]
  std::vector<float> quantile_acts;           // [N][B][Q][T]

  // [N][m] quantile boundaries b_1..b_m of the excerpt-max distribution, an input (from the
  // pre-pass); EMPTY when none were given, and then every quantile_count is 0.
  std::vector<double> boundaries;

  std::vector<std::uint64_t> hist;  // [N][kHistBins] excerpt maxima over all excerpts seen

  // Moments of all token activations seen (count = T * excerpts).
  std::vector<std::uint64_t> mom_count;  // [N]
  std::vector<double> mom_mean;          // [N]
  std::vector<double> mom_m2;            // [N]
  std::vector<double> mom_m3;            // [N]
  std::vector<double> mom_m4;            // [N]
  // The moment-block split of mom_* (docs/REDUCTION.md section 5): the closed blocks' total and
  // the open block's accumulator, so that arrays exported mid-block resume bitwise. In memory
  // only (not in files): empty means no open block (closed = mom_*), as after a block boundary.
  std::vector<Moments> mom_closed;              // [N] or empty
  std::vector<Moments> mom_open;                // [N] or empty
  std::vector<std::uint64_t> mom_open_block;    // [N] or empty; the open block's index

  // The empty state (nothing seen) with every array at its full shape; `boundaries` as given
  // (empty or N*m values).
  static CaptureArrays empty(const CaptureParams& params, std::uint32_t n_neurons,
                             std::vector<double> boundaries = {});

  // Throws Error naming the first array whose size does not match (params, n_neurons).
  void check_shapes(const CaptureParams& params) const;

  // Total bytes held by the arrays (capacity planning, logs).
  std::size_t bytes() const;
};

}  // namespace nexplain
