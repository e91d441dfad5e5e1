#pragma once
// Corpus -> sequences file: read the inputs, tokenize in parallel, join documents with
// <|endoftext|>, cut into windows of T tokens and write them (io/sequences.hpp).
//
// Joining: exactly one end-of-text token (GPT-2's <|endoftext|>, or the CorpusTokenizer's) between
// consecutive documents, none before the first or after the last; a pre-tokenized .bin shard
// that already starts with it gets none added. The final partial window is dropped. The output is identical for any thread count:
// work is split into pieces whose tokens are put back in input order.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/corpus_reader.hpp"
#include "tokenizer/corpus_tokenizer.hpp"

namespace nexplain {

struct TokenizeOptions {
  CorpusOptions corpus;
  int seq_len = 64;
  int threads = 0;                     // 0 = std::thread::hardware_concurrency()
  std::size_t piece_bytes = 1u << 20;  // text is cut (safely) into pieces of about this size per task
  bool progress = true;
  std::string command_line;            // recorded in the provenance
};

struct TokenizeSummary {
  std::uint64_t documents = 0;
  std::uint64_t tokens = 0;    // in the joined stream, separators included
  std::uint64_t sequences = 0;
  std::uint64_t dropped = 0;   // tokens of the final partial window
  std::uint64_t input_bytes = 0;
  double seconds = 0;
  nlohmann::json provenance;
};

// Writes `out` atomically; on any error nothing is left at `out`. Throws Error when the corpus
// has no tokens or fewer than one window.
TokenizeSummary tokenize_corpus(const std::vector<std::filesystem::path>& inputs, const TokenizeOptions& options,
                                const CorpusTokenizer& tokenizer, const std::filesystem::path& out);
// GPT-2's tokenizer (corpus_tokenizer(tokenizer)).
TokenizeSummary tokenize_corpus(const std::vector<std::filesystem::path>& inputs, const TokenizeOptions& options,
                                const Gpt2Tokenizer& tokenizer, const std::filesystem::path& out);

}  // namespace nexplain
