// bench/collect_cpu: CPU collect throughput (forward + full capture and reduction of every neuron
// of every layer) on a GPT-2-124M-shaped random model, reported against the anchor measured in
// the same run: the sgemm GFLOP/s OpenBLAS reaches on exactly the forward's GEMM shapes.
//
//   collect_cpu [--batch B] [--seq-len T] [--batches N] [--threads N] [--layers L]
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "collect/cpu_backend.hpp"
#include "model/gpt2_config.hpp"
#include "model/transformer_weights.hpp"

using namespace nexplain;
using Clock = std::chrono::steady_clock;

namespace {

double seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

// GFLOP/s of C[M,N] = A[M,K] B[K,N] (row-major, as the forward calls it), best of `reps`.
double sgemm_gflops(int M, int N, int K, int reps) {
  std::vector<float> A(static_cast<std::size_t>(M) * K, 0.01f), B(static_cast<std::size_t>(K) * N, 0.02f),
      C(static_cast<std::size_t>(M) * N);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
    best = std::min(best, seconds(t));
  }
  return 2.0 * M * N * K / best / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  int B = 16, T = 64, batches = 6, threads = 0, n_layer = 12;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (a == "--batch") B = v;
    else if (a == "--seq-len") T = v;
    else if (a == "--batches") batches = v;
    else if (a == "--threads") threads = v;
    else if (a == "--layers") n_layer = v;
    else {
      std::fprintf(stderr, "usage: collect_cpu [--batch B] [--seq-len T] [--batches N] [--threads N] [--layers L]\n");
      return 2;
    }
  }
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  Gpt2Config c;
  c.n_embd = 768;
  c.n_layer = n_layer;
  c.n_head = 12;
  c.n_inner = 3072;
  c.n_positions = 1024;
  c.vocab_size = 50257;
  std::printf("collect_cpu: GPT-2 124M shape (%d layers x %d neurons), batch %d x %d tokens, %d threads\n", c.n_layer,
              c.n_inner, B, T, threads);

  std::vector<int> layers;
  for (int l = 0; l < c.n_layer; ++l) layers.push_back(l);
  CaptureParams p;
  p.T = static_cast<std::uint32_t>(T);
  // The GPT-2 shape through the generic loader's config (collect runs TransformerCpu for every family).
  CpuCollectBackend backend(TransformerWeights::random(ArchConfig::from_json(c.to_json()), 1), layers, p,
                            threads);  // also sets OpenBLAS's thread count
  std::vector<CaptureState> states;
  for (int l = 0; l < c.n_layer; ++l) {
    CaptureParams lp = p;
    lp.layer = static_cast<std::uint32_t>(l);
    // Boundaries as a pre-pass would give, so the quantile path is exercised too.
    states.emplace_back(lp, static_cast<std::uint32_t>(c.n_inner),
                        std::vector<double>(static_cast<std::size_t>(c.n_inner) * p.n_boundaries(), 0.5));
  }
  backend.start_main(std::move(states));
  std::mt19937 rng(1);
  std::vector<std::uint32_t> tokens(static_cast<std::size_t>(B) * T);
  std::vector<std::uint64_t> ids(static_cast<std::size_t>(B));
  std::uint64_t next = 0;
  auto run_batch = [&] {
    for (auto& t : tokens) t = rng() % 50257;
    for (auto& id : ids) id = next++;
    backend.main(tokens.data(), ids.data(), B);
  };
  run_batch();  // warm-up: workspaces, first top-K fills
  const auto t0 = Clock::now();
  for (int i = 0; i < batches; ++i) run_batch();
  const double secs = seconds(t0);
  const double tok_s = static_cast<double>(batches) * B * T / secs;

  // FLOPs per token of the forward without the LM head: the four GEMMs of each block plus
  // attention scores and weighted sum (causal: on average T/2 keys... counted as T, as the
  // kernels compute the full T x T before masking).
  const double C = c.n_embd, H = c.n_inner;
  const double gemm_flops = 2.0 * (C * 3 * C + C * C + C * H + H * C) * c.n_layer;
  const double attn_flops = 2.0 * 2.0 * T * C * c.n_layer;
  const double achieved = tok_s * (gemm_flops + attn_flops) / 1e9;

  // The anchor: sgemm on the same shapes, same thread count, weighted by their FLOPs.
  const int M = B * T;
  struct Shape { int N, K; } shapes[] = {{3 * c.n_embd, c.n_embd}, {c.n_embd, c.n_embd}, {c.n_inner, c.n_embd}, {c.n_embd, c.n_inner}};
  double t_gemm = 0, f_gemm = 0;
  for (auto s : shapes) {
    const double g = sgemm_gflops(M, s.N, s.K, 5);
    const double f = 2.0 * M * s.N * s.K;
    std::printf("  sgemm %5d x %5d x %5d: %7.1f GFLOP/s\n", M, s.N, s.K, g);
    t_gemm += f / (g * 1e9);
    f_gemm += f;
  }
  const double roofline = f_gemm / t_gemm / 1e9;
  std::printf("  collect: %.0f tokens/s = %.1f GFLOP/s (%.2f GFLOP/token, full capture of %d neurons)\n", tok_s, achieved,
              (gemm_flops + attn_flops) / 1e9, c.n_layer * c.n_inner);
  std::printf("  anchor : sgemm on the forward's shapes = %.1f GFLOP/s\n", roofline);
  std::printf("RESULT collect_cpu tokens_per_s=%.0f gflops=%.1f sgemm_gflops=%.1f fraction_of_sgemm=%.0f%%\n", tok_s, achieved,
              roofline, 100.0 * achieved / roofline);
  return 0;
}
