// The forward of every supported family on the device: weights uploaded once, a workspace grown
// to the largest batch, and one stream on which every step is queued. It mirrors TransformerCpu
// (src/model/transformer_cpu.cpp) step by step: one block function that reads the family's
// choices (norm, positions, MLP shape, activation, residual wiring, biases) from ArchConfig as
// data. Linear layers are cuBLASLt matmuls over all B*T rows; everything else is a kernel of
// forward_kernels.cu.
//
// cuBLASLt is column-major. With GPT-2's Conv1D weight W[K][N] (in_major), the row-major
// Y[M][N] = X[M][K] W[K][N] is, read column-major, Y^T (N x M, ld N) = W^T (N x K, ld N) * X^T
// (K x M, ld K): so A = W, B = X, m = N, n = M, k = K, no transposes. An nn.Linear weight W[N][K]
// (Y = X W^T) read column-major is the K x N matrix W^T with ld K, so the same product takes
// A = W with TRANSA = T: Y^T = op(A) X^T, op(A) = W (N x K).
#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "core/error.hpp"
#include "cuda_check.hpp"
#include "cuda_engine.hpp"
#include "device_buffer.hpp"
#include "kernels.hpp"
#include "model/rope.hpp"
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

std::vector<float> download_acts(const ActView& a, Stream& stream) {
  const auto s = static_cast<cudaStream_t>(stream.handle());
  const std::size_t n = static_cast<std::size_t>(a.B) * a.T * a.N;
  std::vector<float> out(n);
  if (a.bf16) {
    std::vector<std::uint16_t> bits(n);
    NX_CUDA(cudaMemcpyAsync(bits.data(), a.data, n * sizeof(std::uint16_t), cudaMemcpyDeviceToHost, s));
    NX_CUDA(cudaStreamSynchronize(s));
    for (std::size_t i = 0; i < n; ++i) out[i] = bf16_bits_to_float(bits[i]);
  } else {
    NX_CUDA(cudaMemcpyAsync(out.data(), a.data, n * sizeof(float), cudaMemcpyDeviceToHost, s));
    NX_CUDA(cudaStreamSynchronize(s));
  }
  return out;
}

namespace {

cudaStream_t as_stream(Stream& s) { return static_cast<cudaStream_t>(s.handle()); }

kernels::Act device_act(ActKind k) {
  switch (k) {
    case ActKind::GeluTanh: return kernels::Act::gelu_tanh;
    case ActKind::GeluErf: return kernels::Act::gelu_erf;
    case ActKind::Silu: return kernels::Act::silu;
    case ActKind::Relu: return kernels::Act::relu;
  }
  return kernels::Act::gelu_tanh;
}

// ---------------------------------------------------------------- cuBLASLt GEMM plans

// What the cuBLASLt epilogue does after the matmul: nothing, + bias, or gelu(. + bias).
// gelu_bias16: GELU_BIAS with a bf16 copy of the bias, for bf16 outputs where cuBLASLt has no
// GELU_BIAS algorithm taking a float bias (measured on an H200, bench/NOTES.md).
enum class Epilogue { none, bias, gelu_bias, gelu_bias16 };

struct GemmKey {
  int M, N, K;
  bool trans_a;  // nn.Linear's [out, in] weight
  cudaDataType_t in, out;
  cublasComputeType_t compute;
  Epilogue ep;
  bool operator<(const GemmKey& o) const {
    return std::tie(M, N, K, trans_a, in, out, compute, ep) <
           std::tie(o.M, o.N, o.K, o.trans_a, o.in, o.out, o.compute, o.ep);
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

// How a linear layer's output is finished (TransformerDevice::Impl::linear).
enum class Step {
  write,       // Y = X W + b, float Y (the qkv projection)
  accumulate,  // Y += X W + b, Y = the float residual stream (the o and down projections)
  activate,    // Y = act(X W + b), Y = the neurons in the GEMM input type (a plain MLP's up)
};

// The fusions ForwardTuning can ask for, each of which may find no cuBLASLt algorithm.
enum Fusion { kBiasFusion, kResidualFusion, kGeluFusion, kFusions };

}  // namespace

// ---------------------------------------------------------------- TransformerDevice::Impl

struct TransformerDevice::Impl {
  // One linear layer: the weight in the GEMM input type (float or bf16, raw bytes), its float
  // bias (empty when the layer has none) and the weight's orientation ([in, out] or [out, in]).
  struct Linear {
    DeviceArray<unsigned char> w;
    DeviceArray<float> b;
    // b rounded to bf16, made on first use by Epilogue::gelu_bias16 (2 bytes per value).
    mutable DeviceArray<unsigned char> b16;  // a cache of b: made where the const weights are used
    int in = 0, out = 0;
    bool in_major = false;
    const float* bias() const { return b.size() ? b.get() : nullptr; }
    std::size_t bytes() const { return w.bytes() + b.bytes(); }
  };
  struct Norm {
    DeviceArray<float> w, b;  // b: LayerNorm only
    std::size_t bytes() const { return w.bytes() + b.bytes(); }
  };
  struct Block {
    Norm norm1, norm2;
    Linear qkv, o, up, down;
  };

  ArchConfig cfg;
  int first = 0, last = 0;
  bool embeddings = false;
  Precision prec = Precision::fp32;
  Stream stream;
  cublasLtHandle_t lt = nullptr;
  DeviceArray<unsigned char> lt_ws;
  std::map<GemmKey, std::unique_ptr<GemmPlan>> plans;

  DeviceArray<float> tok_embed, pos_embed;  // pos_embed: learned positions only
  std::vector<Block> blocks;                // n_layer entries; [first, last] allocated

  // RoPE cos/sin tables [T][rotary_dim / 2] for rope_T (model/rope.hpp, as the CPU's).
  int rope_T = 0;
  DeviceArray<float> rope_cos, rope_sin;

  // Workspace for up to cap_rows rows (B*T).
  std::size_t cap_rows = 0;
  DeviceArray<std::uint32_t> d_tokens;
  DeviceArray<float> x, qkv, tmp;  // residual stream [rows][C], [rows][qkv_dim], [rows][C]
  // In the GEMM input type: norm output [rows][C], attention output [rows][q_dim], and for
  // gated MLPs the fused up projection [rows][2 I] ([gate | up]).
  DeviceArray<unsigned char> ln, att, up;
  // The neurons [rows][I] (the captured activations), in the GEMM input type: layer l writes
  // fc[l % 2] so that a consumer on another stream can still read layer l - 1 while layer l is
  // computed.
  DeviceArray<unsigned char> fc[2];
  Event acts_ready[2], acts_consumed[2];

  ForwardTuning tune;
  Stream* consumer = nullptr;
  PhaseTimer* timer = nullptr;
  bool fell_back[kFusions] = {false, false, false};  // a fusion found no epilogue algorithm
  bool bias16_used = false;  // the GELU epilogue ran with the bf16 bias copy (Epilogue::gelu_bias16)
  // Pinned staging of the tokens, two slots used alternately.
  PinnedArray<std::uint32_t> h_tokens[2];
  Event uploaded[2];
  int token_slot = 0;

  bool bf16() const { return prec == Precision::bf16; }
  std::size_t in_size() const { return bf16() ? 2 : 4; }
  cudaDataType_t in_type() const { return bf16() ? CUDA_R_16BF : CUDA_R_32F; }
  bool gated() const { return cfg.mlp == MlpKind::Gated; }
  bool rotary() const { return cfg.position == PositionKind::Rotary; }
  bool learned() const { return cfg.position == PositionKind::Learned; }
  // Only a plain MLP's biased gelu_new (GPT-2's c_fc) matches cuBLASLt's GELU_BIAS epilogue.
  bool gelu_fusable() const { return !gated() && cfg.act == ActKind::GeluTanh && cfg.mlp_bias; }

  // ArchConfig::validate restated (cuda/ cannot call into nexplain_lib): what the kernels and
  // buffers below rely on.
  Impl(const ArchConfig& c, int first_layer, int last_layer, bool with_embeddings, Precision p)
      : cfg(c), first(first_layer), last(last_layer), embeddings(with_embeddings), prec(p) {
    const bool sizes = cfg.hidden > 0 && cfg.n_layer > 0 && cfg.n_head > 0 && cfg.n_kv_head > 0 && cfg.head_dim > 0 &&
                       cfg.intermediate > 0 && cfg.vocab_size > 0 && cfg.n_head % cfg.n_kv_head == 0;
    const bool positions = learned() ? cfg.max_positions > 0
                                     : cfg.rope.rotary_dim >= 2 && cfg.rope.rotary_dim % 2 == 0 &&
                                           cfg.rope.rotary_dim <= cfg.head_dim;
    if (!sizes || !positions || !(cfg.norm_eps > 0))
      fail("CUDA forward: invalid {} config (hidden {}, layers {}, heads {}/{} x {}, intermediate {}, vocab {}, "
           "max positions {}, rotary dim {}, eps {})",
           cfg.model_type, cfg.hidden, cfg.n_layer, cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.intermediate,
           cfg.vocab_size, cfg.max_positions, cfg.rope.rotary_dim, cfg.norm_eps);
    if (first < 0 || last >= cfg.n_layer || first > last)
      fail("CUDA forward: blocks {}..{} are outside the model's {} layers", first, last, cfg.n_layer);
    NX_CUBLAS(cublasLtCreate(&lt));
    lt_ws.resize(kGemmWorkspace);
    blocks.resize(static_cast<std::size_t>(cfg.n_layer));
  }

  ~Impl() {
    // Everything queued must finish before buffers are freed (their destructors run after this).
    cudaStreamSynchronize(as_stream(stream));
    plans.clear();
    if (lt) cublasLtDestroy(lt);
  }

  void allocate_linear(Linear& L, int in, int out, bool bias, bool in_major) {
    L.in = in;
    L.out = out;
    L.in_major = in_major;
    L.w.resize(static_cast<std::size_t>(in) * static_cast<std::size_t>(out) * in_size());
    if (bias) L.b.resize(static_cast<std::size_t>(out));
  }

  // Allocates every parameter buffer at its full size. The orientation of the linear layers is
  // the loader's (TransformerWeights: GPT-2's Conv1D is [in, out], nn.Linear [out, in]); upload
  // checks it against the weights.
  void allocate() {
    const std::size_t C = cfg.hidden;
    const bool layernorm = cfg.norm == NormKind::LayerNorm;
    const bool in_major = cfg.model_type == "gpt2";
    if (embeddings) {
      tok_embed.resize(static_cast<std::size_t>(cfg.vocab_size) * C);
      if (learned()) pos_embed.resize(static_cast<std::size_t>(cfg.max_positions) * C);
    }
    for (int l = first; l <= last; ++l) {
      Block& b = blocks[static_cast<std::size_t>(l)];
      for (Norm* n : {&b.norm1, &b.norm2}) {
        n->w.resize(C);
        if (layernorm) n->b.resize(C);
      }
      const int I = cfg.intermediate;
      allocate_linear(b.qkv, cfg.hidden, cfg.qkv_dim(), cfg.qkv_bias, in_major);
      allocate_linear(b.o, cfg.q_dim(), cfg.hidden, cfg.o_bias, in_major);
      allocate_linear(b.up, cfg.hidden, gated() ? 2 * I : I, cfg.mlp_bias, in_major);
      allocate_linear(b.down, I, cfg.hidden, cfg.mlp_bias, in_major);
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

  void upload_linear(Linear& d, const LinearWeights& s, const char* what, int layer) {
    if (s.in != d.in || s.out != d.out)
      fail("CUDA forward: block {} {} is {} -> {}, the config implies {} -> {}", layer, what, s.in, s.out, d.in, d.out);
    if (s.in_major != d.in_major)
      fail("CUDA forward: block {} {} is stored {}, expected {} for model_type \"{}\"", layer, what,
           s.in_major ? "[in, out]" : "[out, in]", d.in_major ? "[in, out]" : "[out, in]", cfg.model_type);
    upload_matrix(d.w, s.w, what, layer);
    upload_vector(d.b, s.b, what, layer);  // both empty when the layer has no bias
  }

  void upload(const TransformerWeights& w) {
    if (embeddings) {
      if (w.tok_embed.size() != tok_embed.size() || w.pos_embed.size() != pos_embed.size())
        fail("CUDA forward: the embeddings (token {} values, position {}) do not match the config (expected {} and {})",
             w.tok_embed.size(), w.pos_embed.size(), tok_embed.size(), pos_embed.size());
      tok_embed.upload(w.tok_embed.data(), w.tok_embed.size());
      pos_embed.upload(w.pos_embed.data(), w.pos_embed.size());
    }
    for (int l = first; l <= last; ++l) {
      // TransformerWeights::has_block restated: cuda/ cannot call into nexplain_lib.
      const auto li = static_cast<std::size_t>(l);
      const bool loaded = li < w.blocks.size() && !w.blocks[li].qkv.empty() && !w.blocks[li].up.empty() &&
                          !w.blocks[li].down.empty();
      if (!loaded) fail("CUDA forward: block {} was not loaded (TransformerLoadOptions layer range)", l);
      const TransformerBlockWeights& s = w.blocks[li];
      Block& d = blocks[li];
      upload_vector(d.norm1.w, s.norm1.w, "norm1 weight", l);
      upload_vector(d.norm1.b, s.norm1.b, "norm1 bias", l);
      upload_vector(d.norm2.w, s.norm2.w, "norm2 weight", l);
      upload_vector(d.norm2.b, s.norm2.b, "norm2 bias", l);
      upload_linear(d.qkv, s.qkv, "qkv projection", l);
      upload_linear(d.o, s.o, "o projection", l);
      upload_linear(d.up, s.up, "up projection", l);
      upload_linear(d.down, s.down, "down projection", l);
    }
  }

  void randomize(std::uint64_t seed) {
    const cudaStream_t s = as_stream(stream);
    const float sd = 0.02f;
    const float proj_sd = sd / std::sqrt(2.0f * static_cast<float>(cfg.n_layer));
    std::uint64_t tensor = 0;
    const auto next_seed = [&] { return seed * 0x9e3779b97f4a7c15ull + (++tensor) * 0xbf58476d1ce4e5b9ull; };
    const auto fill = [&](DeviceArray<float>& a, float v) { kernels::init_const(a.get(), false, a.size(), v, s); };
    const auto normal = [&](Linear& L, float stddev) {
      kernels::init_normal(L.w.get(), bf16(), L.w.bytes() / in_size(), next_seed(), stddev, s);
      fill(L.b, 0.0f);
    };
    // The tensors draw their seeds in GPT-2's order of old (wte, wpe, then per block c_attn,
    // attn.c_proj, c_fc, mlp.c_proj), so a GPT-2 benchmark model keeps its numbers.
    if (tok_embed.size()) kernels::init_normal(tok_embed.get(), false, tok_embed.size(), next_seed(), sd, s);
    if (pos_embed.size()) kernels::init_normal(pos_embed.get(), false, pos_embed.size(), next_seed(), sd, s);
    for (int l = first; l <= last; ++l) {
      Block& b = blocks[static_cast<std::size_t>(l)];
      for (Norm* n : {&b.norm1, &b.norm2}) {
        fill(n->w, 1.0f);
        fill(n->b, 0.0f);
      }
      normal(b.qkv, sd);
      normal(b.o, proj_sd);
      normal(b.up, sd);
      normal(b.down, proj_sd);
    }
    stream.synchronize();
  }

  std::size_t weight_bytes() const {
    std::size_t n = tok_embed.bytes() + pos_embed.bytes();
    for (const auto& b : blocks)
      n += b.norm1.bytes() + b.norm2.bytes() + b.qkv.bytes() + b.o.bytes() + b.up.bytes() + b.down.bytes();
    return n;
  }

  void ensure_workspace(std::size_t rows) {
    if (rows <= cap_rows) return;
    stream.synchronize();  // in-flight work may still use the old buffers
    if (consumer) consumer->synchronize();  // and the consumer may still read fc[] (overlap)
    const std::size_t C = cfg.hidden, I = cfg.intermediate;
    d_tokens.resize(rows);
    x.resize(rows * C);
    qkv.resize(rows * static_cast<std::size_t>(cfg.qkv_dim()));
    tmp.resize(rows * C);
    ln.resize(rows * C * in_size());
    att.resize(rows * static_cast<std::size_t>(cfg.q_dim()) * in_size());
    if (gated()) up.resize(rows * 2 * I * in_size());
    fc[0].resize(rows * I * in_size());
    if (tune.overlap && consumer) fc[1].resize(rows * I * in_size());
    for (auto& h : h_tokens) h.resize(rows);
    cap_rows = rows;
  }

  // The RoPE tables for T positions (recomputed only when T changes: "dynamic" scaling depends
  // on it), computed on the host exactly as the CPU forward's.
  void prepare_rope(int T) {
    if (!rotary() || rope_T == T) return;
    std::vector<float> c, s;
    rope_tables(cfg, T, c, s);
    stream.synchronize();  // queued kernels may still read the old tables
    rope_cos.resize(c.size());
    rope_sin.resize(s.size());
    rope_cos.upload(c.data(), c.size());
    rope_sin.upload(s.data(), s.size());
    rope_T = T;
  }

  // The plan of one shape and epilogue; nullptr when cuBLASLt has no algorithm for an epilogue
  // (the caller then uses the kernels; an epilogue-free matmul without an algorithm is an Error).
  GemmPlan* plan(int M, int N, int K, bool trans_a, cudaDataType_t out, Epilogue ep) {
    const cublasComputeType_t compute =
        prec == Precision::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const GemmKey key{M, N, K, trans_a, in_type(), out, compute, ep};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second.get();
    auto p = std::make_unique<GemmPlan>();
    NX_CUBLAS(cublasLtMatmulDescCreate(&p->op, compute, CUDA_R_32F));
    const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, no = CUBLAS_OP_N;
    NX_CUBLAS(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    NX_CUBLAS(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &no, sizeof no));
    if (ep != Epilogue::none) {
      const cublasLtEpilogue_t e = ep == Epilogue::bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
      // Our biases are float whatever the output type (default: the output's type), except
      // gelu_bias16's bf16 copy.
      const cudaDataType_t bias_type = ep == Epilogue::gelu_bias16 ? CUDA_R_16BF : CUDA_R_32F;
      if (cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e) != CUBLAS_STATUS_SUCCESS ||
          cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type) !=
              CUBLAS_STATUS_SUCCESS) {
        plans.emplace(key, nullptr);
        return nullptr;
      }
    }
    const auto u = [](int v) { return static_cast<std::uint64_t>(v); };
    // A: the stored weight read column-major, [in, out] -> N x K (ld N), [out, in] -> K x N (ld K).
    if (trans_a)
      NX_CUBLAS(cublasLtMatrixLayoutCreate(&p->a, in_type(), u(K), u(N), K));
    else
      NX_CUBLAS(cublasLtMatrixLayoutCreate(&p->a, in_type(), u(N), u(K), N));
    NX_CUBLAS(cublasLtMatrixLayoutCreate(&p->b, in_type(), u(K), u(M), K));
    NX_CUBLAS(cublasLtMatrixLayoutCreate(&p->d, out, u(N), u(M), N));
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
      fail("cuBLASLt: no algorithm for a {} x {} x {} matmul ({} in, {} out, {}, weight {})", M, N, K,
           bf16() ? "bf16" : "fp32", out == CUDA_R_16BF ? "bf16" : "fp32", precision_name(prec),
           trans_a ? "[out, in]" : "[in, out]");
    p->algo = result.algo;
    GemmPlan* ptr = p.get();
    plans.emplace(key, std::move(p));
    return ptr;
  }

  // Row-major Y[M][L.out] = X[M][L.in] W (+ Y when accumulate) then the epilogue with `bias`
  // (X, W in the input type; Y float or the input type). False, with nothing queued, when
  // cuBLASLt has no algorithm for the epilogue.
  bool gemm(const Linear& L, const void* X, void* Y, int M, bool out_float, Epilogue ep = Epilogue::none,
            const void* bias = nullptr, bool accumulate = false) {
    const cudaDataType_t out = out_float ? CUDA_R_32F : in_type();
    GemmPlan* p = plan(M, L.out, L.in, !L.in_major, out, ep);
    if (!p) return false;
    if (ep != Epilogue::none)
      NX_CUBLAS(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    // In place (C == D, same layout) for the accumulating projections: cuBLASLt allows it.
    NX_CUBLAS(cublasLtMatmul(lt, p->op, &alpha, L.w.get(), p->a, X, p->b, &beta, Y, p->d, Y, p->d, &p->algo,
                             lt_ws.get(), lt_ws.bytes(), as_stream(stream)));
    return true;
  }

  // L's bias rounded to bf16 (made once, on the stream, from the device copy).
  const void* bias16(const Linear& L) {
    if (L.b16.bytes() == 0) {
      L.b16.resize(L.b.size() * 2);
      kernels::float_to_bf16(L.b16.get(), L.b.get(), L.b.size(), as_stream(stream));
    }
    return L.b16.get();
  }

  bool gelu_in_epilogue() const { return tune.gelu_epilogue < 0 ? bf16() : tune.gelu_epilogue > 0; }

  // One linear layer of a block over M rows, finished as `step` says -- the one place where
  // "fused into the cuBLASLt epilogue, else the plain GEMM and a kernel" is decided:
  //   write       Y = X W + b:        bias epilogue (tune.bias_epilogue) | GEMM + add_bias
  //   accumulate  Y += X W + b:       beta = 1 in place, bias epilogue (tune.residual_epilogue) |
  //                                   GEMM into tmp + residual_add
  //   activate    Y = act(X W + b):   GELU_BIAS epilogue (gelu_in_epilogue(), a biased gelu_new
  //                                   only) | GEMM + bias_act
  // A layer without bias just skips it. A fusion without a cuBLASLt algorithm falls back to the
  // kernels and is recorded for tuning_summary().
  void linear(const Linear& L, const void* X, void* Y, int M, Step step, kernels::Act act = kernels::Act::gelu_tanh) {
    const cudaStream_t s = as_stream(stream);
    const auto rows = static_cast<std::size_t>(M);
    const float* b = L.bias();
    const bool out_float = step != Step::activate || !bf16();  // the neurons are in the input type
    bool fuse = false;
    Epilogue ep = Epilogue::none;
    Fusion which = kBiasFusion;
    switch (step) {
      case Step::write:
        fuse = tune.bias_epilogue && b;
        ep = Epilogue::bias;
        which = kBiasFusion;
        break;
      case Step::accumulate:
        fuse = tune.residual_epilogue;
        ep = b ? Epilogue::bias : Epilogue::none;
        which = kResidualFusion;
        break;
      case Step::activate:
        fuse = gelu_in_epilogue() && act == kernels::Act::gelu_tanh && b;
        ep = Epilogue::gelu_bias;
        which = kGeluFusion;
        break;
    }
    if (fuse) {
      if (gemm(L, X, Y, M, out_float, ep, b, step == Step::accumulate)) return;
      // bf16 neurons: cuBLASLt may have the GELU epilogue only with a bias of the output's type.
      if (step == Step::activate && !out_float && gemm(L, X, Y, M, out_float, Epilogue::gelu_bias16, bias16(L))) {
        bias16_used = true;
        return;
      }
      fell_back[which] = true;
    }
    switch (step) {
      case Step::write:
        gemm(L, X, Y, M, true);
        if (b) kernels::add_bias(static_cast<float*>(Y), b, rows, L.out, s);
        break;
      case Step::accumulate:
        gemm(L, X, tmp.get(), M, true);
        kernels::residual_add(static_cast<float*>(Y), tmp.get(), b, rows, L.out, s);
        break;
      case Step::activate:
        gemm(L, X, Y, M, out_float);
        kernels::bias_act(Y, bf16(), b, rows, L.out, act, s);
        break;
    }
  }

  void norm(void* out, const Norm& n, std::size_t rows) {
    const cudaStream_t s = as_stream(stream);
    if (cfg.norm == NormKind::LayerNorm)
      kernels::layernorm(out, bf16(), x.get(), n.w.get(), n.b.get(), rows, cfg.hidden, cfg.norm_eps, s);
    else
      kernels::rmsnorm(out, bf16(), x.get(), n.w.get(), rows, cfg.hidden, cfg.norm_eps, s);
    mark(cfg.norm == NormKind::LayerNorm ? "layernorm" : "rmsnorm");
  }

  void mark(const char* phase) {
    if (timer) timer->mark(phase, stream.handle());
  }

  std::string summary() const {
    const auto how = [&](bool wanted, bool fell) {
      return !wanted ? "kernel" : fell ? "kernel(no epilogue algorithm)" : "epilogue";
    };
    std::string out = "bias:";
    out += cfg.qkv_bias ? how(tune.bias_epilogue, fell_back[kBiasFusion]) : "none";
    out += " residual:";
    out += how(tune.residual_epilogue, fell_back[kResidualFusion]);
    out += gelu_fusable() ? std::string(" gelu:") + how(gelu_in_epilogue(), fell_back[kGeluFusion]) : " act:kernel";
    if (bias16_used && !fell_back[kGeluFusion]) out += "(bf16 bias)";
    out += " overlap:";
    out += tune.overlap && consumer ? "on" : "off";
    return out;
  }

  void check_batch(int B, int T) const {
    if (B <= 0 || T <= 0) fail("CUDA forward: empty batch (B={}, T={})", B, T);
    // Only a learned position table limits T (RoPE runs past max_position_embeddings, as HF).
    if (learned() && T > cfg.max_positions)
      fail("CUDA forward: sequence length T={} exceeds the model's {} learned positions", T, cfg.max_positions);
    if (static_cast<std::size_t>(B) * static_cast<std::size_t>(T) > 0x7fffffffu)
      fail("CUDA forward: batch of {} x {} rows is too large", B, T);
  }

  // x = the embedding of `tokens` (host [B][T], validated first), staged through pinned memory.
  void embed(const std::uint32_t* tokens, int B, int T) {
    if (!embeddings) fail("CUDA forward: the token embeddings were not uploaded (a later pipeline stage)");
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        const std::uint32_t id = tokens[static_cast<std::size_t>(b) * T + t];
        if (id >= static_cast<std::uint32_t>(cfg.vocab_size))
          fail("forward: token id {} at batch row {}, position {} is out of range (vocab_size {})", id, b, t,
               cfg.vocab_size);
      }
    const std::size_t rows = static_cast<std::size_t>(B) * T;
    const cudaStream_t s = as_stream(stream);
    // Wait only for the upload two batches ago.
    token_slot ^= 1;
    uploaded[token_slot].wait_host();
    std::copy(tokens, tokens + rows, h_tokens[token_slot].get());
    NX_CUDA(cudaMemcpyAsync(d_tokens.get(), h_tokens[token_slot].get(), rows * sizeof(std::uint32_t),
                            cudaMemcpyHostToDevice, s));
    uploaded[token_slot].record(s);
    kernels::embed(x.get(), d_tokens.get(), tok_embed.get(), learned() ? pos_embed.get() : nullptr, rows, T,
                   cfg.hidden, s);
    mark("embed");
  }

  // One block on the residual stream x [B*T][C], in place, as TransformerCpu::block:
  //   sequential:  x += o(attention(norm1 x));  x += down(neurons(norm2 x))
  //   parallel:    x += o(attention(norm1 x)) and x += down(neurons(norm2 x)), both branches
  //                reading the x the block started with: norm2 runs before o accumulates
  // The neurons are act(up x) (plain MLP) or act(gate x) * (up x) (gated); `capture` hands them
  // to on_acts. Without `need_output` only the neurons were wanted: no down projection.
  void block(int l, int B, int T, bool capture, bool need_output, const ActCallback& on_acts) {
    const Block& w = blocks[static_cast<std::size_t>(l)];
    const cudaStream_t s = as_stream(stream);
    const std::size_t rows = static_cast<std::size_t>(B) * T;
    const int M = static_cast<int>(rows), I = cfg.intermediate;
    const bool parallel = cfg.residual == ResidualKind::Parallel;
    const bool overlap = tune.overlap && consumer != nullptr;
    // attention
    norm(ln.get(), w.norm1, rows);
    linear(w.qkv, ln.get(), qkv.get(), M, Step::write);
    mark("gemm c_attn (+bias)");
    if (parallel) norm(ln.get(), w.norm2, rows);  // the qkv GEMM has read norm1's output
    if (rotary()) {
      kernels::rope(qkv.get(), rope_cos.get(), rope_sin.get(), rows, T, cfg.n_head, cfg.n_kv_head, cfg.head_dim,
                    cfg.rope.rotary_dim / 2, s);
      mark("rope");
    }
    kernels::attention(qkv.get(), att.get(), bf16(), B, T, cfg.n_head, cfg.n_kv_head, cfg.head_dim, s);
    mark("attention");
    linear(w.o, att.get(), x.get(), M, Step::accumulate);
    mark("gemm attn.c_proj (+residual)");
    if (!parallel) norm(ln.get(), w.norm2, rows);
    // MLP
    const int slot = overlap ? (l & 1) : 0;
    void* acts = fc[slot].get();
    // The consumer of the layer that last used this buffer must be done with it.
    if (consumer) NX_CUDA(cudaStreamWaitEvent(s, acts_consumed[slot].get(), 0));
    if (gated()) {
      // [gate | up] in the input type, then the neurons with the biases added in the kernel.
      gemm(w.up, ln.get(), up.get(), M, !bf16());
      mark("gemm gate|up");
      kernels::gated_act(acts, up.get(), bf16(), w.up.bias(), rows, I, device_act(cfg.act), s);
      mark("gated activation");
    } else {
      linear(w.up, ln.get(), acts, M, Step::activate, device_act(cfg.act));
      mark("gemm c_fc (+bias+gelu)");
    }
    if (capture && on_acts && consumer) {
      const cudaStream_t cs = as_stream(*consumer);
      acts_ready[slot].record(s);
      NX_CUDA(cudaStreamWaitEvent(cs, acts_ready[slot].get(), 0));
      on_acts(l, ActView{acts, bf16(), B, T, I});
      acts_consumed[slot].record(cs);
      // Without overlap the forward waits for the consumer right away (one buffer).
      if (!overlap) NX_CUDA(cudaStreamWaitEvent(s, acts_consumed[slot].get(), 0));
    } else if (capture && on_acts) {
      on_acts(l, ActView{acts, bf16(), B, T, I});
    }
    mark("capture (rest)");
    if (!need_output) return;  // the down-projection of the last block is not needed
    linear(w.down, acts, x.get(), M, Step::accumulate);
    mark("gemm mlp.c_proj (+residual)");
  }

  void forward(const std::uint32_t* tokens, int B, int T, int run_to, const ActCallback& on_acts) {
    check_batch(B, T);
    if (first != 0) fail("CUDA forward: this device model holds blocks {}..{} only (a pipeline stage)", first, last);
    if (run_to < 0 || run_to > last)
      fail("CUDA forward: layer {} requested, but only blocks 0..{} were uploaded", run_to, last);
    ensure_workspace(static_cast<std::size_t>(B) * T);
    prepare_rope(T);
    if (timer) timer->start(stream.handle());
    embed(tokens, B, T);
    for (int l = 0; l <= run_to; ++l) block(l, B, T, true, l < run_to, on_acts);
  }

  void run_blocks(const std::uint32_t* tokens, float* hidden, int B, int T, int layer_begin, int layer_end,
                  int capture_first, int capture_last, const ActCallback& on_acts) {
    check_batch(B, T);
    if (layer_begin < first || layer_end > last + 1 || layer_begin > layer_end)
      fail("CUDA forward: blocks [{}, {}) requested, but only blocks {}..{} were uploaded", layer_begin, layer_end,
           first, last);
    const std::size_t rows = static_cast<std::size_t>(B) * T;
    const std::size_t bytes = rows * static_cast<std::size_t>(cfg.hidden) * sizeof(float);
    const cudaStream_t s = as_stream(stream);
    ensure_workspace(rows);
    prepare_rope(T);
    if (timer) timer->start(stream.handle());
    if (tokens)
      embed(tokens, B, T);
    else
      NX_CUDA(cudaMemcpyAsync(x.get(), hidden, bytes, cudaMemcpyHostToDevice, s));
    for (int l = layer_begin; l < layer_end; ++l)
      block(l, B, T, l >= capture_first && l <= capture_last, true, on_acts);
    NX_CUDA(cudaMemcpyAsync(hidden, x.get(), bytes, cudaMemcpyDeviceToHost, s));
    stream.synchronize();
  }
};

// ---------------------------------------------------------------- TransformerDevice

TransformerDevice::TransformerDevice(const ArchConfig& config, int first_layer, int last_layer, bool embeddings,
                                     Precision precision)
    : impl_(std::make_unique<Impl>(config, first_layer, last_layer, embeddings, precision)) {
  impl_->allocate();
}

TransformerDevice::TransformerDevice(const TransformerWeights& w, int first_layer, int last_layer, Precision precision)
    : TransformerDevice(w.config, first_layer, last_layer, !w.tok_embed.empty(), precision) {
  impl_->upload(w);
}

std::unique_ptr<TransformerDevice> TransformerDevice::random(const ArchConfig& config, int last_layer,
                                                             Precision precision, std::uint64_t seed) {
  std::unique_ptr<TransformerDevice> d(new TransformerDevice(config, 0, last_layer, true, precision));
  d->impl_->randomize(seed);
  return d;
}

TransformerDevice::~TransformerDevice() = default;

const ArchConfig& TransformerDevice::config() const { return impl_->cfg; }
Precision TransformerDevice::precision() const { return impl_->prec; }
int TransformerDevice::first_layer() const { return impl_->first; }
int TransformerDevice::last_layer() const { return impl_->last; }
bool TransformerDevice::has_embeddings() const { return impl_->embeddings; }
Stream& TransformerDevice::stream() { return impl_->stream; }
std::size_t TransformerDevice::weight_bytes() const { return impl_->weight_bytes(); }

void TransformerDevice::set_tuning(const ForwardTuning& t) {
  impl_->stream.synchronize();  // buffers and plans in use must not change under queued work
  if (impl_->consumer) impl_->consumer->synchronize();
  impl_->tune = t;
  impl_->cap_rows = 0;  // the second activation buffer may now be needed
}
const ForwardTuning& TransformerDevice::tuning() const { return impl_->tune; }
std::string TransformerDevice::tuning_summary() const { return impl_->summary(); }

void TransformerDevice::set_consumer_stream(Stream* consumer) {
  impl_->stream.synchronize();
  if (impl_->consumer) impl_->consumer->synchronize();
  impl_->consumer = consumer;
  impl_->cap_rows = 0;
}
Stream& TransformerDevice::consumer_stream() { return impl_->consumer ? *impl_->consumer : impl_->stream; }
void TransformerDevice::set_phase_timer(PhaseTimer* timer) { impl_->timer = timer; }

void TransformerDevice::forward(const std::uint32_t* tokens, int B, int T, int run_to, const ActCallback& on_acts) {
  impl_->forward(tokens, B, T, run_to, on_acts);
}

void TransformerDevice::run_blocks(const std::uint32_t* tokens, float* hidden, int B, int T, int layer_begin,
                                   int layer_end, int capture_first, int capture_last, const ActCallback& on_acts) {
  impl_->run_blocks(tokens, hidden, B, T, layer_begin, layer_end, capture_first, capture_last, on_acts);
}

std::map<int, std::vector<float>> TransformerDevice::forward_host(const std::uint32_t* tokens, int B, int T,
                                                                  const std::vector<int>& layers) {
  std::map<int, std::vector<float>> out;
  if (layers.empty()) return out;
  const int run_to = *std::max_element(layers.begin(), layers.end());
  impl_->forward(tokens, B, T, run_to, [&](int layer, const ActView& a) {
    if (std::find(layers.begin(), layers.end(), layer) != layers.end()) out[layer] = download_acts(a, impl_->stream);
  });
  impl_->stream.synchronize();
  return out;
}

}  // namespace nexplain::cuda
