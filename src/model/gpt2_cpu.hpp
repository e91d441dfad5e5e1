#pragma once
// GPT-2 forward pass in float32 on the CPU (llm.c style: plain loops for LayerNorm, attention
// and GELU; OpenBLAS sgemm for every linear layer over all B*T rows at once). It exists to
// capture MLP neuron activations, so it computes only as far as the last requested layer and
// produces logits only when asked (parity tests).
#include <cstdint>
#include <memory>
#include <vector>

#include "model/activation_sink.hpp"
#include "model/gpt2_weights.hpp"

namespace nexplain {

struct ForwardOptions {
  int first_layer = 0;   // first block whose MLP activations go to the sink
  int last_layer = -1;   // last one (inclusive); -1 = the last block. Later blocks are not run.
  bool hidden_states = false;  // also report hidden states (forces running every block + ln_f)
  bool logits = false;         // also compute LM-head logits (forces running every block + ln_f)
};

class ThreadPool;

class Gpt2Cpu {
 public:
  // Keeps a reference to `weights`, which must outlive this object. threads <= 0 means
  // std::thread::hardware_concurrency(). The thread count is also handed to OpenBLAS
  // (openblas_set_num_threads), which is process-wide.
  Gpt2Cpu(const Gpt2Weights& weights, int threads = 0);
  ~Gpt2Cpu();
  Gpt2Cpu(const Gpt2Cpu&) = delete;
  Gpt2Cpu& operator=(const Gpt2Cpu&) = delete;

  const Gpt2Config& config() const { return w_.config; }
  int threads() const { return threads_; }

  // tokens: row-major [B, T]. Throws Error for a token id >= vocab_size (naming batch row and
  // position), T > n_positions, or a requested layer that is out of range / not loaded.
  void forward(const std::uint32_t* tokens, int B, int T, const ForwardOptions& opts, ActivationSink& sink);

  // Pipeline-stage building blocks. embed(): hidden[B*T, C] = wte[token] + wpe[t].
  void embed(const std::uint32_t* tokens, int B, int T, float* hidden);
  // Runs blocks [layer_begin, layer_end) on the residual stream `hidden` [B*T, C] in place,
  // reporting MLP activations of blocks in [capture_first, capture_last] to the sink.
  void run_blocks(float* hidden, int B, int T, int layer_begin, int layer_end, int capture_first,
                  int capture_last, ActivationSink& sink);

 private:
  void ensure_workspace(int B, int T);
  void block(int layer, float* x, int B, int T, bool capture, bool need_output, ActivationSink& sink);

  const Gpt2Weights& w_;
  int threads_;
  std::unique_ptr<ThreadPool> pool_;
  // Workspace, grown to the largest (B, T) seen and reused: no allocation per batch.
  std::size_t ws_rows_ = 0;
  int ws_T_ = 0;
  std::vector<float> ln_;     // [rows, C]   LayerNorm output
  std::vector<float> qkv_;    // [rows, 3C]
  std::vector<float> att_;    // [rows, C]   attention output before c_proj
  std::vector<float> tmp_;    // [rows, C]   projection output before the residual add
  std::vector<float> fc_;     // [rows, n_inner] post-GELU activations
  std::vector<float> scores_; // [threads, T] per-thread attention score row
  std::vector<float> hidden_; // [rows, C]   residual stream for forward()
  std::vector<float> logits_; // [rows, vocab] only when logits are requested
};

}  // namespace nexplain
