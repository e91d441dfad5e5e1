#pragma once
// One neuron through explain -> simulate -> score. With the offline baseline it runs to the end
// in one call; with an LLM it is a small state machine the worker loop drives: start() gives the
// explainer request, every answer may give the simulation requests, and when the last answer is
// in, the result is ready. A failed request fails the neuron with the reason (never silently).
#include <map>
#include <string>
#include <vector>

#include "explain/explain_settings.hpp"
#include "explain/neuron_result.hpp"
#include "explain/prompts.hpp"
#include "explain/record_splits.hpp"
#include "llm/client.hpp"

namespace nexplain {

class Tokenizer;

class NeuronTask {
 public:
  NeuronTask(NeuronSplits splits, const Tokenizer& tokenizer, const ExplainSettings& settings,
             const std::vector<EndpointConfig>& endpoints);

  // Offline baseline: explanation, simulation and scores, synchronously.
  NeuronResult run_offline();

  // LLM mode. Tags are "<layer>/<neuron>/explain" and "<layer>/<neuron>/sim/<i>".
  std::vector<LlmRequest> start();
  std::vector<LlmRequest> on_result(const LlmResult& r);
  bool done() const { return done_; }
  const NeuronResult& result() const { return result_; }

 private:
  void finish_with_scores();
  void fail_with(const std::string& why);
  void count(StageUsage& u, const LlmResult& r, const std::string& stage);

  NeuronSplits splits_;
  const ExplainSettings& settings_;
  std::map<std::string, Prices> prices_;
  // The excerpts simulated and scored: valid top, then valid random.
  std::vector<const SplitExcerpt*> scored_;
  std::vector<std::vector<std::string>> scored_tokens_;
  std::vector<ActivationExcerpt> train_;
  std::vector<SimulationPrompt> prompts_;  // all_at_once: per scored excerpt
  std::size_t pending_ = 0;
  bool done_ = false;
  NeuronResult result_;
};

}  // namespace nexplain
