// GPT-2 forward on the device: weights uploaded once, a workspace grown to the largest batch, and
// one stream on which every step is queued. Linear layers are cuBLASLt matmuls over all B*T rows
// in HF's Conv1D layout; everything else is a kernel of forward_kernels.cu.
//
// cuBLASLt is column-major. A row-major Y[M][N] = X[M][K] W[K][N] is, read column-major,
// Y^T (N x M, ld N) = W^T (N x K, ld N) * X^T (K x M, ld K): so A = W, B = X, m = N, n = M, k = K,
// no transposes.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "core/error.hpp"
#include "cuda_check.hpp"
#include "cuda_engine.hpp"
#include "device_buffer.hpp"
#include "kernels.hpp"
#include "phase_timer.hpp"

namespace nexplain::cuda {

// ---------------------------------------------------------------- small public helpers

Precision parse_precision(const std::string& text) {
  if (text == "fp32") return Precision::fp32;
  if (text == "tf32") return Precision::tf32;
  if (text == "bf16") return Precision::bf16;
  fail("--precision '{}': expected fp32, tf32 or bf16", text);
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::fp32: return "fp32";
    case Precision::tf32: return "tf32";
    case Precision::bf16: return "bf16";
  }
  return "?";
}

// A blocking stream (not cudaStreamNonBlocking) on purpose: the synchronous cudaMemcpy/cudaMemset
// calls of setup and tests run on the legacy default stream, which a blocking stream is ordered
// with (a pageable cudaMemcpy may return before its DMA has landed).
Stream::Stream() {
  cudaStream_t s = nullptr;
  NX_CUDA(cudaStreamCreate(&s));
  s_ = s;
}

Stream::~Stream() {
  if (s_) {
    cudaStreamSynchronize(static_cast<cudaStream_t>(s_));
    cudaStreamDestroy(static_cast<cudaStream_t>(s_));
  }
}

void Stream::synchronize() { NX_CUDA(cudaStreamSynchronize(static_cast<cudaStream_t>(s_))); }

namespace {

cudaStream_t as_stream(Stream& s) { return static_cast<cudaStream_t>(s.handle()); }

// ---------------------------------------------------------------- cuBLASLt GEMM plans

// What the cuBLASLt epilogue does after the matmul: nothing, + bias, or gelu(. + bias).
enum class Epilogue { none, bias, gelu_bias };

struct GemmKey {
  int M, N, K;
  cudaDataType_t in, out;
  cublasComputeType_t compute;
  Epilogue ep;
  bool operator<(const GemmKey& o) const {
    return std::tie(M, N, K, in, out, compute, ep) < std::tie(o.M, o.N, o.K, o.in, o.out, o.compute, o.ep);
  }
};

// One matmul shape: descriptors and the heuristic's first algorithm, created once and reused for
// every batch of that shape (the same algorithm every time, so results are reproducible).
struct GemmPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};

  GemmPlan() = default;
  GemmPlan(const GemmPlan&) = delete;
  GemmPlan& operator=(const GemmPlan&) = delete;
  ~GemmPlan() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

constexpr std::size_t kGemmWorkspace = 32ull << 20;  // cuBLASLt's recommendation for Hopper

}  // namespace

// ---------------------------------------------------------------- Gpt2Device::Impl

struct Gpt2Device::Impl {
  struct Block {
    DeviceArray<float> ln_1_w, ln_1_b, attn_b, attn_proj_b, ln_2_w, ln_2_b, fc_b, proj_b;
    // GEMM weights in the precision's input type (float or bf16), raw bytes.
    DeviceArray<unsigned char> attn_w, attn_proj_w, fc_w, proj_w;
  };

  Gpt2Config cfg;
  int last = 0;
  Precision prec = Precision::fp32;
  Stream stream;
  cublasLtHandle_t lt = nullptr;
  DeviceArray<unsigned char> lt_ws;
  std::map<GemmKey, std::unique_ptr<GemmPlan>> plans;

  DeviceArray<float> wte, wpe;
  std::vector<Block> blocks;

  // Workspace for up to cap_rows rows (B*T).
  std::size_t cap_rows = 0;
  DeviceArray<std::uint32_t> d_tokens;
  DeviceArray<float> x, qkv, tmp;
  DeviceArray<unsigned char> ln, att;  // in the GEMM input type
  // MLP activations (the captured neurons), in the GEMM input type: layer l writes fc[l % 2] so
  // that a consumer on another stream can still read layer l - 1 while layer l is computed.
  DeviceArray<unsigned char> fc[2];
  Event acts_ready[2], acts_consumed[2];

  ForwardTuning tune;
  Stream* consumer = nullptr;
  PhaseTimer* timer = nullptr;
  bool fell_back[3] = {false, false, false};  // bias, residual, gelu: no epilogue algorithm
  // Pinned staging of the tokens, two slots used alternately.
  PinnedArray<std::uint32_t> h_tokens[2];
  Event uploaded[2];
  int slot = 0;

  bool bf16() const { return prec == Precision::bf16; }
  std::size_t in_size() const { return bf16() ? 2 : 4; }
  cudaDataType_t in_type() const { return bf16() ? CUDA_R_16BF : CUDA_R_32F; }

  Impl(const Gpt2Config& c, int last_layer, Precision p) : cfg(c), last(last_layer), prec(p) {
    if (cfg.n_embd <= 0 || cfg.n_head <= 0 || cfg.n_inner <= 0 || cfg.n_layer <= 0 || cfg.n_positions <= 0 ||
        cfg.vocab_size <= 0 || cfg.n_embd % cfg.n_head != 0)
      fail("CUDA forward: invalid GPT-2 config (n_embd {}, n_head {}, n_inner {}, n_layer {}, n_positions {}, vocab {})",
           cfg.n_embd, cfg.n_head, cfg.n_inner, cfg.n_layer, cfg.n_positions, cfg.vocab_size);
    if (last < 0 || last >= cfg.n_layer)
      fail("CUDA forward: last layer {} is outside the model's {} layers", last, cfg.n_layer);
    NX_CUBLAS(cublasLtCreate(&lt));
    lt_ws.resize(kGemmWorkspace);
    blocks.resize(static_cast<std::size_t>(last) + 1);
  }

  ~Impl() {
    // Everything queued must finish before buffers are freed (their destructors run after this).
    cudaStreamSynchronize(as_stream(stream));
    plans.clear();
    if (lt) cublasLtDestroy(lt);
  }

  // Allocates every parameter buffer at its full size.
  void allocate() {
    const std::size_t C = cfg.n_embd, I = cfg.n_inner;
    wte.resize(static_cast<std::size_t>(cfg.vocab_size) * C);
    wpe.resize(static_cast<std::size_t>(cfg.n_positions) * C);
    for (auto& b : blocks) {
      b.ln_1_w.resize(C);
      b.ln_1_b.resize(C);
      b.attn_b.resize(3 * C);
      b.attn_proj_b.resize(C);
      b.ln_2_w.resize(C);
      b.ln_2_b.resize(C);
      b.fc_b.resize(I);
      b.proj_b.resize(C);
      b.attn_w.resize(C * 3 * C * in_size());
      b.attn_proj_w.resize(C * C * in_size());
      b.fc_w.resize(C * I * in_size());
      b.proj_w.resize(I * C * in_size());
    }
  }

  // A float host tensor into a GEMM weight buffer (converted to bf16 on the device if needed).
  void upload_matrix(DeviceArray<unsigned char>& dst, const std::vector<float>& src, const char* what, int layer) {
    if (src.size() * in_size() != dst.bytes())
      fail("CUDA forward: block {} {} holds {} values, expected {}", layer, what, src.size(), dst.bytes() / in_size());
    if (!bf16()) {
      NX_CUDA(cudaMemcpy(dst.get(), src.data(), dst.bytes(), cudaMemcpyHostToDevice));
      return;
    }
    DeviceArray<float> tmp32(src.size());
    tmp32.upload(src.data(), src.size());
    kernels::float_to_bf16(dst.get(), tmp32.get(), src.size(), as_stream(stream));
    stream.synchronize();  // tmp32 is freed next
  }

  void upload_vector(DeviceArray<float>& dst, const std::vector<float>& src, const char* what, int layer) {
    if (src.size() != dst.size())
      fail("CUDA forward: block {} {} holds {} values, expected {}", layer, what, src.size(), dst.size());
    dst.upload(src.data(), src.size());
  }

  void upload(const Gpt2Weights& w) {
    if (w.wte.size() != wte.size() || w.wpe.size() != wpe.size())
      fail("CUDA forward: the embeddings (wte {} values, wpe {}) were not loaded or do not match the config "
           "(expected {} and {})",
           w.wte.size(), w.wpe.size(), wte.size(), wpe.size());
    wte.upload(w.wte.data(), w.wte.size());
    wpe.upload(w.wpe.data(), w.wpe.size());
    for (int l = 0; l <= last; ++l) {
      // Gpt2Weights::has_block restated: cuda/ cannot call into nexplain_lib (linked before it).
      const auto li = static_cast<std::size_t>(l);
      const bool loaded = li < w.blocks.size() && !w.blocks[li].fc_w.empty() && !w.blocks[li].attn_w.empty();
      if (!loaded) fail("CUDA forward: block {} was not loaded (Gpt2LoadOptions layer range)", l);
      const auto& s = w.blocks[static_cast<std::size_t>(l)];
      auto& d = blocks[static_cast<std::size_t>(l)];
      upload_vector(d.ln_1_w, s.ln_1_w, "ln_1.weight", l);
      upload_vector(d.ln_1_b, s.ln_1_b, "ln_1.bias", l);
      upload_vector(d.attn_b, s.attn_b, "attn.c_attn.bias", l);
      upload_vector(d.attn_proj_b, s.attn_proj_b, "attn.c_proj.bias", l);
      upload_vector(d.ln_2_w, s.ln_2_w, "ln_2.weight", l);
      upload_vector(d.ln_2_b, s.ln_2_b, "ln_2.bias", l);
      upload_vector(d.fc_b, s.fc_b, "mlp.c_fc.bias", l);
      upload_vector(d.proj_b, s.proj_b, "mlp.c_proj.bias", l);
      upload_matrix(d.attn_w, s.attn_w, "attn.c_attn.weight", l);
      upload_matrix(d.attn_proj_w, s.attn_proj_w, "attn.c_proj.weight", l);
      upload_matrix(d.fc_w, s.fc_w, "mlp.c_fc.weight", l);
      upload_matrix(d.proj_w, s.proj_w, "mlp.c_proj.weight", l);
    }
  }

  void randomize(std::uint64_t seed) {
    const cudaStream_t s = as_stream(stream);
    const float sd = 0.02f;
    const float proj_sd = sd / std::sqrt(2.0f * static_cast<float>(cfg.n_layer));
    std::uint64_t tensor = 0;
    const auto next_seed = [&] { return seed * 0x9e3779b97f4a7c15ull + (++tensor) * 0xbf58476d1ce4e5b9ull; };
    kernels::init_normal(wte.get(), false, wte.size(), next_seed(), sd, s);
    kernels::init_normal(wpe.get(), false, wpe.size(), next_seed(), sd, s);
    for (auto& b : blocks) {
      kernels::init_const(b.ln_1_w.get(), false, b.ln_1_w.size(), 1.0f, s);
      kernels::init_const(b.ln_1_b.get(), false, b.ln_1_b.size(), 0.0f, s);
      kernels::init_const(b.attn_b.get(), false, b.attn_b.size(), 0.0f, s);
      kernels::init_const(b.attn_proj_b.get(), false, b.attn_proj_b.size(), 0.0f, s);
      kernels::init_const(b.ln_2_w.get(), false, b.ln_2_w.size(), 1.0f, s);
      kernels::init_const(b.ln_2_b.get(), false, b.ln_2_b.size(), 0.0f, s);
      kernels::init_const(b.fc_b.get(), false, b.fc_b.size(), 0.0f, s);
      kernels::init_const(b.proj_b.get(), false, b.proj_b.size(), 0.0f, s);
      kernels::init_normal(b.attn_w.get(), bf16(), b.attn_w.bytes() / in_size(), next_seed(), sd, s);
      kernels::init_normal(b.attn_proj_w.get(), bf16(), b.attn_proj_w.bytes() / in_size(), next_seed(), proj_sd, s);
      kernels::init_normal(b.fc_w.get(), bf16(), b.fc_w.bytes() / in_size(), next_seed(), sd, s);
      kernels::init_normal(b.proj_w.get(), bf16(), b.proj_w.bytes() / in_size(), next_seed(), proj_sd, s);
    }
    stream.synchronize();
  }

  std::size_t weight_bytes() const {
    std::size_t n = wte.bytes() + wpe.bytes();
    for (const auto& b : blocks)
      n += b.ln_1_w.bytes() + b.ln_1_b.bytes() + b.attn_b.bytes() + b.attn_proj_b.bytes() + b.ln_2_w.bytes() +
           b.ln_2_b.bytes() + b.fc_b.bytes() + b.proj_b.bytes() + b.attn_w.bytes() + b.attn_proj_w.bytes() +
           b.fc_w.bytes() + b.proj_w.bytes();
    return n;
  }

  void ensure_workspace(std::size_t rows) {
    if (rows <= cap_rows) return;
    stream.synchronize();  // in-flight work may still use the old buffers
    const std::size_t C = cfg.n_embd, I = cfg.n_inner;
    d_tokens.resize(rows);
    x.resize(rows * C);
    qkv.resize(rows * 3 * C);
    tmp.resize(rows * C);
    ln.resize(rows * C * in_size());
    att.resize(rows * C * in_size());
    fc[0].resize(rows * I * in_size());
    if (tune.overlap && consumer) fc[1].resize(rows * I * in_size());
    for (auto& h : h_tokens) h.resize(rows);
    cap_rows = rows;
  }

  // The plan of one shape and epilogue; nullptr when cuBLASLt has no algorithm for an epilogue
  // (the caller then uses the kernels; an epilogue-free matmul without an algorithm is an Error).
  GemmPlan* plan(int M, int N, int K, cudaDataType_t out, Epilogue ep) {
    const cublasComputeType_t compute =
        prec == Precision::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const GemmKey key{M, N, K, in_type(), out, compute, ep};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second.get();
    auto p = std::make_unique<GemmPlan>();
    NX_CUBLAS(cublasLtMatmulDescCreate(&p->op, compute, CUDA_R_32F));
    const cublasOperation_t no = CUBLAS_OP_N;
    NX_CUBLAS(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &no, sizeof no));
    NX_CUBLAS(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &no, sizeof no));
    if (ep != Epilogue::none) {
      const cublasLtEpilogue_t e = ep == Epilogue::bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
      // Our biases are float whatever the output type (default: the output's type).
      const cudaDataType_t bias_type = CUDA_R_32F;
      if (cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e) != CUBLAS_STATUS_SUCCESS ||
          cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type) !=
              CUBLAS_STATUS_SUCCESS) {
        plans.emplace(key, nullptr);
        return nullptr;
      }
    }
    NX_CUBLAS(cublasLtMatrixLayoutCreate(&p->a, in_type(), static_cast<std::uint64_t>(N), static_cast<std::uint64_t>(K), N));
    NX_CUBLAS(cublasLtMatrixLayoutCreate(&p->b, in_type(), static_cast<std::uint64_t>(K), static_cast<std::uint64_t>(M), K));
    NX_CUBLAS(cublasLtMatrixLayoutCreate(&p->d, out, static_cast<std::uint64_t>(N), static_cast<std::uint64_t>(M), N));
    cublasLtMatmulPreference_t pref = nullptr;
    NX_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
    const std::uint64_t ws = lt_ws.bytes();
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulAlgoGetHeuristic(lt, p->op, p->a, p->b, p->d, p->d, pref, 1, &result, &returned);
    cublasLtMatmulPreferenceDestroy(pref);
    if (ep != Epilogue::none && (st != CUBLAS_STATUS_SUCCESS || returned == 0)) {
      plans.emplace(key, nullptr);
      return nullptr;
    }
    NX_CUBLAS(st);
    if (returned == 0)
      fail("cuBLASLt: no algorithm for a {} x {} x {} matmul ({} in, {} out, {})", M, N, K,
           bf16() ? "bf16" : "fp32", out == CUDA_R_16BF ? "bf16" : "fp32", precision_name(prec));
    p->algo = result.algo;
    GemmPlan* ptr = p.get();
    plans.emplace(key, std::move(p));
    return ptr;
  }

  // Row-major Y[M][N] = X[M][K] W[K][N] (+ Y when accumulate) then the epilogue with `bias`
  // (X, W in the input type; Y float or the input type). False, with nothing queued, when
  // cuBLASLt has no algorithm for the epilogue.
  bool gemm(const void* W, const void* X, void* Y, int M, int N, int K, bool out_float, Epilogue ep = Epilogue::none,
            const float* bias = nullptr, bool accumulate = false) {
    const cudaDataType_t out = out_float ? CUDA_R_32F : in_type();
    GemmPlan* p = plan(M, N, K, out, ep);
    if (!p) return false;
    if (ep != Epilogue::none)
      NX_CUBLAS(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    // In place (C == D, same layout) for the accumulating projections: cuBLASLt allows it.
    NX_CUBLAS(cublasLtMatmul(lt, p->op, &alpha, W, p->a, X, p->b, &beta, Y, p->d, Y, p->d, &p->algo, lt_ws.get(),
                             lt_ws.bytes(), as_stream(stream)));
    return true;
  }

  bool gelu_in_epilogue() const { return tune.gelu_epilogue < 0 ? bf16() : tune.gelu_epilogue > 0; }

  void mark(const char* phase) {
    if (timer) timer->mark(phase, stream.handle());
  }

  // x += X W + b, the residual update of a projection: fused into the GEMM or a temporary and a
  // kernel.
  void project_into_residual(const void* W, const void* X, const float* b, int M, int N, int K) {
    if (tune.residual_epilogue) {
      if (gemm(W, X, x.get(), M, N, K, true, Epilogue::bias, b, true)) return;
      fell_back[1] = true;
    }
    gemm(W, X, tmp.get(), M, N, K, true);
    kernels::residual_add(x.get(), tmp.get(), b, static_cast<std::size_t>(M), N, as_stream(stream));
  }

  std::string summary() const {
    std::string out = "bias:";
    out += !tune.bias_epilogue ? "kernel" : fell_back[0] ? "kernel(no epilogue algorithm)" : "epilogue";
    out += " residual:";
    out += !tune.residual_epilogue ? "kernel" : fell_back[1] ? "kernel(no epilogue algorithm)" : "epilogue";
    out += " gelu:";
    out += !gelu_in_epilogue() ? "kernel" : fell_back[2] ? "kernel(no epilogue algorithm)" : "epilogue";
    out += " overlap:";
    out += tune.overlap && consumer ? "on" : "off";
    return out;
  }

  void forward(const std::uint32_t* tokens, int B, int T, int run_to, const ActCallback& on_acts) {
    if (B <= 0 || T <= 0) fail("CUDA forward: empty batch (B={}, T={})", B, T);
    if (T > cfg.n_positions)
      fail("CUDA forward: sequence length T={} exceeds the model's n_positions={}", T, cfg.n_positions);
    if (run_to < 0 || run_to > last)
      fail("CUDA forward: layer {} requested, but only blocks 0..{} were uploaded", run_to, last);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        const std::uint32_t id = tokens[static_cast<std::size_t>(b) * T + t];
        if (id >= static_cast<std::uint32_t>(cfg.vocab_size))
          fail("forward: token id {} at batch row {}, position {} is out of range (vocab_size {})", id, b, t,
               cfg.vocab_size);
      }
    const std::size_t rows = static_cast<std::size_t>(B) * T;
    if (rows > 0x7fffffffu) fail("CUDA forward: batch of {} rows is too large", rows);
    ensure_workspace(rows);
    const cudaStream_t s = as_stream(stream);
    const bool overlap = tune.overlap && consumer != nullptr;
    if (timer) timer->start(stream.handle());

    // Stage the tokens through pinned memory: wait only for the upload two batches ago.
    slot ^= 1;
    uploaded[slot].wait_host();
    std::copy(tokens, tokens + rows, h_tokens[slot].get());
    NX_CUDA(cudaMemcpyAsync(d_tokens.get(), h_tokens[slot].get(), rows * sizeof(std::uint32_t),
                            cudaMemcpyHostToDevice, s));
    uploaded[slot].record(s);

    const int C = cfg.n_embd, I = cfg.n_inner, H = cfg.n_head, M = static_cast<int>(rows);
    const double eps = cfg.layer_norm_epsilon;
    kernels::embed(x.get(), d_tokens.get(), wte.get(), wpe.get(), rows, T, C, s);
    mark("embed");
    for (int l = 0; l <= run_to; ++l) {
      const Block& w = blocks[static_cast<std::size_t>(l)];
      // attention
      kernels::layernorm(ln.get(), bf16(), x.get(), w.ln_1_w.get(), w.ln_1_b.get(), rows, C, eps, s);
      mark("layernorm");
      bool fused = tune.bias_epilogue &&
                   gemm(w.attn_w.get(), ln.get(), qkv.get(), M, 3 * C, C, true, Epilogue::bias, w.attn_b.get());
      if (!fused) {
        fell_back[0] = fell_back[0] || tune.bias_epilogue;
        gemm(w.attn_w.get(), ln.get(), qkv.get(), M, 3 * C, C, true);
        kernels::add_bias(qkv.get(), w.attn_b.get(), rows, 3 * C, s);
      }
      mark("gemm c_attn (+bias)");
      kernels::attention(qkv.get(), att.get(), bf16(), B, T, C, H, s);
      mark("attention");
      project_into_residual(w.attn_proj_w.get(), att.get(), w.attn_proj_b.get(), M, C, C);
      mark("gemm attn.c_proj (+residual)");
      // MLP
      kernels::layernorm(ln.get(), bf16(), x.get(), w.ln_2_w.get(), w.ln_2_b.get(), rows, C, eps, s);
      mark("layernorm");
      const int slot = overlap ? (l & 1) : 0;
      void* acts = fc[slot].get();
      // The consumer of the layer that last used this buffer must be done with it.
      if (consumer) NX_CUDA(cudaStreamWaitEvent(s, acts_consumed[slot].get(), 0));
      fused = gelu_in_epilogue() &&
              gemm(w.fc_w.get(), ln.get(), acts, M, I, C, !bf16(), Epilogue::gelu_bias, w.fc_b.get());
      if (!fused) {
        fell_back[2] = fell_back[2] || gelu_in_epilogue();
        gemm(w.fc_w.get(), ln.get(), acts, M, I, C, !bf16());
        kernels::bias_gelu(acts, bf16(), w.fc_b.get(), rows, I, s);
      }
      mark("gemm c_fc (+bias+gelu)");
      if (on_acts && consumer) {
        const cudaStream_t cs = as_stream(*consumer);
        acts_ready[slot].record(s);
        NX_CUDA(cudaStreamWaitEvent(cs, acts_ready[slot].get(), 0));
        on_acts(l, ActView{acts, bf16(), B, T, I});
        acts_consumed[slot].record(cs);
        // Without overlap the forward waits for the consumer right away (one buffer).
        if (!overlap) NX_CUDA(cudaStreamWaitEvent(s, acts_consumed[slot].get(), 0));
      } else if (on_acts) {
        on_acts(l, ActView{acts, bf16(), B, T, I});
      }
      mark("capture (rest)");
      if (l == run_to) break;  // the down-projection of the last block is not needed
      project_into_residual(w.proj_w.get(), acts, w.proj_b.get(), M, C, I);
      mark("gemm mlp.c_proj (+residual)");
    }
  }
};

// ---------------------------------------------------------------- Gpt2Device

Gpt2Device::Gpt2Device(const Gpt2Config& config, int last_layer, Precision precision)
    : impl_(std::make_unique<Impl>(config, last_layer, precision)) {
  impl_->allocate();
}

Gpt2Device::Gpt2Device(const Gpt2Weights& w, int last_layer, Precision precision)
    : Gpt2Device(w.config, last_layer, precision) {
  impl_->upload(w);
}

std::unique_ptr<Gpt2Device> Gpt2Device::random(const Gpt2Config& config, int last_layer, Precision precision,
                                                std::uint64_t seed) {
  std::unique_ptr<Gpt2Device> d(new Gpt2Device(config, last_layer, precision));
  d->impl_->randomize(seed);
  return d;
}

Gpt2Device::~Gpt2Device() = default;

const Gpt2Config& Gpt2Device::config() const { return impl_->cfg; }
Precision Gpt2Device::precision() const { return impl_->prec; }
int Gpt2Device::last_layer() const { return impl_->last; }
Stream& Gpt2Device::stream() { return impl_->stream; }
std::size_t Gpt2Device::weight_bytes() const { return impl_->weight_bytes(); }

void Gpt2Device::set_tuning(const ForwardTuning& t) {
  impl_->stream.synchronize();  // buffers and plans in use must not change under queued work
  if (impl_->consumer) impl_->consumer->synchronize();
  impl_->tune = t;
  impl_->cap_rows = 0;  // the second activation buffer may now be needed
}
const ForwardTuning& Gpt2Device::tuning() const { return impl_->tune; }
std::string Gpt2Device::tuning_summary() const { return impl_->summary(); }

void Gpt2Device::set_consumer_stream(Stream* consumer) {
  impl_->stream.synchronize();
  if (impl_->consumer) impl_->consumer->synchronize();
  impl_->consumer = consumer;
  impl_->cap_rows = 0;
}
Stream& Gpt2Device::consumer_stream() { return impl_->consumer ? *impl_->consumer : impl_->stream; }
void Gpt2Device::set_phase_timer(PhaseTimer* timer) { impl_->timer = timer; }

void Gpt2Device::forward(const std::uint32_t* tokens, int B, int T, int run_to, const ActCallback& on_acts) {
  impl_->forward(tokens, B, T, run_to, on_acts);
}

std::map<int, std::vector<float>> Gpt2Device::forward_host(const std::uint32_t* tokens, int B, int T,
                                                           const std::vector<int>& layers) {
  std::map<int, std::vector<float>> out;
  if (layers.empty()) return out;
  const int run_to = *std::max_element(layers.begin(), layers.end());
  const cudaStream_t s = as_stream(impl_->stream);
  impl_->forward(tokens, B, T, run_to, [&](int layer, const ActView& a) {
    if (std::find(layers.begin(), layers.end(), layer) == layers.end()) return;
    const std::size_t n = static_cast<std::size_t>(a.B) * a.T * a.N;
    auto& dst = out[layer];
    dst.resize(n);
    if (a.bf16) {
      std::vector<std::uint16_t> bits(n);
      NX_CUDA(cudaMemcpyAsync(bits.data(), a.data, n * sizeof(std::uint16_t), cudaMemcpyDeviceToHost, s));
      NX_CUDA(cudaStreamSynchronize(s));
      for (std::size_t i = 0; i < n; ++i) dst[i] = bf16_bits_to_float(bits[i]);
    } else {
      NX_CUDA(cudaMemcpyAsync(dst.data(), a.data, n * sizeof(float), cudaMemcpyDeviceToHost, s));
      NX_CUDA(cudaStreamSynchronize(s));
    }
  });
  impl_->stream.synchronize();
  return out;
}

}  // namespace nexplain::cuda
