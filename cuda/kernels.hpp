#pragma once
// Kernel launchers of the CUDA backend (internal to cuda/). Every launcher checks its launch
// (NX_CUDA_LAUNCHED) and bounds its grid; all work is queued on the given stream.
// "bf16" flags select bfloat16 storage for a buffer that is otherwise float.
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "capture/moments.hpp"

namespace nexplain::cuda::kernels {

// ---------------------------------------------------------------- forward (forward_kernels.cu)
// The MLP activations (ArchConfig's ActKind, restated: cuda/ headers stay free of src/model):
// gelu_tanh = HF gelu_new / gelu_pytorch_tanh, gelu_erf = torch's exact GELU, silu, relu.
enum class Act { gelu_tanh, gelu_erf, silu, relu };

// x[r][i] = wte[tokens[r]][i] (+ wpe[r % T][i] when wpe is given: learned positions); rows = B*T.
// Token ids are checked on the host.
void embed(float* x, const std::uint32_t* tokens, const float* wte, const float* wpe, std::size_t rows, int T, int C,
           cudaStream_t s);
// out[r] = (x[r] - mean) * rstd * gamma + beta, statistics in double as the CPU forward.
void layernorm(void* out, bool out_bf16, const float* x, const float* gamma, const float* beta, std::size_t rows,
               int C, double eps, cudaStream_t s);
// out[r] = gamma * (x[r] * rstd), rstd = 1 / sqrt(mean(x^2) + eps) in double (HF LlamaRMSNorm).
void rmsnorm(void* out, bool out_bf16, const float* x, const float* gamma, std::size_t rows, int C, double eps,
             cudaStream_t s);
// y[r][j] += b[j]  (float)
void add_bias(float* y, const float* b, std::size_t rows, int N, cudaStream_t s);
// x[r][j] += y[r][j] (+ b[j] when b is given)  (float residual stream)
void residual_add(float* x, const float* y, const float* b, std::size_t rows, int N, cudaStream_t s);
// y[r][j] = act(y[r][j] (+ b[j] when b is given)) in place (float arithmetic, float or bf16
// storage). gelu_tanh is the gelu_new expression of the CPU forward.
void bias_act(void* y, bool bf16, const float* b, std::size_t rows, int N, Act act, cudaStream_t s);
// The gated MLP's neurons: up [rows][2N] holds [gate | up] (the fused up projection), b the
// matching [2N] bias or nullptr; out[r][j] = act(gate[r][j] + b[j]) * (up[r][j] + b[N + j]).
// up and out are float or both bf16.
void gated_act(void* out, const void* up, bool bf16, const float* b, std::size_t rows, int N, Act act, cudaStream_t s);
// Rotary embedding in place on the q and k heads of qkv [B*T][(H + 2 Hkv) hd] ([q heads | k heads
// | v heads], head h at columns h * hd of its part): the first 2 * half dims of every q and k head
// rotate pairwise (i, i + half) by the angle of the row's position t = row % T, HF's rotate_half
// convention; cos/sin are [T][half] (model/rope.hpp).
void rope(float* qkv, const float* cos, const float* sin, std::size_t rows, int T, int H, int Hkv, int hd, int half,
          cudaStream_t s);
// Causal self-attention with grouped-query heads: qkv as for rope(), query head h reads k/v head
// h / (H / Hkv) (Hkv = H: plain multi-head attention); out [B*T][H hd].
// Throws Error when T and the head size do not fit the kernel's shared memory.
void attention(const float* qkv, void* out, bool out_bf16, int B, int T, int H, int Hkv, int hd, cudaStream_t s);
// out[i] = bf16(in[i])
void float_to_bf16(void* out, const float* in, std::size_t n, cudaStream_t s);
// Device-side random init: out[i] = sd * N(0,1) from a counter-based hash of (seed, i).
void init_normal(void* out, bool bf16, std::size_t n, std::uint64_t seed, float sd, cudaStream_t s);
void init_const(void* out, bool bf16, std::size_t n, float value, cudaStream_t s);

// ---------------------------------------------------------------- reduction (reduce_kernels.cu)
// Device pointers of one layer's state, laid out exactly as CaptureArrays.
struct StateView {
  std::uint32_t N = 0, T = 0, K = 0, R = 0, Q = 0;
  std::uint32_t m = 0;      // boundaries per neuron
  std::uint32_t bins = 1;   // quantile bins = m + 1
  bool quantiles = false;   // boundaries present and Q > 0
  std::uint64_t seed = 0;
  std::uint32_t layer = 0;
  std::uint32_t* topk_count = nullptr;
  std::uint64_t* topk_ids = nullptr;
  float* topk_max = nullptr;
  float* topk_acts = nullptr;
  std::uint32_t* random_count = nullptr;
  std::uint64_t* random_ids = nullptr;
  std::uint64_t* random_hash = nullptr;
  float* random_max = nullptr;
  float* random_acts = nullptr;
  std::uint32_t* quantile_count = nullptr;
  std::uint64_t* quantile_ids = nullptr;
  std::uint64_t* quantile_hash = nullptr;
  float* quantile_max = nullptr;
  float* quantile_acts = nullptr;
  const double* boundaries = nullptr;
  std::uint64_t* hist = nullptr;
  std::uint64_t* mom_count = nullptr;
  double* mom_mean = nullptr;
  double* mom_m2 = nullptr;
  double* mom_m3 = nullptr;
  double* mom_m4 = nullptr;
  // Moment blocks (capture/moments.hpp, docs/REDUCTION.md): mom_* above hold the CLOSED blocks'
  // total; these hold the open block's partial moments and its index (kNoOpenBlock: none), so
  // the device groups the combines exactly as CaptureState does. Total = combine(closed, open).
  std::uint64_t* mom_open_count = nullptr;
  double* mom_open_mean = nullptr;
  double* mom_open_m2 = nullptr;
  double* mom_open_m3 = nullptr;
  double* mom_open_m4 = nullptr;
  std::uint64_t* mom_open_block = nullptr;
};

// No open moment block (CaptureState's kNoBlock).
inline constexpr std::uint64_t kNoOpenBlock = ~std::uint64_t{0};

// Per-batch scratch, all [B][N] (excerpt-major) except sel [cap][N].
struct ScratchView {
  float* maxima = nullptr;
  double* lmean = nullptr;
  double* lm2 = nullptr;
  double* lm3 = nullptr;
  double* lm4 = nullptr;
  std::uint64_t* cand = nullptr;
  std::uint32_t* sel = nullptr;
  std::uint64_t* flags = nullptr;  // [B][N], parallel list tests only: a candidate entry or 0
};

// Per (excerpt, neuron): the excerpt max (normative fold) and, when `moments`, the excerpt's
// local moments (normative two-pass rule) into the scratch.
void excerpt_stats(const void* acts, bool bf16, int B, std::uint32_t T, std::uint32_t N, bool moments,
                   const ScratchView& w, cudaStream_t s);
// Per neuron: moments combined in excerpt order within each moment block of the ids (closed /
// open split of StateView), histogram of the maxima, and the top-K, random
// and quantile lists updated exactly as CaptureState::update. ids/words: device [B].
// tests_done: excerpt_stats_tests already counted the histogram and flagged the candidates
// (w.flags); only the moments and the merges are left.
void neuron_update(const StateView& st, const void* acts, bool bf16, int B, const std::uint64_t* ids,
                   const std::uint64_t* words, const ScratchView& w, cudaStream_t s, bool tests_done = false);
// Parallel list tests (reduce_kernels.cu): excerpt_stats with moments, plus per (excerpt, neuron)
// the histogram count (integer atomics) and the list tests against the lists before the batch,
// into w.flags. Followed by neuron_update(..., tests_done = true).
void excerpt_stats_tests(const StateView& st, const void* acts, bool bf16, int B, const std::uint64_t* ids,
                         const std::uint64_t* words, const ScratchView& w, cudaStream_t s);
// Pre-pass: hist[n][bin(maxima[e][n])] += 1 for every excerpt.
void hist_update(std::uint64_t* hist, const float* maxima, int B, std::uint32_t N, cudaStream_t s);
// CaptureState::take_moments per neuron: out[n] (device, [N]) = the moments since the last take,
// combine(closed, open) with combine_moments' formula, operation for operation; then the closed
// and open moments are emptied and no block is open. Queued on `s` after the updates before it.
void take_moments(const StateView& st, Moments* out, cudaStream_t s);

// The same steps run on the CPU by the very same per-thread code (host memory, no GPU):
// lets tests check the reduction algorithm bit for bit where no device is present.
void emulate_excerpt_stats(const void* acts, bool bf16, int B, std::uint32_t T, std::uint32_t N, bool moments,
                           const ScratchView& w);
void emulate_neuron_update(const StateView& st, const void* acts, bool bf16, int B, const std::uint64_t* ids,
                           const std::uint64_t* words, const ScratchView& w, bool tests_done = false);
void emulate_excerpt_stats_tests(const StateView& st, const void* acts, bool bf16, int B, const std::uint64_t* ids,
                                 const std::uint64_t* words, const ScratchView& w);
void emulate_hist_update(std::uint64_t* hist, const float* maxima, int B, std::uint32_t N);
void emulate_take_moments(const StateView& st, Moments* out);

}  // namespace nexplain::cuda::kernels
