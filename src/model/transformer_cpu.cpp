// The generic transformer forward, float32, CPU. Structure as in llm.c: each step is a small
// function over flat row-major arrays, rows = B*T tokens; every linear layer is one sgemm over
// all rows; the rest are loops parallelised over rows or (batch, head) pairs. What differs
// between families is read from ArchConfig at the step that needs it.
#include "model/transformer_cpu.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "core/error.hpp"
#include "model/rope.hpp"
#include "model/thread_pool.hpp"

namespace nexplain {

namespace {

// out[rows, N] = in[rows, K] @ W + b. W is [K, N] (in_major, GPT-2's Conv1D) or [N, K]
// (nn.Linear), which the GEMM reads transposed. With a bias, `out` is pre-filled with it and
// the GEMM accumulates onto it (beta = 1).
void linear(float* out, const float* in, const LinearWeights& L, std::int64_t rows) {
  const int K = L.in, N = L.out;
  float beta = 0.0f;
  if (!L.b.empty()) {
    for (std::int64_t r = 0; r < rows; ++r) std::copy(L.b.begin(), L.b.end(), out + r * N);
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, L.in_major ? CblasNoTrans : CblasTrans, static_cast<int>(rows), N, K,
              1.0f, in, K, L.w.data(), L.in_major ? N : K, beta, out, N);
}

// LayerNorm (torch.nn.LayerNorm: biased variance) or RMSNorm (HF LlamaRMSNorm: x / rms(x) * w),
// statistics accumulated in double: the residual stream of large models has a few big
// components, and a float sum loses the small ones.
void norm_rows(float* out, const float* in, const NormWeights& n, NormKind kind, std::int64_t r0, std::int64_t r1,
               int C, double eps) {
  const float* gamma = n.w.data();
  for (std::int64_t r = r0; r < r1; ++r) {
    const float* x = in + r * C;
    float* y = out + r * C;
    if (kind == NormKind::RMSNorm) {
      double ss = 0;
      for (int i = 0; i < C; ++i) ss += static_cast<double>(x[i]) * x[i];
      const auto rstd = static_cast<float>(1.0 / std::sqrt(ss / C + eps));
      for (int i = 0; i < C; ++i) y[i] = gamma[i] * (x[i] * rstd);
      continue;
    }
    double mean = 0;
    for (int i = 0; i < C; ++i) mean += x[i];
    mean /= C;
    double var = 0;
    for (int i = 0; i < C; ++i) {
      const double d = x[i] - mean;
      var += d * d;
    }
    var /= C;
    const auto rstd = static_cast<float>(1.0 / std::sqrt(var + eps));
    const auto m = static_cast<float>(mean);
    const float* beta = n.b.data();
    for (int i = 0; i < C; ++i) y[i] = (x[i] - m) * rstd * gamma[i] + beta[i];
  }
}

// The MLP activations. gelu_tanh is GPT-2's "gelu_new", 0.5 x (1 + tanh(u)) with
// u = sqrt(2/pi)(x + 0.044715 x^3), evaluated as the equal x / (1 + exp(-2u));
// gelu_erf is torch's exact GELU (GPT-NeoX's "gelu"); silu is x * sigmoid(x) (Llama, Qwen2).
inline float activate(ActKind k, float x) {
  switch (k) {
    case ActKind::GeluTanh: {
      constexpr float k2 = 2.0f * 0.7978845608028654f;  // 2 sqrt(2 / pi)
      return x / (1.0f + std::exp(-k2 * (x + 0.044715f * x * x * x)));
    }
    case ActKind::GeluErf: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case ActKind::Silu: return x / (1.0f + std::exp(-x));
    case ActKind::Relu: return x > 0.0f ? x : 0.0f;
  }
  return x;
}

// Dot product with 8 independent partial sums (the attention's inner loop; without -ffast-math
// the compiler may not reorder a single running sum).
inline float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// RoPE on one head vector, HF's "rotate_half" convention: the first rotary_dim dims are two
// halves (x1, x2) rotated pairwise, (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin); the rest of
// the head (GPT-NeoX's partial rotary) passes through.
inline void rotate(float* v, const float* cos, const float* sin, int half) {
  for (int i = 0; i < half; ++i) {
    const float x1 = v[i], x2 = v[i + half];
    v[i] = x1 * cos[i] - x2 * sin[i];
    v[i + half] = x2 * cos[i] + x1 * sin[i];
  }
}

}  // namespace

TransformerCpu::TransformerCpu(const TransformerWeights& weights, int threads) : w_(weights) {
  threads_ = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  pool_ = std::make_unique<ThreadPool>(threads_);
#ifdef OPENBLAS_VERSION  // OpenBLAS threads the GEMMs; our pool the rest, never at the same time
  openblas_set_num_threads(threads_);
#endif
  w_.config.validate("TransformerCpu");
}

TransformerCpu::~TransformerCpu() = default;

void TransformerCpu::ensure_workspace(int B, int T) {
  const auto rows = static_cast<std::size_t>(B) * static_cast<std::size_t>(T);
  if (rows <= ws_rows_ && T <= ws_T_) return;
  ws_rows_ = std::max(ws_rows_, rows);
  ws_T_ = std::max(ws_T_, T);
  const auto& c = w_.config;
  const auto C = static_cast<std::size_t>(c.hidden), I = static_cast<std::size_t>(c.intermediate);
  ln_.resize(ws_rows_ * C);
  qkv_.resize(ws_rows_ * static_cast<std::size_t>(c.qkv_dim()));
  att_.resize(ws_rows_ * static_cast<std::size_t>(c.q_dim()));
  attn_out_.resize(ws_rows_ * C);
  mlp_out_.resize(ws_rows_ * C);
  up_.resize(ws_rows_ * I * (c.mlp == MlpKind::Gated ? 2 : 1));
  if (c.mlp == MlpKind::Gated) neur_.resize(ws_rows_ * I);
  hidden_.resize(ws_rows_ * C);
  scores_.resize(static_cast<std::size_t>(pool_->size()) * static_cast<std::size_t>(ws_T_));
}

// The cos/sin tables of model/rope.hpp, which the CUDA forward uses too.
void TransformerCpu::prepare_rope(int T) {
  const auto& c = w_.config;
  if (c.position != PositionKind::Rotary || rope_T_ == T) return;
  rope_tables(c, T, cos_, sin_);
  rope_T_ = T;
}

void TransformerCpu::check_batch(int B, int T) const {
  const auto& c = w_.config;
  if (B <= 0 || T <= 0) fail("forward: empty batch (B={}, T={})", B, T);
  // A learned position table has max_positions rows; RoPE has no table, and HF runs it past
  // max_position_embeddings too (dynamic scaling exists for exactly that).
  if (c.position == PositionKind::Learned && T > c.max_positions)
    fail("forward: sequence length T={} exceeds the model's {} learned positions", T, c.max_positions);
}

void TransformerCpu::embed(const std::uint32_t* tokens, int B, int T, float* hidden) {
  const auto& c = w_.config;
  check_batch(B, T);
  if (!w_.has_embeddings()) fail("forward: the token embeddings were not loaded");
  const bool learned = c.position == PositionKind::Learned;
  if (learned && w_.pos_embed.empty()) fail("forward: the position embeddings were not loaded");
  // Validate every id before touching memory, so a bad id is reported, not read out of bounds.
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const std::uint32_t id = tokens[static_cast<std::size_t>(b) * T + t];
      if (id >= static_cast<std::uint32_t>(c.vocab_size))
        fail("forward: token id {} at batch row {}, position {} is out of range (vocab_size {})", id, b, t,
             c.vocab_size);
    }
  const int C = c.hidden;
  pool_->parallel_for(static_cast<std::int64_t>(B) * T, [&](std::int64_t r0, std::int64_t r1, int) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* te = w_.tok_embed.data() + static_cast<std::size_t>(tokens[r]) * C;
      float* h = hidden + r * C;
      if (learned) {
        const float* pe = w_.pos_embed.data() + static_cast<std::size_t>(r % T) * C;
        for (int i = 0; i < C; ++i) h[i] = te[i] + pe[i];
      } else {
        std::copy(te, te + C, h);
      }
    }
  });
}

// One transformer block on the residual stream x [B*T, C], in place:
//   sequential:  x += o(attention(norm1 x));  x += down(neurons(norm2 x))
//   parallel:    x  = down(neurons(norm2 x)) + o(attention(norm1 x)) + x
// `capture` hands the neurons to the sink. When `need_output` is false the caller only wanted
// the neurons, so the down projection and the residual update are skipped.
void TransformerCpu::block(int layer, float* x, int B, int T, bool capture, bool need_output, ActivationSink& sink) {
  const auto& c = w_.config;
  const auto& bw = w_.blocks[static_cast<std::size_t>(layer)];
  const int C = c.hidden, I = c.intermediate, H = c.n_head, hd = c.head_dim;
  const int qkv_dim = c.qkv_dim(), q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int group = c.n_head / c.n_kv_head;  // query heads per k/v head
  const std::int64_t rows = static_cast<std::int64_t>(B) * T;
  const double eps = c.norm_eps;
  const bool parallel = c.residual == ResidualKind::Parallel;
  float* ln = ln_.data();
  float* qkv = qkv_.data();
  float* att = att_.data();
  float* attn_out = attn_out_.data();
  float* up = up_.data();

  // --- attention
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
    norm_rows(ln, x, bw.norm1, c.norm, r0, r1, C, eps);
  });
  linear(qkv, ln, bw.qkv, rows);
  if (c.position == PositionKind::Rotary) {
    const int half = c.rope.rotary_dim / 2;
    pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
      for (std::int64_t r = r0; r < r1; ++r) {
        const std::size_t t = static_cast<std::size_t>(r % T) * half;
        float* row = qkv + r * qkv_dim;
        for (int h = 0; h < H; ++h) rotate(row + h * hd, cos_.data() + t, sin_.data() + t, half);
        for (int h = 0; h < c.n_kv_head; ++h) rotate(row + q_dim + h * hd, cos_.data() + t, sin_.data() + t, half);
      }
    });
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // Each (batch row, head) pair is independent: causal softmax attention over its T positions.
  // Query head h reads k/v head h / group (grouped-query attention; group = 1 is plain MHA).
  pool_->parallel_for(static_cast<std::int64_t>(B) * H, [&](std::int64_t p0, std::int64_t p1, int worker) {
    float* score = scores_.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(ws_T_);
    for (std::int64_t p = p0; p < p1; ++p) {
      const std::int64_t b = p / H, h = p % H, kvh = h / group;
      const float* base = qkv + b * T * qkv_dim;  // row t: q at h*hd, k at q_dim+kvh*hd, v at q_dim+kv_dim+kvh*hd
      for (int t = 0; t < T; ++t) {
        const float* q = base + static_cast<std::int64_t>(t) * qkv_dim + h * hd;
        float mx = -INFINITY;
        for (int s = 0; s <= t; ++s) {
          const float* k = base + static_cast<std::int64_t>(s) * qkv_dim + q_dim + kvh * hd;
          score[s] = dot(q, k, hd) * scale;
          mx = std::max(mx, score[s]);
        }
        float sum = 0;
        for (int s = 0; s <= t; ++s) {
          score[s] = std::exp(score[s] - mx);
          sum += score[s];
        }
        const float inv = 1.0f / sum;
        float* out = att + (b * T + t) * q_dim + h * hd;
        std::fill(out, out + hd, 0.0f);
        for (int s = 0; s <= t; ++s) {
          const float* v = base + static_cast<std::int64_t>(s) * qkv_dim + q_dim + kv_dim + kvh * hd;
          const float pr = score[s] * inv;
          for (int i = 0; i < hd; ++i) out[i] += pr * v[i];
        }
      }
    }
  });
  linear(attn_out, att, bw.o, rows);
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
    // Sequential: the MLP reads x + attention; parallel: the same x the attention read.
    if (!parallel)
      for (std::int64_t i = r0 * C; i < r1 * C; ++i) x[i] += attn_out[i];
    norm_rows(ln, x, bw.norm2, c.norm, r0, r1, C, eps);
  });

  // --- MLP: the neurons are the input of the down projection.
  linear(up, ln, bw.up, rows);
  float* neurons = up;
  if (c.mlp == MlpKind::Gated) {
    neurons = neur_.data();
    pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
      for (std::int64_t r = r0; r < r1; ++r) {
        const float* gate = up + r * 2 * I;  // [gate | up]
        float* n = neurons + r * I;
        for (int i = 0; i < I; ++i) n[i] = activate(c.act, gate[i]) * gate[I + i];
      }
    });
  } else {
    pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
      for (std::int64_t i = r0 * I; i < r1 * I; ++i) up[i] = activate(c.act, up[i]);
    });
  }
  if (capture) sink.mlp_activations(layer, neurons, B, T, I);
  if (!need_output) return;
  float* mlp_out = mlp_out_.data();
  linear(mlp_out, neurons, bw.down, rows);
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
    if (parallel)  // HF GPT-NeoX: mlp_output + attn_output + hidden_states, in that order
      for (std::int64_t i = r0 * C; i < r1 * C; ++i) x[i] = (mlp_out[i] + attn_out[i]) + x[i];
    else
      for (std::int64_t i = r0 * C; i < r1 * C; ++i) x[i] += mlp_out[i];
  });
}

void TransformerCpu::run_blocks(float* hidden, int B, int T, int layer_begin, int layer_end, int capture_first,
                                int capture_last, ActivationSink& sink) {
  const auto& c = w_.config;
  check_batch(B, T);
  if (layer_begin < 0 || layer_end > c.n_layer || layer_begin > layer_end)
    fail("forward: block range [{}, {}) is outside the model's {} layers", layer_begin, layer_end, c.n_layer);
  for (int l = layer_begin; l < layer_end; ++l)
    if (!w_.has_block(l)) fail("forward: block {} was not loaded (TransformerLoadOptions layer range)", l);
  ensure_workspace(B, T);
  prepare_rope(T);
  for (int l = layer_begin; l < layer_end; ++l)
    block(l, hidden, B, T, l >= capture_first && l <= capture_last, true, sink);
}

void TransformerCpu::head(const float* hidden, int B, int T, float* normed, float* logits) {
  const auto& c = w_.config;
  if (!w_.has_head()) fail("forward: the final norm / LM head were not loaded");
  const int C = c.hidden;
  const std::int64_t rows = static_cast<std::int64_t>(B) * T;
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
    norm_rows(normed, hidden, w_.final_norm, c.norm, r0, r1, C, c.norm_eps);
  });
  if (!logits) return;
  // logits = normed @ W^T with W [vocab, C]: the untied LM head, or the token embedding.
  const float* W = c.tied_embeddings ? w_.tok_embed.data() : w_.lm_head.w.data();
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), c.vocab_size, C, 1.0f, normed, C, W, C,
              0.0f, logits, c.vocab_size);
}

void TransformerCpu::forward(const std::uint32_t* tokens, int B, int T, const ForwardOptions& opts,
                             ActivationSink& sink) {
  const auto& c = w_.config;
  const int first = opts.first_layer;
  const int last = opts.last_layer < 0 ? c.n_layer - 1 : opts.last_layer;
  if (first < 0 || last >= c.n_layer || first > last)
    fail("forward: requested layers [{}, {}] are outside the model's {} layers (0..{})", first, opts.last_layer,
         c.n_layer, c.n_layer - 1);
  const bool full = opts.hidden_states || opts.logits;
  // Blocks after the last captured one are never needed to capture neurons: skip them.
  const int run_to = full ? c.n_layer : last + 1;
  for (int l = 0; l < run_to; ++l)
    if (!w_.has_block(l)) fail("forward: block {} was not loaded (TransformerLoadOptions layer range)", l);
  if (full && !w_.has_head()) fail("forward: the final norm / LM head were not loaded");
  check_batch(B, T);
  ensure_workspace(B, T);
  prepare_rope(T);

  float* x = hidden_.data();
  embed(tokens, B, T, x);
  const int C = c.hidden;
  if (opts.hidden_states) sink.hidden_state(0, x, B, T, C);
  for (int l = 0; l < run_to; ++l) {
    block(l, x, B, T, l >= first && l <= last, full || l + 1 < run_to, sink);
    if (opts.hidden_states && l + 1 < c.n_layer) sink.hidden_state(l + 1, x, B, T, C);
  }
  if (!full) return;

  // HF reports the last hidden state after the final norm, not the raw output of the last block.
  float* normed = ln_.data();
  if (opts.logits) logits_.resize(static_cast<std::size_t>(B) * T * static_cast<std::size_t>(c.vocab_size));
  head(x, B, T, normed, opts.logits ? logits_.data() : nullptr);
  if (opts.hidden_states) sink.hidden_state(c.n_layer, normed, B, T, C);
  if (opts.logits) sink.logits(logits_.data(), B, T, c.vocab_size);
}

}  // namespace nexplain
