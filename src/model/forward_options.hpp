#pragma once
// What one CPU forward pass (TransformerCpu::forward) reports: the neurons of a layer range,
// and optionally hidden states and logits (parity tests). The forward runs only as far as the
// last requested layer unless hidden states or logits need every block.

namespace nexplain {

struct ForwardOptions {
  int first_layer = 0;   // first block whose MLP activations go to the sink
  int last_layer = -1;   // last one (inclusive); -1 = the last block. Later blocks are not run.
  bool hidden_states = false;  // also report hidden states (forces running every block + the final norm)
  bool logits = false;         // also compute LM-head logits (forces running every block + the final norm)
};

}  // namespace nexplain
