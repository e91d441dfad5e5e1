#pragma once
// The prompts nexplain sends and the parsers of their answers, as pure functions: the LLM-backed
// explainer and simulators are asynchronous (the driver keeps many requests in flight through
// src/llm), so the driver builds requests with these functions and parses what comes back.
// docs/EXPLAIN.md shows an example of every prompt. The few-shot neurons are made up by the team.
//
//  explainer (chat):       build_explainer_messages  -> parse_explanation
//  simulator (a), prompt logprobs, all at once (legacy completions, echo + logprobs):
//                          build_simulation_prompt_all_at_once -> parse_simulation_prompt_logprobs
//  simulator (b), chat top logprobs:
//                          build_simulation_messages_chat -> parse_simulation_chat_logprobs
//  simulator (c), no logprobs (chat, the written integers):
//                          build_simulation_messages_chat -> parse_simulation_no_logprobs
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "explain/activation_format.hpp"
#include "explain/simulator_scale.hpp"
#include "llm/request.hpp"
#include "llm/response.hpp"

namespace nexplain {

// Every explanation is a completion of this phrase; the explainer is asked to begin its answer
// with it, parse_explanation removes it, and the simulator prompts put it back in front.
inline constexpr std::string_view kExplanationLeadIn = "this neuron fires on";
// What stands in for each activation the all-at-once simulator must predict.
inline constexpr std::string_view kUnknownValue = "unknown";

// OpenAI chat format: [{"role": ..., "content": ...}, ...].
nlohmann::json messages_to_json(const std::vector<ChatMessage>& messages);

// ---------------------------------------------------------------- explainer

// System instructions, the made-up few-shot neurons as user/assistant turns, then the neuron's
// train excerpts (normalised to 0..10 over all of them, with the sparse repeat when it applies).
std::vector<ChatMessage> build_explainer_messages(std::span<const ActivationExcerpt> train);

// The explanation in a completion: the text after the first (case-insensitive) occurrence of
// the lead-in, else the first non-empty line (an "Explanation:" label in front removed); only its first line, with surrounding whitespace,
// quotes or markdown emphasis and a final period removed. Throws Error (quoting the completion)
// when nothing is left.
std::string parse_explanation(std::string_view completion);

// ---------------------------------------------------------------- simulators

// How well a simulation answer could be read: values[i] is the prediction for token i (0..scale),
// `missing` counts tokens for which the answer held no value (their prediction is 0.0).
struct SimulationParse {
  std::vector<double> values;
  std::size_t missing = 0;
};

// (a) A legacy-completions prompt (send with echo = true, logprobs >= 5, max_tokens = 1): the
// few-shot neurons with their values, then the explanation and one `token<TAB>unknown` line per
// token. unknown_offsets[i] is the byte offset in `prompt` of the "unknown" on token i's line.
// `scale_max` (10, or 9 for a simulator that cannot write "10" as one token; simulator_scale.hpp)
// is the top of the scale the prompt states, the few-shot values use and the parser reads.
struct SimulationPrompt {
  std::string prompt;
  std::vector<std::size_t> unknown_offsets;
  int scale_max = kDefaultScaleMax;
};
SimulationPrompt build_simulation_prompt_all_at_once(std::string_view explanation, const std::vector<std::string>& tokens,
                                                     int scale_max = kDefaultScaleMax);

// Reads (a)'s answer: `echoed` = the logprobs of the echoed prompt tokens (plus any generated
// ones). At each "unknown" the prediction is expected_activation of the token that covers its
// first character. Positions are found by counting occurrences of "unknown" in the echoed text
// (the concatenated tokens), so a server's text_offset convention (bytes or code points) and a
// leading BOS token do not matter; the explanation or a token may itself contain the word.
SimulationParse parse_simulation_prompt_logprobs(const SimulationPrompt& prompt, std::span<const TokenLogprob> echoed);

// (b)/(c) Chat messages asking the model to copy each token and write its value:
// `token<TAB>value` lines between <start> and <end>.
std::vector<ChatMessage> build_simulation_messages_chat(std::string_view explanation, const std::vector<std::string>& tokens,
                                                       int scale_max = kDefaultScaleMax);

// (b) Reads the chat answer's logprobs (`generated` = the completion's tokens with their
// top_logprobs): each `token<TAB>value` line is matched to a token (see align below) and its
// prediction is expected_activation at the value's first character.
SimulationParse parse_simulation_chat_logprobs(std::span<const TokenLogprob> generated, const std::vector<std::string>& tokens,
                                               int scale_max = kDefaultScaleMax);

// (c) The integers written in the answer, clamped to 0..scale_max (a value that is not a number
// counts as missing). With only a token count, lines are taken in order; with the tokens, lines
// are aligned to them.
SimulationParse parse_simulation_no_logprobs(std::string_view text, std::size_t n_tokens,
                                             int scale_max = kDefaultScaleMax);
SimulationParse parse_simulation_no_logprobs(std::string_view text, const std::vector<std::string>& tokens,
                                             int scale_max = kDefaultScaleMax);

// ---------------------------------------------------------------- answer lines (exposed for tests)

// One `token<TAB>value` line of an answer: the token as written (escapes undone), the value
// text and the byte offset of the value's first character in the answer.
struct AnswerLine {
  std::string token;
  std::string value;
  std::size_t value_offset = 0;
};
// Lines holding a tab (the last tab separates the value); <start>, <end> and prose are skipped.
std::vector<AnswerLine> parse_answer_lines(std::string_view text);

// For each expected token, the index of its answer line, or -1. When the counts agree lines are
// taken in order (models often respell whitespace); otherwise each token takes the first line,
// at most 4 lines ahead of the last match, whose token equals it (exactly, or after trimming
// whitespace), so a dropped or an inserted line shifts nothing else.
std::vector<long> align_answer_lines(const std::vector<AnswerLine>& lines, const std::vector<std::string>& tokens);

}  // namespace nexplain
