#include "io/corpus_tokenize.hpp"

#include <chrono>
#include <ctime>
#include <future>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/error.hpp"
#include "core/progress.hpp"
#include "io/sequences.hpp"
#include "model/thread_pool.hpp"
#include "nexplain_version.hpp"
#include "tokenizer/safe_split.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

// A batch of pieces read ahead while the previous batch is tokenized.
struct Batch {
  std::vector<CorpusPiece> pieces;
  std::uint64_t bytes = 0;
};

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Each stage adds the time it was busy, so a debug log can say which stage limits the run.
struct StageTimes {
  double read = 0, tokenize = 0, write = 0;
};

Batch read_batch(CorpusStream& stream, std::size_t target_bytes, double* busy) {
  const auto t0 = std::chrono::steady_clock::now();
  Batch b;
  std::size_t text_bytes = 0;
  CorpusPiece piece;
  while (text_bytes < target_bytes && stream.next(piece)) {
    text_bytes += piece.pretokenized ? piece.ids.size() * 2 : piece.text.size();
    b.bytes += piece.bytes;
    b.pieces.push_back(std::move(piece));
    piece = CorpusPiece{};
  }
  *busy += since(t0);
  return b;
}

// Tokenizes every text piece of `batch` on the pool. Each piece is cut at safe points into
// tasks whose results land in slots indexed by task, so the order of the output never depends
// on scheduling. The pool's threads live for the whole run, which keeps their word caches warm.
std::vector<std::vector<std::uint32_t>> tokenize_batch(const Batch& batch, const CorpusTokenizer& tok, ThreadPool& pool,
                                                       std::size_t piece_bytes, std::vector<std::size_t>& first_task) {
  std::vector<std::string_view> tasks;
  first_task.assign(batch.pieces.size() + 1, 0);
  for (std::size_t i = 0; i < batch.pieces.size(); ++i) {
    first_task[i] = tasks.size();
    if (!batch.pieces[i].pretokenized)
      for (auto v : split_safely(batch.pieces[i].text, piece_bytes)) tasks.push_back(v);
  }
  first_task.back() = tasks.size();
  std::vector<std::vector<std::uint32_t>> out(tasks.size());
  pool.parallel_for(static_cast<std::int64_t>(tasks.size()), [&](std::int64_t b, std::int64_t e, int) {
    for (auto t = b; t < e; ++t) out[static_cast<std::size_t>(t)] = tok.encode(tasks[static_cast<std::size_t>(t)]);
  });
  return out;
}

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

TokenizeSummary tokenize_corpus(const std::vector<fs::path>& inputs, const TokenizeOptions& options,
                                const CorpusTokenizer& tok, const fs::path& out) {
  const auto t0 = std::chrono::steady_clock::now();
  const int threads = options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  CorpusOptions copt = options.corpus;
  copt.vocab_size = tok.vocab_size;
  CorpusStream stream(inputs, copt);
  SequencesInfo info;
  info.seq_len = options.seq_len;
  info.vocab_size = tok.vocab_size;
  info.eot_id = tok.eot_id;
  info.tokenizer_sha256 = tok.sha256;
  // Three stages overlap: a reader thread reads (and hashes) batch k+1, the pool tokenizes batch
  // k, and a writer thread appends batch k-1 in order and deflates its chunks on a pool of its
  // own, half the size (deflate costs about half as much CPU as tokenizing; measured on 16 cores,
  // a quarter left the writer the slowest stage).
  ThreadPool pool(threads);
  ThreadPool deflate_pool(std::max(1, threads / 2));
  SequencesWriter writer(out, info);
  writer.set_thread_pool(&deflate_pool);

  TokenizeSummary s;
  s.input_bytes = stream.total_bytes();
  Progress progress("tokenize", stream.total_bytes(), "bytes");
  const std::size_t batch_bytes = options.piece_bytes * static_cast<std::size_t>(threads) * 4;
  const std::uint32_t eot = tok.eot_id;
  std::uint64_t bytes_done = 0;
  bool any_token = false;
  const std::vector<std::uint32_t> eot_only{eot};

  StageTimes busy;
  // Runs on the writer thread, one batch at a time, in input order.
  auto write_batch = [&](const Batch& batch, const std::vector<std::vector<std::uint32_t>>& results,
                         const std::vector<std::size_t>& first_task) {
    const auto w0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < batch.pieces.size(); ++i) {
      const CorpusPiece& p = batch.pieces[i];
      if (p.pretokenized) {
        if (p.ids.empty()) continue;
        if (p.new_document && any_token && p.ids.front() != eot) writer.append(eot_only);
        if (p.new_document && p.ids.front() != eot) ++s.documents;
        for (const auto id : p.ids) s.documents += id == eot ? 1 : 0;
        writer.append(p.ids);
        any_token = true;
        continue;
      }
      if (p.new_document) {
        if (any_token) writer.append(eot_only);
        ++s.documents;
      }
      for (std::size_t t = first_task[i]; t < first_task[i + 1]; ++t) {
        writer.append(results[t]);
        any_token = any_token || !results[t].empty();
      }
    }
    bytes_done += batch.bytes;
    if (options.progress) progress.update(bytes_done);
    busy.write += since(w0);
  };

  auto reading = std::async(std::launch::async, read_batch, std::ref(stream), batch_bytes, &busy.read);
  std::future<void> writing;
  for (;;) {
    auto batch = std::make_shared<Batch>(reading.get());
    if (batch->pieces.empty()) break;
    reading = std::async(std::launch::async, read_batch, std::ref(stream), batch_bytes, &busy.read);
    auto first_task = std::make_shared<std::vector<std::size_t>>();
    const auto k0 = std::chrono::steady_clock::now();
    auto results = std::make_shared<std::vector<std::vector<std::uint32_t>>>(
        tokenize_batch(*batch, tok, pool, options.piece_bytes, *first_task));
    busy.tokenize += since(k0);
    if (writing.valid()) writing.get();  // the previous batch is written; rethrows its error
    writing = std::async(std::launch::async, [&write_batch, batch, results, first_task] { write_batch(*batch, *results, *first_task); });
  }
  if (writing.valid()) writing.get();
  spdlog::debug("tokenize: stages busy: read+hash {:.2f} s, tokenize {:.2f} s ({} threads), write+deflate {:.2f} s ({} threads); "
                "wall {:.2f} s", busy.read, busy.tokenize, threads, busy.write, deflate_pool.size(), since(t0));
  if (options.progress) progress.finish();

  s.tokens = writer.tokens_total();
  if (s.tokens == 0)
    fail("empty corpus: the {} input file(s) ({}{}) contain no text, so there is nothing to tokenize", inputs.size(),
         inputs.front().string(), inputs.size() > 1 ? ", ..." : "");
  if (writer.sequences() == 0)
    fail("corpus too short: {} tokens in {} ({}{}) is less than one sequence of --seq-len {}", s.tokens,
         inputs.size() == 1 ? "the input" : "the inputs", inputs.front().string(), inputs.size() > 1 ? ", ..." : "",
         options.seq_len);
  s.sequences = writer.sequences();
  s.dropped = writer.tokens_dropped();

  nlohmann::json prov;
  prov["tool"] = "nexplain tokenize";
  prov["nexplain_version"] = NEXPLAIN_VERSION;
  prov["command_line"] = options.command_line;
  prov["created_utc"] = utc_now();
  prov["sources"] = stream.sources();
  prov["format"] = corpus_format_name(copt.format);
  prov["separator"] = copt.separator ? nlohmann::json(*copt.separator) : nlohmann::json(nullptr);
  prov["text_field"] = copt.text_field;
  prov["seq_len"] = options.seq_len;
  prov["documents"] = s.documents;
  prov["tokens_total"] = s.tokens;
  prov["tokens_dropped"] = s.dropped;
  prov["sequences"] = s.sequences;
  prov["joining"] = "one " + tok.eot_text + " between consecutive documents; the final partial window is dropped";
  prov["tokenizer"] = tok.provenance;
  writer.finish(prov);
  s.provenance = std::move(prov);
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

TokenizeSummary tokenize_corpus(const std::vector<fs::path>& inputs, const TokenizeOptions& options,
                                const Gpt2Tokenizer& tok, const fs::path& out) {
  return tokenize_corpus(inputs, options, corpus_tokenizer(tok), out);
}

}  // namespace nexplain
