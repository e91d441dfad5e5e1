#pragma once
// The per-layer reduction state of all neurons (docs/REDUCTION.md is the normative description):
// per neuron the top-K excerpts by excerpt max, R random excerpts, Q excerpts per quantile bin,
// the histogram of excerpt maxima and the moments of all token activations.
//
// Laws (unit-tested): for disjoint excerpt ids,
//   - merge(a, b) equals one pass over the union: identical sample lists with bitwise-identical
//     values, identical histograms, moments within rounding (1e-9 relative);
//   - merge is commutative except for the rounding of the moments;
//   - one stream in one order gives byte-identical states (moments included) for every batch
//     split and every thread count.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "capture/capture_arrays.hpp"
#include "capture/moments.hpp"
#include "capture/neuron_record.hpp"
#include "capture/params.hpp"

namespace nexplain {

class CaptureState {
 public:
  // Empty state. boundaries: [n_neurons][params.n_boundaries()] from the pre-pass, or empty
  // (then no quantile samples are kept). Throws Error on bad params or sizes.
  CaptureState(const CaptureParams& params, std::uint32_t n_neurons, std::vector<double> boundaries = {});
  // From exported arrays (CUDA backend, checkpoint); shapes are checked (Error).
  CaptureState(const CaptureParams& params, CaptureArrays arrays);

  // Adds a batch of excerpts.
  //   acts: [ids.size() * T][N] row-major floats, row = excerpt * T + t (the forward pass layout);
  //   ids:  global excerpt ids, strictly increasing within the batch, < kNoExcerpt, never seen
  //         before by this state or by any state it will be merged with.
  // n_threads: 1 = on the calling thread; 0 = std::thread::hardware_concurrency(); the result is
  // byte-identical for every thread count (threads own disjoint neuron ranges).
  void update(std::span<const float> acts, std::span<const std::uint64_t> ids, unsigned n_threads = 1);

  // The same for neurons [begin, end) only, for callers with their own thread pool: calls on
  // disjoint ranges of one batch may run concurrently; every neuron must see every batch, and a
  // neuron's batches must arrive in stream order for the moments to be reproducible.
  void update_range(std::span<const float> acts, std::span<const std::uint64_t> ids, std::uint32_t begin,
                    std::uint32_t end);

  // this = the state over the union of both data sets. Throws Error unless params, n_neurons
  // and boundaries (bitwise) are equal.
  void merge(const CaptureState& other);

  const CaptureParams& params() const { return params_; }
  std::uint32_t n_neurons() const { return arrays_.n_neurons; }
  bool has_boundaries() const { return !arrays_.boundaries.empty(); }
  // Excerpts seen (all neurons see all excerpts): mom_count[0] / T.
  std::uint64_t excerpts_seen() const;

  // Moment blocks for data-parallel reduction (capture/moments.hpp, docs/REDUCTION.md).
  // take_moments: the moments accumulated since the last take (per neuron), leaving them empty;
  // after a state saw exactly one moment block it is that block's canonical accumulator.
  std::vector<Moments> take_moments();
  // Folds per-neuron moments (one block, or a running total) after everything seen so far.
  void fold_moments(const std::vector<Moments>& block);

  // The plain arrays (shapes in capture_arrays.hpp), e.g. for HDF5 datasets or a device upload.
  const CaptureArrays& arrays() const { return arrays_; }
  // Moves the arrays out; the state is left empty and must not be used afterwards.
  CaptureArrays release() &&;

  // One neuron's records as plain values (copies).
  NeuronRecord record(std::uint32_t neuron) const;

 private:
  void init_hash_prefixes();
  void check_batch(std::span<const float> acts, std::span<const std::uint64_t> ids) const;
  void update_unchecked(std::span<const float> acts, std::span<const std::uint64_t> ids, std::uint32_t begin,
                        std::uint32_t end);

  CaptureParams params_;
  CaptureArrays arrays_;
  // hash_prefix(seed, layer, n) and hash_prefix(seed ^ kQuantileSeedSalt, layer, n) per neuron:
  // one mix per (neuron, excerpt) remains in the hot loop.
  std::vector<std::uint64_t> random_prefix_;
  std::vector<std::uint64_t> quantile_prefix_;
};

// The state over the union of a and b (a.merge(b) on a copy).
CaptureState merge(CaptureState a, const CaptureState& b);

}  // namespace nexplain
