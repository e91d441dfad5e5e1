// Device-side reduction states: CaptureArrays mirrored in device memory and updated by the kernels
// of reduce_kernels.cu. Upload and download are plain copies of the arrays, so a state can move
// between the CPU and the GPU at any point (checkpoints, merges, HDF5) without conversion.
#include <algorithm>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "capture/hist_bins.hpp"
#include "capture/hash.hpp"
#include "capture/moments.hpp"
#include "core/error.hpp"
#include "cuda_check.hpp"
#include "cuda_engine.hpp"
#include "device_buffer.hpp"
#include "phase_timer.hpp"
#include "kernels.hpp"

namespace nexplain::cuda {

namespace {

cudaStream_t as_stream(Stream& s) { return static_cast<cudaStream_t>(s.handle()); }

// The checks of CaptureState::check_batch, with its messages.
void check_batch(const CaptureParams& p, std::uint32_t N, std::size_t n_values, const std::uint64_t* ids,
                 int n_excerpts) {
  if (n_excerpts < 0) fail("capture update (layer {}): negative excerpt count {}", p.layer, n_excerpts);
  const std::size_t n_ex = static_cast<std::size_t>(n_excerpts);
  const std::size_t expected = n_ex * p.T * std::size_t{N};
  if (n_values != expected)
    fail("capture update (layer {}): {} activations for {} excerpts x {} tokens x {} neurons (expected {})", p.layer,
         n_values, n_ex, p.T, N, expected);
  for (std::size_t e = 0; e < n_ex; ++e) {
    if (ids[e] == kNoExcerpt) fail("capture update (layer {}): excerpt id {} is reserved", p.layer, ids[e]);
    if (e > 0 && ids[e] <= ids[e - 1])
      fail("capture update (layer {}): excerpt ids must be strictly increasing in a batch ({} after {})", p.layer,
           ids[e], ids[e - 1]);
  }
}

template <typename V>
void check_size(const V& v, std::size_t expected, std::string_view name) {
  if (v.size() != expected)
    fail("CUDA capture state: array {} has {} elements, expected {}", name, v.size(), expected);
}

void check_counts(const std::vector<std::uint32_t>& c, std::uint32_t cap, std::string_view name) {
  for (std::size_t i = 0; i < c.size(); ++i)
    if (c[i] > cap) fail("CUDA capture state: {}[{}] = {} exceeds the capacity {}", name, i, c[i], cap);
}

// CaptureArrays::check_shapes, restated here: cuda/ may only use inline code of src/.
void check_arrays(const CaptureParams& p, const CaptureArrays& a) {
  if (p.T == 0) fail("CUDA capture state: T (tokens per excerpt) must be at least 1");
  const std::size_t N = a.n_neurons, T = p.T, B = p.n_quantile_bins();
  check_size(a.topk_count, N, "topk_count");
  check_size(a.topk_ids, N * p.K, "topk_ids");
  check_size(a.topk_max, N * p.K, "topk_max");
  check_size(a.topk_acts, N * p.K * T, "topk_acts");
  check_size(a.random_count, N, "random_count");
  check_size(a.random_ids, N * p.R, "random_ids");
  check_size(a.random_hash, N * p.R, "random_hash");
  check_size(a.random_max, N * p.R, "random_max");
  check_size(a.random_acts, N * p.R * T, "random_acts");
  check_size(a.quantile_count, N * B, "quantile_count");
  check_size(a.quantile_ids, N * B * p.Q, "quantile_ids");
  check_size(a.quantile_hash, N * B * p.Q, "quantile_hash");
  check_size(a.quantile_max, N * B * p.Q, "quantile_max");
  check_size(a.quantile_acts, N * B * p.Q * T, "quantile_acts");
  if (!a.boundaries.empty()) check_size(a.boundaries, N * p.n_boundaries(), "boundaries");
  check_size(a.hist, N * kHistBins, "hist");
  check_size(a.mom_count, N, "mom_count");
  check_size(a.mom_mean, N, "mom_mean");
  check_size(a.mom_m2, N, "mom_m2");
  check_size(a.mom_m3, N, "mom_m3");
  check_size(a.mom_m4, N, "mom_m4");
  if (!a.mom_closed.empty() || !a.mom_open.empty() || !a.mom_open_block.empty()) {  // the moment-block split
    check_size(a.mom_closed, N, "mom_closed");
    check_size(a.mom_open, N, "mom_open");
    check_size(a.mom_open_block, N, "mom_open_block");
  }
  check_counts(a.topk_count, p.K, "topk_count");
  check_counts(a.random_count, p.R, "random_count");
  check_counts(a.quantile_count, a.boundaries.empty() ? 0 : p.Q, "quantile_count");
}

template <typename T>
void upload_vec(DeviceArray<T>& d, const std::vector<T>& h) {
  d.resize(h.size());
  d.upload(h.data(), h.size());
}

template <typename T>
void download_vec(const DeviceArray<T>& d, std::vector<T>& h) {
  h.resize(d.size());
  d.download(h.data(), h.size());
}

}  // namespace

// ---------------------------------------------------------------- bf16 host helpers

std::uint16_t float_to_bf16_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<std::uint16_t>(u >> 16);
}

float bf16_bits_to_float(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// ---------------------------------------------------------------- ReduceScratch

class ReduceScratch {
 public:
  explicit ReduceScratch(Stream& s) : stream_(s) {}

  // Scratch for a batch of B excerpts x N neurons; sel holds `sel_cap` slots per neuron.
  // flags: the [B][N] flags of the parallel list tests are needed too.
  kernels::ScratchView view(int B, std::uint32_t N, std::uint32_t sel_cap, bool moments, bool flags = false) {
    const std::size_t bn = static_cast<std::size_t>(B) * N;
    const std::size_t sel = static_cast<std::size_t>(std::max<std::uint32_t>(sel_cap, 1)) * N;
    const bool grow = maxima_.size() < bn || cand_.size() < bn || sel_.size() < sel ||
                      (moments && lmean_.size() < bn) || (flags && flags_.size() < bn);
    if (grow) {
      stream_.synchronize();  // kernels in flight may still read the old buffers
      if (maxima_.size() < bn) maxima_.resize(bn);
      if (cand_.size() < bn) cand_.resize(bn);
      if (sel_.size() < sel) sel_.resize(sel);
      if (flags && flags_.size() < bn) flags_.resize(bn);
      if (moments && lmean_.size() < bn) {
        lmean_.resize(bn);
        lm2_.resize(bn);
        lm3_.resize(bn);
        lm4_.resize(bn);
      }
    }
    kernels::ScratchView v;
    v.maxima = maxima_.get();
    v.lmean = lmean_.get();
    v.lm2 = lm2_.get();
    v.lm3 = lm3_.get();
    v.lm4 = lm4_.get();
    v.cand = cand_.get();
    v.sel = sel_.get();
    v.flags = flags_.get();
    return v;
  }

  Stream& stream() { return stream_; }

 private:
  Stream& stream_;
  DeviceArray<float> maxima_;
  DeviceArray<double> lmean_, lm2_, lm3_, lm4_;
  DeviceArray<std::uint64_t> cand_, flags_;
  DeviceArray<std::uint32_t> sel_;
};

std::shared_ptr<ReduceScratch> make_reduce_scratch(Stream& stream) { return std::make_shared<ReduceScratch>(stream); }

// ---------------------------------------------------------------- DeviceBatchIds

struct DeviceBatchIds::Impl {
  Stream& stream;
  int n = 0;
  std::size_t cap = 0;
  DeviceArray<std::uint64_t> ids, words;
  PinnedArray<std::uint64_t> staging[2];  // [ids | words], 2 * cap each
  Event uploaded[2];
  int slot = 0;
  explicit Impl(Stream& s) : stream(s) {}
};

DeviceBatchIds::DeviceBatchIds(Stream& stream) : impl_(std::make_unique<Impl>(stream)) {}

DeviceBatchIds::~DeviceBatchIds() {
  if (impl_) cudaStreamSynchronize(as_stream(impl_->stream));
}

void DeviceBatchIds::upload(const std::uint64_t* ids, int B) {
  auto& m = *impl_;
  if (B < 0) fail("CUDA batch ids: negative batch size {}", B);
  const std::size_t n = static_cast<std::size_t>(B);
  if (n > m.cap) {
    m.stream.synchronize();
    m.ids.resize(n);
    m.words.resize(n);
    for (auto& s : m.staging) s.resize(2 * n);
    m.cap = n;
  }
  m.n = B;
  if (n == 0) return;
  m.slot ^= 1;
  m.uploaded[m.slot].wait_host();
  std::uint64_t* h = m.staging[m.slot].get();
  for (std::size_t e = 0; e < n; ++e) {
    h[e] = ids[e];
    h[m.cap + e] = hash_word(ids[e]);
  }
  const cudaStream_t s = as_stream(m.stream);
  NX_CUDA(cudaMemcpyAsync(m.ids.get(), h, n * sizeof(std::uint64_t), cudaMemcpyHostToDevice, s));
  NX_CUDA(cudaMemcpyAsync(m.words.get(), h + m.cap, n * sizeof(std::uint64_t), cudaMemcpyHostToDevice, s));
  m.uploaded[m.slot].record(s);
}

const std::uint64_t* DeviceBatchIds::ids() const { return impl_->ids.get(); }
const std::uint64_t* DeviceBatchIds::words() const { return impl_->words.get(); }
int DeviceBatchIds::size() const { return impl_->n; }

// ---------------------------------------------------------------- DeviceCaptureState

struct DeviceCaptureState::Impl {
  CaptureParams params;
  std::uint32_t N = 0;
  Stream& stream;
  std::shared_ptr<ReduceScratch> scratch;
  std::vector<double> boundaries;  // host copy, returned by download()

  DeviceArray<std::uint32_t> topk_count, random_count, quantile_count;
  DeviceArray<std::uint64_t> topk_ids, random_ids, random_hash, quantile_ids, quantile_hash, hist, mom_count;
  DeviceArray<float> topk_max, topk_acts, random_max, random_acts, quantile_max, quantile_acts;
  DeviceArray<double> d_boundaries, mom_mean, mom_m2, mom_m3, mom_m4;
  // Moment blocks: mom_* above hold the CLOSED blocks' total, these the open block (kernels.hpp).
  DeviceArray<std::uint64_t> mom_open_count, mom_open_block;
  DeviceArray<double> mom_open_mean, mom_open_m2, mom_open_m3, mom_open_m4;
  // take_moments' result [N] before its copy to the host; allocated by the first take, so a
  // state that is never taken from (the single-process collect) does not hold it.
  DeviceArray<Moments> taken;

  // update_host staging
  std::unique_ptr<DeviceBatchIds> host_ids;
  DeviceArray<float> host_acts;
  DeviceArray<std::uint16_t> host_acts_bf16;

  Impl(Stream& s) : stream(s) {}

  ~Impl() { cudaStreamSynchronize(as_stream(stream)); }

  kernels::StateView view() {
    kernels::StateView v;
    v.N = N;
    v.T = params.T;
    v.K = params.K;
    v.R = params.R;
    v.Q = params.Q;
    v.m = params.n_boundaries();
    v.bins = params.n_quantile_bins();
    v.quantiles = !boundaries.empty() && params.Q > 0;
    v.seed = params.seed;
    v.layer = params.layer;
    v.topk_count = topk_count.get();
    v.topk_ids = topk_ids.get();
    v.topk_max = topk_max.get();
    v.topk_acts = topk_acts.get();
    v.random_count = random_count.get();
    v.random_ids = random_ids.get();
    v.random_hash = random_hash.get();
    v.random_max = random_max.get();
    v.random_acts = random_acts.get();
    v.quantile_count = quantile_count.get();
    v.quantile_ids = quantile_ids.get();
    v.quantile_hash = quantile_hash.get();
    v.quantile_max = quantile_max.get();
    v.quantile_acts = quantile_acts.get();
    v.boundaries = d_boundaries.get();
    v.hist = hist.get();
    v.mom_count = mom_count.get();
    v.mom_mean = mom_mean.get();
    v.mom_m2 = mom_m2.get();
    v.mom_m3 = mom_m3.get();
    v.mom_m4 = mom_m4.get();
    v.mom_open_count = mom_open_count.get();
    v.mom_open_mean = mom_open_mean.get();
    v.mom_open_m2 = mom_open_m2.get();
    v.mom_open_m3 = mom_open_m3.get();
    v.mom_open_m4 = mom_open_m4.get();
    v.mom_open_block = mom_open_block.get();
    return v;
  }

  std::size_t bytes() const {
    return topk_count.bytes() + random_count.bytes() + quantile_count.bytes() + topk_ids.bytes() + random_ids.bytes() +
           random_hash.bytes() + quantile_ids.bytes() + quantile_hash.bytes() + hist.bytes() + mom_count.bytes() +
           topk_max.bytes() + topk_acts.bytes() + random_max.bytes() + random_acts.bytes() + quantile_max.bytes() +
           quantile_acts.bytes() + d_boundaries.bytes() + mom_mean.bytes() + mom_m2.bytes() + mom_m3.bytes() +
           mom_m4.bytes() + mom_open_count.bytes() + mom_open_block.bytes() + mom_open_mean.bytes() +
           mom_open_m2.bytes() + mom_open_m3.bytes() + mom_open_m4.bytes() + taken.bytes();
  }

  void update(const ActView& acts, const DeviceBatchIds& ids) {
    if (acts.B == 0) return;
    if (acts.B < 0 || acts.T != static_cast<int>(params.T) || acts.N != static_cast<int>(N) || ids.size() != acts.B)
      fail("CUDA capture update (layer {}): activations [{} x {} x {}] and {} ids for a state of T={}, {} neurons",
           params.layer, acts.B, acts.T, acts.N, ids.size(), params.T, N);
    const std::uint32_t sel_cap = std::max({params.K, params.R, params.Q});
    const kernels::ScratchView w = scratch->view(acts.B, N, sel_cap, true, parallel_tests);
    const cudaStream_t s = as_stream(stream);
    if (parallel_tests)
      kernels::excerpt_stats_tests(view(), acts.data, acts.bf16, acts.B, ids.ids(), ids.words(), w, s);
    else
      kernels::excerpt_stats(acts.data, acts.bf16, acts.B, params.T, N, true, w, s);
    if (timer) timer->mark("reduce: excerpt stats", s);
    kernels::neuron_update(view(), acts.data, acts.bf16, acts.B, ids.ids(), ids.words(), w, s, parallel_tests);
    if (timer) timer->mark("reduce: neuron update", s);
  }

  PhaseTimer* timer = nullptr;
  bool parallel_tests = false;

  DeviceBatchIds& staged_ids(const std::uint64_t* ids, int n) {
    if (!host_ids) host_ids = std::make_unique<DeviceBatchIds>(stream);
    host_ids->upload(ids, n);
    return *host_ids;
  }
};

DeviceCaptureState::DeviceCaptureState(const CaptureParams& params, const CaptureArrays& a, Stream& stream,
                                       std::shared_ptr<ReduceScratch> scratch)
    : impl_(std::make_unique<Impl>(stream)) {
  auto& m = *impl_;
  check_arrays(params, a);
  m.params = params;
  m.N = a.n_neurons;
  m.scratch = scratch ? std::move(scratch) : make_reduce_scratch(stream);
  if (&m.scratch->stream() != &stream) fail("CUDA capture state: the scratch belongs to another stream");
  m.boundaries = a.boundaries;
  upload_vec(m.topk_count, a.topk_count);
  upload_vec(m.topk_ids, a.topk_ids);
  upload_vec(m.topk_max, a.topk_max);
  upload_vec(m.topk_acts, a.topk_acts);
  upload_vec(m.random_count, a.random_count);
  upload_vec(m.random_ids, a.random_ids);
  upload_vec(m.random_hash, a.random_hash);
  upload_vec(m.random_max, a.random_max);
  upload_vec(m.random_acts, a.random_acts);
  upload_vec(m.quantile_count, a.quantile_count);
  upload_vec(m.quantile_ids, a.quantile_ids);
  upload_vec(m.quantile_hash, a.quantile_hash);
  upload_vec(m.quantile_max, a.quantile_max);
  upload_vec(m.quantile_acts, a.quantile_acts);
  upload_vec(m.d_boundaries, a.boundaries);
  upload_vec(m.hist, a.hist);
  // Moments: closed into mom_*, the open block into mom_open_*. Arrays without the split (files,
  // new states) have no open block: closed = the mom_* total, as CaptureState reads them.
  const std::size_t N = a.n_neurons;
  const bool split = !a.mom_closed.empty();
  std::vector<std::uint64_t> cc(N), oc(N), ob(N, kernels::kNoOpenBlock);
  std::vector<double> cm(N), c2(N), c3(N), c4(N), om(N), o2(N), o3(N), o4(N);
  for (std::size_t n = 0; n < N; ++n) {
    const Moments c = split ? a.mom_closed[n] : Moments{a.mom_count[n], a.mom_mean[n], a.mom_m2[n], a.mom_m3[n], a.mom_m4[n]};
    const Moments o = split ? a.mom_open[n] : Moments{};
    if (split) ob[n] = a.mom_open_block[n];
    cc[n] = c.count;
    cm[n] = c.mean;
    c2[n] = c.m2;
    c3[n] = c.m3;
    c4[n] = c.m4;
    oc[n] = o.count;
    om[n] = o.mean;
    o2[n] = o.m2;
    o3[n] = o.m3;
    o4[n] = o.m4;
  }
  upload_vec(m.mom_count, cc);
  upload_vec(m.mom_mean, cm);
  upload_vec(m.mom_m2, c2);
  upload_vec(m.mom_m3, c3);
  upload_vec(m.mom_m4, c4);
  upload_vec(m.mom_open_count, oc);
  upload_vec(m.mom_open_mean, om);
  upload_vec(m.mom_open_m2, o2);
  upload_vec(m.mom_open_m3, o3);
  upload_vec(m.mom_open_m4, o4);
  upload_vec(m.mom_open_block, ob);
}

DeviceCaptureState::~DeviceCaptureState() = default;

const CaptureParams& DeviceCaptureState::params() const { return impl_->params; }
std::uint32_t DeviceCaptureState::n_neurons() const { return impl_->N; }
std::size_t DeviceCaptureState::device_bytes() const { return impl_->bytes(); }

void DeviceCaptureState::update(const ActView& acts, const DeviceBatchIds& ids) { impl_->update(acts, ids); }
void DeviceCaptureState::set_phase_timer(PhaseTimer* timer) { impl_->timer = timer; }
void DeviceCaptureState::set_parallel_list_tests(bool on) {
  impl_->stream.synchronize();  // the scratch may grow
  impl_->parallel_tests = on;
}

void DeviceCaptureState::update_host(const float* acts, std::size_t n_values, const std::uint64_t* ids,
                                     int n_excerpts) {
  auto& m = *impl_;
  check_batch(m.params, m.N, n_values, ids, n_excerpts);
  if (n_excerpts == 0) return;
  m.stream.synchronize();  // the staging buffer may still be read by the previous update
  if (m.host_acts.size() < n_values) m.host_acts.resize(n_values);
  m.host_acts.upload(acts, n_values);
  const DeviceBatchIds& d_ids = m.staged_ids(ids, n_excerpts);
  m.update(ActView{m.host_acts.get(), false, n_excerpts, static_cast<int>(m.params.T), static_cast<int>(m.N)}, d_ids);
  m.stream.synchronize();
}

void DeviceCaptureState::update_host_bf16(const std::uint16_t* acts, std::size_t n_values, const std::uint64_t* ids,
                                          int n_excerpts) {
  auto& m = *impl_;
  check_batch(m.params, m.N, n_values, ids, n_excerpts);
  if (n_excerpts == 0) return;
  m.stream.synchronize();
  if (m.host_acts_bf16.size() < n_values) m.host_acts_bf16.resize(n_values);
  m.host_acts_bf16.upload(acts, n_values);
  const DeviceBatchIds& d_ids = m.staged_ids(ids, n_excerpts);
  m.update(ActView{m.host_acts_bf16.get(), true, n_excerpts, static_cast<int>(m.params.T), static_cast<int>(m.N)},
           d_ids);
  m.stream.synchronize();
}

CaptureArrays DeviceCaptureState::download() {
  auto& m = *impl_;
  m.stream.synchronize();
  CaptureArrays a;
  a.n_neurons = m.N;
  download_vec(m.topk_count, a.topk_count);
  download_vec(m.topk_ids, a.topk_ids);
  download_vec(m.topk_max, a.topk_max);
  download_vec(m.topk_acts, a.topk_acts);
  download_vec(m.random_count, a.random_count);
  download_vec(m.random_ids, a.random_ids);
  download_vec(m.random_hash, a.random_hash);
  download_vec(m.random_max, a.random_max);
  download_vec(m.random_acts, a.random_acts);
  download_vec(m.quantile_count, a.quantile_count);
  download_vec(m.quantile_ids, a.quantile_ids);
  download_vec(m.quantile_hash, a.quantile_hash);
  download_vec(m.quantile_max, a.quantile_max);
  download_vec(m.quantile_acts, a.quantile_acts);
  a.boundaries = m.boundaries;
  download_vec(m.hist, a.hist);
  // Moments: the device holds closed (mom_*) and the open block; export the split (so that a
  // CaptureState resumes mid-block bitwise) and the total combine_moments(closed, open), the very
  // host operation CaptureState uses for its own total.
  std::vector<std::uint64_t> cc, oc;
  std::vector<double> cm, c2, c3, c4, om, o2, o3, o4;
  download_vec(m.mom_count, cc);
  download_vec(m.mom_mean, cm);
  download_vec(m.mom_m2, c2);
  download_vec(m.mom_m3, c3);
  download_vec(m.mom_m4, c4);
  download_vec(m.mom_open_count, oc);
  download_vec(m.mom_open_mean, om);
  download_vec(m.mom_open_m2, o2);
  download_vec(m.mom_open_m3, o3);
  download_vec(m.mom_open_m4, o4);
  download_vec(m.mom_open_block, a.mom_open_block);
  const std::size_t N = m.N;
  a.mom_closed.resize(N);
  a.mom_open.resize(N);
  a.mom_count.resize(N);
  a.mom_mean.resize(N);
  a.mom_m2.resize(N);
  a.mom_m3.resize(N);
  a.mom_m4.resize(N);
  for (std::size_t n = 0; n < N; ++n) {
    a.mom_closed[n] = Moments{cc[n], cm[n], c2[n], c3[n], c4[n]};
    a.mom_open[n] = Moments{oc[n], om[n], o2[n], o3[n], o4[n]};
    const Moments t = combine_moments(a.mom_closed[n], a.mom_open[n]);
    a.mom_count[n] = t.count;
    a.mom_mean[n] = t.mean;
    a.mom_m2[n] = t.m2;
    a.mom_m3[n] = t.m3;
    a.mom_m4[n] = t.m4;
  }
  return a;
}

// The host vector receives the device buffer byte for byte: one struct layout on both sides.
static_assert(std::is_trivially_copyable_v<Moments> && sizeof(Moments) == 40, "Moments is copied as raw bytes");

std::vector<Moments> DeviceCaptureState::take_moments() {
  auto& m = *impl_;
  std::vector<Moments> out(m.N);
  if (m.N == 0) return out;
  if (m.taken.size() < m.N) m.taken.resize(m.N);  // the first take only: nothing in flight uses it
  const cudaStream_t s = as_stream(m.stream);
  // On the state's own stream, so after every update queued so far (CudaCollectBackend::main
  // has queued all of its batch's updates there before it returns) and before any later one.
  kernels::take_moments(m.view(), m.taken.get(), s);
  NX_CUDA(cudaMemcpyAsync(out.data(), m.taken.get(), std::size_t{m.N} * sizeof(Moments), cudaMemcpyDeviceToHost, s));
  m.stream.synchronize();  // the copy has landed; asynchronous errors surface here
  return out;
}

// ---------------------------------------------------------------- DeviceHistograms

struct DeviceHistograms::Impl {
  std::uint32_t N = 0, T = 0;
  Stream& stream;
  std::shared_ptr<ReduceScratch> scratch;
  DeviceArray<std::uint64_t> hist;
  DeviceArray<float> host_acts;
  Impl(Stream& s) : stream(s) {}
  ~Impl() { cudaStreamSynchronize(as_stream(stream)); }

  void update(const ActView& acts) {
    if (acts.B == 0) return;
    if (acts.B < 0 || acts.T != static_cast<int>(T) || acts.N != static_cast<int>(N))
      fail("CUDA histogram update: activations [{} x {} x {}] for T={}, {} neurons", acts.B, acts.T, acts.N, T, N);
    const kernels::ScratchView w = scratch->view(acts.B, N, 1, false);
    const cudaStream_t s = as_stream(stream);
    kernels::excerpt_stats(acts.data, acts.bf16, acts.B, T, N, false, w, s);
    kernels::hist_update(hist.get(), w.maxima, acts.B, N, s);
  }
};

DeviceHistograms::DeviceHistograms(std::uint32_t n_neurons, std::uint32_t T, Stream& stream,
                                   std::shared_ptr<ReduceScratch> scratch)
    : impl_(std::make_unique<Impl>(stream)) {
  auto& m = *impl_;
  if (T == 0) fail("CUDA histograms: T must be at least 1");
  m.N = n_neurons;
  m.T = T;
  m.scratch = scratch ? std::move(scratch) : make_reduce_scratch(stream);
  if (&m.scratch->stream() != &stream) fail("CUDA histograms: the scratch belongs to another stream");
  m.hist.resize(std::size_t{n_neurons} * kHistBins);
  if (m.hist.size()) NX_CUDA(cudaMemset(m.hist.get(), 0, m.hist.bytes()));
}

DeviceHistograms::~DeviceHistograms() = default;

void DeviceHistograms::update(const ActView& acts) { impl_->update(acts); }

void DeviceHistograms::update_host(const float* acts, std::size_t n_values, int n_excerpts) {
  auto& m = *impl_;
  if (n_excerpts < 0 || n_values != static_cast<std::size_t>(n_excerpts) * m.T * m.N)
    fail("histogram update: {} activations for {} excerpts x {} tokens x {} neurons", n_values, n_excerpts, m.T, m.N);
  if (n_excerpts == 0) return;
  m.stream.synchronize();
  if (m.host_acts.size() < n_values) m.host_acts.resize(n_values);
  m.host_acts.upload(acts, n_values);
  m.update(ActView{m.host_acts.get(), false, n_excerpts, static_cast<int>(m.T), static_cast<int>(m.N)});
  m.stream.synchronize();
}

std::vector<std::uint64_t> DeviceHistograms::download() {
  auto& m = *impl_;
  m.stream.synchronize();
  std::vector<std::uint64_t> out;
  download_vec(m.hist, out);
  return out;
}

}  // namespace nexplain::cuda
