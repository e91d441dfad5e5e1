// GPT-2 forward pass, float32, CPU. The structure follows llm.c: each step is a small function
// over flat row-major arrays, rows = B*T tokens. Linear layers are single sgemm calls over all
// rows (weights in HF Conv1D layout [in, out], so y = x W needs no transpose); everything else
// is a loop parallelised over rows or (batch, head) pairs.
#include "model/gpt2_cpu.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "core/error.hpp"
#include "model/thread_pool.hpp"

namespace nexplain {

namespace {

// out[rows, N] = in[rows, K] @ w[K, N] + bias[N]. The bias is broadcast into `out` first so the
// GEMM can accumulate onto it (beta = 1) instead of needing a second pass.
void linear(float* out, const float* in, const float* w, const float* bias, std::int64_t rows, int K, int N) {
  for (std::int64_t r = 0; r < rows; ++r) std::copy(bias, bias + N, out + r * N);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), N, K, 1.0f, in, K, w, N, 1.0f,
              out, N);
}

// LayerNorm over the last dimension, statistics accumulated in double for accuracy (the
// residual stream of large models has a few big components; a float sum loses the small ones).
void layernorm_rows(float* out, const float* in, const float* gamma, const float* beta, std::int64_t r0,
                    std::int64_t r1, int C, double eps) {
  for (std::int64_t r = r0; r < r1; ++r) {
    const float* x = in + r * C;
    float* y = out + r * C;
    double mean = 0;
    for (int i = 0; i < C; ++i) mean += x[i];
    mean /= C;
    double var = 0;
    for (int i = 0; i < C; ++i) {
      const double d = x[i] - mean;
      var += d * d;
    }
    var /= C;  // biased variance, as torch.nn.LayerNorm
    const auto rstd = static_cast<float>(1.0 / std::sqrt(var + eps));
    const auto m = static_cast<float>(mean);
    for (int i = 0; i < C; ++i) y[i] = (x[i] - m) * rstd * gamma[i] + beta[i];
  }
}

// GPT-2's GELU, tanh form (HF "gelu_new"): 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
// Evaluated as x / (1 + exp(-2u)), the same function (0.5 (1 + tanh u) = sigmoid(2u)) for about
// half the cost of tanhf; for very negative x, exp overflows to inf and the result is -0, as
// it should be.
inline float gelu_new(float x) {
  constexpr float k2 = 2.0f * 0.7978845608028654f;  // 2 sqrt(2 / pi)
  return x / (1.0f + std::exp(-k2 * (x + 0.044715f * x * x * x)));
}

// Dot product with 8 independent partial sums: without -ffast-math the compiler may not
// reorder a single running sum, and this is the attention's inner loop.
inline float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

}  // namespace

Gpt2Cpu::Gpt2Cpu(const Gpt2Weights& weights, int threads) : w_(weights) {
  threads_ = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  pool_ = std::make_unique<ThreadPool>(threads_);
  // OpenBLAS threads the GEMMs itself; our pool handles the rest. The two never run at once
  // (every step waits for the previous one), so they can share the same cores.
#ifdef OPENBLAS_VERSION  // defined by OpenBLAS's cblas.h; another CBLAS keeps its own threading
  openblas_set_num_threads(threads_);
#endif
  w_.config.validate("Gpt2Cpu");
}

Gpt2Cpu::~Gpt2Cpu() = default;

void Gpt2Cpu::ensure_workspace(int B, int T) {
  const auto rows = static_cast<std::size_t>(B) * static_cast<std::size_t>(T);
  if (rows <= ws_rows_ && T <= ws_T_) return;
  ws_rows_ = std::max(ws_rows_, rows);
  ws_T_ = std::max(ws_T_, T);
  const auto& c = w_.config;
  const std::size_t C = static_cast<std::size_t>(c.n_embd);
  ln_.resize(ws_rows_ * C);
  qkv_.resize(ws_rows_ * 3 * C);
  att_.resize(ws_rows_ * C);
  tmp_.resize(ws_rows_ * C);
  fc_.resize(ws_rows_ * static_cast<std::size_t>(c.n_inner));
  hidden_.resize(ws_rows_ * C);
  scores_.resize(static_cast<std::size_t>(pool_->size()) * static_cast<std::size_t>(ws_T_));
}

void Gpt2Cpu::embed(const std::uint32_t* tokens, int B, int T, float* hidden) {
  const auto& c = w_.config;
  if (B <= 0 || T <= 0) fail("forward: empty batch (B={}, T={})", B, T);
  if (T > c.n_positions)
    fail("forward: sequence length T={} exceeds the model's n_positions={}", T, c.n_positions);
  if (w_.wte.empty() || w_.wpe.empty()) fail("forward: the embeddings (wte, wpe) were not loaded");
  // Validate every id before touching memory, so a bad id is reported, not read out of bounds.
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const std::uint32_t id = tokens[static_cast<std::size_t>(b) * T + t];
      if (id >= static_cast<std::uint32_t>(c.vocab_size))
        fail("forward: token id {} at batch row {}, position {} is out of range (vocab_size {})", id, b, t,
             c.vocab_size);
    }
  const int C = c.n_embd;
  pool_->parallel_for(static_cast<std::int64_t>(B) * T, [&](std::int64_t r0, std::int64_t r1, int) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* te = w_.wte.data() + static_cast<std::size_t>(tokens[r]) * C;
      const float* pe = w_.wpe.data() + static_cast<std::size_t>(r % T) * C;
      float* h = hidden + r * C;
      for (int i = 0; i < C; ++i) h[i] = te[i] + pe[i];
    }
  });
}

// One transformer block on the residual stream x [B*T, C], in place:
//   x += c_proj(attention(ln_1(x)));   x += mlp_proj(gelu(c_fc(ln_2(x))))
// `capture` hands the GELU output (the neurons) to the sink. When `need_output` is false the
// caller only wanted the neurons, so the MLP down-projection (a third of the MLP) is skipped.
void Gpt2Cpu::block(int layer, float* x, int B, int T, bool capture, bool need_output, ActivationSink& sink) {
  const auto& c = w_.config;
  const auto& bw = w_.blocks[static_cast<std::size_t>(layer)];
  const int C = c.n_embd, I = c.n_inner, H = c.n_head, hd = c.head_dim();
  const std::int64_t rows = static_cast<std::int64_t>(B) * T;
  const double eps = c.layer_norm_epsilon;
  float* ln = ln_.data();
  float* qkv = qkv_.data();
  float* att = att_.data();
  float* tmp = tmp_.data();
  float* fc = fc_.data();

  // --- attention
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
    layernorm_rows(ln, x, bw.ln_1_w.data(), bw.ln_1_b.data(), r0, r1, C, eps);
  });
  linear(qkv, ln, bw.attn_w.data(), bw.attn_b.data(), rows, C, 3 * C);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // Each (batch row, head) pair is independent: causal softmax attention over its T positions.
  pool_->parallel_for(static_cast<std::int64_t>(B) * H, [&](std::int64_t p0, std::int64_t p1, int worker) {
    float* score = scores_.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(ws_T_);
    for (std::int64_t p = p0; p < p1; ++p) {
      const std::int64_t b = p / H, h = p % H;
      const float* base = qkv + b * T * 3 * C;  // row t of batch b: q at h*hd, k at C+h*hd, v at 2C+h*hd
      for (int t = 0; t < T; ++t) {
        const float* q = base + static_cast<std::int64_t>(t) * 3 * C + h * hd;
        float mx = -INFINITY;
        for (int s = 0; s <= t; ++s) {
          const float* k = base + static_cast<std::int64_t>(s) * 3 * C + C + h * hd;
          score[s] = dot(q, k, hd) * scale;
          mx = std::max(mx, score[s]);
        }
        float sum = 0;
        for (int s = 0; s <= t; ++s) {
          score[s] = std::exp(score[s] - mx);
          sum += score[s];
        }
        const float inv = 1.0f / sum;
        float* out = att + (b * T + t) * C + h * hd;
        std::fill(out, out + hd, 0.0f);
        for (int s = 0; s <= t; ++s) {
          const float* v = base + static_cast<std::int64_t>(s) * 3 * C + 2 * C + h * hd;
          const float pr = score[s] * inv;
          for (int i = 0; i < hd; ++i) out[i] += pr * v[i];
        }
      }
    }
  });
  linear(tmp, att, bw.attn_proj_w.data(), bw.attn_proj_b.data(), rows, C, C);
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
    for (std::int64_t i = r0 * C; i < r1 * C; ++i) x[i] += tmp[i];
    // ln_2 right away while the row is in cache.
    layernorm_rows(ln, x, bw.ln_2_w.data(), bw.ln_2_b.data(), r0, r1, C, eps);
  });

  // --- MLP
  linear(fc, ln, bw.fc_w.data(), bw.fc_b.data(), rows, C, I);
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
    for (std::int64_t i = r0 * I; i < r1 * I; ++i) fc[i] = gelu_new(fc[i]);
  });
  if (capture) sink.mlp_activations(layer, fc, B, T, I);
  if (!need_output) return;
  linear(tmp, fc, bw.proj_w.data(), bw.proj_b.data(), rows, I, C);
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
    for (std::int64_t i = r0 * C; i < r1 * C; ++i) x[i] += tmp[i];
  });
}

void Gpt2Cpu::run_blocks(float* hidden, int B, int T, int layer_begin, int layer_end, int capture_first,
                         int capture_last, ActivationSink& sink) {
  const auto& c = w_.config;
  if (B <= 0 || T <= 0) fail("forward: empty batch (B={}, T={})", B, T);
  if (T > c.n_positions)
    fail("forward: sequence length T={} exceeds the model's n_positions={}", T, c.n_positions);
  if (layer_begin < 0 || layer_end > c.n_layer || layer_begin > layer_end)
    fail("forward: block range [{}, {}) is outside the model's {} layers", layer_begin, layer_end, c.n_layer);
  for (int l = layer_begin; l < layer_end; ++l)
    if (!w_.has_block(l)) fail("forward: block {} was not loaded (Gpt2LoadOptions layer range)", l);
  ensure_workspace(B, T);
  for (int l = layer_begin; l < layer_end; ++l)
    block(l, hidden, B, T, l >= capture_first && l <= capture_last, true, sink);
}

void Gpt2Cpu::forward(const std::uint32_t* tokens, int B, int T, const ForwardOptions& opts, ActivationSink& sink) {
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
    if (!w_.has_block(l)) fail("forward: block {} was not loaded (Gpt2LoadOptions layer range)", l);
  if (full && (w_.ln_f_w.empty() || w_.ln_f_b.empty())) fail("forward: ln_f was not loaded");
  if (B <= 0 || T <= 0) fail("forward: empty batch (B={}, T={})", B, T);
  if (T > c.n_positions)
    fail("forward: sequence length T={} exceeds the model's n_positions={}", T, c.n_positions);
  ensure_workspace(B, T);

  float* x = hidden_.data();
  embed(tokens, B, T, x);
  const int C = c.n_embd;
  const std::int64_t rows = static_cast<std::int64_t>(B) * T;
  if (opts.hidden_states) sink.hidden_state(0, x, B, T, C);
  for (int l = 0; l < run_to; ++l) {
    const bool capture = l >= first && l <= last;
    block(l, x, B, T, capture, full || l + 1 < run_to, sink);
    if (opts.hidden_states && l + 1 < c.n_layer) sink.hidden_state(l + 1, x, B, T, C);
  }
  if (!full) return;

  // HF reports the last hidden state after ln_f, not the raw output of the last block.
  float* lnf = ln_.data();
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1, int) {
    layernorm_rows(lnf, x, w_.ln_f_w.data(), w_.ln_f_b.data(), r0, r1, C, c.layer_norm_epsilon);
  });
  if (opts.hidden_states) sink.hidden_state(c.n_layer, lnf, B, T, C);
  if (opts.logits) {
    if (w_.wte.empty()) fail("forward: logits need wte, which was not loaded");
    // LM head tied to the token embedding: logits = ln_f(x) @ wte^T.
    logits_.resize(static_cast<std::size_t>(rows) * static_cast<std::size_t>(c.vocab_size));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), c.vocab_size, C, 1.0f, lnf, C,
                w_.wte.data(), C, 0.0f, logits_.data(), c.vocab_size);
    sink.logits(logits_.data(), B, T, c.vocab_size);
  }
}

}  // namespace nexplain
