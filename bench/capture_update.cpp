// Throughput of CaptureState::update for one layer: GPT-2 small (3072 neurons) and XL (6400),
// batches of 64 excerpts x 64 tokens, on 1 thread and on all hardware threads.
// Two regimes are timed: "early" (a few batches into the stream: random and quantile samples
// still take many winners, each gathering T strided activations) and "long run" (sample lists as
// after ~10^6 excerpts: winners are rare, the passes over the activations dominate), which is
// where a real collect spends nearly all its time. Median wall time per batch is reported.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "capture/capture_state.hpp"
#include "capture/histogram_state.hpp"

using namespace nexplain;

namespace {

using Clock = std::chrono::steady_clock;

// Post-GELU-like activations: gelu_new of N(0, 1.5), a few large spikes.
std::vector<float> make_acts(std::size_t rows, std::uint32_t N, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<float> a(rows * N);
  for (auto& x : a) {
    const double v = normal(rng);
    x = static_cast<float>(0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))));
  }
  for (std::size_t i = 0; i < a.size(); i += 9973) a[i] *= 8.0f;
  return a;
}

// Fills every random and quantile list with entries whose hashes are as small as after `seen`
// excerpts (the i-th smallest of `seen` uniform hashes is about i * 2^64 / seen). Their ids lie far
// beyond the benchmark's, so the state stays valid.
CaptureArrays primed(CaptureArrays a, const CaptureParams& p, double seen) {
  const double step = 18446744073709551616.0 / seen;
  const std::uint32_t B = p.n_quantile_bins();
  for (std::size_t n = 0; n < a.n_neurons; ++n) {
    for (std::uint32_t i = 0; i < p.R; ++i) {
      a.random_ids[n * p.R + i] = (std::uint64_t{1} << 40) + i;
      a.random_hash[n * p.R + i] = static_cast<std::uint64_t>((i + 1) * step);
      a.random_max[n * p.R + i] = 0.0f;
    }
    a.random_count[n] = p.R;
    if (a.boundaries.empty()) continue;
    for (std::uint32_t b = 0; b < B; ++b) {
      const std::size_t l = n * B + b;
      for (std::uint32_t i = 0; i < p.Q; ++i) {
        a.quantile_ids[l * p.Q + i] = (std::uint64_t{1} << 41) + i;
        a.quantile_hash[l * p.Q + i] = static_cast<std::uint64_t>((i + 1) * step * 100.0);  // bins are rarer
        a.quantile_max[l * p.Q + i] = 0.0f;
      }
      a.quantile_count[l] = p.Q;
    }
  }
  return a;
}

struct Timing {
  double ms_per_batch;
  double cold_ms;
};

Timing time_batches(CaptureState& st, const std::vector<float>& a0, const std::vector<float>& a1, std::uint32_t n_ex,
                    unsigned threads, std::uint64_t& next_id, bool measure_cold) {
  std::vector<std::uint64_t> ids(n_ex);
  const auto run = [&](const std::vector<float>& a) {
    for (auto& id : ids) id = next_id++;
    const auto t0 = Clock::now();
    st.update(a, ids, threads);
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  Timing t{0, 0};
  if (measure_cold) t.cold_ms = run(a0);
  for (int i = 0; i < 3; ++i) run(i % 2 ? a0 : a1);
  std::vector<double> ms;
  double total = 0;
  while (total < 1500.0 || ms.size() < 7) {
    ms.push_back(run(ms.size() % 2 ? a0 : a1));
    total += ms.back();
  }
  std::nth_element(ms.begin(), ms.begin() + static_cast<std::ptrdiff_t>(ms.size() / 2), ms.end());
  t.ms_per_batch = ms[ms.size() / 2];
  return t;
}

void bench_layer(const char* name, std::uint32_t N, unsigned threads) {
  CaptureParams p;  // defaults: T 64, K 20, R 20, Q 5, fractions .5 .9 .99 .999
  const std::uint32_t n_ex = 64;
  p.seed = 1;
  // Two distinct activation buffers, ids always new: top-K sees repeated maxima (rejected, as late
  // in a long run), the random and quantile samples see fresh hashes.
  const std::vector<float> a0 = make_acts(std::size_t{n_ex} * p.T, N, 1), a1 = make_acts(std::size_t{n_ex} * p.T, N, 2);
  HistogramState pre(N);
  pre.update(a0, n_ex, p.T);
  CaptureState st(p, N, pre.boundaries(p.quantile_fractions));
  std::uint64_t next_id = 0;
  const Timing early = time_batches(st, a0, a1, n_ex, threads, next_id, true);
  CaptureState longrun(p, primed(std::move(st).release(), p, 1e6));
  const Timing late = time_batches(longrun, a0, a1, n_ex, threads, next_id, false);
  const double acts = double{n_ex} * p.T * N;
  for (const auto& [label, t] : {std::pair{"early", early}, std::pair{"long run", late}})
    std::printf("%-10s N=%4u threads=%2u %-8s %7.2f ms/batch %7.0f M act/s %6.2f GB/s\n", name, N, threads, label,
                t.ms_per_batch, acts / t.ms_per_batch / 1e3, acts * 4.0 / t.ms_per_batch / 1e6);
  std::printf("%-10s N=%4u threads=%2u cold first batch %.1f ms; state %.0f MB\n", name, N, threads, early.cold_ms,
              static_cast<double>(longrun.arrays().bytes()) / 1e6);
}

}  // namespace

int main() {
  const unsigned all = std::max(1u, std::thread::hardware_concurrency());
  std::printf("capture_update: batch 64 excerpts x 64 tokens, K=20 R=20 Q=5 x 5 bins; %u hardware threads; "
              "median wall time per batch\n",
              all);
  for (const auto& [name, N] : {std::pair{"gpt2-small", 3072u}, std::pair{"gpt2-xl", 6400u}}) {
    bench_layer(name, N, 1);
    if (all > 1) bench_layer(name, N, all);
  }
  return 0;
}
