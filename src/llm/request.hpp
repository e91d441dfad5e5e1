#pragma once
// What is asked of an OpenAI-compatible server: the two request kinds nexplain uses, their
// canonical bytes, and the content hash that names them in the response cache and the journal.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nexplain {

// Which API a request goes to. Paths are relative to the endpoint's base_url, which (as in the
// OpenAI SDKs) already ends in /v1.
enum class ApiKind { chat, completion };
const char* api_path(ApiKind kind);  // "/chat/completions" or "/completions"
const char* api_name(ApiKind kind);  // "chat" or "completion"

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// POST /chat/completions. top_logprobs > 0 asks for logprobs with that many alternatives per
// generated token (OpenAI allows 0..20).
struct ChatParams {
  std::vector<ChatMessage> messages;
  int max_tokens = 256;
  double temperature = 0.0;
  int top_logprobs = 0;
  nlohmann::json extra = nlohmann::json::object();  // merged into the body last (e.g. "seed", "stop")
};

// POST /completions, the legacy API that vLLM and SGLang still serve. With echo = true and
// max_tokens = 0 the server returns the logprobs of the prompt's own tokens, which is what the
// all-at-once simulator needs. Some servers reject max_tokens = 0; 1 works everywhere.
struct CompletionParams {
  std::string prompt;
  int max_tokens = 1;
  bool echo = true;
  int logprobs = 5;
  double temperature = 0.0;
  nlohmann::json extra = nlohmann::json::object();
};

// One request as the caller submits it. `body` is the JSON body without "model": the stage's
// endpoint supplies the model, so the same request can be pointed at another stage.
struct LlmRequest {
  std::string stage;  // which configured endpoint serves it ("explainer", "simulator", ...)
  std::string tag;    // the caller's name for it (e.g. "L3/N17/explain"); returned with the result
  ApiKind kind = ApiKind::chat;
  nlohmann::json body = nlohmann::json::object();

  // Characters of prompt text (message contents or the prompt), for token estimates.
  std::size_t prompt_chars() const;
  // The completion budget the body asks for (max_tokens, or 0 when absent).
  std::int64_t max_tokens() const;
};

LlmRequest make_chat_request(std::string stage, std::string tag, const ChatParams& params);
LlmRequest make_completion_request(std::string stage, std::string tag, const CompletionParams& params);

// The exact bytes sent: body plus "model", serialised with sorted keys and no whitespace, so the
// same question always gives the same bytes (nlohmann::json keeps object keys sorted).
std::string request_payload(const LlmRequest& request, const std::string& model);

// The request's content hash: sha256 of "POST <api_path>\n<payload>", 64 hex digits. Neither
// the API key, nor the base URL, nor any header takes part: a rerun against the same model
// (even on another port or host) finds its answers. tests/servers/openai_test_server.py logs
// the same hash for every request it receives, so tests can match the two.
std::string request_hash(ApiKind kind, const std::string& payload);

}  // namespace nexplain
