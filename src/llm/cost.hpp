#pragma once
// Money spent: token usage x configured prices, per stage and in total.
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "llm/response.hpp"

namespace nexplain {

// USD per one million tokens, as providers quote them.
struct Prices {
  double prompt_per_million = 0.0;
  double completion_per_million = 0.0;
  double cost(const Usage& u) const {
    return (static_cast<double>(u.prompt_tokens) * prompt_per_million +
            static_cast<double>(u.completion_tokens) * completion_per_million) / 1e6;
  }
};

struct StageCost {
  std::int64_t requests = 0;         // answered by the server (paid)
  std::int64_t cached_requests = 0;  // answered from the response cache (free)
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  double usd = 0.0;
  double saved_usd = 0.0;  // what the cached answers cost when they were first bought
  void add(const StageCost& o);
  nlohmann::json to_json() const;
};

class CostLedger {
 public:
  // Records one answer. Cached answers count their usage as saved, not spent.
  void add(const std::string& stage, const Usage& usage, const Prices& prices, bool cached);
  const std::map<std::string, StageCost>& stages() const { return stages_; }
  StageCost total() const;
  // {"stages": {name: {...}}, "total": {...}}
  nlohmann::json to_json() const;
  // One human line per stage plus the total, e.g. "explainer: 120 requests, 1.2M+50k tokens, $0.42".
  std::string summary() const;

 private:
  std::map<std::string, StageCost> stages_;
};

}  // namespace nexplain
