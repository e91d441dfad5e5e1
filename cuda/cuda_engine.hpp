#pragma once
// The CUDA backend's device engine behind a plain C++ interface: this header includes no CUDA
// header, so host code (src/collect/cuda_backend.cpp, tests, benchmarks) compiles with any C++20
// compiler. docs/CUDA.md describes the design.
//
//   Stream              one CUDA stream; everything of one backend is ordered on it
//   TransformerDevice   a model's weights (any family of ArchConfig) on the device + workspace +
//                       cuBLASLt; the forward pass and its pipeline-stage building block
//   DeviceBatchIds      one batch's excerpt ids (and hash words) staged to the device
//   DeviceCaptureState  one layer's reduction state (the CaptureArrays of src/capture) on the
//                       device, updated by kernels with exactly CaptureState::update's semantics
//   DeviceHistograms    the pre-pass histograms of one layer on the device
//
// Only functions defined inline in src/ headers may be used from cuda/ (nexplain_cuda is linked
// after nexplain_lib): everything that needs the rest of the library lives in src/collect.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "capture/capture_arrays.hpp"
#include "capture/params.hpp"
#include "model/arch_config.hpp"
#include "model/transformer_weights.hpp"

namespace nexplain::cuda {

// GEMM precision. fp32: CUBLAS_COMPUTE_32F; tf32: CUBLAS_COMPUTE_32F_FAST_TF32 (fp32 storage);
// bf16: bf16 weights and GEMM inputs (norm outputs, attention outputs, MLP activations), fp32
// accumulation, fp32 residual stream, norm statistics, RoPE, softmax and activation arithmetic.
enum class Precision { fp32, tf32, bf16 };
// "fp32" | "tf32" | "bf16"; anything else is an Error naming the accepted values.
Precision parse_precision(const std::string& text);
const char* precision_name(Precision p);

class PhaseTimer;

// How the forward is put together. Every combination stays within the precision's tolerance of
// the CPU forward (tests/gpu); the defaults are the fastest measured (bench/NOTES.md).
struct ForwardTuning {
  // The qkv projection's bias (GPT-2's c_attn) added by the cuBLASLt epilogue instead of a
  // separate kernel pass over qkv (models with a qkv bias).
  bool bias_epilogue = true;
  // The o and down projections (GPT-2's attn.c_proj and mlp.c_proj) accumulate into the residual
  // stream in the GEMM (beta = 1, their bias, if any, in the epilogue) instead of writing a
  // temporary and adding it in another pass.
  bool residual_epilogue = true;
  // The up projection's bias and GELU in the cuBLASLt epilogue. Its GELU is the tanh form, HF's
  // gelu_new, so this applies only to a plain MLP with gelu_new and a bias (GPT-2's c_fc, a
  // GPT-NeoX with gelu_new); every other activation always runs in a kernel. -1: for bf16 only
  // (there the activations are rounded to bf16 anyway; fp32 and tf32 keep the gelu_new kernel,
  // whose tanhf is the CPU's); 0: never; 1: always.
  int gelu_epilogue = -1;
  // The reduction of layer l runs on the consumer stream while the forward goes on with layer
  // l + 1 (two activation buffers used alternately, events between the streams).
  bool overlap = true;
  // The reduction (not the forward): histogram counts and list tests one thread per (excerpt,
  // neuron) instead of in each neuron's serial loop (cuda/reduce_kernels.cu). Identical results;
  // off until measured on a device (bench/NOTES.md).
  bool parallel_list_tests = false;
};

// The MLP neurons of one layer in device memory: row-major [B*T][N] (row = excerpt * T + t),
// float or bfloat16. Valid until the next forward call on the same stream.
struct ActView {
  const void* data = nullptr;
  bool bf16 = false;
  int B = 0, T = 0, N = 0;
};

class Stream {
 public:
  Stream();  // a stream on the current device, ordered with the legacy default stream
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void* handle() const { return s_; }  // cudaStream_t
  void synchronize();                  // waits; reports asynchronous errors as Error

 private:
  void* s_ = nullptr;
};

// Tests and tools: a float copy of activations on the device (bf16 converted exactly), after the
// work queued on `stream` (the stream that produced them). Synchronous.
std::vector<float> download_acts(const ActView& acts, Stream& stream);

class TransformerDevice {
 public:
  // Uploads blocks [first_layer, last_layer] of `w` (which must be loaded) and, when w holds
  // them, the token (+ learned position) embeddings, converting the matrices to bf16 for
  // Precision::bf16. Never the final norm or the LM head: collect needs neither. A pipeline
  // stage that does not start at layer 0 loads its blocks only (TransformerLoadOptions).
  TransformerDevice(const TransformerWeights& w, int first_layer, int last_layer, Precision precision);
  // Benchmarks: HF-style random weights (N(0, 0.02), residual projections o and down
  // N(0, 0.02/sqrt(2L)), zero biases, unit norm gains) for blocks 0..last_layer and the
  // embeddings, generated on the device; deterministic in `seed`, but not the same numbers as
  // TransformerWeights::random. Returns a ready model; no host copy is ever made.
  static std::unique_ptr<TransformerDevice> random(const ArchConfig& config, int last_layer, Precision precision,
                                                   std::uint64_t seed);
  ~TransformerDevice();
  TransformerDevice(const TransformerDevice&) = delete;
  TransformerDevice& operator=(const TransformerDevice&) = delete;

  const ArchConfig& config() const;
  Precision precision() const;
  int first_layer() const;
  int last_layer() const;
  bool has_embeddings() const;
  Stream& stream();
  std::size_t weight_bytes() const;

  void set_tuning(const ForwardTuning& t);
  const ForwardTuning& tuning() const;
  // What the forward actually uses, e.g. "bias:epilogue residual:epilogue gelu:epilogue": an
  // epilogue cuBLASLt has no algorithm for falls back to the kernels, and this says so; a step
  // the model does not have (no qkv bias) or that always runs in a kernel (any activation but a
  // plain MLP's biased gelu_new) is named so ("bias:none", "act:kernel").
  std::string tuning_summary() const;
  // With a consumer stream, on_acts is called for kernels to be queued on `consumer`, which is
  // made to wait for that layer's activations. With tuning().overlap the forward goes on with
  // the next layer and waits for the consumer only before overwriting an activation buffer two
  // layers later (also across batches); without, it waits for the consumer right away. Inputs
  // the consumer reads (excerpt ids) belong on the consumer stream. nullptr (the default):
  // everything on stream(), as before.
  void set_consumer_stream(Stream* consumer);
  Stream& consumer_stream();  // the consumer, or stream() when there is none
  // Marks every step of the forward on `timer` (nullptr: off). Needs no consumer stream.
  void set_phase_timer(PhaseTimer* timer);

  // Runs blocks 0..run_to (inclusive, run_to <= last_layer; needs first_layer 0 and the
  // embeddings) on tokens (host, [B][T]), calling on_acts(layer, acts) right after each block's
  // neurons are computed, on the host thread, with the work queued on stream() (not yet
  // finished: consumers queue their kernels behind it). The MLP down-projection of block run_to
  // is skipped. Asynchronous: no host synchronisation except that the pinned staging buffer of
  // the batch before the previous one must have been copied. Throws Error for token ids >=
  // vocab_size (naming row and position), T beyond a learned position table, bad B.
  using ActCallback = std::function<void(int layer, const ActView& acts)>;
  void forward(const std::uint32_t* tokens, int B, int T, int run_to, const ActCallback& on_acts);

  // Pipeline-stage building block, TransformerCpu::embed + run_blocks on the device: the host
  // residual stream `hidden` [B*T, C] is uploaded (or, when `tokens` [B][T] are given, the
  // embedding of the tokens is computed instead), blocks [layer_begin, layer_end) (within the
  // uploaded ones) run on it, and it is downloaded back into `hidden`, in place. on_acts is
  // called as in forward() for the blocks in [capture_first, capture_last]. Synchronous for the
  // forward's stream (the hidden state is on the host on return); a consumer's work may still
  // be running.
  void run_blocks(const std::uint32_t* tokens, float* hidden, int B, int T, int layer_begin, int layer_end,
                  int capture_first, int capture_last, const ActCallback& on_acts);

  // Tests: host float copies of the neurons of `layers` (ascending, <= last_layer), each
  // [B*T][intermediate]. Synchronous.
  std::map<int, std::vector<float>> forward_host(const std::uint32_t* tokens, int B, int T,
                                                 const std::vector<int>& layers);

 private:
  // Allocates only.
  TransformerDevice(const ArchConfig& config, int first_layer, int last_layer, bool embeddings, Precision precision);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Excerpt ids of one batch on the device: ids[B] and hash_word(ids[B]). upload() is
// asynchronous; the pinned staging buffers alternate, so the host waits only for the upload of
// the batch before the previous one.
class DeviceBatchIds {
 public:
  explicit DeviceBatchIds(Stream& stream);
  ~DeviceBatchIds();
  DeviceBatchIds(const DeviceBatchIds&) = delete;
  DeviceBatchIds& operator=(const DeviceBatchIds&) = delete;
  void upload(const std::uint64_t* ids, int B);
  const std::uint64_t* ids() const;    // device pointer
  const std::uint64_t* words() const;  // device pointer
  int size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Scratch memory of the reduction kernels (per-excerpt maxima and moments, candidate lists),
// shared by every layer state of one stream and grown on demand.
class ReduceScratch;
std::shared_ptr<ReduceScratch> make_reduce_scratch(Stream& stream);

class DeviceCaptureState {
 public:
  // Uploads `arrays` (shapes checked against params: Error). `scratch` may be shared between
  // the layers of one stream; nullptr makes a private one.
  DeviceCaptureState(const CaptureParams& params, const CaptureArrays& arrays, Stream& stream,
                     std::shared_ptr<ReduceScratch> scratch = nullptr);
  ~DeviceCaptureState();
  DeviceCaptureState(const DeviceCaptureState&) = delete;
  DeviceCaptureState& operator=(const DeviceCaptureState&) = delete;

  const CaptureParams& params() const;
  std::uint32_t n_neurons() const;
  std::size_t device_bytes() const;

  // Adds a batch already on the device (acts.T must equal params().T, acts.N n_neurons()).
  // The ids are the caller's responsibility (strictly increasing, never seen, < kNoExcerpt).
  // Asynchronous on the stream.
  void update(const ActView& acts, const DeviceBatchIds& ids);
  // Tests and tools: host activations [n_excerpts*T][N] and ids, validated exactly as
  // CaptureState::update validates them. The bf16 variant takes bfloat16 bit patterns.
  void update_host(const float* acts, std::size_t n_values, const std::uint64_t* ids, int n_excerpts);
  void update_host_bf16(const std::uint16_t* acts, std::size_t n_values, const std::uint64_t* ids, int n_excerpts);

  // The state as host arrays (synchronises the stream). boundaries are the ones given.
  CaptureArrays download();

  // CaptureState::take_moments on the device: per neuron, the moments accumulated since the last
  // take (bitwise the CPU's), leaving the state without moments or open block. One small kernel
  // queued on the stream after every update queued before it, then one copy of N Moments to the
  // host (never the whole state); synchronises the stream. The MPI collect takes one moment
  // block at a time (docs/MPI.md).
  std::vector<Moments> take_moments();

  // Marks the reduction's two kernels on `timer` (bench/collect_gpu --breakdown; nullptr: off).
  void set_phase_timer(PhaseTimer* timer);
  // ForwardTuning::parallel_list_tests for this state (identical results either way).
  void set_parallel_list_tests(bool on);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class DeviceHistograms {
 public:
  DeviceHistograms(std::uint32_t n_neurons, std::uint32_t T, Stream& stream,
                   std::shared_ptr<ReduceScratch> scratch = nullptr);
  ~DeviceHistograms();
  DeviceHistograms(const DeviceHistograms&) = delete;
  DeviceHistograms& operator=(const DeviceHistograms&) = delete;
  void update(const ActView& acts);  // asynchronous
  void update_host(const float* acts, std::size_t n_values, int n_excerpts);  // tests
  std::vector<std::uint64_t> download();  // [N][kHistBins]; synchronises

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// bfloat16 bits of a float, round to nearest even (NaN stays NaN): the host twin of
// __float2bfloat16_rn, for tests that feed the same bf16 values to the CPU and the device.
std::uint16_t float_to_bf16_bits(float x);
float bf16_bits_to_float(std::uint16_t b);

}  // namespace nexplain::cuda
