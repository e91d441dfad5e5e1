#include "viewer/neuron_data.hpp"

#include <algorithm>
#include <cmath>

#include "capture/hist_bins.hpp"

namespace nexplain::viewer {

namespace {

using json = nlohmann::json;

// JSON has no NaN or infinity: undefined values are null.
json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json excerpt_json(const ExcerptRecord& e, const ExcerptTokens& excerpt_tokens, const TokenText& token_text) {
  json tokens = json::array();
  for (std::uint32_t id : excerpt_tokens(e.excerpt_id)) tokens.push_back(token_text(id));
  json acts = json::array();
  std::size_t argmax = 0;
  for (std::size_t i = 0; i < e.acts.size(); ++i) {
    acts.push_back(num(e.acts[i]));
    if (e.acts[i] > e.acts[argmax]) argmax = i;
  }
  return {{"excerpt_id", e.excerpt_id}, {"max", num(e.max)}, {"max_index", argmax}, {"tokens", tokens}, {"acts", acts}};
}

const ExcerptRecord* find_excerpt(const std::vector<ExcerptRecord>& list, std::uint64_t id) {
  for (const auto& e : list)
    if (e.excerpt_id == id) return &e;
  return nullptr;
}

}  // namespace

json build_neuron_json(std::uint32_t layer, std::uint32_t neuron, const json& result,
                       const std::optional<NeuronRecord>& record, const ExcerptTokens& excerpt_tokens,
                       const TokenText& token_text, const NeighbourKeys& neighbours) {
  json j = {{"layer", layer}, {"neuron", neuron}, {"key", std::to_string(layer) + "/" + std::to_string(neuron)}};
  auto key_json = [](const auto& k) {
    return k ? json{{"layer", k->first}, {"neuron", k->second}} : json(nullptr);
  };
  j["previous"] = key_json(neighbours.previous);
  j["next"] = key_json(neighbours.next);
  if (result.is_object()) {
    j["result"] = {{"status", result.value("status", "")},
                   {"error", result.value("error", "")},
                   {"explanation", result.value("explanation", "")},
                   {"explainer", result.value("explainer", "")},
                   {"simulator", result.value("simulator", "")},
                   {"scores", result.value("scores", json::object())},
                   {"usage", result.value("usage", json::object())}};
  } else {
    j["result"] = nullptr;
  }
  if (!record) {
    j["records"] = nullptr;
    j["scored"] = json::array();
    return j;
  }
  const NeuronRecord& r = *record;
  json top = json::array(), random = json::array();
  for (const auto& e : r.top) top.push_back(excerpt_json(e, excerpt_tokens, token_text));
  for (const auto& e : r.random) random.push_back(excerpt_json(e, excerpt_tokens, token_text));
  // Histogram of excerpt maxima over the whole corpus: only the populated span of bins, each
  // with its value range, so a page can draw it without knowing the fixed binning.
  json bins = json::array();
  std::size_t lo = r.histogram.size(), hi = 0;
  for (std::size_t b = 0; b < r.histogram.size(); ++b)
    if (r.histogram[b]) lo = std::min(lo, b), hi = b;
  for (std::size_t b = lo; b <= hi && b < r.histogram.size(); ++b)
    bins.push_back({{"lower", hist_bin_lower(static_cast<std::uint32_t>(b))},
                    {"upper", hist_bin_upper(static_cast<std::uint32_t>(b))},
                    {"count", r.histogram[b]}});
  j["records"] = {{"top", top},
                  {"random", random},
                  {"histogram", bins},
                  {"boundaries", r.boundaries},
                  {"stats",
                   {{"count", r.stats.count},
                    {"mean", num(r.stats.mean)},
                    {"variance", num(r.stats.variance)},
                    {"skewness", num(r.stats.skewness)},
                    {"kurtosis", num(r.stats.kurtosis)}}}};
  // Scored excerpts: real activations from the records next to the simulator's predictions, both
  // on the 0..10 scale the scores use (10 max(x,0)/m, m the largest real activation among them).
  json scored = json::array();
  if (result.is_object() && result.contains("simulated") && result["simulated"].is_array()) {
    double m = 0;
    std::vector<std::pair<const ExcerptRecord*, const json*>> pairs;
    for (const auto& s : result["simulated"]) {
      const auto id = s.value("excerpt_id", std::uint64_t{0});
      const auto* e = s.value("split", "") == "valid_random" ? find_excerpt(r.random, id) : find_excerpt(r.top, id);
      if (!e) continue;  // records from another collect: nothing to compare with
      pairs.emplace_back(e, &s);
      for (float a : e->acts) m = std::max(m, static_cast<double>(a));
    }
    for (const auto& [e, s] : pairs) {
      json ex = excerpt_json(*e, excerpt_tokens, token_text);
      json real = json::array();
      for (float a : e->acts) real.push_back(m > 0 ? 10.0 * std::max(0.0, static_cast<double>(a)) / m : 0.0);
      ex["split"] = s->value("split", "");
      ex["real"] = real;
      ex["simulated"] = s->value("predicted", json::array());
      scored.push_back(std::move(ex));
    }
  }
  j["scored"] = scored;
  return j;
}

}  // namespace nexplain::viewer
