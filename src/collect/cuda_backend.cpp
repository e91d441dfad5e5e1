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

// The selected layers are ascending and inside the blocks [begin, end) the backend runs, which
// lie inside the model. Only a pipeline stage may select no layer (it passes hidden states on).
void check_layers(const std::vector<int>& layers, int begin, int end, int n_layer, bool stage) {
  if (begin < 0 || end > n_layer || begin >= end)
    fail("CUDA backend: blocks [{}, {}) are not a range of the model's {} layers", begin, end, n_layer);
  if (layers.empty() && !stage) fail("CUDA backend: no layers selected");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < begin || layers[i] >= end)
      fail("CUDA backend: layer {} is outside the blocks {}..{} this backend runs (the model has {} layers)", layers[i],
           begin, end - 1, n_layer);
    if (i > 0 && layers[i] <= layers[i - 1]) fail("CUDA backend: layers must be strictly ascending");
  }
}

}  // namespace

CudaCollectBackend::CudaCollectBackend(const TransformerWeights& weights, std::vector<int> layers,
                                       const CaptureParams& params, cuda::Precision precision, int block_begin,
                                       int block_end)
    : layers_(std::move(layers)), params_(params) {
  weights.config.validate("CUDA backend");
  block_begin_ = block_begin;
  block_end_ = block_end >= 0 ? block_end : (layers_.empty() ? block_begin : layers_.back() + 1);
  check_layers(layers_, block_begin_, block_end_, weights.config.n_layer, block_end >= 0);
  params_.validate();
  model_ = std::make_unique<cuda::TransformerDevice>(weights, block_begin_, block_end_ - 1, precision);
  attach_reduce_stream();
}

CudaCollectBackend::CudaCollectBackend(std::unique_ptr<cuda::TransformerDevice> model, std::vector<int> layers,
                                       const CaptureParams& params)
    : model_(std::move(model)), layers_(std::move(layers)), params_(params) {
  if (!model_) fail("CUDA backend: no model");
  block_begin_ = model_->first_layer();
  block_end_ = model_->last_layer() + 1;
  check_layers(layers_, block_begin_, block_end_, model_->config().n_layer, false);
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

void CudaCollectBackend::ensure_histograms() {
  const auto N = static_cast<std::uint32_t>(model_->config().intermediate);
  if (hists_.empty())
    for (std::size_t i = 0; i < layers_.size(); ++i)
      hists_.push_back(std::make_unique<cuda::DeviceHistograms>(N, params_.T, *reduce_, scratch_));
}

cuda::TransformerDevice::ActCallback CudaCollectBackend::reducer(bool main_pass) {
  return [this, main_pass](int layer, const cuda::ActView& a) {
    const int i = selected_index(layer);
    if (i < 0) return;  // a layer run only to reach a later one
    if (main_pass)
      states_[static_cast<std::size_t>(i)]->update(a, *ids_);
    else
      hists_[static_cast<std::size_t>(i)]->update(a);
  };
}

void CudaCollectBackend::prepass(const std::uint32_t* tokens, int B) {
  if (layers_.empty()) fail("CUDA backend: no layers selected (a pipeline stage runs stage())");
  ensure_histograms();
  model_->forward(tokens, B, static_cast<int>(params_.T), layers_.back(), reducer(false));
}

std::vector<HistogramState> CudaCollectBackend::histograms() {
  const auto N = static_cast<std::uint32_t>(model_->config().intermediate);
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
  const auto N = static_cast<std::uint32_t>(model_->config().intermediate);
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

void CudaCollectBackend::upload_ids(const std::uint64_t* ids, int B) {
  if (states_.size() != layers_.size()) fail("CUDA backend: main pass before start_main()");
  if (B <= 0) fail("CUDA backend: empty batch (B={})", B);
  for (int e = 0; e < B; ++e) {
    if (ids[e] == kNoExcerpt) fail("capture update: excerpt id {} is reserved", ids[e]);
    if (e > 0 && ids[e] <= ids[e - 1])
      fail("capture update: excerpt ids must be strictly increasing in a batch ({} after {})", ids[e], ids[e - 1]);
  }
  ids_->upload(ids, B);
}

void CudaCollectBackend::main(const std::uint32_t* tokens, const std::uint64_t* ids, int B) {
  if (layers_.empty()) fail("CUDA backend: no layers selected (a pipeline stage runs stage())");
  upload_ids(ids, B);
  model_->forward(tokens, B, static_cast<int>(params_.T), layers_.back(), reducer(true));
}

void CudaCollectBackend::stage(const std::uint32_t* tokens, float* hidden, const std::uint64_t* ids, int B) {
  if (ids)
    upload_ids(ids, B);
  else
    ensure_histograms();
  // Captures only the selected layers (reducer() ignores the others); an empty selection
  // captures nothing (the range is then [begin, begin - 1]).
  const int first = layers_.empty() ? block_begin_ : layers_.front();
  const int last = layers_.empty() ? block_begin_ - 1 : layers_.back();
  model_->run_blocks(tokens, hidden, B, static_cast<int>(params_.T), block_begin_, block_end_, first, last,
                     reducer(ids != nullptr));
}

std::vector<CaptureState> CudaCollectBackend::states() {
  std::vector<CaptureState> out;
  out.reserve(states_.size());
  for (auto& s : states_) out.emplace_back(s->params(), s->download());
  return out;
}

std::vector<std::vector<Moments>> CudaCollectBackend::take_moments() {
  std::vector<std::vector<Moments>> out;
  out.reserve(states_.size());
  for (auto& s : states_) out.push_back(s->take_moments());
  return out;
}

void CudaCollectBackend::synchronize() {
  model_->stream().synchronize();
  reduce_->synchronize();
}

}  // namespace nexplain

#endif  // NEXPLAIN_HAVE_CUDA
