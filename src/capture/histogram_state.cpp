#include "capture/histogram_state.hpp"

#include <utility>

#include "capture/excerpt_max.hpp"
#include "capture/float_order.hpp"
#include "capture/hist_bins.hpp"
#include "capture/quantiles.hpp"
#include "core/error.hpp"

namespace nexplain {

HistogramState::HistogramState(std::uint32_t n_neurons)
    : n_neurons_(n_neurons), counts_(std::size_t{n_neurons} * kHistBins, 0) {}

HistogramState::HistogramState(std::uint32_t n_neurons, std::vector<std::uint64_t> counts)
    : n_neurons_(n_neurons), counts_(std::move(counts)) {
  if (counts_.size() != std::size_t{n_neurons} * kHistBins)
    fail("histogram state: {} counts for {} neurons, expected {}", counts_.size(), n_neurons,
         std::size_t{n_neurons} * kHistBins);
}

void HistogramState::update(std::span<const float> acts, std::size_t n_excerpts, std::uint32_t T) {
  const std::size_t N = n_neurons_;
  if (T == 0 || acts.size() != n_excerpts * T * N)
    fail("histogram update: {} activations for {} excerpts x {} tokens x {} neurons", acts.size(), n_excerpts, T, N);
  std::vector<float> maxima(N);
  for (std::size_t e = 0; e < n_excerpts; ++e) {
    capture_detail::excerpt_max_rows(acts.data() + e * T * N, N, T, 0, N, maxima.data());
    update_maxima(maxima, 1);
  }
}

void HistogramState::update_maxima(std::span<const float> maxima, std::size_t n_excerpts) {
  const std::size_t N = n_neurons_;
  if (maxima.size() != n_excerpts * N)
    fail("histogram update: {} maxima for {} excerpts x {} neurons", maxima.size(), n_excerpts, N);
  for (std::size_t e = 0; e < n_excerpts; ++e) {
    const float* row = maxima.data() + e * N;
    for (std::size_t n = 0; n < N; ++n) ++counts_[n * kHistBins + hist_bin_from_bits(float_bits(row[n]))];
  }
}

void HistogramState::merge(const HistogramState& other) {
  if (other.n_neurons_ != n_neurons_)
    fail("histogram merge: {} neurons against {}", other.n_neurons_, n_neurons_);
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
}

std::uint64_t HistogramState::excerpts_seen() const {
  std::uint64_t total = 0;
  if (n_neurons_ > 0)
    for (std::uint32_t i = 0; i < kHistBins; ++i) total += counts_[i];
  return total;
}

std::vector<double> HistogramState::boundaries(std::span<const double> fractions) const {
  return quantile_boundaries(counts_, n_neurons_, fractions);
}

}  // namespace nexplain
