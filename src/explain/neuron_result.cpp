#include "explain/neuron_result.hpp"

#include <cmath>

namespace nexplain {

namespace {
// JSON has no NaN: an undefined score is null.
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
double num(const nlohmann::json& j) { return j.is_number() ? j.get<double>() : NAN; }

nlohmann::json usage_json(const StageUsage& u) {
  return {{"requests", u.requests}, {"prompt_tokens", u.prompt_tokens}, {"completion_tokens", u.completion_tokens},
          {"cost_usd", u.cost_usd}};
}
StageUsage usage_from(const nlohmann::json& j) {
  StageUsage u;
  u.requests = j.value("requests", 0ull);
  u.prompt_tokens = j.value("prompt_tokens", 0ull);
  u.completion_tokens = j.value("completion_tokens", 0ull);
  u.cost_usd = j.value("cost_usd", 0.0);
  return u;
}
}  // namespace

nlohmann::json NeuronResult::to_json() const {
  nlohmann::json sims = nlohmann::json::array();
  for (const auto& s : simulated) sims.push_back({{"excerpt_id", s.excerpt_id}, {"split", s.split}, {"predicted", s.predicted}});
  return {{"layer", layer},
          {"neuron", neuron},
          {"status", ok ? "ok" : "failed"},
          {"error", error},
          {"explanation", explanation},
          {"explainer", explainer},
          {"simulator", simulator},
          {"scores",
           {{"all", num(scores.all)},
            {"top", num(scores.top)},
            {"random", num(scores.random)},
            {"squared_all", num(scores.squared_all)},
            {"absolute_all", num(scores.absolute_all)}}},
          {"simulated", sims},
          {"usage", {{"explain", usage_json(explain_usage)}, {"simulate", usage_json(simulate_usage)}}}};
}

NeuronResult NeuronResult::from_json(const nlohmann::json& j) {
  NeuronResult r;
  r.layer = j.at("layer").get<std::uint32_t>();
  r.neuron = j.at("neuron").get<std::uint32_t>();
  r.ok = j.at("status") == "ok";
  r.error = j.value("error", "");
  r.explanation = j.value("explanation", "");
  r.explainer = j.value("explainer", "");
  r.simulator = j.value("simulator", "");
  const auto& s = j.at("scores");
  r.scores = {num(s.at("all")), num(s.at("top")), num(s.at("random")), num(s.at("squared_all")), num(s.at("absolute_all"))};
  for (const auto& e : j.at("simulated"))
    r.simulated.push_back({e.at("excerpt_id").get<std::uint64_t>(), e.at("split").get<std::string>(),
                           e.at("predicted").get<std::vector<double>>()});
  r.explain_usage = usage_from(j.at("usage").at("explain"));
  r.simulate_usage = usage_from(j.at("usage").at("simulate"));
  return r;
}

}  // namespace nexplain
