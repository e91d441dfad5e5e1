// `nexplain tokenize INPUT... --out seqs.h5`: corpus -> sequences file (io/corpus_tokenize.hpp).
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "io/corpus_tokenize.hpp"
#include "tokenizer/corpus_tokenizer.hpp"
#include "tokenizer/tokenizer_dir.hpp"

namespace nexplain::cli {

namespace {

// --separator takes C-style escapes, so that a blank line can be given as '\n\n' in a shell.
std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out.push_back(s[i]);
      continue;
    }
    const char c = s[++i];
    switch (c) {
      case 'n': out.push_back('\n'); break;
      case 't': out.push_back('\t'); break;
      case 'r': out.push_back('\r'); break;
      case '0': out.push_back('\0'); break;
      case '\\': out.push_back('\\'); break;
      case 'x':
        if (i + 2 < s.size() + 0 && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
          out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
          i += 2;
          break;
        }
        fail("--separator: '\\x' at character {} must be followed by two hex digits", i);
      default: fail("--separator: unknown escape '\\{}' at character {} (known: \\n \\t \\r \\0 \\\\ \\xHH)", c, i);
    }
  }
  return out;
}

// The command line as the kernel recorded it, for the provenance attribute.
std::string command_line() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::string out;
  std::size_t start = 0;
  while (start < raw.size()) {
    std::size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    std::string arg = raw.substr(start, end - start);
    if (!out.empty()) out.push_back(' ');
    if (arg.find_first_of(" \t\n'\"\\$") != std::string::npos) {
      std::string q = "'";
      for (char c : arg) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      arg = q + "'";
    }
    out += arg;
    start = end + 1;
  }
  return out.empty() ? "nexplain tokenize" : out;
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  struct Args {
    std::vector<std::string> inputs;
    std::string out;
    std::string format = "auto";
    std::string text_field = "text";
    std::string separator;
    int seq_len = 64;
    std::string tokenizer;
    std::string eot_token;
    int threads = 0;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("tokenize",
                                 "Tokenize a corpus (.txt, .jsonl, llm.c .bin shards) with GPT-2's tokenizer or a HF "
                                 "tokenizer.json into a sequences file of fixed windows (documents joined with "
                                 "<|endoftext|> or --eot-token)");
  cmd->add_option("inputs", args->inputs, "Input files (format from the extension unless --format)")->required();
  cmd->add_option("--out,-o", args->out, "Output sequences file (HDF5)")->required();
  cmd->add_option("--format", args->format, "Input format")
      ->check(CLI::IsMember({"auto", "txt", "jsonl", "bin"}))
      ->capture_default_str();
  cmd->add_option("--text-field", args->text_field, "jsonl: the field holding the text")->capture_default_str();
  auto* sep = cmd->add_option("--separator", args->separator,
                              "txt: split each file into documents at this string (escapes \\n \\t \\r \\0 \\\\ \\xHH); "
                              "default: one document per file");
  cmd->add_option("--seq-len,-T", args->seq_len, "Tokens per sequence (excerpt)")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--tokenizer", args->tokenizer,
                  "Directory with a HF tokenizer.json (byte-level BPE: Llama 3, Pythia, Qwen2; it wins over GPT-2's "
                  "files beside it; or the .json file itself), else GPT-2's encoder.json + vocab.bpe (or vocab.json + "
                  "merges.txt); a model directory that ships one works; default: "
                  "$NEXPLAIN_TOKENIZER_DIR, <exe>/../share/nexplain/gpt2-tokenizer, ./data/gpt2-tokenizer");
  cmd->add_option("--eot-token", args->eot_token,
                  "tokenizer.json: the token put between documents (default: tokenizer_config.json's eos_token, else "
                  "<|endoftext|>)");
  cmd->add_option("--threads,-j", args->threads, "Tokenizer threads (0 = all cores); one reader and one writer thread come on top")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->callback([args, sep] {
    TokenizeOptions opt;
    opt.corpus.format = parse_corpus_format(args->format);
    opt.corpus.text_field = args->text_field;
    if (sep->count() > 0) opt.corpus.separator = unescape(args->separator);
    opt.seq_len = args->seq_len;
    opt.threads = args->threads;
    opt.command_line = command_line();
    // A mistyped input should not wait for the tokenizer to load.
    for (const auto& in : args->inputs)
      if (std::error_code ec; !std::filesystem::is_regular_file(in, ec)) fail("{}: no such file", in);
    const auto dir = locate_tokenizer_dir(args->tokenizer);
    const auto tok = load_corpus_tokenizer(dir, args->eot_token);
    spdlog::info("tokenizer: {} ({}, {} tokens, documents joined with {} = {}, sha256 {})", dir.string(),
                 tok.provenance["name"].get<std::string>(), tok.vocab_size, tok.eot_text, tok.eot_id,
                 tok.sha256.substr(0, 12));
    std::vector<std::filesystem::path> inputs(args->inputs.begin(), args->inputs.end());
    const auto s = tokenize_corpus(inputs, opt, tok, args->out);
    std::printf("documents: %llu\ntokens:    %llu (documents joined with %s)\n"
                "sequences: %llu x %d tokens\ndropped:   %llu tokens (final partial window)\n"
                "input:     %s in %.2f s (%.1f MB/s)\nout:       %s\n",
                static_cast<unsigned long long>(s.documents), static_cast<unsigned long long>(s.tokens),
                tok.eot_text.c_str(),
                static_cast<unsigned long long>(s.sequences), opt.seq_len, static_cast<unsigned long long>(s.dropped),
                (Progress::human(static_cast<double>(s.input_bytes)) + "B").c_str(), s.seconds,
                s.seconds > 0 ? static_cast<double>(s.input_bytes) / 1e6 / s.seconds : 0.0, args->out.c_str());
  });
}

}  // namespace nexplain::cli
