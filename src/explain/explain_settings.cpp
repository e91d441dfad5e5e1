#include "explain/explain_settings.hpp"

#include "core/error.hpp"
#include "explain/simulator_scale.hpp"
#include "tokenizer/hf_tokenizer.hpp"

namespace nexplain {

namespace {
const EndpointConfig* find_stage(const std::vector<EndpointConfig>& e, const std::string& stage) {
  for (const auto& c : e)
    if (c.stage == stage) return &c;
  return nullptr;
}
}  // namespace

ExplainSettings ExplainSettings::from_json(const nlohmann::json& j, const std::string& source) {
  ExplainSettings s;
  if (!j.is_object()) fail("{}: explain settings must be a table/object", source);
  nlohmann::json scale = "auto";
  try {
    for (const auto& [k, v] : j.items()) {
      if (k == "mode") s.mode = v.get<std::string>();
      else if (k == "simulator_kind") s.simulator_kind = v.get<std::string>();
      else if (k == "explainer_max_tokens") s.explainer_max_tokens = v.get<int>();
      else if (k == "per_split") s.per_split = v.get<std::size_t>();
      else if (k == "inflight_neurons") s.inflight_neurons = v.get<int>();
      else if (k == "cache_dir") s.cache_dir = v.get<std::string>();
      else if (k == "simulator_scale") scale = v;
      else if (k == "simulator_tokenizer") s.simulator_tokenizer = v.get<std::string>();
      else if (k == "explainer" || k == "simulator") s.endpoints.push_back(EndpointConfig::from_json(k, v));
      else fail("{}: unknown explain setting '{}' (expected mode, simulator_kind, explainer_max_tokens, per_split, "
                "inflight_neurons, cache_dir, simulator_scale, simulator_tokenizer, explainer, simulator)", source, k);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: explain settings: {}", source, e.what());
  }
  if (!j.contains("mode") && !s.endpoints.empty()) s.mode = "llm";
  if (scale.is_number_integer()) {
    s.simulator_scale_max = scale.get<int>();
  } else if (scale == "auto") {
    if (!s.simulator_tokenizer.empty())
      s.simulator_scale_max = detect_scale_max(HfTokenizer::load(s.simulator_tokenizer),
                                               source + ": simulator_tokenizer " + s.simulator_tokenizer.string());
  } else {
    fail("{}: simulator_scale must be an integer 1..10 or \"auto\", got {}", source, scale.dump());
  }
  s.validate();
  return s;
}

void ExplainSettings::validate() const {
  if (mode != "offline" && mode != "llm") fail("explain mode '{}': expected offline or llm", mode);
  if (simulator_kind != "all_at_once" && simulator_kind != "chat_logprobs" && simulator_kind != "no_logprobs")
    fail("simulator kind '{}': expected all_at_once, chat_logprobs or no_logprobs", simulator_kind);
  if (mode == "llm") {
    for (const char* stage : {"explainer", "simulator"})
      if (!find_stage(endpoints, stage)) fail("explain mode llm needs an endpoint for stage '{}'", stage);
  }
  if (inflight_neurons < 1) fail("inflight_neurons must be at least 1 (got {})", inflight_neurons);
  if (simulator_scale_max < 1 || simulator_scale_max > 10)
    fail("simulator_scale must be between 1 and 10 (got {})", simulator_scale_max);
}

std::string ExplainSettings::explainer_name() const {
  if (mode == "offline") return "offline";
  const auto* e = find_stage(endpoints, "explainer");
  return e->model;
}

std::string ExplainSettings::simulator_name() const {
  if (mode == "offline") return "offline";
  const auto* e = find_stage(endpoints, "simulator");
  const std::string scale = simulator_scale_max == kDefaultScaleMax ? "" : "/scale" + std::to_string(simulator_scale_max);
  return simulator_kind + ":" + e->model + scale;
}

}  // namespace nexplain
