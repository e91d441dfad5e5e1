#include "model/planted_construction.hpp"

#include <cmath>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace nexplain {

std::vector<int> planted_channels(const std::vector<PlantedNeuron>& neurons) {
  std::map<std::string, int> channel_of_key;
  std::vector<int> channel(neurons.size());
  for (std::size_t i = 0; i < neurons.size(); ++i) {
    const auto& p = neurons[i];
    const std::string key = p.kind == "position" ? fmt::format("pos:{}-{}", p.pos_first, p.pos_last)
                                                 : fmt::format("tok:{}", fmt::join(p.tokens, ","));
    channel[i] = channel_of_key.emplace(key, static_cast<int>(channel_of_key.size()) + 1).first->second;
  }
  return channel;
}

double planted_channel_after_norm(NormKind norm, int C, int m, double eps, double bias, double channel) {
  const double sum_sq = (bias * bias + m * channel * channel) / C;
  if (norm == NormKind::RMSNorm) return channel / std::sqrt(sum_sq + eps);
  const double mean = (bias + m * channel) / C;
  return (channel - mean) / std::sqrt(sum_sq - mean * mean + eps);
}

nlohmann::json planted_ground_truth(const std::string& spec_text, std::uint64_t seed, const nlohmann::json& config,
                                    const std::vector<PlantedNeuron>& neurons, const std::vector<int>& channels,
                                    const nlohmann::json& construction) {
  nlohmann::json list = nlohmann::json::array();
  for (std::size_t i = 0; i < neurons.size(); ++i) {
    const auto& p = neurons[i];
    nlohmann::json e = {{"layer", p.layer}, {"neuron", p.neuron}, {"kind", p.kind}, {"channel", channels.at(i)}};
    if (p.kind == "position") {
      std::vector<int> pos;
      for (int q = p.pos_first; q <= p.pos_last; ++q) pos.push_back(q);
      e["positions"] = pos;
    } else {
      e["tokens"] = p.tokens;
    }
    list.push_back(std::move(e));
  }
  return {{"format", "nexplain-planted-v1"}, {"spec", spec_text},  {"seed", seed},
          {"config", config},                {"neurons", list},    {"construction", construction}};
}

}  // namespace nexplain
