#include "export/openai_json.hpp"

namespace nexplain {

namespace {

nlohmann::json activation_record(const ExcerptRecord& e, const ExcerptTokens& excerpt, const TokenText& text) {
  const auto ids = excerpt(e.excerpt_id);
  nlohmann::json tokens = nlohmann::json::array();
  for (auto id : ids) tokens.push_back(text(id));
  return {{"dataclass_name", "ActivationRecord"}, {"tokens", tokens}, {"activations", e.acts}};
}

nlohmann::json records(const std::vector<ExcerptRecord>& list, const ExcerptTokens& excerpt, const TokenText& text) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& e : list) a.push_back(activation_record(e, excerpt, text));
  return a;
}

// JSON has no NaN: statistics that are undefined (constant neuron) are written as null.
nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

nlohmann::json to_openai_neuron_record(const NeuronRecord& r, const ExcerptTokens& excerpt, const TokenText& text) {
  nlohmann::json by_quantile = nlohmann::json::array();
  for (const auto& bin : r.quantile) by_quantile.push_back(records(bin, excerpt, text));
  return {
      {"dataclass_name", "NeuronRecord"},
      {"neuron_id", {{"dataclass_name", "NeuronId"}, {"layer_index", r.layer}, {"neuron_index", r.neuron}}},
      {"random_sample", records(r.random, excerpt, text)},
      {"random_sample_by_quantile", by_quantile},
      {"quantile_boundaries", r.boundaries},
      {"mean", number(r.stats.mean)},
      {"variance", number(r.stats.variance)},
      {"skewness", number(r.stats.skewness)},
      {"kurtosis", number(r.stats.kurtosis)},
      {"most_positive_activation_records", records(r.top, excerpt, text)},
  };
}

}  // namespace nexplain
