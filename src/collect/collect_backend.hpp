#pragma once
// What the collect stage asks of a compute backend (CPU now, CUDA in cuda/): run batches of
// excerpts through the model and fold the captured MLP activations of the selected layers into
// per-layer reduction states that the backend owns (on the GPU they live in device memory, so
// only final records ever leave it). States are exported as host CaptureState / HistogramState,
// so merging, checkpoints and the HDF5 writer are shared by every backend.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "capture/capture_state.hpp"
#include "capture/histogram_state.hpp"

namespace nexplain {

class CollectBackend {
 public:
  virtual ~CollectBackend() = default;
  virtual std::string name() const = 0;

  // Histogram pre-pass: accumulate excerpt-max histograms of every selected layer.
  // tokens: [B, T] row-major.
  virtual void prepass(const std::uint32_t* tokens, int B) = 0;
  virtual std::vector<HistogramState> histograms() = 0;  // one per selected layer, in order

  // Main pass. start_main sets the per-layer states (empty, or restored from a checkpoint).
  virtual void start_main(std::vector<CaptureState> states) = 0;
  virtual void main(const std::uint32_t* tokens, const std::uint64_t* ids, int B) = 0;
  virtual std::vector<CaptureState> states() = 0;  // export (copies)
  // Per selected layer, the moments accumulated since the last take, leaving them empty: the
  // MPI driver takes one moment block at a time (CaptureState::take_moments, docs/MPI.md).
  virtual std::vector<std::vector<Moments>> take_moments();

  // Pipeline stage (docs/MPI.md): runs the backend's block range on the residual stream
  // `hidden` [B*T, n_embd] in place, embedding `tokens` [B, T] into it first when they are
  // given (stage 0). ids == nullptr: pre-pass (histograms); else the main pass with these ids.
  virtual void stage(const std::uint32_t* tokens, float* hidden, const std::uint64_t* ids, int B);
};

}  // namespace nexplain
