#include "plan/kernel_rates.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "plan/plan.hpp"

namespace nexplain {

namespace {

// bench/NOTES.md, "GPU collect vs HuggingFace, stop 12 (commit fb1582d)", NVIDIA H200:
// GPT-2 XL, 256 excerpts x 64 tokens per batch, tokens/s of the forward alone and of the whole
// collect (forward + capture + on-device reduction of all 307,200 neurons).
struct Measured {
  const char* precision;
  double forward_tokens_per_s;
  double collect_tokens_per_s;
};
constexpr Measured kGpt2XlH200[] = {
    {"fp32", 14978, 13917},
    {"tf32", 68765, 54953},
    {"bf16", 110356, 76245},
};

}  // namespace

KernelRates measured_rates(const std::string& precision) {
  const std::string key = precision == "fp16" ? "bf16" : precision;
  for (const auto& m : kGpt2XlH200) {
    if (key != m.precision) continue;
    const ArchConfig xl = ArchConfig::from_json({{"model_type", "gpt2"}, {"n_embd", 1600}, {"n_layer", 48},
                                                 {"n_head", 25}, {"n_positions", 1024}, {"vocab_size", 50257}},
                                                "GPT-2 XL");
    const int T = 64;
    const double flops_per_token = xl.n_layer * block_flops_per_token(xl, T);
    const double neurons = static_cast<double>(xl.n_neurons());
    KernelRates r;
    r.precision = precision;
    r.forward_flops = flops_per_token * m.forward_tokens_per_s;
    // collect time per token = forward time + neurons x reduction time per neuron-token.
    r.reduce_seconds = (1.0 / m.collect_tokens_per_s - 1.0 / m.forward_tokens_per_s) / neurons;
    r.source = fmt::format(
        "bench/NOTES.md (stop 12, NVIDIA H200): GPT-2 XL {} forward {:.0f} tokens/s x {:.3f} GFLOP/token = {:.1f} "
        "TFLOP/s effective; collect {:.0f} tokens/s -> reduction (1/{:.0f} - 1/{:.0f}) s / {:.0f} neurons = {:.1f} ps "
        "per neuron-token",
        m.precision, m.forward_tokens_per_s, flops_per_token / 1e9, r.forward_flops / 1e12, m.collect_tokens_per_s,
        m.collect_tokens_per_s, m.forward_tokens_per_s, neurons, r.reduce_seconds * 1e12);
    return r;
  }
  fail("plan: precision '{}' has no measured rates (bf16, fp16, tf32, fp32)", precision);
}

}  // namespace nexplain
