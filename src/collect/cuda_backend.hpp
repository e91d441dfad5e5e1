#pragma once
// The CUDA collect backend: the GPT-2 forward on the device (cuBLASLt, fp32/tf32/bf16) feeding
// per-layer reduction states that live in device memory; only states() and histograms() copy
// anything back. Same semantics as CpuCollectBackend (docs/CUDA.md, docs/REDUCTION.md).
// Built only with the CUDA toolkit (NEXPLAIN_HAVE_CUDA); without it this header declares nothing.
#ifdef NEXPLAIN_HAVE_CUDA

#include <memory>
#include <string>
#include <vector>

#include "collect/collect_backend.hpp"
#include "cuda_engine.hpp"
#include "model/gpt2_weights.hpp"

namespace nexplain {

class CudaCollectBackend : public CollectBackend {
 public:
  // layers: ascending selected layers; the weights of blocks 0..layers.back() are uploaded.
  CudaCollectBackend(const Gpt2Weights& weights, std::vector<int> layers, const CaptureParams& params,
                     cuda::Precision precision);
  // With a model already on the device (benchmarks: Gpt2Device::random).
  CudaCollectBackend(std::unique_ptr<cuda::Gpt2Device> model, std::vector<int> layers, const CaptureParams& params);
  ~CudaCollectBackend() override;

  std::string name() const override;  // "cuda:fp32" | "cuda:tf32" | "cuda:bf16"
  void prepass(const std::uint32_t* tokens, int B) override;
  std::vector<HistogramState> histograms() override;
  void start_main(std::vector<CaptureState> states) override;
  void main(const std::uint32_t* tokens, const std::uint64_t* ids, int B) override;
  std::vector<CaptureState> states() override;

  // Waits for all queued work (benchmarks); asynchronous errors surface here as Error.
  void synchronize();
  cuda::Gpt2Device& model() { return *model_; }
  // Benchmarks: forward tuning (cuda::ForwardTuning; results stay within tolerance) and a phase
  // timer for the forward and the reduction kernels (nullptr: off).
  void set_tuning(const cuda::ForwardTuning& t);
  void set_phase_timer(cuda::PhaseTimer* timer);

 private:
  int selected_index(int layer) const;  // index into layers_, or -1
  void attach_reduce_stream();           // constructors: the reduction's stream and its buffers

  std::unique_ptr<cuda::Gpt2Device> model_;  // owns the forward's stream: destroyed last
  // The reduction's stream: every state, histogram, the scratch and the excerpt ids live on it, so
  // a layer's reduction overlaps the forward of the next layer (ForwardTuning::overlap).
  std::unique_ptr<cuda::Stream> reduce_;
  cuda::PhaseTimer* timer_ = nullptr;
  std::vector<int> layers_;
  CaptureParams params_;
  std::shared_ptr<cuda::ReduceScratch> scratch_;
  std::unique_ptr<cuda::DeviceBatchIds> ids_;
  std::vector<std::unique_ptr<cuda::DeviceHistograms>> hists_;
  std::vector<std::unique_ptr<cuda::DeviceCaptureState>> states_;
};

}  // namespace nexplain

#endif  // NEXPLAIN_HAVE_CUDA
