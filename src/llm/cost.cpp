#include "llm/cost.hpp"

#include <fmt/format.h>

namespace nexplain {

void StageCost::add(const StageCost& o) {
  requests += o.requests;
  cached_requests += o.cached_requests;
  prompt_tokens += o.prompt_tokens;
  completion_tokens += o.completion_tokens;
  usd += o.usd;
  saved_usd += o.saved_usd;
}

nlohmann::json StageCost::to_json() const {
  return {{"requests", requests},       {"cached_requests", cached_requests}, {"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens}, {"usd", usd}, {"saved_usd", saved_usd}};
}

void CostLedger::add(const std::string& stage, const Usage& usage, const Prices& prices, bool cached) {
  StageCost& s = stages_[stage];
  const double c = prices.cost(usage);
  if (cached) {
    s.cached_requests += 1;
    s.saved_usd += c;
    return;  // tokens of cached answers were counted by the run that bought them
  }
  s.requests += 1;
  s.prompt_tokens += usage.prompt_tokens;
  s.completion_tokens += usage.completion_tokens;
  s.usd += c;
}

StageCost CostLedger::total() const {
  StageCost t;
  for (const auto& [name, s] : stages_) t.add(s);
  return t;
}

nlohmann::json CostLedger::to_json() const {
  nlohmann::json st = nlohmann::json::object();
  for (const auto& [name, s] : stages_) st[name] = s.to_json();
  return {{"stages", st}, {"total", total().to_json()}};
}

std::string CostLedger::summary() const {
  auto line = [](const std::string& name, const StageCost& s) {
    return fmt::format("{}: {} requests ({} cached), {} prompt + {} completion tokens, ${:.4f} (saved ${:.4f})", name,
                       s.requests, s.cached_requests, s.prompt_tokens, s.completion_tokens, s.usd, s.saved_usd);
  };
  std::string out;
  for (const auto& [name, s] : stages_) out += line(name, s) + "\n";
  out += line("total", total());
  return out;
}

}  // namespace nexplain
