// The CUDA backend against the CPU reference (label gpu), on GPT-2: the CPU side is TransformerCpu
// (which unit tests hold to HF transformers on GPT-2). The other families' forward is
// tests/gpu/test_cuda_transformer.cpp. Every test skips, saying why, when the build has no CUDA
// backend or the machine no CUDA device; the CLI wiring test also runs without a device (then
// --device cuda must fail clearly and --device auto must fall back to the CPU).
//
// Order matters for reading failures: the reduction alone first (same activations on both
// sides: everything bitwise), then the forward (tolerances), then the whole backend.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "capture/capture_state.hpp"
#include "capture/float_order.hpp"
#include "capture/hist_bins.hpp"
#include "capture/histogram_state.hpp"
#include "capture/moments.hpp"
#include "collect/cpu_backend.hpp"
#include "core/error.hpp"
#include "io/records_file.hpp"
#include "io/safetensors.hpp"
#include "model/transformer_cpu.hpp"
#include "model/transformer_weights.hpp"
#include "test_support.hpp"

#ifdef NEXPLAIN_HAVE_CUDA
#include "collect/cuda_backend.hpp"
#include "cuda_engine.hpp"
#include "forward_parity.hpp"
#include "reduction_test_data.hpp"
using namespace nexplain::gputest;
#endif

using namespace nexplain;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

#ifdef NEXPLAIN_HAVE_CUDA

// ==================================================================== 1. the reduction alone

namespace {

// Runs `batches` of the stream through a CPU state and a device state fed the same activations
// (optionally rounded to bf16 first), restoring the device state from the CPU's arrays halfway
// (the start_main / checkpoint path), and compares them after each phase.
void run_reduction_case(const CaptureParams& p, const Stream& s, const std::vector<std::size_t>& batches,
                        bool with_boundaries, bool bf16, bool parallel_tests = false) {
  const ReductionInputs in = reduction_inputs(p, s, with_boundaries, bf16);
  const std::vector<float>& acts = in.acts;
  const std::vector<std::uint16_t>& acts_bf16 = in.acts_bf16;
  const std::vector<double>& bounds = in.bounds;
  cuda::Stream stream;
  CaptureState cpu(p, s.N, bounds);
  auto dev = std::make_unique<cuda::DeviceCaptureState>(p, CaptureArrays::empty(p, s.N, bounds), stream);
  dev->set_parallel_list_tests(parallel_tests);
  // The empty state round-trips unchanged.
  ASSERT_TRUE(states_match(dev->download(), cpu.arrays(), 0.0, "empty state round trip"));

  std::size_t first = 0;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    const std::size_t c = batches[i];
    ASSERT_LE(first + c, s.size());
    cpu.update(std::span<const float>(acts.data() + first * s.T * s.N, s.values(c)),
               std::span<const std::uint64_t>(s.ids.data() + first, c));
    if (bf16)
      dev->update_host_bf16(acts_bf16.data() + first * s.T * s.N, s.values(c), s.ids.data() + first,
                            static_cast<int>(c));
    else
      dev->update_host(acts.data() + first * s.T * s.N, s.values(c), s.ids.data() + first, static_cast<int>(c));
    first += c;
    if (i + 1 == batches.size() / 2) {
      ASSERT_TRUE(states_match(dev->download(), cpu.arrays(), 1e-12, "after the first half"));
      // Restore: a new device state from the CPU state's arrays, as start_main does.
      dev = std::make_unique<cuda::DeviceCaptureState>(p, cpu.arrays(), stream);
      dev->set_parallel_list_tests(parallel_tests);
      ASSERT_TRUE(states_match(dev->download(), cpu.arrays(), 0.0, "restored state round trip"));
    }
  }
  const CaptureArrays got = dev->download();
  EXPECT_TRUE(states_match(got, cpu.arrays(), 1e-12, "final state"));
  // The arrays are a valid host state (shape checks) and hold what a CPU state would.
  const CaptureState back(p, got);
  EXPECT_EQ(back.excerpts_seen(), cpu.excerpts_seen());
}

}  // namespace

TEST(CudaReduction, MatchesCpuStateBitwise) {
  NEXPLAIN_REQUIRE_GPU();
  const CaptureParams p = reduction_params();
  const Stream s = make_stream(11, 333, p.T, 300);
  // Batch sizes: odd, larger than every list, a single excerpt, and a large one.
  run_reduction_case(p, s, {37, 64, 1, 90, 50, 58}, true, false);
}

TEST(CudaReduction, Bf16ActivationsMatchCpuStateBitwise) {
  NEXPLAIN_REQUIRE_GPU();
  const CaptureParams p = reduction_params();
  const Stream s = make_stream(12, 200, p.T, 160);
  run_reduction_case(p, s, {40, 40, 3, 77}, true, true);
}

// ForwardTuning::parallel_list_tests: histogram counts with integer atomics and the list tests in
// the per-(excerpt, neuron) kernel must give the same state bit for bit.
TEST(CudaReduction, ParallelListTestsMatchCpuStateBitwise) {
  NEXPLAIN_REQUIRE_GPU();
  const CaptureParams p = reduction_params();
  run_reduction_case(p, make_stream(11, 333, p.T, 300), {37, 64, 1, 90, 50, 58}, true, false, true);
  run_reduction_case(p, make_stream(12, 200, p.T, 160), {40, 40, 3, 77}, true, true, true);
  CaptureParams q = reduction_params();
  q.T = 130;
  q.K = 40;
  q.R = 33;
  q.Q = 9;
  run_reduction_case(q, make_stream(14, 70, q.T, 120), {64, 20, 36}, true, false, true);
}

TEST(CudaReduction, EdgeParametersMatchCpuState) {
  NEXPLAIN_REQUIRE_GPU();
  // No boundaries (quantile lists stay empty), K = 1, R = 0, T = 1, N = 1.
  CaptureParams p = reduction_params();
  p.T = 1;
  p.K = 1;
  p.R = 0;
  const Stream s1 = make_stream(13, 1, p.T, 100);
  run_reduction_case(p, s1, {10, 1, 89}, false, false);
  // Long excerpts and large lists (more slots than any batch has candidates).
  CaptureParams q = reduction_params();
  q.T = 130;
  q.K = 40;
  q.R = 33;
  q.Q = 9;
  const Stream s2 = make_stream(14, 70, q.T, 120);
  run_reduction_case(q, s2, {64, 20, 36}, true, false);
}

TEST(CudaReduction, PrepassHistogramsMatchCpu) {
  NEXPLAIN_REQUIRE_GPU();
  const Stream s = make_stream(15, 321, 16, 150);
  HistogramState cpu(s.N);
  cuda::Stream stream;
  cuda::DeviceHistograms dev(s.N, s.T, stream);
  std::size_t first = 0;
  for (std::size_t c : {50u, 1u, 99u}) {
    cpu.update(std::span<const float>(s.acts_of(first), s.values(c)), c, s.T);
    dev.update_host(s.acts_of(first), s.values(c), static_cast<int>(c));
    first += c;
  }
  EXPECT_EQ(dev.download(), cpu.counts());
}

TEST(CudaReduction, BadBatchesAreErrors) {
  NEXPLAIN_REQUIRE_GPU();
  const CaptureParams p = reduction_params();
  const Stream s = make_stream(16, 40, p.T, 4);
  cuda::Stream stream;
  cuda::DeviceCaptureState dev(p, CaptureArrays::empty(p, s.N), stream);
  std::vector<std::uint64_t> ids{5, 5, 6, 7};
  EXPECT_THROW(dev.update_host(s.acts.data(), s.values(4), ids.data(), 4), Error);
  ids = {1, 2, 3, kNoExcerpt};
  EXPECT_THROW(dev.update_host(s.acts.data(), s.values(4), ids.data(), 4), Error);
  ids = {1, 2, 3, 4};
  EXPECT_THROW(dev.update_host(s.acts.data(), s.values(4) - 1, ids.data(), 4), Error);
  CaptureArrays bad = CaptureArrays::empty(p, s.N);
  bad.topk_ids.pop_back();
  EXPECT_THROW({ cuda::DeviceCaptureState st(p, bad, stream); }, Error);
}

namespace {

// DeviceCaptureState::take_moments against CaptureState::take_moments over take_plan() (batches
// across a block boundary; takes at block ends, mid-block, twice in a row): every take bitwise,
// and the whole state (moment split included) bitwise after each take and at the end, so the
// device state continues exactly as the CPU's after a take.
void run_take_case(bool bf16, bool parallel_tests) {
  const CaptureParams p = reduction_params();
  const Stream s = make_block_stream(bf16 ? 32 : 31, 150, p.T);
  const ReductionInputs in = reduction_inputs(p, s, true, bf16);
  cuda::Stream stream;
  CaptureState cpu(p, s.N, in.bounds);
  cuda::DeviceCaptureState dev(p, CaptureArrays::empty(p, s.N, in.bounds), stream);
  dev.set_parallel_list_tests(parallel_tests);
  std::size_t first = 0, n_takes = 0, since_take = 0;
  for (const TakeStep& step : take_plan()) {
    const std::size_t c = step.batch, off = first * s.T * s.N;
    ASSERT_LE(first + c, s.size());
    cpu.update(std::span<const float>(in.acts.data() + off, s.values(c)),
               std::span<const std::uint64_t>(s.ids.data() + first, c));
    if (bf16)
      dev.update_host_bf16(in.acts_bf16.data() + off, s.values(c), s.ids.data() + first, static_cast<int>(c));
    else
      dev.update_host(in.acts.data() + off, s.values(c), s.ids.data() + first, static_cast<int>(c));
    first += c;
    since_take += c;
    for (int t = 0; t < step.takes; ++t) {
      const std::string what = "take " + std::to_string(++n_takes) + " after excerpt " + std::to_string(first);
      const std::vector<Moments> want = cpu.take_moments();
      ASSERT_TRUE(moments_identical(dev.take_moments(), want, what));
      EXPECT_EQ(want[1].count, since_take * p.T) << what;
      since_take = 0;
      const CaptureArrays got = dev.download();
      ASSERT_TRUE(states_match(got, cpu.arrays(), 0.0, what.c_str()));
      ASSERT_TRUE(splits_match(got, cpu.arrays())) << what;
    }
  }
  const CaptureArrays got = dev.download();
  EXPECT_TRUE(states_match(got, cpu.arrays(), 0.0, "after the takes, final"));
  EXPECT_TRUE(splits_match(got, cpu.arrays()));
  EXPECT_TRUE(moments_identical(dev.take_moments(), cpu.take_moments(), "final take"));
}

}  // namespace

TEST(CudaReduction, TakeMomentsMatchesCpuStateBitwise) {
  NEXPLAIN_REQUIRE_GPU();
  for (const bool bf16 : {false, true})
    for (const bool parallel : {false, true}) {
      SCOPED_TRACE(std::string(bf16 ? "bf16" : "fp32") + (parallel ? ", parallel list tests" : ""));
      run_take_case(bf16, parallel);
    }
}

// ==================================================================== 2. the forward

TEST(CudaForward, HfFixtureMatchesCpu) {
  NEXPLAIN_REQUIRE_GPU();
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto dir = shared / "fixtures" / "hf-gpt2-tiny";
  const auto w = TransformerWeights::load(dir);
  const auto expected = SafetensorsFile::open(dir / "expected.safetensors");
  const auto& info = expected.info("input_ids");
  ASSERT_EQ(info.shape.size(), 2u);
  const int B = static_cast<int>(info.shape[0]), T = static_cast<int>(info.shape[1]);
  std::vector<std::uint32_t> tokens;
  for (auto v : expected.to_int64("input_ids")) tokens.push_back(static_cast<std::uint32_t>(v));
  const HfReference hf{&expected, "mlp_act"};
  check_forward(w, tokens, B, T, "hf-gpt2-tiny", &hf);
  // The longest sequences the model allows (T = n_positions).
  const int T2 = w.config.max_positions;
  check_forward(w, random_tokens(static_cast<std::size_t>(2) * T2, static_cast<std::uint32_t>(w.config.vocab_size), 3),
                2, T2, "hf-gpt2-tiny, T = n_positions");
}

TEST(CudaForward, RandomGpt2SmallMatchesCpu) {
  NEXPLAIN_REQUIRE_GPU();
  const auto w = TransformerWeights::random(gpt2_config(2), 7);
  const int B = 6, T = 64;
  check_forward(w, random_tokens(static_cast<std::size_t>(B) * T, 50257, 4), B, T, "random GPT-2 small shape");
}

// Every forward tuning (the epilogue fusions on and off, GELU in the cuBLASLt epilogue also for
// fp32 and tf32) stays within the precision's tolerance of the CPU forward.
TEST(CudaForward, EveryTuningMatchesCpu) {
  NEXPLAIN_REQUIRE_GPU();
  const auto w = TransformerWeights::random(gpt2_config(2), 9);
  const int B = 4, T = 64;
  const auto tokens = random_tokens(static_cast<std::size_t>(B) * T, 50257, 5);
  cuda::ForwardTuning none;
  none.bias_epilogue = false;
  none.residual_epilogue = false;
  none.gelu_epilogue = 0;
  check_forward(w, tokens, B, T, "random GPT-2 small shape, no epilogue fusions", nullptr, &none);
  cuda::ForwardTuning gelu;
  gelu.gelu_epilogue = 1;
  check_forward(w, tokens, B, T, "random GPT-2 small shape, GELU in the epilogue for every precision", nullptr, &gelu);
}

TEST(CudaForward, LongSequencesUseTheGlobalMemoryAttentionPath) {
  NEXPLAIN_REQUIRE_GPU();
  // T = 1024 with head size 64 does not fit K and V in 48 KiB of shared memory.
  const auto w = TransformerWeights::random(gpt2_config(1, 128, 2, 1000), 8);
  check_forward(w, random_tokens(1024, 1000, 5), 1, 1024, "T = 1024, head size 64");
}

TEST(CudaForward, BadInputIsAnError) {
  NEXPLAIN_REQUIRE_GPU();
  const auto w = TransformerWeights::random(gpt2_config(1, 64, 4, 100, 16), 9);
  cuda::TransformerDevice dev(w, 0, 0, cuda::Precision::fp32);
  std::vector<std::uint32_t> tokens(32, 1);
  tokens[21] = 100;
  try {
    dev.forward_host(tokens.data(), 2, 16, {0});
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("token id 100 at batch row 1, position 5"));
  }
  tokens[21] = 1;
  EXPECT_THROW(dev.forward_host(tokens.data(), 1, 32, {0}), Error);  // T > n_positions
  EXPECT_THROW(dev.forward_host(tokens.data(), 2, 16, {1}), Error);  // layer not uploaded
  EXPECT_THROW(cuda::parse_precision("fp16"), Error);
}

// ==================================================================== 3. the whole backend

namespace {

// Per layer: the excerpt maxima of every (excerpt, neuron) under the CPU and the GPU forward,
// and the largest activation difference between them.
struct LayerTruth {
  std::vector<float> cpu_max, gpu_max;  // [excerpt][N]
  double err = 0.0, scale = 0.0;
};

void excerpt_maxima(const std::vector<float>& acts, std::size_t n_ex, std::uint32_t T, std::uint32_t N,
                    std::vector<float>& out) {
  for (std::size_t e = 0; e < n_ex; ++e)
    for (std::uint32_t n = 0; n < N; ++n) {
      float m = acts[(e * T) * N + n];
      for (std::uint32_t t = 1; t < T; ++t) {
        const float x = acts[(e * T + t) * N + n];
        m = x > m ? x : m;
      }
      out.push_back(m);
    }
}

}  // namespace

namespace {

// The fp32 CUDA backend against the CPU backend on random tokens: n_ex excerpts of T tokens in
// batches of `batch`, the given layers captured.
void check_backend_parity(const TransformerWeights& w, const std::vector<int>& layers, const char* what) {
  const int T = 64, n_ex = 96, batch = 32;
  const auto N = static_cast<std::uint32_t>(w.config.intermediate);
  CaptureParams params;
  params.T = T;
  params.seed = 99;
  const auto tokens =
      random_tokens(static_cast<std::size_t>(n_ex) * T, static_cast<std::uint32_t>(w.config.vocab_size), 6);
  std::vector<std::uint64_t> ids(n_ex);
  for (int e = 0; e < n_ex; ++e) ids[static_cast<std::size_t>(e)] = 5 + 3 * static_cast<std::uint64_t>(e);
  const auto tok = [&](int first) { return tokens.data() + static_cast<std::size_t>(first) * T; };

  CpuCollectBackend cpu(w, layers, params, 0);
  CudaCollectBackend gpu(w, layers, params, cuda::Precision::fp32);
  EXPECT_EQ(gpu.name(), "cuda:fp32");

  // Pre-pass on both; the main pass of both starts from the CPU's boundaries, so the quantile
  // bins differ only where the forward's rounding moves a maximum across a boundary.
  for (int b = 0; b < n_ex; b += batch) {
    cpu.prepass(tok(b), batch);
    gpu.prepass(tok(b), batch);
  }
  const auto cpu_hist = cpu.histograms();
  const auto gpu_hist = gpu.histograms();
  std::vector<CaptureState> cpu_init, gpu_init;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    CaptureParams lp = params;
    lp.layer = static_cast<std::uint32_t>(layers[l]);
    const auto bounds = cpu_hist[l].boundaries(params.quantile_fractions);
    cpu_init.emplace_back(lp, N, bounds);
    gpu_init.emplace_back(lp, N, bounds);
  }
  // The reference for the GPU: CPU reduction states fed with the GPU's own activations (the same
  // device model, so the same cuBLASLt algorithms); and the truth tables for tie analysis.
  std::vector<CaptureState> ref = gpu_init;
  std::vector<LayerTruth> truth(layers.size());
  std::vector<HistogramState> gpu_hist_ref(layers.size(), HistogramState(N));
  {
    TransformerCpu cpu_model(w, 0);
    for (int b = 0; b < n_ex; b += batch) {
      const auto g = gpu.model().forward_host(tok(b), batch, T, layers);
      CollectingSink sink;
      ForwardOptions fo;
      fo.last_layer = layers.back();
      cpu_model.forward(tok(b), batch, T, fo, sink);
      for (std::size_t l = 0; l < layers.size(); ++l) {
        const auto& ga = g.at(layers[l]);
        const auto& ca = sink.mlp.at(layers[l]);
        const Diff d = compare(ga, ca);
        truth[l].err = std::max(truth[l].err, d.max_abs);
        truth[l].scale = std::max(truth[l].scale, d.max_ref);
        excerpt_maxima(ga, batch, T, N, truth[l].gpu_max);
        excerpt_maxima(ca, batch, T, N, truth[l].cpu_max);
        ref[l].update(ga, std::span<const std::uint64_t>(ids.data() + b, batch), 0);
        gpu_hist_ref[l].update(ga, batch, T);
      }
    }
  }
  cpu.start_main(std::move(cpu_init));
  gpu.start_main(std::move(gpu_init));
  for (int b = 0; b < n_ex; b += batch) {
    cpu.main(tok(b), ids.data() + b, batch);
    gpu.main(tok(b), ids.data() + b, batch);
  }
  const auto cs = cpu.states();
  const auto gs = gpu.states();
  ASSERT_EQ(cs.size(), layers.size());
  ASSERT_EQ(gs.size(), layers.size());

  std::printf("backend parity, %s, %d excerpts x %d tokens, batches of %d:\n", what, n_ex, T, batch);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const LayerTruth& tr = truth[l];
    // Two excerpts can swap places only if their CPU maxima are within 2 err (each GPU
    // activation is within err of the CPU's); a small absolute slack covers the comparison.
    const double tie = 2.0 * tr.err + 1e-7 * tr.scale;
    std::printf(" layer %d: max|gpu-cpu| activation %.3e (max|cpu| %.3e, ratio %.3e)\n", layers[l], tr.err, tr.scale,
                tr.err / tr.scale);
    EXPECT_LE(tr.err, 1e-4 * tr.scale);

    // (a) exact integration: the backend's state is the CPU reduction of its own activations.
    EXPECT_TRUE(states_match(gs[l].arrays(), ref[l].arrays(), 1e-12, "GPU backend vs CPU reduction of GPU activations"));
    EXPECT_EQ(gpu_hist[l].counts(), gpu_hist_ref[l].counts()) << "pre-pass histograms of layer " << layers[l];

    // (b) against the CPU backend.
    const CaptureArrays& g = gs[l].arrays();
    const CaptureArrays& c = cs[l].arrays();
    const auto valid_id = [&](std::uint64_t id) {
      return id >= 5 && (id - 5) % 3 == 0 && (id - 5) / 3 < static_cast<std::uint64_t>(n_ex);
    };
    const auto excerpt_index = [&](std::uint64_t id) { return static_cast<std::size_t>((id - 5) / 3); };
    const auto cpu_max_of = [&](std::uint64_t id, std::size_t n) { return tr.cpu_max[excerpt_index(id) * N + n]; };
    const auto near_hist_edge = [&](std::size_t n) {
      for (int e = 0; e < n_ex; ++e) {
        const float m = tr.cpu_max[static_cast<std::size_t>(e) * N + n];
        const auto lo = static_cast<float>(m - tie), hi = static_cast<float>(m + tie);
        if (hist_bin_from_bits(float_bits(lo)) != hist_bin_from_bits(float_bits(hi))) return true;
      }
      return false;
    };
    const auto near_boundary = [&](std::size_t n) {
      const std::uint32_t m = params.n_boundaries();
      for (int e = 0; e < n_ex; ++e) {
        const double x = tr.cpu_max[static_cast<std::size_t>(e) * N + n];
        for (std::uint32_t k = 0; k < m; ++k)
          if (std::fabs(x - c.boundaries[n * m + k]) <= tie) return true;
      }
      return false;
    };
    std::size_t top_strict = 0, top_unexplained = 0, acts_bad = 0;
    std::size_t rnd_bad = 0, q_strict = 0, q_unexplained = 0, h_strict = 0, h_unexplained = 0;
    std::size_t pre_strict = 0, pre_unexplained = 0, mom_bad = 0;
    for (std::size_t n = 0; n < N; ++n) {
      // top-K: identical, or every differing slot explained by a near tie of CPU maxima
      const std::size_t K = params.K;
      bool same = g.topk_count[n] == c.topk_count[n];
      bool explained = same;
      for (std::size_t k = 0; k < K && explained; ++k) {
        const std::uint64_t gi = g.topk_ids[n * K + k], ci = c.topk_ids[n * K + k];
        if (gi == ci) continue;
        same = false;
        if (!valid_id(gi) || !valid_id(ci) ||
            std::fabs(static_cast<double>(cpu_max_of(gi, n)) - cpu_max_of(ci, n)) > tie)
          explained = false;
      }
      for (std::size_t k = 0; k < K && same; ++k) same = g.topk_ids[n * K + k] == c.topk_ids[n * K + k];
      top_strict += same ? 0 : 1;
      top_unexplained += explained ? 0 : 1;
      // activations of matching top-K entries within the forward's error
      for (std::size_t k = 0; k < K; ++k)
        if (g.topk_ids[n * K + k] == c.topk_ids[n * K + k])
          for (std::size_t t = 0; t < static_cast<std::size_t>(T); ++t)
            if (std::fabs(g.topk_acts[(n * K + k) * T + t] - c.topk_acts[(n * K + k) * T + t]) > tr.err * 1.000001)
              ++acts_bad;
      // random: a function of the hash alone
      const std::size_t R = params.R;
      if (g.random_count[n] != c.random_count[n] ||
          !std::equal(g.random_ids.begin() + n * R, g.random_ids.begin() + (n + 1) * R, c.random_ids.begin() + n * R) ||
          !std::equal(g.random_hash.begin() + n * R, g.random_hash.begin() + (n + 1) * R, c.random_hash.begin() + n * R))
        ++rnd_bad;
      // quantile lists and main-pass histograms
      const std::size_t QB = params.n_quantile_bins() * params.Q;
      const bool q_same =
          std::equal(g.quantile_ids.begin() + n * QB, g.quantile_ids.begin() + (n + 1) * QB, c.quantile_ids.begin() + n * QB);
      if (!q_same) {
        ++q_strict;
        if (!near_boundary(n)) ++q_unexplained;
      }
      const bool h_same = std::equal(g.hist.begin() + n * kHistBins, g.hist.begin() + (n + 1) * kHistBins,
                                     c.hist.begin() + n * kHistBins);
      if (!h_same) {
        ++h_strict;
        if (!near_hist_edge(n)) ++h_unexplained;
      }
      const auto& gp = gpu_hist[l].counts();
      const auto& cp = cpu_hist[l].counts();
      if (!std::equal(gp.begin() + n * kHistBins, gp.begin() + (n + 1) * kHistBins, cp.begin() + n * kHistBins)) {
        ++pre_strict;
        if (!near_hist_edge(n)) ++pre_unexplained;
      }
      // moments, relative to the natural scale of each sum
      const double cnt = static_cast<double>(c.mom_count[n]);
      const double sigma = std::sqrt(std::fabs(c.mom_m2[n]) / cnt);
      const bool mom_ok = g.mom_count[n] == c.mom_count[n] &&
                          std::fabs(g.mom_mean[n] - c.mom_mean[n]) <= 1e-4 * (std::fabs(c.mom_mean[n]) + sigma) &&
                          std::fabs(g.mom_m2[n] - c.mom_m2[n]) <= 1e-4 * c.mom_m2[n] &&
                          std::fabs(g.mom_m3[n] - c.mom_m3[n]) <= 1e-4 * (std::fabs(c.mom_m3[n]) + cnt * sigma * sigma * sigma) &&
                          std::fabs(g.mom_m4[n] - c.mom_m4[n]) <= 1e-4 * c.mom_m4[n];
      mom_bad += mom_ok ? 0 : 1;
    }
    std::printf("   top-K lists differing: %zu of %u neurons (%zu not explained by a near tie, must be 0); "
                "activations outside the forward error: %zu\n",
                top_strict, N, top_unexplained, acts_bad);
    std::printf("   random lists differing: %zu (must be 0); quantile lists differing: %zu (%zu not near a boundary)\n",
                rnd_bad, q_strict, q_unexplained);
    std::printf("   histograms differing: main %zu (%zu not near a bin edge), pre-pass %zu (%zu); moments off: %zu\n",
                h_strict, h_unexplained, pre_strict, pre_unexplained, mom_bad);
    EXPECT_EQ(top_unexplained, 0u);
    EXPECT_LE(top_strict, N / 100) << "more near-ties than plausible";
    EXPECT_EQ(acts_bad, 0u);
    EXPECT_EQ(rnd_bad, 0u);
    EXPECT_EQ(q_unexplained, 0u);
    EXPECT_EQ(h_unexplained, 0u);
    EXPECT_EQ(pre_unexplained, 0u);
    EXPECT_EQ(mom_bad, 0u);
  }
  std::fflush(stdout);
}

}  // namespace

TEST(CudaBackend, MatchesCpuBackend) {
  NEXPLAIN_REQUIRE_GPU();
  // GPT-2 small shape; layer 1 runs but is not captured.
  check_backend_parity(TransformerWeights::random(gpt2_config(3), 21), {0, 2},
                       "random GPT-2 small shape, layers 0 and 2");
}

TEST(CudaBackend, MatchesCpuBackendOnHfFixture) {
  NEXPLAIN_REQUIRE_GPU();
  NEXPLAIN_REQUIRE_SHARED(shared);
  check_backend_parity(TransformerWeights::load(shared / "fixtures" / "hf-gpt2-tiny"), {0, 1},
                       "hf-gpt2-tiny, layers 0 and 1");
}

// The same integration for the other families: RMSNorm, RoPE, grouped-query attention, gated
// MLPs, the parallel residual.
TEST(CudaBackend, MatchesCpuBackendOnEveryFamily) {
  NEXPLAIN_REQUIRE_GPU();
  NEXPLAIN_REQUIRE_SHARED(shared);
  for (const char* name : {"hf-llama-tiny", "hf-neox-tiny", "hf-qwen2-tiny"}) {
    SCOPED_TRACE(name);
    check_backend_parity(TransformerWeights::load(shared / "fixtures" / name), {0, 1},
                         (std::string(name) + ", layers 0 and 1").c_str());
  }
}

TEST(CudaBackend, ReducedPrecisionsReduceTheirOwnActivationsExactly) {
  NEXPLAIN_REQUIRE_GPU();
  const auto w = TransformerWeights::random(gpt2_config(2), 22);
  const std::vector<int> layers{1};
  const int T = 64, n_ex = 48, batch = 16;
  const auto N = static_cast<std::uint32_t>(w.config.intermediate);
  CaptureParams params;
  params.T = T;
  params.K = 10;
  params.R = 8;
  params.seed = 5;
  params.layer = 1;
  const auto tokens = random_tokens(static_cast<std::size_t>(n_ex) * T, 50257, 7);
  std::vector<std::uint64_t> ids(n_ex);
  for (int e = 0; e < n_ex; ++e) ids[static_cast<std::size_t>(e)] = 1000 + static_cast<std::uint64_t>(e);
  for (const auto prec : {cuda::Precision::tf32, cuda::Precision::bf16}) {
    CudaCollectBackend gpu(w, layers, params, prec);
    for (int b = 0; b < n_ex; b += batch) gpu.prepass(tokens.data() + static_cast<std::size_t>(b) * T, batch);
    const auto bounds = gpu.histograms()[0].boundaries(params.quantile_fractions);
    CaptureState ref(params, N, bounds);
    std::vector<CaptureState> init;
    init.emplace_back(params, N, bounds);
    gpu.start_main(std::move(init));
    for (int b = 0; b < n_ex; b += batch) {
      const auto* t = tokens.data() + static_cast<std::size_t>(b) * T;
      const auto acts = gpu.model().forward_host(t, batch, T, layers);
      ref.update(acts.at(1), std::span<const std::uint64_t>(ids.data() + b, batch), 0);
      gpu.main(t, ids.data() + b, batch);
    }
    const auto got = gpu.states();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(gpu.name(), std::string("cuda:") + cuda::precision_name(prec));
    EXPECT_TRUE(states_match(got[0].arrays(), ref.arrays(), 1e-12, gpu.name().c_str()));
  }
}

// The reduction overlapping the next layer's forward (two activation buffers, events between the
// streams) must give exactly the states of the serial order: any missing wait would let a layer's
// reduction read activations already overwritten by a later layer or batch.
TEST(CudaBackend, OverlapGivesTheSameStatesAsSerial) {
  NEXPLAIN_REQUIRE_GPU();
  const auto w = TransformerWeights::random(gpt2_config(3), 31);
  const std::vector<int> layers{0, 1, 2};
  const int T = 64, n_ex = 96, batch = 32;
  const auto N = static_cast<std::uint32_t>(w.config.intermediate);
  CaptureParams params;
  params.T = T;
  params.K = 8;
  params.R = 6;
  params.seed = 11;
  const auto tokens = random_tokens(static_cast<std::size_t>(n_ex) * T, 50257, 17);
  std::vector<std::uint64_t> ids(n_ex);
  for (int e = 0; e < n_ex; ++e) ids[static_cast<std::size_t>(e)] = 500 + 3 * static_cast<std::uint64_t>(e);
  for (const auto prec : {cuda::Precision::fp32, cuda::Precision::bf16}) {
    std::vector<CaptureState> results[2];
    for (int overlap = 0; overlap < 2; ++overlap) {
      CudaCollectBackend gpu(w, layers, params, prec);
      cuda::ForwardTuning t;
      t.overlap = overlap == 1;
      gpu.set_tuning(t);
      for (int b = 0; b < n_ex; b += batch) gpu.prepass(tokens.data() + static_cast<std::size_t>(b) * T, batch);
      const auto hists = gpu.histograms();
      std::vector<CaptureState> init;
      for (std::size_t i = 0; i < layers.size(); ++i) {
        CaptureParams lp = params;
        lp.layer = static_cast<std::uint32_t>(layers[i]);
        init.emplace_back(lp, N, hists[i].boundaries(params.quantile_fractions));
      }
      gpu.start_main(std::move(init));
      // Batches queued back to back without a synchronisation in between.
      for (int b = 0; b < n_ex; b += batch)
        gpu.main(tokens.data() + static_cast<std::size_t>(b) * T, ids.data() + b, batch);
      std::printf("  %s overlap %s: %s\n", cuda::precision_name(prec), overlap ? "on" : "off",
                  gpu.model().tuning_summary().c_str());
      results[overlap] = gpu.states();
    }
    ASSERT_EQ(results[0].size(), layers.size());
    for (std::size_t i = 0; i < layers.size(); ++i)
      EXPECT_TRUE(states_match(results[1][i].arrays(), results[0][i].arrays(), 0.0,
                               (std::string(cuda::precision_name(prec)) + " layer " + std::to_string(i)).c_str()));
  }
}

// The MPI collect's pattern: batches of one moment block, then take_moments right away, with no
// synchronisation in between and the reduction overlapping the forward. Each take must hold
// exactly the batches given before it (the take is queued behind their reductions) and equal the
// CPU reduction of the same device activations bit for bit; the states continue exactly.
TEST(CudaBackend, TakeMomentsFollowsTheQueuedBatches) {
  NEXPLAIN_REQUIRE_GPU();
  const auto w = TransformerWeights::random(gpt2_config(2, 128, 2, 1000), 41);  // n_inner 4 x 128
  const std::vector<int> layers{0, 1};
  const int T = 32, per_block = 50, batch = 16;
  const auto N = static_cast<std::uint32_t>(w.config.intermediate);
  CaptureParams params;
  params.T = T;
  params.K = 6;
  params.R = 5;
  params.seed = 13;
  // One rank's share of a 3-group run: moment blocks 1, 4 and 7, 50 excerpts each.
  std::vector<std::uint64_t> ids;
  for (const std::uint64_t block : {1u, 4u, 7u})
    for (int i = 0; i < per_block; ++i) ids.push_back(block * kMomentBlock + 5 * static_cast<std::uint64_t>(i));
  const auto tokens = random_tokens(ids.size() * T, static_cast<std::uint32_t>(w.config.vocab_size), 19);
  const auto tok = [&](std::size_t first) { return tokens.data() + first * T; };
  for (const auto prec : {cuda::Precision::fp32, cuda::Precision::bf16}) {
    SCOPED_TRACE(cuda::precision_name(prec));
    CudaCollectBackend gpu(w, layers, params, prec);
    // The reference: CPU states fed with the device model's own activations, batch by batch.
    std::vector<std::map<int, std::vector<float>>> acts;
    for (std::size_t b0 = 0; b0 < ids.size(); b0 += per_block)
      for (int b = 0; b < per_block; b += batch)
        acts.push_back(gpu.model().forward_host(tok(b0 + static_cast<std::size_t>(b)), std::min(batch, per_block - b),
                                                T, layers));
    std::vector<CaptureState> ref, init;
    for (int layer : layers) {
      CaptureParams lp = params;
      lp.layer = static_cast<std::uint32_t>(layer);
      ref.emplace_back(lp, N);
      init.emplace_back(lp, N);
    }
    gpu.start_main(std::move(init));
    std::size_t k = 0;
    for (std::size_t b0 = 0; b0 < ids.size(); b0 += per_block) {
      for (int b = 0; b < per_block; b += batch, ++k) {
        const int B = std::min(batch, per_block - b);
        const std::size_t first = b0 + static_cast<std::size_t>(b);
        gpu.main(tok(first), ids.data() + first, B);
        for (std::size_t l = 0; l < layers.size(); ++l)
          ref[l].update(acts[k].at(layers[l]), std::span<const std::uint64_t>(ids.data() + first, B), 0);
      }
      const auto took = gpu.take_moments();  // right after the last main(): nothing waited for yet
      ASSERT_EQ(took.size(), layers.size());
      for (std::size_t l = 0; l < layers.size(); ++l) {
        const std::string what = "layer " + std::to_string(layers[l]) + ", block of excerpt " + std::to_string(ids[b0]);
        const std::vector<Moments> want = ref[l].take_moments();
        EXPECT_EQ(want[0].count, static_cast<std::uint64_t>(per_block) * T) << what;
        EXPECT_TRUE(moments_identical(took[l], want, what));
      }
    }
    const auto got = gpu.states();
    ASSERT_EQ(got.size(), layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) {
      EXPECT_TRUE(states_match(got[l].arrays(), ref[l].arrays(), 0.0, "after the takes"));
      EXPECT_TRUE(splits_match(got[l].arrays(), ref[l].arrays()));
    }
  }
}

#endif  // NEXPLAIN_HAVE_CUDA

// ==================================================================== 4. the CLI (with or without a device)

namespace {

// collect --device cpu|cuda|auto and --precision through the real CLI on one model directory.
void check_device_option(const fs::path& model) {
  test::TempDir dir;
  const auto seqs = test::write_random_sequences(dir / "seqs.h5", 120, 32, 1000, 8);
  const auto collect = [&](const std::string& device, const std::string& precision, const fs::path& out) {
    return test::run_cli({"collect", "--model", model.string(), "--corpus", seqs.string(), "--out", out.string(),
                          "--batch", "25", "--threads", "2", "--device", device, "--precision", precision});
  };
  bool have_gpu = false;
#ifdef NEXPLAIN_HAVE_CUDA
  have_gpu = gpu().available;
#endif
  const auto cpu_out = dir / "cpu.h5";
  auto r = collect("cpu", "fp32", cpu_out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = collect("cpu", "bf16", dir / "x.h5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("the CPU backend computes in fp32 only"));
  r = collect("gpu", "fp32", dir / "x.h5");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("expected cpu, cuda or auto"));

  const auto auto_out = dir / "auto.h5";
  r = collect("auto", "fp32", auto_out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(RecordsFile(auto_out).meta().backend, have_gpu ? "cuda:fp32" : "cpu:fp32");

  const auto cuda_out = dir / "cuda.h5";
  r = collect("cuda", "fp32", cuda_out);
  if (!have_gpu) {
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, HasSubstr("--device cuda: no CUDA device: "));
    EXPECT_FALSE(fs::exists(cuda_out));
    return;
  }
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = collect("cuda", "fp16", dir / "x.h5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("expected fp32, tf32 or bf16"));
  for (const char* prec : {"tf32", "bf16"}) {
    r = collect("cuda", prec, dir / (std::string(prec) + ".h5"));
    ASSERT_EQ(r.exit_code, 0) << prec << ": " << r.err;
    EXPECT_EQ(RecordsFile(dir / (std::string(prec) + ".h5")).meta().backend, std::string("cuda:") + prec);
  }
  // The records of the CUDA run against the CPU run's (each computed its own pre-pass
  // boundaries, so only the value-independent parts must be identical).
  const RecordsFile fc(cpu_out), fg(cuda_out);
  EXPECT_EQ(fg.meta().backend, "cuda:fp32");
  for (int layer : fc.meta().layers) {
    const CaptureState sc = fc.layer_state(layer), sg = fg.layer_state(layer);
    const CaptureArrays& a = sc.arrays();
    const CaptureArrays& b = sg.arrays();
    EXPECT_EQ(a.random_ids, b.random_ids) << "layer " << layer;
    EXPECT_EQ(a.mom_count, b.mom_count) << "layer " << layer;
    const std::size_t K = fc.meta().params.K;
    std::size_t same_top = 0;
    for (std::size_t n = 0; n < a.n_neurons; ++n)
      same_top += std::equal(a.topk_ids.begin() + n * K, a.topk_ids.begin() + (n + 1) * K, b.topk_ids.begin() + n * K);
    std::printf("CLI collect, %s, layer %d: identical top-K lists for %zu of %u neurons\n",
                model.filename().c_str(), layer, same_top, a.n_neurons);
    EXPECT_GE(same_top * 100, std::size_t{99} * a.n_neurons) << "layer " << layer;
  }
}

}  // namespace

// Every family: the CUDA backend runs them all (and without a device they all fail the same way).
TEST(CudaCli, DeviceOptionSelectsTheBackend) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  for (const char* name : {"hf-gpt2-tiny", "hf-llama-tiny", "hf-neox-tiny", "hf-qwen2-tiny"}) {
    SCOPED_TRACE(name);
    check_device_option(shared / "fixtures" / name);
  }
}

#ifndef NEXPLAIN_HAVE_CUDA
TEST(CudaBackend, Skipped) { GTEST_SKIP() << "built without the CUDA backend (nvcc was not found at configure time)"; }
#endif
