#pragma once
// What an OpenAI-compatible server answers, reduced to what nexplain reads: the text of each
// choice, per-token logprobs with their top alternatives, and token usage.
#include <cstdint>
#include <string>
#include <vector>

#include "llm/request.hpp"

namespace nexplain {

struct TopLogprob {
  std::string token;
  double logprob = 0.0;
};

// One token of a choice with its logprob and the most likely alternatives at its position
// (sorted by logprob, highest first). logprob is NaN where the server sends null (the first
// prompt token of an echoed completion has no logprob).
struct TokenLogprob {
  std::string token;
  double logprob = 0.0;
  std::vector<TopLogprob> top;
  std::int64_t text_offset = -1;  // completions only: character offset into prompt + text
};

struct LlmChoice {
  std::string text;           // chat: message.content; completion: text (echoed prompt included)
  std::string finish_reason;  // "stop", "length", ... ("" when absent)
  std::vector<TokenLogprob> logprobs;  // empty when none were asked for or returned
};

struct Usage {
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t total() const { return prompt_tokens + completion_tokens; }
};

struct LlmResponse {
  std::vector<LlmChoice> choices;
  Usage usage;
  bool has_usage = false;  // false when the server sent no usage object
  std::string model;       // as reported by the server
};

// Parses a 200 response body. Throws Error ("malformed response: ...") when it is not JSON or
// lacks the fields every choice must have; the client treats that as retryable, since a
// truncated or garbled body is usually a transport problem.
LlmResponse parse_response(ApiKind kind, const std::string& body);

// The server's own words from an error body ({"error": {"message": ...}}), or a prefix of the
// raw body when it is not such JSON. Never longer than max_chars.
std::string error_message_from_body(const std::string& body, std::size_t max_chars = 400);

}  // namespace nexplain
