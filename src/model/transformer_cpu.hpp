#pragma once
// The forward pass of every supported family (GPT-2, Llama, GPT-NeoX/Pythia, Qwen2) in float32
// on the CPU, llm.c style. There is one block function; the family's choices (norm, positions,
// MLP shape, activation, residual wiring, biases) come from ArchConfig as data.
//
// "The neurons" of a layer, handed to the ActivationSink, are the input of the MLP's down
// projection: act(fc x) for a plain MLP (GPT-2, GPT-NeoX), act(gate x) * (up x) for a gated one
// (Llama, Qwen2). It runs only as far as the last requested layer and computes the final norm and
// logits only when asked: it exists to capture neurons.
#include <cstdint>
#include <memory>
#include <vector>

#include "model/activation_sink.hpp"
#include "model/forward_options.hpp"
#include "model/transformer_weights.hpp"

namespace nexplain {

class ThreadPool;

class TransformerCpu {
 public:
  // Keeps a reference to `weights`, which must outlive this object. threads <= 0 means
  // std::thread::hardware_concurrency(); the count is also handed to OpenBLAS (process-wide).
  TransformerCpu(const TransformerWeights& weights, int threads = 0);
  ~TransformerCpu();
  TransformerCpu(const TransformerCpu&) = delete;
  TransformerCpu& operator=(const TransformerCpu&) = delete;

  const ArchConfig& config() const { return w_.config; }
  int threads() const { return threads_; }

  // tokens: row-major [B, T]. Errors: a token id >= vocab_size (naming batch row and position),
  // T > max positions for learned position tables, a requested layer out of range or not loaded.
  void forward(const std::uint32_t* tokens, int B, int T, const ForwardOptions& opts, ActivationSink& sink);

  // Pipeline-stage building blocks.
  // embed(): hidden[B*T, C] = tok_embed[token] (+ pos_embed[t] for learned positions).
  void embed(const std::uint32_t* tokens, int B, int T, float* hidden);
  // Runs blocks [layer_begin, layer_end) on the residual stream `hidden` [B*T, C] in place,
  // reporting the neurons of blocks in [capture_first, capture_last] to the sink. Position t of
  // a row is its index within the row (0..T-1), as in forward().
  void run_blocks(float* hidden, int B, int T, int layer_begin, int layer_end, int capture_first, int capture_last,
                  ActivationSink& sink);
  // The last stage's tail: out[B*T, C] = final_norm(hidden); logits [B*T, vocab] when `logits`
  // is non-null (LM head, or tok_embed^T when tied).
  void head(const float* hidden, int B, int T, float* normed, float* logits);

 private:
  void ensure_workspace(int B, int T);
  void prepare_rope(int T);
  void check_batch(int B, int T) const;
  void block(int layer, float* x, int B, int T, bool capture, bool need_output, ActivationSink& sink);

  const TransformerWeights& w_;
  int threads_;
  std::unique_ptr<ThreadPool> pool_;
  // RoPE tables for the current T: cos/sin [T, rotary_dim / 2].
  int rope_T_ = 0;
  std::vector<float> cos_, sin_;
  // Workspace, grown to the largest (B, T) seen and reused.
  std::size_t ws_rows_ = 0;
  int ws_T_ = 0;
  std::vector<float> ln_;      // [rows, C]      norm output
  std::vector<float> qkv_;     // [rows, qkv_dim]
  std::vector<float> att_;     // [rows, q_dim]  attention output before o
  std::vector<float> attn_out_;// [rows, C]      o(attention), kept for the parallel residual
  std::vector<float> mlp_out_; // [rows, C]
  std::vector<float> up_;      // [rows, I or 2I] up projection (gated: [gate | up])
  std::vector<float> neur_;    // [rows, I]      the neurons (gated MLPs; plain ones use up_)
  std::vector<float> scores_;  // [threads, T]
  std::vector<float> hidden_;  // [rows, C]      residual stream for forward()
  std::vector<float> logits_;  // [rows, vocab]
};

}  // namespace nexplain
