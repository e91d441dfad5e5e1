#include "llm/request.hpp"

#include "core/error.hpp"
#include "core/sha256.hpp"

namespace nexplain {

const char* api_path(ApiKind kind) { return kind == ApiKind::chat ? "/chat/completions" : "/completions"; }
const char* api_name(ApiKind kind) { return kind == ApiKind::chat ? "chat" : "completion"; }

std::size_t LlmRequest::prompt_chars() const {
  std::size_t n = 0;
  if (kind == ApiKind::chat) {
    if (auto it = body.find("messages"); it != body.end() && it->is_array()) {
      for (const auto& m : *it) {
        if (auto c = m.find("content"); c != m.end() && c->is_string()) n += c->get_ref<const std::string&>().size();
      }
    }
  } else if (auto it = body.find("prompt"); it != body.end() && it->is_string()) {
    n = it->get_ref<const std::string&>().size();
  }
  return n;
}

std::int64_t LlmRequest::max_tokens() const {
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (auto it = body.find(key); it != body.end() && it->is_number_integer()) return it->get<std::int64_t>();
  }
  return 0;
}

namespace {
void merge_extra(nlohmann::json& body, const nlohmann::json& extra) {
  if (extra.is_null()) return;
  if (!extra.is_object()) fail("LLM request: 'extra' must be a JSON object, got {}", extra.type_name());
  for (const auto& [k, v] : extra.items()) body[k] = v;
}
}  // namespace

LlmRequest make_chat_request(std::string stage, std::string tag, const ChatParams& p) {
  LlmRequest r;
  r.stage = std::move(stage);
  r.tag = std::move(tag);
  r.kind = ApiKind::chat;
  auto messages = nlohmann::json::array();
  for (const auto& m : p.messages) messages.push_back({{"role", m.role}, {"content", m.content}});
  r.body = {{"messages", std::move(messages)}, {"max_tokens", p.max_tokens}, {"temperature", p.temperature}};
  if (p.top_logprobs > 0) {
    r.body["logprobs"] = true;
    r.body["top_logprobs"] = p.top_logprobs;
  }
  merge_extra(r.body, p.extra);
  return r;
}

LlmRequest make_completion_request(std::string stage, std::string tag, const CompletionParams& p) {
  LlmRequest r;
  r.stage = std::move(stage);
  r.tag = std::move(tag);
  r.kind = ApiKind::completion;
  r.body = {{"prompt", p.prompt}, {"max_tokens", p.max_tokens}, {"temperature", p.temperature}, {"echo", p.echo}};
  if (p.logprobs > 0) r.body["logprobs"] = p.logprobs;
  merge_extra(r.body, p.extra);
  return r;
}

std::string request_payload(const LlmRequest& request, const std::string& model) {
  if (!request.body.is_object()) fail("LLM request '{}': body must be a JSON object", request.tag);
  nlohmann::json body = request.body;
  body["model"] = model;
  // ensure_ascii=false keeps UTF-8 as is; invalid UTF-8 in a prompt is replaced rather than
  // throwing deep inside the client (decoded tokens can be partial UTF-8 sequences).
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string request_hash(ApiKind kind, const std::string& payload) {
  Sha256 h;
  const std::string head = std::string("POST ") + api_path(kind) + "\n";
  h.update(head.data(), head.size());
  h.update(payload.data(), payload.size());
  return h.hex_digest();
}

}  // namespace nexplain
