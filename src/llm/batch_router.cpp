#include "llm/batch_router.hpp"

#include <spdlog/spdlog.h>

#include "core/error.hpp"

namespace nexplain {

BatchRouter::BatchRouter(const std::vector<EndpointConfig>& endpoints, const std::filesystem::path& cache_dir,
                         const std::filesystem::path& batch_dir, BatchLimits limits)
    : cache_(cache_dir), writer_(batch_dir, limits) {
  for (const auto& e : endpoints) {
    if (e.model.empty()) fail("llm endpoint '{}': no model configured", e.stage);
    model_of_[e.stage] = e.model;
  }
}

bool BatchRouter::submit(const LlmRequest& request) {
  auto m = model_of_.find(request.stage);
  if (m == model_of_.end()) fail("LLM request: unknown stage '{}'", request.stage);
  // Exactly what LlmClient would send and look up, so a batch answer stored under this hash is
  // found by an ordinary run too.
  const std::string payload = request_payload(request, m->second);
  const std::string hash = request_hash(request.kind, payload);
  if (auto body = cache_.get(hash)) {
    try {
      LlmResult r;
      r.response = parse_response(request.kind, *body);
      r.id = next_id_++;
      r.stage = request.stage;
      r.tag = request.tag;
      r.hash = hash;
      r.ok = true;
      r.from_cache = true;
      r.body = std::move(*body);
      ready_.push_back(std::move(r));
      ++answered_;
      return true;
    } catch (const Error& e) {
      // As the client does: a damaged entry is no answer; ask again (here: in the batch).
      spdlog::warn("response cache: entry {} does not parse ({}); writing the request to the batch", hash, e.what());
    }
  }
  ++unanswered_;
  writer_.add(request.stage, request.kind, m->second, hash, payload);
  return false;
}

std::vector<LlmResult> BatchRouter::take_ready() {
  std::vector<LlmResult> out;
  out.swap(ready_);
  return out;
}

}  // namespace nexplain
