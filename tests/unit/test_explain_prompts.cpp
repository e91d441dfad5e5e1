// Prompt builders and the parsers of their answers: explainer (chat), simulator (a) prompt
// logprobs all at once, (b) chat top logprobs, (c) no logprobs. Includes malformed answers.
#include <cctype>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "explain/logprob_parse.hpp"
#include "explain/prompts.hpp"

using namespace nexplain;

namespace {

constexpr double kTol = 1e-9;
using Tokens = std::vector<std::string>;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A crude stand-in for a server's tokenizer: [ ]?letters | [ ]?digits | any other single byte.
// With merge_tab, a tab joins the word after it ("\tunknown"), as some tokenizers do.
std::vector<TokenLogprob> fake_tokens(const std::string& text, bool merge_tab = false) {
  std::vector<TokenLogprob> out;
  std::size_t i = 0;
  const auto alpha = [&](std::size_t k) { return k < text.size() && std::isalpha(static_cast<unsigned char>(text[k])); };
  const auto digit = [&](std::size_t k) { return k < text.size() && std::isdigit(static_cast<unsigned char>(text[k])); };
  while (i < text.size()) {
    std::size_t j = i;
    if ((text[j] == ' ' || (merge_tab && text[j] == '\t')) && (alpha(j + 1) || digit(j + 1))) ++j;
    if (alpha(j)) {
      while (alpha(j)) ++j;
    } else if (digit(j)) {
      while (digit(j)) ++j;
    } else {
      j = i + 1;
    }
    TokenLogprob t;
    t.token = text.substr(i, j - i);
    t.logprob = std::nan("");  // only the alternatives set by a test carry probability
    out.push_back(std::move(t));
    i = j;
  }
  return out;
}

// Alternatives that put probability 0.8 on `v` and 0.2 on "0" -> expected value 0.8 * v.
std::vector<TopLogprob> peaked(int v) {
  return {{std::to_string(v), std::log(0.8)}, {"0", std::log(0.2)}, {"unknown", std::log(0.9)}};
}

}  // namespace

// ---------------------------------------------------------------- explainer

TEST(ExplainPrompts, ExplainerMessages) {
  const std::vector<ActivationExcerpt> train{{{"The", " cat", " sat"}, {0.0f, 4.0f, 1.0f}}};
  const auto m = build_explainer_messages(train);
  ASSERT_EQ(m.size(), 6u);
  const std::vector<std::string> roles{"system", "user", "assistant", "user", "assistant", "user"};
  for (std::size_t i = 0; i < m.size(); ++i) EXPECT_EQ(m[i].role, roles[i]) << i;
  EXPECT_TRUE(contains(m[0].content, "This neuron fires on"));
  EXPECT_TRUE(m[2].content.starts_with("This neuron fires on "));
  // The neuron's records, normalised to 0..10 (max 4 -> 10, 1 -> 2).
  EXPECT_TRUE(contains(m[5].content, "<start>\nThe\t0\n cat\t10\n sat\t2\n<end>\n")) << m[5].content;
  const auto j = messages_to_json(m);
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j[0]["role"], "system");
  EXPECT_EQ(j[5]["content"], m[5].content);
  // The few-shot answers parse back to their explanations.
  EXPECT_EQ(parse_explanation(m[2].content), "words about water: rivers, lakes, rain, floods and washing");
}

TEST(ExplainPrompts, ParseExplanation) {
  EXPECT_EQ(parse_explanation("This neuron fires on words about water."), "words about water");
  EXPECT_EQ(parse_explanation("  Sure! Here it is.\nthis neuron fires on   the token \" not\".\n\nDone"), "the token \" not\"");
  EXPECT_EQ(parse_explanation("THIS NEURON FIRES ON Capitalised Names"), "Capitalised Names");
  EXPECT_EQ(parse_explanation("This neuron fires on:\n\n  **numbers in dates**"), "numbers in dates");
  EXPECT_EQ(parse_explanation("`the tokens \"The\" and \".\"`"), "the tokens \"The\" and \".\"");
  // Without the lead-in: the first non-empty line.
  EXPECT_EQ(parse_explanation("\n\nverbs in the past tense.\nMore prose."), "verbs in the past tense");
  EXPECT_EQ(parse_explanation("Explanation: verbs in the past tense."), "verbs in the past tense");
  EXPECT_EQ(parse_explanation("This neuron fires on the token \".\""), "the token \".\"");
}

TEST(ExplainPrompts, ParseExplanationRejectsEmptyAnswers) {
  for (const char* bad : {"", "   \n\t ", "This neuron fires on", "This neuron fires on.\n", "**"}) {
    EXPECT_THROW(parse_explanation(bad), Error) << "'" << bad << "'";
  }
  try {
    parse_explanation("This neuron fires on ");
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "holds no explanation")) << e.what();
  }
}

// ---------------------------------------------------------------- simulator (a)

TEST(ExplainPrompts, AllAtOncePromptLayout) {
  const Tokens tokens{"The", " river", "\t", "\n", " unknown"};
  const auto p = build_simulation_prompt_all_at_once("words about water\nand rain", tokens);
  ASSERT_EQ(p.unknown_offsets.size(), tokens.size());
  for (auto off : p.unknown_offsets) EXPECT_EQ(p.prompt.substr(off, 7), "unknown");
  EXPECT_TRUE(contains(p.prompt, "Explanation: This neuron fires on words about water and rain.\n<start>\nThe\tunknown\n"
                                 " river\tunknown\n\\t\tunknown\n\\n\tunknown\n unknown\tunknown\n<end>\n"))
      << p.prompt;
  EXPECT_TRUE(p.prompt.ends_with("<end>\n"));
  // The few-shot examples come first, with values.
  EXPECT_TRUE(contains(p.prompt, " water\t10\n"));
  EXPECT_LT(p.prompt.find(" water\t10\n"), p.unknown_offsets.front());
}

TEST(ExplainPrompts, AllAtOnceParsesEchoedLogprobs) {
  // The explanation and a token both contain the word "unknown": only the placeholders count.
  const Tokens tokens{"The", " unknown", " river", "."};
  const std::vector<int> want{0, 3, 9, 1};
  const auto p = build_simulation_prompt_all_at_once("unknown things near rivers", tokens);
  for (bool merge_tab : {false, true}) {
    auto echoed = fake_tokens(p.prompt, merge_tab);
    // A BOS token in front and one generated token after, as servers send them.
    TokenLogprob bos;
    bos.token = "<s>";
    echoed.insert(echoed.begin(), bos);
    TokenLogprob gen;
    gen.token = "\n";
    echoed.push_back(gen);
    // Put the peaked alternatives on the token covering each placeholder's first character.
    const auto starts = token_start_offsets(echoed);
    const std::size_t shift = 3;  // "<s>"
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const auto k = token_covering(starts, p.unknown_offsets[i] + shift);
      ASSERT_TRUE(k.has_value());
      echoed[*k].top = peaked(want[i]);
    }
    const auto r = parse_simulation_prompt_logprobs(p, echoed);
    ASSERT_EQ(r.values.size(), tokens.size());
    EXPECT_EQ(r.missing, 0u);
    for (std::size_t i = 0; i < tokens.size(); ++i) EXPECT_NEAR(r.values[i], 0.8 * want[i], kTol) << i << " merge " << merge_tab;
  }
}

TEST(ExplainPrompts, AllAtOnceMalformedEcho) {
  const Tokens tokens{"a", "b", "c"};
  const auto p = build_simulation_prompt_all_at_once("letters", tokens);
  // No echo at all: everything missing, predictions 0.
  auto r = parse_simulation_prompt_logprobs(p, {});
  EXPECT_EQ(r.values, (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(r.missing, 3u);
  // Truncated echo: the last placeholder is lost.
  auto echoed = fake_tokens(p.prompt.substr(0, p.unknown_offsets[2]));
  for (auto& t : echoed)
    if (t.token == "unknown") t.top = peaked(5);
  r = parse_simulation_prompt_logprobs(p, echoed);
  EXPECT_EQ(r.missing, 1u);
  EXPECT_NEAR(r.values[0], 4.0, kTol);
  EXPECT_NEAR(r.values[1], 4.0, kTol);
  EXPECT_EQ(r.values[2], 0.0);
  // Echo without alternatives: values 0 ("none present"), not missing.
  r = parse_simulation_prompt_logprobs(p, fake_tokens(p.prompt));
  EXPECT_EQ(r.missing, 0u);
  EXPECT_EQ(r.values, (std::vector<double>{0, 0, 0}));
}

// ---------------------------------------------------------------- simulators (b), (c)

TEST(ExplainPrompts, ChatSimulationMessages) {
  const auto m = build_simulation_messages_chat("words about water", Tokens{"The", " sea", "\n"});
  ASSERT_EQ(m.size(), 6u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_EQ(m[2].role, "assistant");
  EXPECT_TRUE(m[2].content.starts_with("<start>\nThe\t0\n boat\t1\n")) << m[2].content;
  EXPECT_TRUE(contains(m[5].content, "Explanation: This neuron fires on words about water.\n<start>\nThe\tunknown\n sea\tunknown\n\\n\tunknown\n<end>\n"))
      << m[5].content;
  // The few-shot answers are what parse_simulation_no_logprobs reads.
  const auto r = parse_simulation_no_logprobs(m[2].content, 13);
  EXPECT_EQ(r.missing, 0u);
  EXPECT_EQ(r.values[5], 8.0);
  EXPECT_EQ(r.values[11], 10.0);
}

TEST(ExplainPrompts, NoLogprobsWellFormed) {
  const std::string answer = "<start>\nThe\t0\n sea\t7\n\\n\t10\n<end>\n";
  const auto r = parse_simulation_no_logprobs(answer, Tokens{"The", " sea", "\n"});
  EXPECT_EQ(r.values, (std::vector<double>{0, 7, 10}));
  EXPECT_EQ(r.missing, 0u);
}

TEST(ExplainPrompts, NoLogprobsMalformed) {
  // Prose around the block, a code fence, CRLF endings, odd values.
  const std::string answer =
      "Here are my predictions:\n```\n<start>\r\nThe\t 12\r\n sea\thigh\r\n is\t-3\r\n calm\t7.5 (fairly)\r\n.\t\r\n<end>\n```\n";
  const auto r = parse_simulation_no_logprobs(answer, 5);
  EXPECT_EQ(r.values, (std::vector<double>{10, 0, 0, 7.5, 0}));
  EXPECT_EQ(r.missing, 2u);  // "high" and the empty value
  // Fewer lines than tokens: the rest are missing.
  const auto short_r = parse_simulation_no_logprobs("<start>\nThe\t3\n", 3);
  EXPECT_EQ(short_r.values, (std::vector<double>{3, 0, 0}));
  EXPECT_EQ(short_r.missing, 2u);
  // Not an answer at all.
  const auto none = parse_simulation_no_logprobs("I cannot help with that.", 2);
  EXPECT_EQ(none.values, (std::vector<double>{0, 0}));
  EXPECT_EQ(none.missing, 2u);
  EXPECT_TRUE(parse_simulation_no_logprobs("", 0).values.empty());
}

TEST(ExplainPrompts, AlignmentSurvivesDroppedAndInsertedLines) {
  const Tokens tokens{"The", " sea", " is", " calm", "."};
  // " is" dropped: the other lines keep their tokens.
  auto r = parse_simulation_no_logprobs("The\t1\n sea\t2\n calm\t4\n.\t5\n", tokens);
  EXPECT_EQ(r.values, (std::vector<double>{1, 2, 0, 4, 5}));
  EXPECT_EQ(r.missing, 1u);
  // An extra line and respelled whitespace (" sea" written as "sea").
  r = parse_simulation_no_logprobs("The\t1\nsea\t2\nEXTRA\t9\n is\t3\n calm\t4\n.\t5\n", tokens);
  EXPECT_EQ(r.values, (std::vector<double>{1, 2, 3, 4, 5}));
  EXPECT_EQ(r.missing, 0u);
  // A token whose text holds a tab is written escaped, so the value is still after the last tab.
  const auto lines = parse_answer_lines("a\\tb\t6\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].token, "a\tb");
  EXPECT_EQ(lines[0].value, "6");
  EXPECT_EQ(lines[0].value_offset, 5u);
}

TEST(ExplainPrompts, ChatLogprobsExpectedValues) {
  const Tokens tokens{"The", " sea", "\n"};
  const std::string answer = "<start>\nThe\t0\n sea\t7\n\\n\t10\n<end>";
  for (bool merge_tab : {false, true}) {
    auto gen = fake_tokens(answer, merge_tab);
    const auto starts = token_start_offsets(gen);
    const auto lines = parse_answer_lines(answer);
    ASSERT_EQ(lines.size(), 3u);
    const std::vector<int> want{1, 7, 10};
    for (std::size_t i = 0; i < 3; ++i) gen[*token_covering(starts, lines[i].value_offset)].top = peaked(want[i]);
    const auto r = parse_simulation_chat_logprobs(gen, tokens);
    EXPECT_EQ(r.missing, 0u);
    ASSERT_EQ(r.values.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) EXPECT_NEAR(r.values[i], 0.8 * want[i], kTol) << i;
  }
}

TEST(ExplainPrompts, ChatLogprobsMalformed) {
  const Tokens tokens{"The", " sea", " is"};
  // A truncated answer ("length" finish): the last line never came; the value-less line is missing.
  const std::string answer = "<start>\nThe\t3\n sea\t";
  auto gen = fake_tokens(answer);
  for (auto& t : gen)
    if (t.token == "3") t.top = {{"3", -0.1}};
  auto r = parse_simulation_chat_logprobs(gen, tokens);
  EXPECT_NEAR(r.values[0], 3.0, kTol);
  EXPECT_EQ(r.values[1], 0.0);
  EXPECT_EQ(r.values[2], 0.0);
  EXPECT_EQ(r.missing, 2u);
  // No logprobs at all.
  r = parse_simulation_chat_logprobs({}, tokens);
  EXPECT_EQ(r.values, (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(r.missing, 3u);
  // Values written as words: a position without digit alternatives is 0.0, not missing.
  gen = fake_tokens("The\tnone\n sea\tnone\n is\tnone\n");
  r = parse_simulation_chat_logprobs(gen, tokens);
  EXPECT_EQ(r.values, (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(r.missing, 0u);
}
