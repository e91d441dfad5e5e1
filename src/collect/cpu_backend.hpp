#pragma once
// The CPU collect backend: the fp32 forward of any supported family (TransformerCpu, OpenBLAS)
// feeding host reduction states. It is the reference every other backend is checked against.
#include <memory>
#include <vector>

#include "collect/collect_backend.hpp"
#include "model/transformer_cpu.hpp"
#include "model/transformer_weights.hpp"

namespace nexplain {

class CpuCollectBackend : public CollectBackend {
 public:
  // layers: ascending selected layers. threads: for the forward and the reductions.
  // [block_begin, block_end): the blocks stage() runs (a pipeline stage; -1 = up to the last
  // selected layer); `layers` are then the selected layers inside that range (may be none).
  // The backend owns `weights` (a stage loads only its blocks: TransformerLoadOptions).
  CpuCollectBackend(TransformerWeights weights, std::vector<int> layers, const CaptureParams& params, int threads,
                    int block_begin = 0, int block_end = -1);
  ~CpuCollectBackend() override;

  std::string name() const override { return "cpu:fp32"; }
  void prepass(const std::uint32_t* tokens, int B) override;
  std::vector<HistogramState> histograms() override { return hists_; }
  void start_main(std::vector<CaptureState> states) override;
  void main(const std::uint32_t* tokens, const std::uint64_t* ids, int B) override;
  std::vector<CaptureState> states() override { return states_; }
  std::vector<std::vector<Moments>> take_moments() override;
  void stage(const std::uint32_t* tokens, float* hidden, const std::uint64_t* ids, int B) override;

 private:
  class Sink;
  TransformerWeights weights_;  // before model_, which keeps a reference to it
  TransformerCpu model_;
  std::vector<int> layers_;
  CaptureParams params_;
  int threads_;
  int block_begin_, block_end_;
  std::vector<HistogramState> hists_;
  std::vector<CaptureState> states_;
};

}  // namespace nexplain
