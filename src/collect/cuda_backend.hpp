#pragma once
// The CUDA collect backend: the forward of any supported family on the device (cuBLASLt,
// fp32/tf32/bf16) feeding per-layer reduction states that live in device memory; only states(),
// histograms() and the per-neuron moments of take_moments() are copied back. Same semantics as
// CpuCollectBackend (docs/CUDA.md, docs/REDUCTION.md), pipeline stages included.
// Built only with the CUDA toolkit (NEXPLAIN_HAVE_CUDA); without it this header declares nothing.
#ifdef NEXPLAIN_HAVE_CUDA

#include <memory>
#include <string>
#include <vector>

#include "collect/collect_backend.hpp"
#include "cuda_engine.hpp"
#include "model/transformer_weights.hpp"

namespace nexplain {

class CudaCollectBackend : public CollectBackend {
 public:
  // layers: ascending selected layers. [block_begin, block_end): the blocks stage() runs (a
  // pipeline stage; -1 = up to the last selected layer); `layers` are then the selected layers
  // inside that range (may be none). The weights of those blocks (and the embeddings, when
  // `weights` holds them) are uploaded; `weights` may be freed afterwards.
  CudaCollectBackend(const TransformerWeights& weights, std::vector<int> layers, const CaptureParams& params,
                     cuda::Precision precision, int block_begin = 0, int block_end = -1);
  // With a model already on the device (benchmarks: TransformerDevice::random); its blocks are
  // the ones stage() runs.
  CudaCollectBackend(std::unique_ptr<cuda::TransformerDevice> model, std::vector<int> layers,
                     const CaptureParams& params);
  ~CudaCollectBackend() override;

  std::string name() const override;  // "cuda:fp32" | "cuda:tf32" | "cuda:bf16"
  void prepass(const std::uint32_t* tokens, int B) override;
  std::vector<HistogramState> histograms() override;
  void start_main(std::vector<CaptureState> states) override;
  void main(const std::uint32_t* tokens, const std::uint64_t* ids, int B) override;
  std::vector<CaptureState> states() override;
  void stage(const std::uint32_t* tokens, float* hidden, const std::uint64_t* ids, int B) override;
  // Per selected layer, DeviceCaptureState::take_moments: N moments copied from the device per
  // layer, ordered after every batch given to main() (the MPI collect's moment blocks).
  std::vector<std::vector<Moments>> take_moments() override;

  // Waits for all queued work (benchmarks); asynchronous errors surface here as Error.
  void synchronize();
  cuda::TransformerDevice& model() { return *model_; }
  // Benchmarks: forward tuning (cuda::ForwardTuning; results stay within tolerance) and a phase
  // timer for the forward and the reduction kernels (nullptr: off).
  void set_tuning(const cuda::ForwardTuning& t);
  void set_phase_timer(cuda::PhaseTimer* timer);

 private:
  int selected_index(int layer) const;  // index into layers_, or -1
  void attach_reduce_stream();           // constructors: the reduction's stream and its buffers
  void ensure_histograms();              // the pre-pass histograms, on first use
  void upload_ids(const std::uint64_t* ids, int B);  // checked as CaptureState::update checks them
  // The callback that feeds a selected layer's activations to its histograms (pre-pass) or, for
  // the main pass, its states.
  cuda::TransformerDevice::ActCallback reducer(bool main_pass);

  std::unique_ptr<cuda::TransformerDevice> model_;  // owns the forward's stream: destroyed last
  // The reduction's stream: every state, histogram, the scratch and the excerpt ids live on it, so
  // a layer's reduction overlaps the forward of the next layer (ForwardTuning::overlap).
  std::unique_ptr<cuda::Stream> reduce_;
  cuda::PhaseTimer* timer_ = nullptr;
  std::vector<int> layers_;
  int block_begin_ = 0, block_end_ = 0;  // stage(): blocks [begin, end)
  CaptureParams params_;
  std::shared_ptr<cuda::ReduceScratch> scratch_;
  std::unique_ptr<cuda::DeviceBatchIds> ids_;
  std::vector<std::unique_ptr<cuda::DeviceHistograms>> hists_;
  std::vector<std::unique_ptr<cuda::DeviceCaptureState>> states_;
};

}  // namespace nexplain

#endif  // NEXPLAIN_HAVE_CUDA
