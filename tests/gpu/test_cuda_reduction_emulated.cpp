// The device reduction's per-thread code (cuda/reduce_kernels.cu), run on the CPU through the
// emulate_* entry points, against CaptureState: the algorithm of the kernels (thresholds, candidate
// selection, the in-place back-to-front merge, the hash ranks, the moment arithmetic, the bf16
// reads, the moment-block take) must give bit-identical states. Needs the CUDA toolkit to build,
// but no device to run, so it checks the kernels' logic on every machine; the gpu tests then
// check the device itself.
#include <gtest/gtest.h>

#ifdef NEXPLAIN_HAVE_CUDA

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "capture/capture_state.hpp"
#include "capture/hash.hpp"
#include "capture/hist_bins.hpp"
#include "capture/histogram_state.hpp"
#include "cuda_engine.hpp"
#include "kernels.hpp"
#include "reduction_test_data.hpp"

using namespace nexplain;
using namespace nexplain::gputest;
namespace k = nexplain::cuda::kernels;

namespace {

// A CaptureArrays updated by the emulated kernels, exactly as DeviceCaptureState drives them.
class EmulatedState {
 public:
  // As DeviceCaptureState's upload: a_.mom_* hold the CLOSED moment blocks, open_* the open
  // block; arrays without the split read as closed = the mom_* total, no open block.
  // parallel_tests: the histogram and list tests in the per-(excerpt, neuron) pass
  // (ForwardTuning::parallel_list_tests) instead of each neuron's loop.
  EmulatedState(const CaptureParams& p, CaptureArrays a, bool parallel_tests = false)
      : p_(p), a_(std::move(a)), parallel_(parallel_tests) {
    const std::size_t N = a_.n_neurons;
    open_.assign(N, Moments{});
    open_block_.assign(N, k::kNoOpenBlock);
    if (!a_.mom_closed.empty()) {
      open_ = a_.mom_open;
      open_block_ = a_.mom_open_block;
      for (std::size_t n = 0; n < N; ++n) set_moments(a_, n, a_.mom_closed[n]);
    }
    a_.mom_closed.clear();
    a_.mom_open.clear();
    a_.mom_open_block.clear();
    open_count_.resize(N);
    open_mean_.resize(N);
    open_m2_.resize(N);
    open_m3_.resize(N);
    open_m4_.resize(N);
    for (std::size_t n = 0; n < N; ++n) {
      open_count_[n] = open_[n].count;
      open_mean_[n] = open_[n].mean;
      open_m2_[n] = open_[n].m2;
      open_m3_[n] = open_[n].m3;
      open_m4_[n] = open_[n].m4;
    }
  }

  void update(const void* acts, bool bf16, const std::uint64_t* ids, int B) {
    const std::size_t N = a_.n_neurons, bn = static_cast<std::size_t>(B) * N;
    const std::uint32_t cap = std::max({p_.K, p_.R, p_.Q, 1u});
    maxima_.assign(bn, 0.0f);
    lmean_.assign(bn, 0.0);
    lm2_.assign(bn, 0.0);
    lm3_.assign(bn, 0.0);
    lm4_.assign(bn, 0.0);
    cand_.assign(bn, 0);
    flags_.assign(bn, ~std::uint64_t{0});  // garbage: every entry must be written by the tests pass
    sel_.assign(cap * N, 0);
    words_.resize(static_cast<std::size_t>(B));
    for (int e = 0; e < B; ++e) words_[static_cast<std::size_t>(e)] = hash_word(ids[e]);
    k::ScratchView w;
    w.maxima = maxima_.data();
    w.lmean = lmean_.data();
    w.lm2 = lm2_.data();
    w.lm3 = lm3_.data();
    w.lm4 = lm4_.data();
    w.cand = cand_.data();
    w.sel = sel_.data();
    w.flags = flags_.data();
    if (parallel_) {
      k::emulate_excerpt_stats_tests(view(), acts, bf16, B, ids, words_.data(), w);
      k::emulate_neuron_update(view(), acts, bf16, B, ids, words_.data(), w, true);
    } else {
      k::emulate_excerpt_stats(acts, bf16, B, p_.T, a_.n_neurons, true, w);
      k::emulate_neuron_update(view(), acts, bf16, B, ids, words_.data(), w);
    }
  }

  // As DeviceCaptureState::take_moments: the kernel's per-neuron work, into a result buffer
  // filled with garbage first (every neuron must be written).
  std::vector<Moments> take_moments() {
    std::vector<Moments> out(a_.n_neurons, Moments{7, -1.5, 2.5, -3.5, 4.5});
    k::emulate_take_moments(view(), out.data());
    return out;
  }

  // As DeviceCaptureState's download: the split plus the total combine_moments(closed, open).
  CaptureArrays arrays() const {
    CaptureArrays out = a_;
    const std::size_t N = a_.n_neurons;
    out.mom_closed.resize(N);
    out.mom_open.resize(N);
    out.mom_open_block = open_block_;
    for (std::size_t n = 0; n < N; ++n) {
      out.mom_closed[n] = Moments{a_.mom_count[n], a_.mom_mean[n], a_.mom_m2[n], a_.mom_m3[n], a_.mom_m4[n]};
      out.mom_open[n] = Moments{open_count_[n], open_mean_[n], open_m2_[n], open_m3_[n], open_m4_[n]};
      set_moments(out, n, combine_moments(out.mom_closed[n], out.mom_open[n]));
    }
    return out;
  }

 private:
  static void set_moments(CaptureArrays& a, std::size_t n, const Moments& m) {
    a.mom_count[n] = m.count;
    a.mom_mean[n] = m.mean;
    a.mom_m2[n] = m.m2;
    a.mom_m3[n] = m.m3;
    a.mom_m4[n] = m.m4;
  }

  k::StateView view() {
    k::StateView v;
    v.N = a_.n_neurons;
    v.T = p_.T;
    v.K = p_.K;
    v.R = p_.R;
    v.Q = p_.Q;
    v.m = p_.n_boundaries();
    v.bins = p_.n_quantile_bins();
    v.quantiles = !a_.boundaries.empty() && p_.Q > 0;
    v.seed = p_.seed;
    v.layer = p_.layer;
    v.topk_count = a_.topk_count.data();
    v.topk_ids = a_.topk_ids.data();
    v.topk_max = a_.topk_max.data();
    v.topk_acts = a_.topk_acts.data();
    v.random_count = a_.random_count.data();
    v.random_ids = a_.random_ids.data();
    v.random_hash = a_.random_hash.data();
    v.random_max = a_.random_max.data();
    v.random_acts = a_.random_acts.data();
    v.quantile_count = a_.quantile_count.data();
    v.quantile_ids = a_.quantile_ids.data();
    v.quantile_hash = a_.quantile_hash.data();
    v.quantile_max = a_.quantile_max.data();
    v.quantile_acts = a_.quantile_acts.data();
    v.boundaries = a_.boundaries.data();
    v.hist = a_.hist.data();
    v.mom_count = a_.mom_count.data();
    v.mom_mean = a_.mom_mean.data();
    v.mom_m2 = a_.mom_m2.data();
    v.mom_m3 = a_.mom_m3.data();
    v.mom_m4 = a_.mom_m4.data();
    v.mom_open_count = open_count_.data();
    v.mom_open_mean = open_mean_.data();
    v.mom_open_m2 = open_m2_.data();
    v.mom_open_m3 = open_m3_.data();
    v.mom_open_m4 = open_m4_.data();
    v.mom_open_block = open_block_.data();
    return v;
  }

  CaptureParams p_;
  CaptureArrays a_;
  std::vector<float> maxima_;
  std::vector<double> lmean_, lm2_, lm3_, lm4_;
  std::vector<std::uint64_t> cand_, words_, flags_;
  bool parallel_ = false;
  std::vector<std::uint32_t> sel_;
  std::vector<Moments> open_;  // as imported; the kernel works on the arrays below
  std::vector<std::uint64_t> open_count_, open_block_;
  std::vector<double> open_mean_, open_m2_, open_m3_, open_m4_;
};

// The stream through a CPU state and the emulated kernels; halfway, the emulated state restarts
// from the CPU state's arrays (the start_main path). Moments must be bitwise here: the emulation
// runs the same double operations as the CPU.
void run_case_mode(const CaptureParams& p, const Stream& s, const std::vector<std::size_t>& batches,
                   bool with_boundaries, bool bf16, bool parallel_tests) {
  const ReductionInputs in = reduction_inputs(p, s, with_boundaries, bf16);
  const std::vector<float>& acts = in.acts;
  const std::vector<std::uint16_t>& acts_bf16 = in.acts_bf16;
  const std::vector<double>& bounds = in.bounds;
  CaptureState cpu(p, s.N, bounds);
  EmulatedState emu(p, CaptureArrays::empty(p, s.N, bounds), parallel_tests);
  std::size_t first = 0;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    const std::size_t c = batches[i];
    ASSERT_LE(first + c, s.size());
    const std::size_t off = first * s.T * s.N;
    cpu.update(std::span<const float>(acts.data() + off, s.values(c)), std::span<const std::uint64_t>(s.ids.data() + first, c));
    if (bf16)
      emu.update(acts_bf16.data() + off, true, s.ids.data() + first, static_cast<int>(c));
    else
      emu.update(acts.data() + off, false, s.ids.data() + first, static_cast<int>(c));
    first += c;
    if (i + 1 == batches.size() / 2) {
      ASSERT_TRUE(states_match(emu.arrays(), cpu.arrays(), 0.0, "emulated, first half"));
      emu = EmulatedState(p, cpu.arrays(), parallel_tests);
    }
  }
  EXPECT_TRUE(states_match(emu.arrays(), cpu.arrays(), 0.0, "emulated, final"));
  EXPECT_TRUE(splits_match(emu.arrays(), cpu.arrays()));
  EXPECT_NO_THROW({ const CaptureState st(p, emu.arrays()); });  // a valid host state
}

// Both ways of running the list tests: in each neuron's serial loop (the default) and in the
// per-(excerpt, neuron) pass (ForwardTuning::parallel_list_tests).
void run_case(const CaptureParams& p, const Stream& s, const std::vector<std::size_t>& batches, bool with_boundaries,
              bool bf16) {
  for (const bool parallel : {false, true}) {
    SCOPED_TRACE(parallel ? "parallel list tests" : "list tests in the neuron loop");
    run_case_mode(p, s, batches, with_boundaries, bf16, parallel);
  }
}

// take_plan() over make_block_stream through a CPU state and the emulated kernels: every take
// bitwise the CPU's, and the states (moment split included) identical after each take and at
// the end, so a state continues exactly after a take.
void run_take_case(bool bf16, bool parallel_tests) {
  const CaptureParams p = reduction_params();
  const Stream s = make_block_stream(bf16 ? 32 : 31, 150, p.T);
  const ReductionInputs in = reduction_inputs(p, s, true, bf16);
  CaptureState cpu(p, s.N, in.bounds);
  EmulatedState emu(p, CaptureArrays::empty(p, s.N, in.bounds), parallel_tests);
  std::size_t first = 0, n_takes = 0, since_take = 0;
  for (const TakeStep& step : take_plan()) {
    const std::size_t c = step.batch, off = first * s.T * s.N;
    ASSERT_LE(first + c, s.size());
    cpu.update(std::span<const float>(in.acts.data() + off, s.values(c)),
               std::span<const std::uint64_t>(s.ids.data() + first, c));
    if (bf16)
      emu.update(in.acts_bf16.data() + off, true, s.ids.data() + first, static_cast<int>(c));
    else
      emu.update(in.acts.data() + off, false, s.ids.data() + first, static_cast<int>(c));
    first += c;
    since_take += c;
    for (int t = 0; t < step.takes; ++t) {
      const std::string what = "take " + std::to_string(++n_takes) + " after excerpt " + std::to_string(first);
      const std::vector<Moments> want = cpu.take_moments();
      ASSERT_TRUE(moments_identical(emu.take_moments(), want, what));
      // What a take holds: every token since the previous take (none for the second of a pair).
      EXPECT_EQ(want[1].count, since_take * p.T) << what;
      since_take = 0;
      ASSERT_TRUE(states_match(emu.arrays(), cpu.arrays(), 0.0, what.c_str()));
      ASSERT_TRUE(splits_match(emu.arrays(), cpu.arrays())) << what;
    }
  }
  EXPECT_EQ(first, s.size());
  EXPECT_TRUE(states_match(emu.arrays(), cpu.arrays(), 0.0, "after the takes, final"));
  EXPECT_TRUE(splits_match(emu.arrays(), cpu.arrays()));
  EXPECT_TRUE(moments_identical(emu.take_moments(), cpu.take_moments(), "final take"));
}

}  // namespace

TEST(CudaReductionEmulated, MatchesCpuStateBitwise) {
  const CaptureParams p = reduction_params();
  const Stream s = make_stream(11, 333, p.T, 300);
  run_case(p, s, {37, 64, 1, 90, 50, 58}, true, false);
}

TEST(CudaReductionEmulated, Bf16ActivationsMatchCpuStateBitwise) {
  const CaptureParams p = reduction_params();
  const Stream s = make_stream(12, 200, p.T, 160);
  run_case(p, s, {40, 40, 3, 77}, true, true);
}

TEST(CudaReductionEmulated, MomentBlocksMatchCpuStateBitwise) {
  // Ids 0..~700 with gaps: batches cross moment blocks (256 ids) mid-batch, and the restart from
  // the CPU arrays happens mid-block, so the closed/open split is imported and exported.
  const CaptureParams p = reduction_params();
  Stream s = make_stream(21, 40, p.T, 300);
  for (std::size_t e = 0; e < s.size(); ++e) s.ids[e] = 2 * e + (e % 3 == 0 ? 1 : 0) + e / 100 * 50;
  ASSERT_EQ(moment_block(s.ids.back()), 2u);
  run_case(p, s, {100, 7, 93, 100}, true, false);
}

TEST(CudaReductionEmulated, TakeMomentsMatchesCpuStateBitwise) {
  for (const bool bf16 : {false, true})
    for (const bool parallel : {false, true}) {
      SCOPED_TRACE(std::string(bf16 ? "bf16" : "fp32") + (parallel ? ", parallel list tests" : ""));
      run_take_case(bf16, parallel);
    }
}

TEST(CudaReductionEmulated, EdgeParameters) {
  CaptureParams p = reduction_params();
  p.T = 1;
  p.K = 1;
  p.R = 0;
  run_case(p, make_stream(13, 1, p.T, 100), {10, 1, 89}, false, false);
  CaptureParams q = reduction_params();
  q.T = 130;
  q.K = 40;
  q.R = 33;
  q.Q = 9;
  run_case(q, make_stream(14, 70, q.T, 120), {64, 20, 36}, true, false);
  CaptureParams r = reduction_params();
  r.K = 0;
  r.Q = 0;
  r.quantile_fractions = {0.5};
  run_case(r, make_stream(17, 50, r.T, 60), {30, 30}, true, false);
}

TEST(CudaReductionEmulated, ManySmallBatchesAndLargeLists) {
  // Every batch smaller than the lists: the merge interleaves old and new entries throughout.
  CaptureParams p = reduction_params();
  p.K = 25;
  p.R = 25;
  p.Q = 10;
  const Stream s = make_stream(18, 97, p.T, 200);
  std::vector<std::size_t> batches(40, 5);
  run_case(p, s, batches, true, false);
}

TEST(CudaReductionEmulated, PrepassHistogramsMatchCpu) {
  const Stream s = make_stream(15, 321, 16, 150);
  HistogramState cpu(s.N);
  std::vector<std::uint64_t> hist(std::size_t{s.N} * kHistBins, 0);
  std::size_t first = 0;
  for (std::size_t c : {50u, 1u, 99u}) {
    cpu.update(std::span<const float>(s.acts_of(first), s.values(c)), c, s.T);
    std::vector<float> maxima(c * s.N);
    k::ScratchView w;
    w.maxima = maxima.data();
    k::emulate_excerpt_stats(s.acts_of(first), false, static_cast<int>(c), s.T, s.N, false, w);
    k::emulate_hist_update(hist.data(), maxima.data(), static_cast<int>(c), s.N);
    first += c;
  }
  EXPECT_EQ(hist, cpu.counts());
}

TEST(CudaReductionEmulated, Bf16RoundingMatchesTheDeviceRule) {
  // Round to nearest even, NaN kept quiet, overflow to infinity: __float2bfloat16_rn's rule.
  EXPECT_EQ(cuda::float_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(cuda::float_to_bf16_bits(-2.0f), 0xc000);
  EXPECT_EQ(cuda::float_to_bf16_bits(1.00390625f), 0x3f80);       // exactly half an ulp: to even
  EXPECT_EQ(cuda::float_to_bf16_bits(1.01171875f), 0x3f82);       // half an ulp above odd: up
  EXPECT_EQ(cuda::float_to_bf16_bits(3.4e38f), 0x7f80);           // rounds to +inf
  EXPECT_EQ(cuda::float_to_bf16_bits(-0.0f), 0x8000);
  EXPECT_EQ(cuda::float_to_bf16_bits(std::nanf("")) & 0x7fc0, 0x7fc0);
  EXPECT_EQ(cuda::bf16_bits_to_float(0x3f80), 1.0f);
}

#else

TEST(CudaReductionEmulated, Skipped) { GTEST_SKIP() << "built without the CUDA backend (nvcc was not found at configure time)"; }

#endif  // NEXPLAIN_HAVE_CUDA
