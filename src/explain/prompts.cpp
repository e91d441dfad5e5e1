#include "explain/prompts.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>

#include "core/error.hpp"
#include "explain/logprob_parse.hpp"

namespace nexplain {

namespace {

// ---------------------------------------------------------------- few-shot neurons (made up)
// Two invented neurons with hand-set activations on the 0..10 scale: one that responds to a
// topic (so the model learns to name categories) and one that responds to specific tokens (so it
// learns to quote tokens, which is also what the offline baseline writes).

struct FewShotNeuron {
  const char* explanation;  // completes kExplanationLeadIn
  std::vector<ActivationExcerpt> excerpts;
};

const std::vector<FewShotNeuron>& few_shot_neurons() {
  static const std::vector<FewShotNeuron> neurons = {
      {"words about water: rivers, lakes, rain, floods and washing",
       {{{"The", " boat", " drifted", " across", " the", " lake", " while", " rain", " fell", " on", " the", " water", "."},
         {0, 1, 0, 0, 0, 8, 0, 7, 0, 0, 0, 10, 0}},
        {{"She", " filled", " a", " bucket", " at", " the", " well", " and", " washed", " her", " hands", "."},
         {0, 2, 0, 3, 0, 0, 6, 0, 5, 0, 0, 0}},
        {{"Flood", " warnings", " were", " issued", " for", " the", " river", " valley", "."},
         {9, 0, 0, 0, 0, 0, 9, 1, 0}}}},
      {"negations, mostly the tokens \" not\" and \"'t\"",
       {{{"I", " do", " not", " think", " he", " will", " come", ",", " and", " she", " isn", "'t", " sure", " either", "."},
         {0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0}},
        {{"Never", " mind", ",", " it", " doesn", "'t", " matter", "."}, {4, 0, 0, 0, 1, 10, 0, 0}}}},
  };
  return neurons;
}

// The few-shot values (written on 0..10) on the simulator's scale.
std::vector<int> int_values(const ActivationExcerpt& e, int scale_max = kDefaultScaleMax) {
  std::vector<int> v;
  for (float a : e.activations) v.push_back(rescale_value(static_cast<int>(a), scale_max));
  return v;
}

// "This neuron fires on" with a capital, for sentences the model reads.
std::string lead_in_sentence() {
  std::string s(kExplanationLeadIn);
  s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

// An explanation may not break the prompt's line structure.
std::string one_line(std::string_view s) {
  std::string out(s);
  std::replace(out.begin(), out.end(), '\n', ' ');
  std::replace(out.begin(), out.end(), '\r', ' ');
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

std::size_t find_ci(std::string_view hay, std::string_view needle) {
  if (needle.empty() || hay.size() < needle.size()) return std::string_view::npos;
  for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    bool eq = true;
    for (std::size_t k = 0; k < needle.size() && eq; ++k) eq = lower(hay[i + k]) == lower(needle[k]);
    if (eq) return i;
  }
  return std::string_view::npos;
}

std::vector<std::size_t> find_all(std::string_view hay, std::string_view needle) {
  std::vector<std::size_t> out;
  for (std::size_t p = hay.find(needle); p != std::string_view::npos; p = hay.find(needle, p + 1)) out.push_back(p);
  return out;
}

// The simulator instructions shared by the completion and chat prompts.
std::string simulator_intro(int scale_max) {
  return "Each neuron of a language model responds to some pattern in text. Below, a short explanation of what a "
         "neuron responds to is followed by an excerpt of text split into tokens, one token per line. After each "
         "token and a tab comes the neuron's activation on it: an integer from 0 (no response) to " +
         std::to_string(scale_max) +
         " (its strongest response). The explanation alone determines the activations. Most tokens get 0.\n";
}

// A number written as a value: leading integer or decimal, clamped to 0..scale_max.
std::optional<double> written_value(std::string_view v, int scale_max) {
  v = trim(v);
  double x = 0.0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p == v.data() || !std::isfinite(x)) return std::nullopt;
  return std::clamp(x, 0.0, static_cast<double>(scale_max));
}

SimulationParse values_from_lines(const std::vector<AnswerLine>& lines, const std::vector<long>& index, int scale_max) {
  SimulationParse out;
  out.values.assign(index.size(), 0.0);
  for (std::size_t i = 0; i < index.size(); ++i) {
    const auto v =
        index[i] >= 0 ? written_value(lines[static_cast<std::size_t>(index[i])].value, scale_max) : std::nullopt;
    if (v) out.values[i] = *v;
    else ++out.missing;
  }
  return out;
}

}  // namespace

nlohmann::json messages_to_json(const std::vector<ChatMessage>& messages) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& m : messages) a.push_back({{"role", m.role}, {"content", m.content}});
  return a;
}

// ---------------------------------------------------------------- explainer

std::vector<ChatMessage> build_explainer_messages(std::span<const ActivationExcerpt> train) {
  const std::string lead = lead_in_sentence();
  const std::string ask = "\nWhat does this neuron respond to? Answer with one line that begins with \"" + lead + "\".";
  std::vector<ChatMessage> m;
  m.push_back({"system",
               "You interpret neurons of a language model. Each neuron responds to some pattern in text. You are "
               "shown excerpts of text split into tokens, one token per line; after each token and a tab comes the "
               "neuron's activation on it, an integer from 0 (no response) to 10 (the strongest response in these "
               "excerpts). Find what the tokens with high activations have in common and say it in a few words. If "
               "the neuron responds to a few specific tokens, quote them exactly, leading spaces included, in double "
               "quotes. If it responds to a topic, a kind of word or a context, name it instead of listing "
               "examples. Answer with a single line that begins with \"" + lead + "\"."});
  for (const auto& n : few_shot_neurons()) {
    m.push_back({"user", "Excerpts:\n\n" + format_activation_records(n.excerpts) + ask});
    m.push_back({"assistant", lead + " " + n.explanation + "."});
  }
  m.push_back({"user", "Excerpts:\n\n" + format_activation_records(train) + ask});
  return m;
}

std::string parse_explanation(std::string_view completion) {
  std::string_view rest = completion;
  if (const auto at = find_ci(completion, kExplanationLeadIn); at != std::string_view::npos) {
    rest = completion.substr(at + kExplanationLeadIn.size());
    // "This neuron fires on:\n  words about water" puts the answer on the next line.
    while (!rest.empty() && (is_space(rest.front()) || rest.front() == ':')) rest.remove_prefix(1);
  } else {
    // Without the lead-in, a label the model may have put in front instead.
    rest = trim(rest);
    if (find_ci(rest, "explanation:") == 0) rest.remove_prefix(std::string_view("explanation:").size());
  }
  // The first non-empty line.
  std::string_view line;
  while (!rest.empty()) {
    const auto nl = rest.find('\n');
    line = trim(rest.substr(0, nl));
    if (!line.empty() || nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  // Markdown emphasis and code marks around the answer, then one final period.
  const auto is_mark = [](char c) { return c == '*' || c == '`' || c == '_'; };
  while (!line.empty() && is_mark(line.front())) line.remove_prefix(1);
  while (!line.empty() && is_mark(line.back())) line.remove_suffix(1);
  line = trim(line);
  if (!line.empty() && line.back() == '.') line = trim(line.substr(0, line.size() - 1));
  if (line.empty()) {
    const std::string shown(completion.substr(0, 200));
    fail("the explainer's completion holds no explanation: \"{}\"{}", shown, completion.size() > 200 ? "..." : "");
  }
  return std::string(line);
}

// ---------------------------------------------------------------- simulator (a)

SimulationPrompt build_simulation_prompt_all_at_once(std::string_view explanation, const std::vector<std::string>& tokens,
                                                     int scale_max) {
  const std::string lead = lead_in_sentence();
  SimulationPrompt p;
  p.scale_max = scale_max;
  p.prompt = simulator_intro(scale_max);
  char name = 'A';
  for (const auto& n : few_shot_neurons()) {
    const auto& e = n.excerpts.front();
    p.prompt += "\nNeuron ";
    p.prompt += name++;
    p.prompt += "\nExplanation: " + lead + " " + n.explanation + ".\n" + format_excerpt(e.tokens, int_values(e, scale_max));
  }
  p.prompt += "\nNeuron ";
  p.prompt += name;
  p.prompt += "\nExplanation: " + lead + " " + one_line(explanation) + ".\n";
  // The block comes from the shared formatter; the offsets are recomputed from its line layout
  // and checked, so a change of format cannot silently shift them.
  std::size_t at = p.prompt.size() + std::string_view("<start>\n").size();
  p.prompt += format_excerpt_for_simulation(tokens, kUnknownValue);
  for (const auto& t : tokens) {
    at += escape_token(t).size() + 1;  // the token, then the tab
    if (p.prompt.compare(at, kUnknownValue.size(), kUnknownValue) != 0)
      fail("internal: simulation prompt layout changed (no \"{}\" at byte {})", kUnknownValue, at);
    p.unknown_offsets.push_back(at);
    at += kUnknownValue.size() + 1;
  }
  return p;
}

SimulationParse parse_simulation_prompt_logprobs(const SimulationPrompt& prompt, std::span<const TokenLogprob> echoed) {
  // Occurrence k of "unknown" in the prompt is occurrence k in the echoed text.
  const auto in_prompt = find_all(prompt.prompt, kUnknownValue);
  const std::string echoed_text = joined_token_text(echoed);
  const auto in_echo = find_all(echoed_text, kUnknownValue);
  std::vector<std::size_t> offsets;
  SimulationParse out;
  out.values.assign(prompt.unknown_offsets.size(), 0.0);
  std::vector<std::size_t> which;  // token index for each offset looked up
  for (std::size_t i = 0; i < prompt.unknown_offsets.size(); ++i) {
    const auto it = std::lower_bound(in_prompt.begin(), in_prompt.end(), prompt.unknown_offsets[i]);
    const auto k = static_cast<std::size_t>(it - in_prompt.begin());
    if (it == in_prompt.end() || *it != prompt.unknown_offsets[i] || k >= in_echo.size()) {
      ++out.missing;
      continue;
    }
    offsets.push_back(in_echo[k]);
    which.push_back(i);
  }
  const auto ev = expected_activations_at(echoed, offsets, prompt.scale_max);
  for (std::size_t j = 0; j < which.size(); ++j) out.values[which[j]] = ev[j];
  return out;
}

// ---------------------------------------------------------------- simulators (b), (c)

std::vector<ChatMessage> build_simulation_messages_chat(std::string_view explanation, const std::vector<std::string>& tokens,
                                                       int scale_max) {
  const std::string lead = lead_in_sentence();
  const auto ask = [&](std::string_view expl, const std::vector<std::string>& toks) {
    return "Explanation: " + lead + " " + std::string(expl) + ".\n" + format_excerpt_for_simulation(toks, kUnknownValue) +
           "Replace each \"" + std::string(kUnknownValue) + "\" with the activation.";
  };
  std::vector<ChatMessage> m;
  m.push_back({"system", simulator_intro(scale_max) +
                             "Copy the excerpt line by line, in order, between <start> and <end>: each token exactly "
                             "as given, a tab, then your predicted activation as an integer. Write nothing else."});
  for (const auto& n : few_shot_neurons()) {
    const auto& e = n.excerpts.front();
    m.push_back({"user", ask(n.explanation, e.tokens)});
    m.push_back({"assistant", format_excerpt(e.tokens, int_values(e, scale_max))});
  }
  m.push_back({"user", ask(one_line(explanation), tokens)});
  return m;
}

std::vector<AnswerLine> parse_answer_lines(std::string_view text) {
  std::vector<AnswerLine> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto nl = text.find('\n', start);
    const std::size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (const auto tab = line.rfind('\t'); tab != std::string_view::npos) {
      AnswerLine a;
      a.token = unescape_token(line.substr(0, tab));
      std::size_t v = tab + 1;
      while (v < line.size() && (line[v] == ' ' || line[v] == '\t')) ++v;
      a.value = std::string(trim(line.substr(v)));
      a.value_offset = start + v;
      out.push_back(std::move(a));
    }
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

std::vector<long> align_answer_lines(const std::vector<AnswerLine>& lines, const std::vector<std::string>& tokens) {
  std::vector<long> index(tokens.size(), -1);
  if (lines.size() == tokens.size()) {
    for (std::size_t i = 0; i < tokens.size(); ++i) index[i] = static_cast<long>(i);
    return index;
  }
  constexpr std::size_t kWindow = 4;
  std::size_t next = 0;  // first line not yet used
  for (std::size_t i = 0; i < tokens.size() && next < lines.size(); ++i) {
    const auto want = trim(tokens[i]);
    for (std::size_t k = next; k < lines.size() && k < next + kWindow; ++k) {
      if (lines[k].token == tokens[i] || trim(lines[k].token) == want) {
        index[i] = static_cast<long>(k);
        next = k + 1;
        break;
      }
    }
  }
  return index;
}

SimulationParse parse_simulation_chat_logprobs(std::span<const TokenLogprob> generated, const std::vector<std::string>& tokens,
                                               int scale_max) {
  const std::string text = joined_token_text(generated);
  const auto lines = parse_answer_lines(text);
  const auto index = align_answer_lines(lines, tokens);
  SimulationParse out;
  out.values.assign(tokens.size(), 0.0);
  std::vector<std::size_t> offsets, which;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (index[i] < 0 || lines[static_cast<std::size_t>(index[i])].value.empty()) {
      ++out.missing;
      continue;
    }
    offsets.push_back(lines[static_cast<std::size_t>(index[i])].value_offset);
    which.push_back(i);
  }
  const auto ev = expected_activations_at(generated, offsets, scale_max);
  for (std::size_t j = 0; j < which.size(); ++j) out.values[which[j]] = ev[j];
  return out;
}

SimulationParse parse_simulation_no_logprobs(std::string_view text, std::size_t n_tokens, int scale_max) {
  const auto lines = parse_answer_lines(text);
  std::vector<long> index(n_tokens, -1);
  for (std::size_t i = 0; i < n_tokens && i < lines.size(); ++i) index[i] = static_cast<long>(i);
  return values_from_lines(lines, index, scale_max);
}

SimulationParse parse_simulation_no_logprobs(std::string_view text, const std::vector<std::string>& tokens, int scale_max) {
  const auto lines = parse_answer_lines(text);
  return values_from_lines(lines, align_answer_lines(lines, tokens), scale_max);
}

}  // namespace nexplain
