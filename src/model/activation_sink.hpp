#pragma once
// Where a forward pass delivers what it captures. The forward calls the sink synchronously
// while its buffers are alive, so a sink must copy or reduce the data before returning; the
// pointers are invalid afterwards. Rows are (batch, position) pairs: row r = b * T + t.
#include <map>
#include <vector>

namespace nexplain {

class ActivationSink {
 public:
  virtual ~ActivationSink() = default;
  // Post-GELU MLP activations of block `layer` ("the neurons"): row-major [B*T, n_inner].
  virtual void mlp_activations(int layer, const float* acts, int B, int T, int n_inner) = 0;
  // HF output_hidden_states convention: index 0 = embeddings, i = output of block i
  // (1 <= i < n_layer), n_layer = after the final LayerNorm. Row-major [B*T, n_embd].
  virtual void hidden_state(int /*index*/, const float* /*h*/, int /*B*/, int /*T*/, int /*n_embd*/) {}
  // LM-head logits (tied to wte): row-major [B*T, vocab_size].
  virtual void logits(const float* /*logits*/, int /*B*/, int /*T*/, int /*vocab*/) {}
};

// Keeps copies of everything it is given; for tests, parity checks and small tools.
class CollectingSink : public ActivationSink {
 public:
  std::map<int, std::vector<float>> mlp;     // layer -> [B*T, n_inner]
  std::map<int, std::vector<float>> hidden;  // index -> [B*T, n_embd]
  std::vector<float> logit;                  // [B*T, vocab]

  void mlp_activations(int layer, const float* acts, int B, int T, int n_inner) override {
    mlp[layer].assign(acts, acts + static_cast<std::size_t>(B) * T * n_inner);
  }
  void hidden_state(int index, const float* h, int B, int T, int n_embd) override {
    hidden[index].assign(h, h + static_cast<std::size_t>(B) * T * n_embd);
  }
  void logits(const float* l, int B, int T, int vocab) override {
    logit.assign(l, l + static_cast<std::size_t>(B) * T * vocab);
  }
};

}  // namespace nexplain
