// The simulator's activation scale: detected from the simulator model's tokenizer.json (is
// "10" one token where the prompts write it?), and 0..9 used end to end when it is not:
// prompt text, few-shot values, logprob and written-value parsing, settings.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "explain/explain_settings.hpp"
#include "explain/logprob_parse.hpp"
#include "explain/prompts.hpp"
#include "explain/simulator_scale.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/hf_tokenizer.hpp"
#include "test_support.hpp"

using namespace nexplain;
using nlohmann::json;
using test::errmsg;

namespace {

std::string shown(unsigned char b) { return gpt2_bytes_to_shown(std::string(1, static_cast<char>(b))); }

// A byte-level tokenizer.json whose vocabulary holds "10" (merge "1" + "0") when `has_10`,
// pre-tokenized by `pattern` (digits in groups like Llama 3 / GPT-2, or one by one like Qwen2).
std::string tokenizer_json(const std::string& pattern, bool has_10) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[shown(static_cast<unsigned char>(b))] = b;
  json merges = json::array();
  if (has_10) {
    vocab["10"] = 256;
    merges.push_back("1 0");
  }
  return json{{"normalizer", nullptr},
              {"pre_tokenizer",
               {{"type", "Sequence"},
                {"pretokenizers",
                 json::array({{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}},
                              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}}
      .dump();
}

constexpr const char* kGrouped = R"(\p{N}{1,3}|\s+|[^\s\p{N}]+)";  // Llama 3: digits in threes
constexpr const char* kSingle = R"(\p{N}|\s+|[^\s\p{N}]+)";        // Qwen2: one digit a token

}  // namespace

TEST(SimulatorScale, DetectedFromTheTokenizer) {
  EXPECT_EQ(detect_scale_max(HfTokenizer::from_json_text(tokenizer_json(kGrouped, true), "t"), "t"), 10);
  // Digits split one by one: "10" is never one token, whatever the vocabulary holds.
  EXPECT_EQ(detect_scale_max(HfTokenizer::from_json_text(tokenizer_json(kSingle, true), "t"), "t"), 9);
  // Grouped digits but no "10" in the vocabulary: two tokens.
  EXPECT_EQ(detect_scale_max(HfTokenizer::from_json_text(tokenizer_json(kGrouped, false), "t"), "t"), 9);
  EXPECT_EQ(rescale_value(10, 9), 9);
  EXPECT_EQ(rescale_value(8, 9), 7);  // 7.2
  EXPECT_EQ(rescale_value(5, 9), 5);  // 4.5 rounds away from zero
  EXPECT_EQ(rescale_value(1, 9), 1);  // 0.9
  EXPECT_EQ(rescale_value(7, 10), 7);
}

TEST(SimulatorScale, PromptsAndParsersUseTheScale) {
  const std::vector<std::string> tokens = {"The", " cat"};
  const auto p10 = build_simulation_prompt_all_at_once("cats", tokens);
  const auto p9 = build_simulation_prompt_all_at_once("cats", tokens, 9);
  EXPECT_NE(p10.prompt.find("from 0 (no response) to 10 (its strongest"), std::string::npos);
  EXPECT_NE(p9.prompt.find("from 0 (no response) to 9 (its strongest"), std::string::npos);
  EXPECT_NE(p10.prompt.find("\t10\n"), std::string::npos);  // few-shot values on 0..10
  EXPECT_EQ(p9.prompt.find("\t10\n"), std::string::npos);   // ... rescaled to 0..9
  EXPECT_NE(p9.prompt.find(" lake\t7\n"), std::string::npos);  // 8 -> round(7.2)
  EXPECT_EQ(p9.scale_max, 9);
  const auto chat = build_simulation_messages_chat("cats", tokens, 9);
  EXPECT_NE(chat.front().content.find("to 9 (its strongest"), std::string::npos);
  for (const auto& m : chat) EXPECT_EQ(m.content.find("\t10\n"), std::string::npos) << m.content;

  // Logprobs: on 0..9, "10" is not a value.
  EXPECT_EQ(activation_token_value("10", 9), std::nullopt);
  EXPECT_EQ(activation_token_value(" 9", 9), 9);
  const std::map<std::string, double> alts = {{"10", std::log(0.5)}, {"9", std::log(0.25)}, {"0", std::log(0.25)}};
  EXPECT_NEAR(expected_activation(alts), (0.5 * 10 + 0.25 * 9) / 1.0, 1e-12);
  EXPECT_NEAR(expected_activation(alts, 9), 0.5 * 9, 1e-12);
  // Written values clamp to the scale.
  EXPECT_EQ(parse_simulation_no_logprobs("The\t12\n cat\t3\n", tokens, 9).values, (std::vector<double>{9, 3}));
  EXPECT_EQ(parse_simulation_no_logprobs("The\t12\n cat\t3\n", tokens).values, (std::vector<double>{10, 3}));
}

TEST(SimulatorScale, Settings) {
  const json endpoints = {{"explainer", {{"base_url", "http://127.0.0.1:9/v1"}, {"model", "e"}}},
                          {"simulator", {{"base_url", "http://127.0.0.1:9/v1"}, {"model", "s"}}}};
  json j = endpoints;
  EXPECT_EQ(ExplainSettings::from_json(j, "x").simulator_scale_max, 10);  // auto, no tokenizer
  EXPECT_EQ(ExplainSettings::from_json(j, "x").simulator_name(), "all_at_once:s");
  j["simulator_scale"] = 9;
  const auto s9 = ExplainSettings::from_json(j, "x");
  EXPECT_EQ(s9.simulator_scale_max, 9);
  EXPECT_EQ(s9.simulator_name(), "all_at_once:s/scale9");  // results of another scale stay apart

  test::TempDir dir;
  test::write_file(dir / "tokenizer.json", tokenizer_json(kSingle, true));
  j["simulator_scale"] = "auto";
  j["simulator_tokenizer"] = dir.path().string();
  EXPECT_EQ(ExplainSettings::from_json(j, "x").simulator_scale_max, 9);
  j["simulator_scale"] = 11;
  EXPECT_HAS(errmsg([&] { ExplainSettings::from_json(j, "x"); }), "simulator_scale must be between 1 and 10");
  j["simulator_scale"] = "big";
  EXPECT_HAS(errmsg([&] { ExplainSettings::from_json(j, "x"); }), "simulator_scale must be an integer 1..10 or \"auto\"");
}
