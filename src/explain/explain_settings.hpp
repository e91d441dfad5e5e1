#pragma once
// How the explain stage runs: offline baseline or LLM endpoints, which simulator, how many
// neurons in flight. Filled from the command line or a sweep file.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm/endpoint.hpp"

namespace nexplain {

struct ExplainSettings {
  // offline: the built-in explainer and simulator (no network). llm: the endpoints below.
  std::string mode = "offline";
  // all_at_once (legacy completions, echo + logprobs: vLLM, SGLang) | chat_logprobs (OpenAI chat,
  // llama.cpp, Ollama) | no_logprobs (any chat model; parse the written integers).
  std::string simulator_kind = "all_at_once";
  std::vector<EndpointConfig> endpoints;  // stages "explainer" and "simulator" (llm mode)
  int explainer_max_tokens = 80;
  std::size_t per_split = 0;   // cap on excerpts per split (0 = all the records allow)
  int inflight_neurons = 16;   // neurons in progress at once per worker (llm mode)
  std::filesystem::path cache_dir;  // response cache (llm mode); default <out>/cache
  // Top of the simulator's activation scale: 10, or 9 when the simulator model cannot write "10"
  // as one token (simulator_scale.hpp). From "simulator_scale": an integer 1..10, or "auto"
  // (the default): detected from "simulator_tokenizer" (the simulator model's tokenizer.json
  // or its directory) when given, else 10.
  int simulator_scale_max = 10;
  std::filesystem::path simulator_tokenizer;

  // From a config object: {"mode", "simulator_kind", "explainer_max_tokens", "per_split",
  // "inflight_neurons", "cache_dir", "simulator_scale", "simulator_tokenizer", "explainer":
  // {endpoint}, "simulator": {endpoint}} (endpoint
  // fields as EndpointConfig::from_json). A present "explainer" or "simulator" table implies
  // mode "llm" unless mode says otherwise. Unknown keys are an error naming them.
  static ExplainSettings from_json(const nlohmann::json& j, const std::string& source);

  // Throws Error naming the field when inconsistent (unknown mode/kind, missing endpoints).
  void validate() const;
  // "offline", or the model name (the simulator prefixed by its kind, and followed by
  // "/scale9" when its scale is not 0..10). Not the URL: a local server restarted on another
  // port must not change the results.
  std::string explainer_name() const;
  std::string simulator_name() const;
};

}  // namespace nexplain
