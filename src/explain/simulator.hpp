#pragma once
// The simulator interface: from an explanation alone (never the records) to predicted
// activations of every token of some excerpts, on the 0..10 scale of activation_format.hpp.
// Synchronous, like explainer.hpp; the LLM-backed simulators run asynchronously through the
// driver, which uses the prompt builders and parsers of prompts.hpp and logprob_parse.hpp.
#include <string>
#include <vector>

namespace nexplain {

class Simulator {
 public:
  virtual ~Simulator() = default;
  virtual std::string name() const = 0;
  // One prediction per token: result[i].size() == excerpts_tokens[i].size(). Scoring is by
  // correlation, so only the relative values matter, but they are meant to be on the 0..10 scale.
  virtual std::vector<std::vector<double>> simulate(const std::string& explanation,
                                                    const std::vector<std::vector<std::string>>& excerpts_tokens) = 0;
};

}  // namespace nexplain
