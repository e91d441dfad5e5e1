#pragma once
// Histograms of excerpt maxima per neuron, alone: what the cheap pre-pass accumulates (over the
// excerpt_in_prepass subset) before quantile_boundaries turns them into the boundaries the main
// pass needs. Counts are integers, so update order and merging are exact.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace nexplain {

class HistogramState {
 public:
  explicit HistogramState(std::uint32_t n_neurons);
  // From saved counts ([N][kHistBins]); throws Error when the size is wrong.
  HistogramState(std::uint32_t n_neurons, std::vector<std::uint64_t> counts);

  // acts: [n_excerpts * T][N] row-major (row = excerpt * T + t), as the forward pass gives.
  void update(std::span<const float> acts, std::size_t n_excerpts, std::uint32_t T);
  // Maxima already reduced: [n_excerpts][N].
  void update_maxima(std::span<const float> maxima, std::size_t n_excerpts);
  // this += other (same n_neurons, else Error).
  void merge(const HistogramState& other);

  std::uint32_t n_neurons() const { return n_neurons_; }
  const std::vector<std::uint64_t>& counts() const { return counts_; }  // [N][kHistBins]
  std::uint64_t excerpts_seen() const;  // sum over neuron 0's bins

  // quantile_boundaries(counts(), n_neurons(), fractions): [N][m].
  std::vector<double> boundaries(std::span<const double> fractions) const;

 private:
  std::uint32_t n_neurons_;
  std::vector<std::uint64_t> counts_;
};

}  // namespace nexplain
