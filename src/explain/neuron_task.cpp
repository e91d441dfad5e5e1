#include "explain/neuron_task.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "explain/offline_explainer.hpp"
#include "explain/offline_simulator.hpp"
#include "explain/simulator_scale.hpp"

namespace nexplain {

NeuronTask::NeuronTask(NeuronSplits splits, const Tokenizer& tokenizer, const ExplainSettings& settings,
                       const std::vector<EndpointConfig>& endpoints)
    : splits_(std::move(splits)), settings_(settings) {
  for (const auto& e : endpoints) prices_[e.stage] = e.prices;
  result_.layer = splits_.layer;
  result_.neuron = splits_.neuron;
  result_.explainer = settings.explainer_name();
  result_.simulator = settings.simulator_name();
  train_ = to_activation_excerpts(splits_.train, tokenizer);
  for (const auto* list : {&splits_.valid_top, &splits_.valid_random})
    for (const auto& e : *list) {
      scored_.push_back(&e);
      scored_tokens_.push_back(display_tokens(tokenizer, e.tokens));
    }
  result_.simulated.resize(scored_.size());
  for (std::size_t i = 0; i < scored_.size(); ++i) {
    result_.simulated[i].excerpt_id = scored_[i]->excerpt_id;
    result_.simulated[i].split = i < splits_.valid_top.size() ? "valid_top" : "valid_random";
  }
}

void NeuronTask::fail_with(const std::string& why) {
  result_.ok = false;
  result_.error = why;
  result_.simulated.clear();
  result_.scores = {NAN, NAN, NAN, NAN, NAN};
  done_ = true;
}

// Scores on the true activations. Correlation does not care about scale; the squared and
// absolute scores compare on the simulators' 0..M scale (M = 10, or 9, simulator_scale.hpp), so
// the truth is put on it too (M * max(x, 0) / m, m = the largest activation among the scored
// excerpts, not floored). The offline simulator always predicts on 0..10.
void NeuronTask::finish_with_scores() {
  const double scale_top = settings_.mode == "llm" ? settings_.simulator_scale_max : kDefaultScaleMax;
  double m = 0.0;
  for (const auto* e : scored_)
    for (float a : e->acts) m = std::max(m, static_cast<double>(a));
  std::vector<ScoredExcerpt> top, random;
  for (std::size_t i = 0; i < scored_.size(); ++i) {
    ScoredExcerpt s;
    for (float a : scored_[i]->acts) s.truth.push_back(m > 0 ? scale_top * std::max(0.0, static_cast<double>(a)) / m : 0.0);
    s.pred = result_.simulated[i].predicted;
    (i < splits_.valid_top.size() ? top : random).push_back(std::move(s));
  }
  result_.scores = score_neuron(top, random);
  result_.ok = true;
  done_ = true;
}

NeuronResult NeuronTask::run_offline() {
  try {
    OfflineExplainer explainer;
    result_.explanation = explainer.explain(train_).explanation;
    OfflineSimulator simulator;
    const auto predicted = simulator.simulate(result_.explanation, scored_tokens_);
    for (std::size_t i = 0; i < predicted.size(); ++i) result_.simulated[i].predicted = predicted[i];
    finish_with_scores();
  } catch (const Error& e) {
    fail_with(e.what());
  }
  return result_;
}

std::vector<LlmRequest> NeuronTask::start() {
  if (train_.empty()) {
    fail_with("no train excerpts (the records hold no top excerpts)");
    return {};
  }
  ChatParams p;
  p.messages = build_explainer_messages(train_);
  p.max_tokens = settings_.explainer_max_tokens;
  pending_ = 1;
  return {make_chat_request("explainer", result_.key() + "/explain", p)};
}

void NeuronTask::count(StageUsage& u, const LlmResult& r, const std::string& stage) {
  ++u.requests;
  u.prompt_tokens += static_cast<std::uint64_t>(std::max<std::int64_t>(0, r.response.usage.prompt_tokens));
  u.completion_tokens += static_cast<std::uint64_t>(std::max<std::int64_t>(0, r.response.usage.completion_tokens));
  // usage x prices, also for answers from the cache: results must not depend on resume points.
  if (auto it = prices_.find(stage); it != prices_.end()) u.cost_usd += it->second.cost(r.response.usage);
}

std::vector<LlmRequest> NeuronTask::on_result(const LlmResult& r) {
  if (done_) return {};
  --pending_;
  const bool is_explain = r.tag.ends_with("/explain");
  if (!r.ok) {
    fail_with((is_explain ? "explainer: " : "simulator: ") + r.error);
    return {};
  }
  if (r.response.choices.empty()) {
    fail_with(std::string(is_explain ? "explainer" : "simulator") + ": the answer has no choices");
    return {};
  }
  const auto& choice = r.response.choices.front();
  try {
    if (is_explain) {
      count(result_.explain_usage, r, "explainer");
      result_.explanation = parse_explanation(choice.text);
      std::vector<LlmRequest> reqs;
      for (std::size_t i = 0; i < scored_.size(); ++i) {
        const std::string tag = result_.key() + "/sim/" + std::to_string(i);
        if (settings_.simulator_kind == "all_at_once") {
          prompts_.push_back(
              build_simulation_prompt_all_at_once(result_.explanation, scored_tokens_[i], settings_.simulator_scale_max));
          CompletionParams c;
          c.prompt = prompts_.back().prompt;
          reqs.push_back(make_completion_request("simulator", tag, c));
        } else {
          ChatParams c;
          c.messages = build_simulation_messages_chat(result_.explanation, scored_tokens_[i], settings_.simulator_scale_max);
          c.max_tokens = static_cast<int>(scored_tokens_[i].size()) * 8 + 32;
          c.top_logprobs = settings_.simulator_kind == "chat_logprobs" ? 5 : 0;
          reqs.push_back(make_chat_request("simulator", tag, c));
        }
      }
      pending_ = reqs.size();
      if (reqs.empty()) finish_with_scores();
      return reqs;
    }
    count(result_.simulate_usage, r, "simulator");
    const std::size_t i = std::stoul(r.tag.substr(r.tag.rfind('/') + 1));
    SimulationParse parsed;
    if (settings_.simulator_kind == "all_at_once") parsed = parse_simulation_prompt_logprobs(prompts_.at(i), choice.logprobs);
    else if (settings_.simulator_kind == "chat_logprobs")
      parsed = parse_simulation_chat_logprobs(choice.logprobs, scored_tokens_[i], settings_.simulator_scale_max);
    else parsed = parse_simulation_no_logprobs(choice.text, scored_tokens_[i], settings_.simulator_scale_max);
    result_.simulated.at(i).predicted = std::move(parsed.values);
    if (pending_ == 0) finish_with_scores();
  } catch (const Error& e) {
    fail_with(e.what());
  }
  return {};
}

}  // namespace nexplain
