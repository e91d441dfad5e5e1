#pragma once
// The explainer interface: from a neuron's train excerpts to a one-line explanation of what it
// responds to. Synchronous on purpose: the offline baseline (and tests) call it directly. The
// LLM-backed explainer is asynchronous (many requests in flight on one curl multi loop), so the
// driver does not go through this interface for it; it uses the pure prompt functions of
// prompts.hpp (build_explainer_messages / parse_explanation) around its own request queue.
#include <span>
#include <string>

#include "explain/activation_format.hpp"

namespace nexplain {

struct ExplanationResult {
  std::string explanation;  // the text handed to simulators, without the prompt's lead-in
  std::string raw;          // what produced it: the model's completion, or the baseline's notes
};

class Explainer {
 public:
  virtual ~Explainer() = default;
  // A short name for results files and logs ("offline", "llm:<model>").
  virtual std::string name() const = 0;
  // `train`: the train split's excerpts (decoded tokens + raw activations). Throws Error when no
  // explanation can be produced.
  virtual ExplanationResult explain(std::span<const ActivationExcerpt> train) = 0;
};

}  // namespace nexplain
