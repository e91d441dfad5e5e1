#pragma once
// The speeds a plan assumes, derived from measurements in bench/NOTES.md ("GPU collect vs
// HuggingFace, stop 12", NVIDIA H200, 2026-11-26): GPT-2 XL (48 layers, 1600 wide, 6400
// neurons/layer), batch 256 x 64 tokens, forward alone and forward + full reduction of every
// neuron. From those two tokens/s figures and the FLOPs of a GPT-2 XL token we get
//   - an effective forward rate in FLOP/s (GEMMs plus everything around them), and
//   - the reduction's cost per neuron-token (the extra time of collect over the forward).
// Other precisions and cards can be planned by overriding the two numbers.
#include <string>

namespace nexplain {

struct KernelRates {
  std::string precision;            // "bf16", "tf32" or "fp32"
  double forward_flops = 0;         // effective FLOP/s of the forward
  double reduce_seconds = 0;        // per neuron-token (forward + reduction minus forward)
  double link_bytes_per_s = 100e9;  // between pipeline stages (assumed, NVLink-class; overlapped)
  std::string source;               // where the numbers come from, for the report
};

// The measured rates for a precision ("bf16" -- also used for fp16 --, "tf32", "fp32").
// Error for any other name.
KernelRates measured_rates(const std::string& precision);

}  // namespace nexplain
