// The CUDA collect backend: glue between the collect stage and the device engine in cuda/.
// Compiled to nothing without the CUDA toolkit.
#ifdef NEXPLAIN_HAVE_CUDA

#include "collect/cuda_backend.hpp"

#include <algorithm>
#include <utility>

#include <cuda_runtime.h>

#include "capture/hist_bins.hpp"
#include "core/error.hpp"

namespace nexplain {

namespace {

void check_layers(const std::vector<int>& layers, int n_layer) {
  if (layers.empty()) fail("CUDA backend: no layers selected");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || layers[i] >= n_layer)
      fail("CUDA backend: layer {} is outside the model's {} layers", layers[i], n_layer);
    if (i > 0 && layers[i] <= layers[i - 1]) fail("CUDA backend: layers must be strictly ascending");
  }
}

}  // namespace

CudaCollectBackend::CudaCollectBackend(const Gpt2Weights& weights, std::vector<int> layers,
                                       const CaptureParams& params, cuda::Precision precision)
    : layers_(std::move(layers)), params_(params) {
  weights.config.validate("CUDA backend");
  check_layers(layers_, weights.config.n_layer);
  params_.validate();
  model_ = std::make_unique<cuda::Gpt2Device>(weights, layers_.back(), precision);
  attach_reduce_stream();
}

CudaCollectBackend::CudaCollectBackend(std::unique_ptr<cuda::Gpt2Device> model, std::vector<int> layers,
                                       const CaptureParams& params)
    : model_(std::move(model)), layers_(std::move(layers)), params_(params) {
  if (!model_) fail("CUDA backend: no model");
  check_layers(layers_, model_->config().n_layer);
  if (layers_.back() > model_->last_layer())
    fail("CUDA backend: layer {} selected, but the device model holds blocks 0..{}", layers_.back(),
         model_->last_layer());
  params_.validate();
  attach_reduce_stream();
}

void CudaCollectBackend::attach_reduce_stream() {
  reduce_ = std::make_unique<cuda::Stream>();
  model_->set_consumer_stream(reduce_.get());
  scratch_ = cuda::make_reduce_scratch(*reduce_);
  ids_ = std::make_unique<cuda::DeviceBatchIds>(*reduce_);
}

void CudaCollectBackend::set_tuning(const cuda::ForwardTuning& t) {
  model_->set_tuning(t);
  for (auto& st : states_) st->set_parallel_list_tests(t.parallel_list_tests);
}

void CudaCollectBackend::set_phase_timer(cuda::PhaseTimer* timer) {
  timer_ = timer;
  model_->set_phase_timer(timer);
  for (auto& st : states_) st->set_phase_timer(timer);
}

CudaCollectBackend::~CudaCollectBackend() {
  // Both streams idle before anything is freed: the forward may still wait on the reduction's
  // events. Then members go in reverse order: states, histograms, ids and scratch, the
  // reduction's stream, the model (and its stream) last.
  cudaDeviceSynchronize();
}

std::string CudaCollectBackend::name() const {
  return std::string("cuda:") + cuda::precision_name(model_->precision());
}

int CudaCollectBackend::selected_index(int layer) const {
  const auto it = std::lower_bound(layers_.begin(), layers_.end(), layer);
  return it == layers_.end() || *it != layer ? -1 : static_cast<int>(it - layers_.begin());
}

void CudaCollectBackend::prepass(const std::uint32_t* tokens, int B) {
  const auto N = static_cast<std::uint32_t>(model_->config().n_inner);
  if (hists_.empty())
    for (std::size_t i = 0; i < layers_.size(); ++i)
      hists_.push_back(std::make_unique<cuda::DeviceHistograms>(N, params_.T, *reduce_, scratch_));
  model_->forward(tokens, B, static_cast<int>(params_.T), layers_.back(), [&](int layer, const cuda::ActView& a) {
    const int i = selected_index(layer);
    if (i >= 0) hists_[static_cast<std::size_t>(i)]->update(a);
  });
}

std::vector<HistogramState> CudaCollectBackend::histograms() {
  const auto N = static_cast<std::uint32_t>(model_->config().n_inner);
  std::vector<HistogramState> out;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    if (i < hists_.size())
      out.emplace_back(N, hists_[i]->download());
    else
      out.emplace_back(N);  // no pre-pass batch yet: empty histograms, as the CPU backend
  }
  return out;
}

void CudaCollectBackend::start_main(std::vector<CaptureState> states) {
  if (states.size() != layers_.size())
    fail("CUDA backend: {} states for {} selected layers", states.size(), layers_.size());
  const auto N = static_cast<std::uint32_t>(model_->config().n_inner);
  states_.clear();  // frees the device memory of any previous states first
  for (std::size_t i = 0; i < states.size(); ++i) {
    const CaptureState& s = states[i];
    if (s.n_neurons() != N)
      fail("CUDA backend: state {} holds {} neurons, layer {} has {}", i, s.n_neurons(), layers_[i], N);
    if (s.params().T != params_.T)
      fail("CUDA backend: state {} has T={}, the backend runs T={}", i, s.params().T, params_.T);
    const CaptureParams p = s.params();
    const CaptureArrays arrays = std::move(states[i]).release();  // host memory goes layer by layer
    states_.push_back(std::make_unique<cuda::DeviceCaptureState>(p, arrays, *reduce_, scratch_));
    states_.back()->set_phase_timer(timer_);
    states_.back()->set_parallel_list_tests(model_->tuning().parallel_list_tests);
  }
}

void CudaCollectBackend::main(const std::uint32_t* tokens, const std::uint64_t* ids, int B) {
  if (states_.size() != layers_.size()) fail("CUDA backend: main() before start_main()");
  if (B <= 0) fail("CUDA backend: empty batch (B={})", B);
  for (int e = 0; e < B; ++e) {
    if (ids[e] == kNoExcerpt) fail("capture update: excerpt id {} is reserved", ids[e]);
    if (e > 0 && ids[e] <= ids[e - 1])
      fail("capture update: excerpt ids must be strictly increasing in a batch ({} after {})", ids[e], ids[e - 1]);
  }
  ids_->upload(ids, B);
  model_->forward(tokens, B, static_cast<int>(params_.T), layers_.back(), [&](int layer, const cuda::ActView& a) {
    const int i = selected_index(layer);
    if (i >= 0) states_[static_cast<std::size_t>(i)]->update(a, *ids_);
  });
}

std::vector<CaptureState> CudaCollectBackend::states() {
  std::vector<CaptureState> out;
  out.reserve(states_.size());
  for (auto& s : states_) out.emplace_back(s->params(), s->download());
  return out;
}

void CudaCollectBackend::synchronize() {
  model_->stream().synchronize();
  reduce_->synchronize();
}

}  // namespace nexplain

#endif  // NEXPLAIN_HAVE_CUDA
