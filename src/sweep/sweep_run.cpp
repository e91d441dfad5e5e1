#include "sweep/sweep_run.hpp"

#include <glob.h>

#include <chrono>
#include <functional>
#include <fstream>
#include <map>

#include <spdlog/spdlog.h>

#include "collect/layer_range.hpp"
#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "dist/collect_mpi.hpp"
#include "dist/sleeping_bcast.hpp"
#include "dist/stop_signal.hpp"
#include "explain/explain_run.hpp"
#include "io/corpus_reader.hpp"
#include "io/corpus_tokenize.hpp"
#include "model/planted_family.hpp"
#include "sweep/merge_records.hpp"
#include "sweep/sweep_layers.hpp"
#include "tokenizer/corpus_tokenizer.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::vector<fs::path> expand_inputs(const std::vector<std::string>& patterns) {
  std::vector<fs::path> out;
  for (const auto& p : patterns) {
    glob_t g{};
    const int rc = glob(p.c_str(), GLOB_NOCHECK, nullptr, &g);
    if (rc == 0)
      for (std::size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    globfree(&g);
  }
  for (const auto& f : out)
    if (!fs::is_regular_file(f)) fail("[corpus] inputs: '{}' is not a file (nor a pattern matching files)", f.string());
  return out;
}

// Builds the planted model into <out>/model via a temporary directory, so a half-written model
// never looks complete.
void build_model(const SweepConfig& c) {
  const fs::path dir = c.model_path();
  fs::path tmp = dir;
  tmp += ".partial";
  fs::remove_all(tmp);
  write_planted_family_model(tmp, c.planted, c.planted_model);
  fs::rename(tmp, dir);
}

// For a planted model: each planted neuron's ground truth next to its explanation and score,
// the check that the pipeline recovers what was built in.
std::string planted_report(const SweepConfig& c) {
  const auto truth_path = c.model_path() / "planted.json";
  const auto results_path = c.explain_dir() / "results.jsonl";
  if (!fs::exists(truth_path) || !fs::exists(results_path)) return {};
  std::ifstream tf(truth_path);
  const auto truth = nlohmann::json::parse(tf, nullptr, false);
  if (truth.is_discarded() || !truth.contains("neurons")) return {};
  std::map<std::string, nlohmann::json> results;
  std::ifstream rf(results_path);
  for (std::string line; std::getline(rf, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) results[fmt::format("{}/{}", j["layer"].get<int>(), j["neuron"].get<int>())] = j;
  }
  std::string out = "planted neurons (ground truth -> explanation, score):\n";
  for (const auto& n : truth["neurons"]) {
    const auto key = fmt::format("{}/{}", n["layer"].get<int>(), n["neuron"].get<int>());
    std::string what = n["kind"].get<std::string>();
    if (n.contains("tokens")) what += " " + n["tokens"].dump();
    if (n.contains("positions")) what += " " + n["positions"].dump();
    auto it = results.find(key);
    if (it == results.end()) continue;
    const auto& sc = it->second["scores"]["all"];
    out += fmt::format("  {:<6} {:<22} -> {}  ({})\n", key, what, it->second["explanation"].get<std::string>(),
                       sc.is_number() ? fmt::format("{:.3f}", sc.get<double>()) : std::string("undefined"));
  }
  return out;
}

}  // namespace

SweepStage parse_sweep_stage(const std::string& text) {
  if (text == "all") return SweepStage::all;
  if (text == "tokenize") return SweepStage::tokenize;
  if (text == "collect") return SweepStage::collect;
  if (text == "explain") return SweepStage::explain;
  fail("--stage '{}': expected all, tokenize, collect or explain", text);
}

namespace {

// Runs `f` on rank 0 and tells every rank whether it failed, so that no rank waits in a
// collective for one that threw. Rank 0 rethrows; the others return false. The others sleep
// meanwhile (tokenizing a large corpus takes a while).
bool on_rank0(MPI_Comm comm, const std::function<void()>& f) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::string error;
  if (rank == 0) {
    try {
      f();
    } catch (const std::exception& e) {  // not only Error: a filesystem_error must not strand the others
      error = e.what();
    }
  }
  int failed = error.empty() ? 0 : 1;
  sleeping_bcast(failed, 0, comm);
  if (failed && rank == 0) throw Error(error);
  return !failed;
}

// The MPI collect's outcome as world rank 0 announces it to every rank of a stage-all sweep.
enum CollectEnd : int { kCollectFinished = 0, kCollectCheckpointed = 1 };

// The checkpointed collect over every rank of `comm` (the collect role's communicator): a
// checkpoint next to the output (periodic and on SIGUSR1/SIGTERM), resumed from automatically
// when present. Skipped when the output exists. Returns whether it stopped at a checkpoint;
// `line` gets the summary line (comm rank 0) or the checkpoint message.
bool collect_stage(const SweepConfig& c, const SweepRunOptions& o, MPI_Comm comm, std::string& line) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const auto t = std::chrono::steady_clock::now();
  CollectOptions co = c.collect;
  co.model_dir = c.model_path();
  co.sequences = c.sequences_path();
  co.out = o.collect_layers.empty() ? c.records_path() : part_records_path(c, o.collect_layers);
  if (!o.collect_layers.empty()) co.layers = o.collect_layers;
  co.command_line = o.command_line;
  auto done_line = [&](const std::string& what) {
    line = fmt::format("  {:<9} {:<48} {:>7.1f} s\n", "collect", what, since(t));
  };
  if (fs::exists(co.out)) {
    line = fmt::format("  {:<9} {:<48} {:>7.1f} s\n", "collect", co.out.filename().string() + " (exists)", 0.0);
    return false;
  }
  if (rank == 0) fs::create_directories(co.out.parent_path());
  MPI_Barrier(comm);
  DistCollectOptions d;
  d.checkpoint = c.checkpoint_for(co.out);
  d.checkpoint_every = c.checkpoint_every;
  if (rank == 0) spdlog::info("sweep {}: collecting layers {} into {} on {} rank(s)", c.name, co.layers, co.out.string(), size);
  const auto s = run_collect_mpi(co, d, comm);
  if (s.checkpointed) {
    line = fmt::format("collect checkpointed to {}: rerun (requeue) to resume\n", d.checkpoint.string());
    return true;
  }
  done_line(fmt::format("{} excerpts{}, {:.0f} tokens/s on {} ({} rank{})", s.collect.excerpts,
                        s.resumed_from ? fmt::format(" (resumed at {})", s.resumed_from) : std::string(),
                        s.collect.main_tokens_per_s, s.collect.backend, size, size == 1 ? "" : "s"));
  return false;
}

}  // namespace

SweepOutcome run_sweep(const SweepConfig& c, const SweepRunOptions& o, const MpiSession& mpi) {
  const MPI_Comm world = mpi.world();
  const int rank = mpi.rank(), size = mpi.size();
  const auto t0 = std::chrono::steady_clock::now();
  const bool all = o.stage == SweepStage::all;
  SweepOutcome outcome;
  std::string report;
  auto stage_line = [&](const char* stage, const std::string& what, double secs) {
    report += fmt::format("  {:<9} {:<48} {:>7.1f} s\n", stage, what, secs);
  };
  if (!o.collect_layers.empty() && o.stage != SweepStage::collect)
    fail("--layers selects a collect part: it needs --stage collect");
  // Every rank checks, so every rank stops here alike, before any collective.
  if (all && size > 1 && c.explain_ranks >= size)  // one process collects plainly: K does not apply
    fail("[mpi] explain_ranks = {} (--explain-ranks) leaves no rank for the collect: the job has {} rank(s); "
         "run more ranks (mpirun -np {} or more) or reserve fewer",
         c.explain_ranks, size, c.explain_ranks + 1);
  // A stop signal reaches every rank (mpirun forwards it; Slurm signals every task), also ranks
  // that wait in the meantime (for the tokenizer, for the records): on them it must set the flag
  // the collect and explain poll, not end the process. One process keeps the default action
  // until a stage installs its handlers (its plain collect has no checkpoint to write), and so
  // does the tokenize stage, which polls nothing.
  if (size > 1 && o.stage != SweepStage::tokenize) install_stop_handlers();

  // Model and tokenize: world rank 0; the others wait for them.
  if (all || o.stage == SweepStage::tokenize) {
    const bool ok = on_rank0(world, [&] {
      fs::create_directories(c.out);
      auto t = std::chrono::steady_clock::now();
      if (!c.planted.empty() && !fs::exists(c.model_path() / "config.json")) {
        spdlog::info("sweep {}: building the planted model", c.name);
        build_model(c);
        stage_line("model", "planted: " + c.planted.substr(0, 40), since(t));
      } else {
        stage_line("model", c.model_path().string() + " (exists)", 0);
      }
      t = std::chrono::steady_clock::now();
      if (!fs::exists(c.sequences_path())) {
        spdlog::info("sweep {}: tokenizing", c.name);
        TokenizeOptions to;
        to.corpus.format = parse_corpus_format(c.format);
        to.corpus.text_field = c.text_field;
        if (!c.separator.empty()) to.corpus.separator = c.separator;
        to.seq_len = c.seq_len;
        to.command_line = o.command_line;
        const auto tok = load_corpus_tokenizer(o.tokenizer_dir);
        const auto s = tokenize_corpus(expand_inputs(c.inputs), to, tok, c.sequences_path());
        stage_line("tokenize", fmt::format("{} documents, {} tokens, {} excerpts", s.documents, s.tokens, s.sequences), since(t));
      } else {
        stage_line("tokenize", "sequences.h5 (exists)", 0);
      }
    });
    if (!ok) return outcome;
  }

  if (all && size == 1) {
    // One process: the plain collect of every layer (any backend, CUDA included).
    const auto t = std::chrono::steady_clock::now();
    if (!fs::exists(c.records_path())) {
      spdlog::info("sweep {}: collecting", c.name);
      CollectOptions co = c.collect;
      co.model_dir = c.model_path();
      co.sequences = c.sequences_path();
      co.out = c.records_path();
      co.command_line = o.command_line;
      const auto s = run_collect(co);
      stage_line("collect", fmt::format("{} excerpts, {:.0f} tokens/s on {}", s.excerpts, s.main_tokens_per_s, s.backend),
                 since(t));
    } else {
      stage_line("collect", "records.h5 (exists)", 0);
    }
  }

  if (all && size > 1) {
    // Under mpirun: the MPI collect on the collect role, the first N - explain_ranks world
    // ranks (world rank 0 among them, so it keeps the report). The reserved ranks take no
    // part in it: they sleep until world rank 0 says how the collect ended. An error on a
    // collect rank aborts the whole job (the CLI), the waiting ranks included.
    const bool collects = rank < size - c.explain_ranks;
    if (c.explain_ranks > 0 && rank == 0)
      spdlog::info("sweep {}: {}", c.name,
                   c.explain_ranks == 1
                       ? fmt::format("world rank {} waits for the records, then joins the explain pool", size - 1)
                       : fmt::format("world ranks {}-{} wait for the records, then join the explain pool",
                                     size - c.explain_ranks, size - 1));
    int end = kCollectFinished;
    {
      const MpiComm role = mpi.split_roles(collects ? RankRole::collect : RankRole::idle);
      if (collects) {
        std::string line;
        end = collect_stage(c, o, role.get(), line) ? kCollectCheckpointed : kCollectFinished;
        if (end == kCollectFinished) report += line;
        else if (rank == 0) outcome.summary = line;
      }
    }
    sleeping_bcast(end, 0, world);
    if (end == kCollectCheckpointed) {
      // Every rank exits 75: the job is requeued or rerun, and the collect resumes.
      outcome.checkpointed = true;
      return outcome;
    }
  }

  if (o.stage == SweepStage::collect) {
    // A Slurm collect job: every rank of the job in the collect role.
    const MpiComm role = mpi.split_roles(RankRole::collect);
    std::string line;
    if (collect_stage(c, o, role.get(), line)) {
      outcome.checkpointed = true;
      if (rank == 0) outcome.summary = line;
      return outcome;
    }
    report += line;
  }

  if (o.stage == SweepStage::explain) {
    // Parts of a job array over layer ranges become the records file one collect would write.
    const bool ok = on_rank0(world, [&] {
      if (fs::exists(c.records_path())) return;
      const auto parts = existing_parts(c);
      if (parts.empty()) fail("{}: missing; run the collect stage first", c.records_path().string());
      const auto t = std::chrono::steady_clock::now();
      merge_records(parts, c.records_path(), o.command_line, parse_layer_range(c.collect.layers, sweep_n_layer(c)));
      stage_line("merge", fmt::format("{} layer parts -> records.h5", parts.size()), since(t));
    });
    if (!ok) return outcome;
  }

  if (o.stage != SweepStage::all && o.stage != SweepStage::explain) {
    if (rank == 0) outcome.summary = fmt::format("sweep {} in {}\n", c.name, c.out.string()) + report;
    return outcome;
  }

  // The explain pool: every rank of the job, world rank 0 the coordinator.
  auto t = std::chrono::steady_clock::now();
  ExplainRunOptions eo;
  eo.records = c.records_path();
  eo.out_dir = c.explain_dir();
  eo.tokenizer_dir = o.tokenizer_dir;
  eo.layers = c.explain_layers;
  eo.neurons_per_layer = c.neurons_per_layer;
  eo.settings = c.explain;
  eo.command_line = o.command_line;
  ExplainSummary s;
  {
    const MpiComm pool = mpi.split_roles(RankRole::explain);
    s = run_explain(eo, pool.get());
  }
  if (rank != 0) return outcome;
  if (s.checkpointed) {
    outcome.checkpointed = true;
    outcome.summary = fmt::format("explain stopped by a signal: finished neurons are in {}; rerun (requeue) to resume\n",
                                  (c.explain_dir() / "journal.jsonl").string());
    return outcome;
  }
  stage_line("explain", fmt::format("{} neurons ({} resumed), explainer {}", s.neurons, s.resumed, c.explain.explainer_name()),
             since(t));
  std::string out = fmt::format("sweep {} in {}\n", c.name, c.out.string());
  out += report;
  out += format_summary(s);
  out += planted_report(c);
  out += fmt::format("total wall time {:.1f} s; results: {}\n", since(t0), (c.explain_dir() / "results.jsonl").string());
  write_file_atomic(c.out / "sweep-summary.txt", out);
  outcome.summary = out;
  return outcome;
}

}  // namespace nexplain
