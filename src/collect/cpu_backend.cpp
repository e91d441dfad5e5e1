#include "collect/cpu_backend.hpp"

#include <algorithm>
#include <span>
#include <utility>

namespace nexplain {

// Routes each captured layer to its histogram (pre-pass) or reduction state (main pass).
class CpuCollectBackend::Sink : public ActivationSink {
 public:
  Sink(CpuCollectBackend& b, const std::uint64_t* ids) : b_(b), ids_(ids) {}
  void mlp_activations(int layer, const float* acts, int B, int T, int n_inner) override {
    const auto it = std::lower_bound(b_.layers_.begin(), b_.layers_.end(), layer);
    if (it == b_.layers_.end() || *it != layer) return;  // a layer run only to reach a later one
    const auto i = static_cast<std::size_t>(it - b_.layers_.begin());
    const std::span<const float> a(acts, static_cast<std::size_t>(B) * T * n_inner);
    if (ids_ == nullptr) {
      b_.hists_[i].update(a, static_cast<std::size_t>(B), static_cast<std::uint32_t>(T));
    } else {
      b_.states_[i].update(a, std::span<const std::uint64_t>(ids_, static_cast<std::size_t>(B)),
                           static_cast<unsigned>(b_.threads_));
    }
  }

 private:
  CpuCollectBackend& b_;
  const std::uint64_t* ids_;
};

CpuCollectBackend::CpuCollectBackend(TransformerWeights weights, std::vector<int> layers, const CaptureParams& params,
                                     int threads, int block_begin, int block_end)
    : weights_(std::move(weights)),
      model_(weights_, threads),
      layers_(std::move(layers)),
      params_(params),
      threads_(model_.threads()),
      block_begin_(block_begin),
      block_end_(block_end >= 0 ? block_end : (layers_.empty() ? 0 : layers_.back() + 1)) {
  for (std::size_t i = 0; i < layers_.size(); ++i) hists_.emplace_back(static_cast<std::uint32_t>(weights_.config.intermediate));
}

CpuCollectBackend::~CpuCollectBackend() = default;

void CpuCollectBackend::prepass(const std::uint32_t* tokens, int B) {
  Sink sink(*this, nullptr);
  ForwardOptions opt;
  opt.first_layer = layers_.front();
  opt.last_layer = layers_.back();
  model_.forward(tokens, B, static_cast<int>(params_.T), opt, sink);
}

void CpuCollectBackend::start_main(std::vector<CaptureState> states) { states_ = std::move(states); }

void CpuCollectBackend::main(const std::uint32_t* tokens, const std::uint64_t* ids, int B) {
  Sink sink(*this, ids);
  ForwardOptions opt;
  opt.first_layer = layers_.front();
  opt.last_layer = layers_.back();
  model_.forward(tokens, B, static_cast<int>(params_.T), opt, sink);
}

void CpuCollectBackend::stage(const std::uint32_t* tokens, float* hidden, const std::uint64_t* ids, int B) {
  const int T = static_cast<int>(params_.T);
  if (tokens != nullptr) model_.embed(tokens, B, T, hidden);
  Sink sink(*this, ids);
  // Captures only the selected layers (the sink ignores the others); an empty selection
  // captures nothing (the range is then [begin, begin - 1]).
  const int first = layers_.empty() ? block_begin_ : layers_.front();
  const int last = layers_.empty() ? block_begin_ - 1 : layers_.back();
  model_.run_blocks(hidden, B, T, block_begin_, block_end_, first, last, sink);
}

std::vector<std::vector<Moments>> CpuCollectBackend::take_moments() {
  std::vector<std::vector<Moments>> out;
  for (auto& s : states_) out.push_back(s.take_moments());
  return out;
}

}  // namespace nexplain
