#include "llm/response.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace nexplain {

namespace {

using nlohmann::json;

double number_or_nan(const json& v) {
  return v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

void sort_top(std::vector<TopLogprob>& top) {
  // Ties broken by token text so the order never depends on the server's map ordering.
  std::sort(top.begin(), top.end(), [](const TopLogprob& a, const TopLogprob& b) {
    return a.logprob != b.logprob ? a.logprob > b.logprob : a.token < b.token;
  });
}

// Chat: logprobs.content[] = {token, logprob, top_logprobs: [{token, logprob}]}.
std::vector<TokenLogprob> chat_logprobs(const json& lp) {
  std::vector<TokenLogprob> out;
  if (!lp.is_object()) return out;
  const auto content = lp.find("content");
  if (content == lp.end() || !content->is_array()) return out;
  for (const auto& t : *content) {
    TokenLogprob tl;
    tl.token = t.at("token").get<std::string>();
    tl.logprob = number_or_nan(t.value("logprob", json()));
    if (auto top = t.find("top_logprobs"); top != t.end() && top->is_array()) {
      for (const auto& a : *top) tl.top.push_back({a.at("token").get<std::string>(), number_or_nan(a.at("logprob"))});
    }
    sort_top(tl.top);
    out.push_back(std::move(tl));
  }
  return out;
}

// Completions: logprobs = {tokens[], token_logprobs[], top_logprobs[ {token: logprob} | null ],
// text_offset[]}; parallel arrays, null entries where the server has nothing (first echoed token).
std::vector<TokenLogprob> completion_logprobs(const json& lp) {
  std::vector<TokenLogprob> out;
  if (!lp.is_object()) return out;
  const auto tokens = lp.find("tokens");
  if (tokens == lp.end() || !tokens->is_array()) return out;
  const json empty = json::array();
  const json& token_lp = lp.contains("token_logprobs") && lp["token_logprobs"].is_array() ? lp["token_logprobs"] : empty;
  const json& top_lp = lp.contains("top_logprobs") && lp["top_logprobs"].is_array() ? lp["top_logprobs"] : empty;
  const json& offsets = lp.contains("text_offset") && lp["text_offset"].is_array() ? lp["text_offset"] : empty;
  for (std::size_t i = 0; i < tokens->size(); ++i) {
    TokenLogprob tl;
    tl.token = (*tokens)[i].get<std::string>();
    tl.logprob = i < token_lp.size() ? number_or_nan(token_lp[i]) : std::numeric_limits<double>::quiet_NaN();
    if (i < top_lp.size() && top_lp[i].is_object()) {
      for (const auto& [tok, v] : top_lp[i].items()) tl.top.push_back({tok, number_or_nan(v)});
    }
    sort_top(tl.top);
    if (i < offsets.size() && offsets[i].is_number_integer()) tl.text_offset = offsets[i].get<std::int64_t>();
    out.push_back(std::move(tl));
  }
  return out;
}

}  // namespace

LlmResponse parse_response(ApiKind kind, const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    fail("malformed response: not JSON ({} bytes): {}", body.size(), e.what());
  }
  if (!j.is_object()) fail("malformed response: expected a JSON object, got {}", j.type_name());
  const auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array() || choices->empty()) fail("malformed response: no choices");
  LlmResponse r;
  try {
    for (const auto& c : *choices) {
      LlmChoice ch;
      if (kind == ApiKind::chat) {
        const auto& msg = c.at("message");
        const auto& content = msg.at("content");
        // A null content is legal (refusals, tool calls): it reads as empty text.
        if (content.is_string()) ch.text = content.get<std::string>();
        else if (!content.is_null()) fail("malformed response: message.content is {}", content.type_name());
        ch.logprobs = chat_logprobs(c.value("logprobs", json()));
      } else {
        ch.text = c.at("text").get<std::string>();
        ch.logprobs = completion_logprobs(c.value("logprobs", json()));
      }
      if (auto fr = c.find("finish_reason"); fr != c.end() && fr->is_string()) ch.finish_reason = fr->get<std::string>();
      r.choices.push_back(std::move(ch));
    }
    if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
      r.usage.prompt_tokens = u->value("prompt_tokens", std::int64_t{0});
      r.usage.completion_tokens = u->value("completion_tokens", std::int64_t{0});
      r.has_usage = true;
    }
    if (auto m = j.find("model"); m != j.end() && m->is_string()) r.model = m->get<std::string>();
  } catch (const json::exception& e) {
    fail("malformed response: {}", e.what());
  }
  return r;
}

std::string error_message_from_body(const std::string& body, std::size_t max_chars) {
  std::string msg;
  try {
    const json j = json::parse(body);
    if (j.is_object() && j.contains("error")) {
      const auto& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) msg = e["message"].get<std::string>();
      else if (e.is_string()) msg = e.get<std::string>();
    } else if (j.is_object() && j.contains("message") && j["message"].is_string()) {
      msg = j["message"].get<std::string>();
    }
  } catch (const json::exception&) {
  }
  if (msg.empty()) msg = body;
  // One line, bounded: the message ends up in logs and journals.
  for (auto& c : msg) if (c == '\n' || c == '\r') c = ' ';
  if (msg.size() > max_chars) msg = msg.substr(0, max_chars) + "...";
  return msg;
}

}  // namespace nexplain
