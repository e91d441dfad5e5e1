// GPT-2 tokenizer throughput on the two shared corpora, one thread and all threads, next to
// the anchors measured with tiktoken and HF tokenizers (../shared/README.md). Every run uses
// fresh threads, so the per-thread word cache starts cold, as it does in `nexplain tokenize`.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tokenizer/gpt2_tokenizer.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/safe_split.hpp"

namespace fs = std::filesystem;
using nexplain::Gpt2Tokenizer;

namespace {

struct Result {
  double seconds;
  std::size_t tokens;
};

// Best of `reps` runs of `threads` fresh threads tokenizing `pieces` (handed out in order).
Result run(const Gpt2Tokenizer& tok, const std::vector<std::string_view>& pieces, unsigned threads, int reps) {
  Result best{1e30, 0};
  for (int r = 0; r < reps; ++r) {
    std::atomic<std::size_t> next{0}, tokens{0};
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        std::size_t mine = 0;
        for (std::size_t i; (i = next.fetch_add(1)) < pieces.size();) mine += tok.encode(pieces[i]).size();
        tokens += mine;
      });
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s < best.seconds) best = {s, tokens.load()};
  }
  return best;
}

double pretokenize_only(std::string_view text, int reps) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    std::size_t words = 0;
    const auto t0 = std::chrono::steady_clock::now();
    nexplain::gpt2_pretokenize(text, [&](std::string_view) { ++words; });
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (words == 0) std::printf("(no words?)\n");
  }
  return best;
}

}  // namespace

int main() {
  const char* env = std::getenv("NEXPLAIN_SHARED_DIR");
  const fs::path shared = env ? fs::path(env) : fs::path(NEXPLAIN_SHARED_DIR);
  if (!fs::is_directory(shared / "data" / "corpora") || !fs::is_directory(shared / "data" / "gpt2-tokenizer")) {
    std::printf("skipped: ../shared (corpora and tokenizer) not found at %s; set NEXPLAIN_SHARED_DIR\n", shared.c_str());
    return 0;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto tok = Gpt2Tokenizer::load(shared / "data" / "gpt2-tokenizer");
  std::printf("tokenizer load: %.3f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  const unsigned all = std::max(1u, std::thread::hardware_concurrency());
  struct Corpus {
    const char* file;
    double tiktoken_mbs, hf_mbs;  // anchors, one thread
  };
  const Corpus corpora[] = {{"tinyshakespeare.txt", 9.5, 1.0}, {"wikitext2-valid.txt", 15.7, 1.5}};
  std::printf("%-22s %8s %10s %12s %9s %12s\n", "corpus", "threads", "MB/s", "tokens/s", "tokens", "tiktoken 1t");
  for (const auto& c : corpora) {
    std::ifstream f(shared / "data" / "corpora" / c.file, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str();
    const double mb = static_cast<double>(text.size()) / 1e6;
    // One thread: the whole corpus as one document, as the anchors were measured.
    const std::vector<std::string_view> whole{text};
    const auto one = run(tok, whole, 1, 5);
    std::printf("%-22s %8u %10.1f %12.0f %9zu %9.1f MB/s (HF tokenizers %.1f)\n", c.file, 1u, mb / one.seconds,
                static_cast<double>(one.tokens) / one.seconds, one.tokens, c.tiktoken_mbs, c.hf_mbs);
    // All threads: cut at safe points (identical tokens), pieces handed out dynamically.
    const auto pieces = nexplain::split_safely(text, 64 * 1024);
    const auto many = run(tok, pieces, all, 5);
    std::printf("%-22s %8u %10.1f %12.0f %9zu\n", c.file, all, mb / many.seconds,
                static_cast<double>(many.tokens) / many.seconds, many.tokens);
    std::printf("%-22s %8s %10.1f  (pre-tokenizer regex alone, one thread)\n", "", "", mb / pretokenize_only(text, 5));
  }
  return 0;
}
