#include "capture/capture_arrays.hpp"

#include <limits>
#include <string_view>
#include <utility>

#include "capture/hist_bins.hpp"
#include "core/error.hpp"

namespace nexplain {

namespace {

constexpr float kUnusedMax = -std::numeric_limits<float>::infinity();

template <typename V>
std::size_t vec_bytes(const V& v) {
  return v.size() * sizeof(typename V::value_type);
}

template <typename V>
void check_size(const V& v, std::size_t expected, std::string_view name) {
  if (v.size() != expected) fail("capture state: array {} has {} elements, expected {}", name, v.size(), expected);
}

void check_counts(const std::vector<std::uint32_t>& counts, std::uint32_t cap, std::string_view name) {
  for (std::size_t i = 0; i < counts.size(); ++i)
    if (counts[i] > cap) fail("capture state: {}[{}] = {} exceeds the capacity {}", name, i, counts[i], cap);
}

}  // namespace

CaptureArrays CaptureArrays::empty(const CaptureParams& p, std::uint32_t n_neurons, std::vector<double> boundaries) {
  const std::size_t N = n_neurons, T = p.T, B = p.n_quantile_bins();
  CaptureArrays a;
  a.n_neurons = n_neurons;
  a.topk_count.assign(N, 0);
  a.topk_ids.assign(N * p.K, kNoExcerpt);
  a.topk_max.assign(N * p.K, kUnusedMax);
  a.topk_acts.assign(N * p.K * T, 0.0f);
  a.random_count.assign(N, 0);
  a.random_ids.assign(N * p.R, kNoExcerpt);
  a.random_hash.assign(N * p.R, kNoExcerpt);
  a.random_max.assign(N * p.R, kUnusedMax);
  a.random_acts.assign(N * p.R * T, 0.0f);
  a.quantile_count.assign(N * B, 0);
  a.quantile_ids.assign(N * B * p.Q, kNoExcerpt);
  a.quantile_hash.assign(N * B * p.Q, kNoExcerpt);
  a.quantile_max.assign(N * B * p.Q, kUnusedMax);
  a.quantile_acts.assign(N * B * p.Q * T, 0.0f);
  a.boundaries = std::move(boundaries);
  a.hist.assign(N * kHistBins, 0);
  a.mom_count.assign(N, 0);
  a.mom_mean.assign(N, 0.0);
  a.mom_m2.assign(N, 0.0);
  a.mom_m3.assign(N, 0.0);
  a.mom_m4.assign(N, 0.0);
  a.check_shapes(p);
  return a;
}

void CaptureArrays::check_shapes(const CaptureParams& p) const {
  const std::size_t N = n_neurons, T = p.T, B = p.n_quantile_bins();
  check_size(topk_count, N, "topk_count");
  check_size(topk_ids, N * p.K, "topk_ids");
  check_size(topk_max, N * p.K, "topk_max");
  check_size(topk_acts, N * p.K * T, "topk_acts");
  check_size(random_count, N, "random_count");
  check_size(random_ids, N * p.R, "random_ids");
  check_size(random_hash, N * p.R, "random_hash");
  check_size(random_max, N * p.R, "random_max");
  check_size(random_acts, N * p.R * T, "random_acts");
  check_size(quantile_count, N * B, "quantile_count");
  check_size(quantile_ids, N * B * p.Q, "quantile_ids");
  check_size(quantile_hash, N * B * p.Q, "quantile_hash");
  check_size(quantile_max, N * B * p.Q, "quantile_max");
  check_size(quantile_acts, N * B * p.Q * T, "quantile_acts");
  if (!boundaries.empty()) check_size(boundaries, N * p.n_boundaries(), "boundaries");
  check_size(hist, N * kHistBins, "hist");
  check_size(mom_count, N, "mom_count");
  check_size(mom_mean, N, "mom_mean");
  check_size(mom_m2, N, "mom_m2");
  check_size(mom_m3, N, "mom_m3");
  check_size(mom_m4, N, "mom_m4");
  if (!mom_closed.empty() || !mom_open.empty() || !mom_open_block.empty()) {
    check_size(mom_closed, N, "mom_closed");
    check_size(mom_open, N, "mom_open");
    check_size(mom_open_block, N, "mom_open_block");
  }
  check_counts(topk_count, p.K, "topk_count");
  check_counts(random_count, p.R, "random_count");
  check_counts(quantile_count, boundaries.empty() ? 0 : p.Q, "quantile_count");
}

std::size_t CaptureArrays::bytes() const {
  return vec_bytes(topk_count) + vec_bytes(topk_ids) + vec_bytes(topk_max) + vec_bytes(topk_acts) +
         vec_bytes(random_count) + vec_bytes(random_ids) + vec_bytes(random_hash) + vec_bytes(random_max) +
         vec_bytes(random_acts) + vec_bytes(quantile_count) + vec_bytes(quantile_ids) + vec_bytes(quantile_hash) +
         vec_bytes(quantile_max) + vec_bytes(quantile_acts) + vec_bytes(boundaries) + vec_bytes(hist) +
         vec_bytes(mom_count) + vec_bytes(mom_mean) + vec_bytes(mom_m2) + vec_bytes(mom_m3) + vec_bytes(mom_m4);
}

}  // namespace nexplain
