#pragma once
// The explain stage over many neurons: explain -> simulate -> score each, journaled as it goes,
// then consolidated into results.jsonl.
//
// Ranks: with one rank the process coordinates and works itself. Under mpirun, rank 0 is the
// coordinator (hands out neurons, owns the journal and the writer) and every other rank is a
// worker running its own LLM client loop with an equal share of the rate budget; a 429 seen by
// one worker pauses all of them. Results do not depend on the rank count or on resume points.
//
// Signals: SIGUSR1/SIGTERM (Slurm --signal, preemption) stop handing out neurons; the run
// finishes those in flight and returns with `checkpointed` set (exit 75 in the CLI).
//
// Crash safety: every finished neuron is an fsync'd journal line (<out>/journal.jsonl), every
// LLM answer is in the response cache (<out>/cache), so a killed run resumes where it stopped
// and re-sends nothing already answered.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <mpi.h>

#include "explain/explain_settings.hpp"

namespace nexplain {

struct ExplainRunOptions {
  std::filesystem::path records;
  std::filesystem::path out_dir;  // journal.jsonl, cache/, results.jsonl, summary.json
  std::filesystem::path tokenizer_dir;
  std::string layers = "all";
  std::uint32_t neurons_per_layer = 0;  // 0 = all; else the first N neurons of each layer
  ExplainSettings settings;
  bool retry_failed = true;  // on resume, neurons journaled as failed are tried again
  // Non-empty: send nothing; answer from the response cache what it holds and write every other
  // request to OpenAI Batch-API shards in this directory (llm/batch_writer.hpp). Neurons waiting
  // on a written request are not journaled. One process only.
  std::filesystem::path write_batch_dir;
  std::string command_line;
};

struct ExplainSummary {
  std::uint64_t neurons = 0, ok = 0, failed = 0, nan_scores = 0, resumed = 0;
  double mean_score = 0.0;  // over ok neurons with a defined score
  std::vector<std::pair<double, std::string>> best;  // (score, "L/N: explanation"), best first
  double cost_usd = 0.0;
  std::uint64_t prompt_tokens = 0, completion_tokens = 0;
  double seconds = 0.0;
  std::vector<std::uint64_t> score_histogram;  // 10 bins over [-1, 1]
  // --write-batch: neurons left waiting on batch answers (not journaled, no results.jsonl yet),
  // requests written and shards; "" when no batch was written.
  std::uint64_t batch_pending = 0, batch_requests = 0, batch_shards = 0;
  std::string batch_manifest;
  // SIGUSR1/SIGTERM arrived: no new neurons were started, those in flight were journaled, and
  // results.jsonl was not written; the caller exits 75 ("requeue me") and a rerun resumes.
  bool checkpointed = false;
};

// Where the response cache lives: settings.cache_dir, else <out>/cache.
std::filesystem::path response_cache_dir(const ExplainRunOptions& opts);

// Collective over `comm`. Every rank returns; the summary is complete on rank 0.
ExplainSummary run_explain(const ExplainRunOptions& opts, MPI_Comm comm);

// Prints the summary (neurons, score distribution, best explanations, tokens and cost, time).
std::string format_summary(const ExplainSummary& s);

}  // namespace nexplain
