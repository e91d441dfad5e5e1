// Request bytes and hashes, response parsing, endpoint configuration, keys and cost.
#include <cmath>
#include <cstdlib>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/sha256.hpp"
#include "llm/client.hpp"
#include "llm/cost.hpp"
#include "llm/endpoint.hpp"
#include "llm/request.hpp"
#include "llm/response.hpp"
#include "test_support.hpp"

using namespace nexplain;

// ---------------------------------------------------------------- requests

TEST(LlmRequest, CanonicalPayloadAndHash) {
  ChatParams p;
  p.messages = {{"system", "Be brief."}, {"user", "tok\t3\n"}};
  p.max_tokens = 60;
  p.top_logprobs = 5;
  p.extra = {{"seed", 7}};
  const LlmRequest r = make_chat_request("explainer", "L1/N2", p);
  const std::string payload = request_payload(r, "gpt-x");
  // Sorted keys, no whitespace, model included, escapes as JSON requires.
  EXPECT_EQ(payload,
            R"({"logprobs":true,"max_tokens":60,"messages":[{"content":"Be brief.","role":"system"},)"
            R"({"content":"tok\t3\n","role":"user"}],"model":"gpt-x","seed":7,"temperature":0.0,"top_logprobs":5})");
  Sha256 h;
  const std::string text = "POST /chat/completions\n" + payload;
  h.update(text.data(), text.size());
  EXPECT_EQ(request_hash(ApiKind::chat, payload), h.hex_digest());
  // The tag and stage are not part of the question; the model and the API are.
  LlmRequest r2 = r;
  r2.tag = "other";
  r2.stage = "simulator";
  EXPECT_EQ(request_payload(r2, "gpt-x"), payload);
  EXPECT_NE(request_hash(ApiKind::chat, request_payload(r, "gpt-y")), request_hash(ApiKind::chat, payload));
  EXPECT_NE(request_hash(ApiKind::completion, payload), request_hash(ApiKind::chat, payload));
  EXPECT_EQ(r.prompt_chars(), 9u + 6u);
  EXPECT_EQ(r.max_tokens(), 60);
}

TEST(LlmRequest, CompletionBody) {
  CompletionParams p;
  p.prompt = "a\tunknown\n";
  p.max_tokens = 0;
  p.logprobs = 5;
  const LlmRequest r = make_completion_request("simulator", "t", p);
  EXPECT_EQ(request_payload(r, "m"), R"({"echo":true,"logprobs":5,"max_tokens":0,"model":"m","prompt":"a\tunknown\n","temperature":0.0})");
  EXPECT_EQ(r.prompt_chars(), 10u);
  EXPECT_EQ(r.max_tokens(), 0);
  p.extra = nlohmann::json::array();
  EXPECT_THROW(make_completion_request("s", "t", p), Error);
}

// ---------------------------------------------------------------- responses

TEST(LlmResponse, ChatWithTopLogprobs) {
  const std::string body = R"({"model":"m","choices":[{"index":0,"finish_reason":"stop",
    "message":{"role":"assistant","content":"a\t7"},
    "logprobs":{"content":[
      {"token":"a","logprob":-0.01,"top_logprobs":[]},
      {"token":"7","logprob":-0.3,"top_logprobs":[{"token":"6","logprob":-1.5},{"token":"7","logprob":-0.3}]}]}}],
    "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}})";
  const LlmResponse r = parse_response(ApiKind::chat, body);
  ASSERT_EQ(r.choices.size(), 1u);
  EXPECT_EQ(r.choices[0].text, "a\t7");
  EXPECT_EQ(r.choices[0].finish_reason, "stop");
  ASSERT_EQ(r.choices[0].logprobs.size(), 2u);
  const auto& t = r.choices[0].logprobs[1];
  EXPECT_EQ(t.token, "7");
  ASSERT_EQ(t.top.size(), 2u);
  EXPECT_EQ(t.top[0].token, "7");  // sorted, most likely first
  EXPECT_DOUBLE_EQ(t.top[1].logprob, -1.5);
  EXPECT_TRUE(r.has_usage);
  EXPECT_EQ(r.usage.prompt_tokens, 12);
  EXPECT_EQ(r.usage.total(), 15);
  EXPECT_EQ(r.model, "m");
}

TEST(LlmResponse, CompletionEchoLogprobs) {
  const std::string body = R"({"choices":[{"text":"x\tunknown\n","logprobs":{
      "tokens":["x","\t","unknown","\n"],
      "token_logprobs":[null,-0.1,-3.0,-0.2],
      "top_logprobs":[null,{"\t":-0.1},{"3":-0.29,"4":-1.6,"unknown":-3.0},{"\n":-0.2}],
      "text_offset":[0,1,2,9]}}],
    "usage":{"prompt_tokens":4,"completion_tokens":0}})";
  const LlmResponse r = parse_response(ApiKind::completion, body);
  const auto& lp = r.choices[0].logprobs;
  ASSERT_EQ(lp.size(), 4u);
  EXPECT_TRUE(std::isnan(lp[0].logprob));
  EXPECT_TRUE(lp[0].top.empty());
  EXPECT_EQ(lp[2].token, "unknown");
  ASSERT_EQ(lp[2].top.size(), 3u);
  EXPECT_EQ(lp[2].top[0].token, "3");
  EXPECT_EQ(lp[2].top[2].token, "unknown");
  EXPECT_EQ(lp[3].text_offset, 9);
  EXPECT_EQ(r.usage.prompt_tokens, 4);
}

TEST(LlmResponse, MalformedBodiesAreErrors) {
  for (const char* body : {"", "{", "[]", R"({"choices":[]})", R"({"choices":[{"message":{}}]})",
                           R"({"choices":[{"message":{"content":5}}]})", R"({"choices":[{"text":1}]})"}) {
    EXPECT_THROW(parse_response(ApiKind::chat, body), Error) << body;
  }
  EXPECT_THROW(parse_response(ApiKind::completion, R"({"choices":[{"message":{"content":"x"}}]})"), Error);
  // A null content is an empty answer, not damage; no usage is allowed.
  const auto r = parse_response(ApiKind::chat, R"({"choices":[{"message":{"content":null}}]})");
  EXPECT_EQ(r.choices[0].text, "");
  EXPECT_FALSE(r.has_usage);
}

TEST(LlmResponse, ErrorMessages) {
  EXPECT_EQ(error_message_from_body(R"({"error":{"message":"The model `x` does not exist","type":"invalid"}})"),
            "The model `x` does not exist");
  EXPECT_EQ(error_message_from_body("plain\ntext"), "plain text");
  EXPECT_EQ(error_message_from_body(std::string(1000, 'a'), 10), "aaaaaaaaaa...");
}

// ---------------------------------------------------------------- endpoints and keys

TEST(LlmEndpoint, FromJsonAndValidation) {
  const auto c = EndpointConfig::from_json("explainer", {{"base_url", "https://api.openai.com/v1"},
                                                         {"model", "gpt-4o-mini"},
                                                         {"api_key_env", "OPENAI_API_KEY"},
                                                         {"requests_per_minute", 500},
                                                         {"tokens_per_minute", 200000},
                                                         {"prompt_per_million", 0.15},
                                                         {"completion_per_million", 0.6},
                                                         {"max_concurrency", 8}});
  EXPECT_EQ(c.stage, "explainer");
  EXPECT_DOUBLE_EQ(c.budget.requests_per_minute, 500);
  EXPECT_DOUBLE_EQ(c.prices.completion_per_million, 0.6);
  EXPECT_EQ(c.max_concurrency, 8);
  EXPECT_THROW(EndpointConfig::from_json("x", {{"base_url", "https://h/v1"}, {"model", "m"}, {"modle", "typo"}}), Error);
  EXPECT_THROW(EndpointConfig::from_json("x", {{"base_url", "ftp://h/v1"}, {"model", "m"}}), Error);
  EXPECT_THROW(EndpointConfig::from_json("x", {{"base_url", "https://h/v1"}}), Error);
  EXPECT_THROW(EndpointConfig::from_json("x", {{"base_url", "https://h/v1"}, {"model", "m"}, {"max_concurrency", 0}}), Error);
  EXPECT_THROW(EndpointConfig::from_json("x", {{"base_url", "https://h/v1"}, {"model", "m"}, {"max_retries", "3"}}), Error);
}

TEST(LlmEndpoint, Loopback) {
  for (const char* u : {"http://127.0.0.1:8000/v1", "http://localhost/v1", "http://[::1]:80/v1", "http://127.1.2.3/v1",
                        "https://user:pw@localhost:1/v1", "http://LOCALHOST:5/"}) {
    EXPECT_TRUE(is_loopback_url(u)) << u;
  }
  for (const char* u : {"https://api.openai.com/v1", "http://127.0.0.1.evil.com/v1", "http://10.0.0.1/v1",
                        "http://localhost.example/v1", "http://x/127.0.0.1", "127.0.0.1"}) {
    EXPECT_FALSE(is_loopback_url(u)) << u;
  }
}

TEST(LlmEndpoint, KeysLoadOrFailEarly) {
  EndpointConfig c;
  c.stage = "explainer";
  c.base_url = "https://api.example.invalid/v1";
  c.model = "m";
  // No key source for a remote server.
  EXPECT_THROW(load_api_key(c), Error);
  // A named variable that is unset: the message names it (and, of course, no key).
  c.api_key_env = "NEXPLAIN_TEST_SURELY_UNSET_KEY";
  ::unsetenv(c.api_key_env.c_str());
  try {
    load_api_key(c);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NEXPLAIN_TEST_SURELY_UNSET_KEY"), std::string::npos) << e.what();
  }
  // The client constructor refuses before any request.
  EXPECT_THROW(LlmClient({c}), Error);
  ::setenv(c.api_key_env.c_str(), "  sk-from-env\n", 1);
  EXPECT_EQ(load_api_key(c).reveal(), "sk-from-env");
  ::unsetenv(c.api_key_env.c_str());
  // A key file: first line, trimmed.
  test::TempDir dir;
  c.api_key_env.clear();
  c.api_key_file = (dir / "key").string();
  EXPECT_THROW(load_api_key(c), Error);  // unreadable
  test::write_file(dir / "key", "sk-from-file\n");
  EXPECT_EQ(load_api_key(c).reveal(), "sk-from-file");
  // A local server may go without.
  c.api_key_file.clear();
  c.base_url = "http://127.0.0.1:9/v1";
  EXPECT_TRUE(load_api_key(c).empty());
}

TEST(LlmEndpoint, RedactsTheKey) {
  const ApiKey k("sk-secret");
  EXPECT_EQ(k.redact("bad key sk-secret, sk-secretsk-secret"), "bad key [REDACTED], [REDACTED][REDACTED]");
  EXPECT_EQ(ApiKey().redact("sk-secret"), "sk-secret");
}

// ---------------------------------------------------------------- cost

TEST(LlmCost, UsageTimesPrices) {
  const Prices p{0.15, 0.60};
  EXPECT_NEAR(p.cost({1000000, 0}), 0.15, 1e-12);
  EXPECT_NEAR(p.cost({2000, 500}), (2000 * 0.15 + 500 * 0.60) / 1e6, 1e-15);
  CostLedger l;
  l.add("explainer", {1000, 100}, p, false);
  l.add("explainer", {1000, 100}, p, true);  // cached: saved, not spent
  l.add("simulator", {3000, 0}, Prices{1.0, 2.0}, false);
  EXPECT_EQ(l.stages().at("explainer").requests, 1);
  EXPECT_EQ(l.stages().at("explainer").cached_requests, 1);
  EXPECT_NEAR(l.stages().at("explainer").usd, (1000 * 0.15 + 100 * 0.6) / 1e6, 1e-15);
  EXPECT_NEAR(l.stages().at("explainer").saved_usd, (1000 * 0.15 + 100 * 0.6) / 1e6, 1e-15);
  const StageCost t = l.total();
  EXPECT_EQ(t.requests, 2);
  EXPECT_EQ(t.prompt_tokens, 4000);
  EXPECT_NEAR(t.usd, (1000 * 0.15 + 100 * 0.6) / 1e6 + 3000 / 1e6, 1e-15);
  EXPECT_EQ(l.to_json()["stages"]["simulator"]["prompt_tokens"], 3000);
  EXPECT_NE(l.summary().find("total: 2 requests"), std::string::npos) << l.summary();
}
