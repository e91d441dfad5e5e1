// `nexplain inspect records.h5 L/N`: a neuron's statistics and top excerpts as text, the token
// with the excerpt's maximum activation marked, for a quick look from a terminal.
#include <cstdio>
#include <string>

#include "cli/commands.hpp"
#include "tokenizer/tokenizer_dir.hpp"
#include "core/error.hpp"
#include "io/records_file.hpp"

namespace nexplain::cli {

namespace {

std::pair<int, std::uint32_t> parse_neuron(const std::string& s) {
  const auto slash = s.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument("no slash");
    std::size_t a = 0, b = 0;
    const int layer = std::stoi(s.substr(0, slash), &a);
    const auto neuron = std::stoul(s.substr(slash + 1), &b);
    if (a != slash || b != s.size() - slash - 1 || layer < 0) throw std::invalid_argument("junk");
    return {layer, static_cast<std::uint32_t>(neuron)};
  } catch (const std::exception&) {
    fail("neuron '{}': expected LAYER/NEURON, e.g. 3/117", s);
  }
}

// Token text made printable on one line.
std::string shown(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20) out += '?';
    else out += static_cast<char>(c);
  }
  return out;
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Print a neuron's statistics and top excerpts, max token marked [[like this]]");
  struct Opts {
    std::string records, neuron;
    std::string tokenizer;
    int top = 5;
    int random = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("records", o->records, "Records file from `nexplain collect`")->required()->check(CLI::ExistingFile);
  cmd->add_option("neuron", o->neuron, "LAYER/NEURON, e.g. 3/117")->required();
  cmd->add_option("--top", o->top, "Top excerpts to show")->capture_default_str();
  cmd->add_option("--random", o->random, "Random excerpts to show")->capture_default_str();
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer directory: tokenizer.json, else GPT-2's files; a model directory that ships one works "
                  "(default: see `nexplain tokenize --help`)");
  cmd->callback([o] {
    const auto [layer, n] = parse_neuron(o->neuron);
    RecordsFile rf(o->records);
    const NeuronRecord r = rf.neuron(layer, n);
    // Without tokenizer files the excerpts are shown as token ids rather than failing.
    std::shared_ptr<const Tokenizer> tok;
    try {
      tok = load_tokenizer(locate_tokenizer_dir(o->tokenizer));
    } catch (const Error&) {
      if (!o->tokenizer.empty()) throw;
    }
    auto text = [&](std::uint32_t id) {
      return tok && tok->has_token(id) ? shown(tok->token_bytes(id)) : "<" + std::to_string(id) + ">";
    };
    std::printf("layer %d neuron %u: %llu activations, mean %.4g, variance %.4g, skewness %.4g, kurtosis %.4g\n", layer, n,
                static_cast<unsigned long long>(r.stats.count), r.stats.mean, r.stats.variance, r.stats.skewness,
                r.stats.kurtosis);
    if (!r.boundaries.empty()) {
      std::printf("quantile boundaries of excerpt max:");
      for (double b : r.boundaries) std::printf(" %.4g", b);
      std::printf("\n");
    }
    auto show = [&](const char* title, const std::vector<ExcerptRecord>& list, int limit) {
      if (limit <= 0 || list.empty()) return;
      std::printf("%s:\n", title);
      for (int i = 0; i < limit && i < static_cast<int>(list.size()); ++i) {
        const auto& e = list[static_cast<std::size_t>(i)];
        const auto tokens = rf.excerpt_tokens(e.excerpt_id);
        std::size_t arg = 0;
        for (std::size_t t = 1; t < e.acts.size(); ++t)
          if (e.acts[t] > e.acts[arg]) arg = t;
        std::string line;
        for (std::size_t t = 0; t < tokens.size(); ++t)
          line += t == arg ? "[[" + text(tokens[t]) + "]]" : text(tokens[t]);
        std::printf("  #%d excerpt %llu  max %.4g at position %zu\n    %s\n", i + 1,
                    static_cast<unsigned long long>(e.excerpt_id), e.max, arg, line.c_str());
      }
    };
    show("top excerpts", r.top, o->top);
    show("random excerpts", r.random, o->random);
  });
}

}  // namespace nexplain::cli
