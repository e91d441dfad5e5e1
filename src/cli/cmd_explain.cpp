// `nexplain explain`: explain, simulate and score neurons from a records file, journaled and
// resumable; under mpirun rank 0 coordinates and the other ranks are the request pool.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include <spdlog/spdlog.h>

#include "cli/cli_util.hpp"
#include "cli/commands.hpp"
#include "tokenizer/tokenizer_dir.hpp"
#include "core/config_file.hpp"
#include "core/error.hpp"
#include "dist/mpi_session.hpp"
#include "explain/explain_run.hpp"
#include "llm/batch_reader.hpp"
#include "llm/response_cache.hpp"

namespace nexplain::cli {

namespace {

// --read-batch: rank 0 stores the answers in the response cache before any rank starts work;
// the others wait for it, and every rank fails if it failed.
void read_batches(const ExplainRunOptions& run, const std::vector<std::string>& files, int rank, MPI_Comm comm) {
  if (run.settings.mode != "llm") fail("--read-batch needs LLM endpoints (a --config with [explainer] and [simulator])");
  std::exception_ptr error;
  if (rank == 0) {
    try {
      ResponseCache cache(response_cache_dir(run));
      for (const auto& f : files) std::printf("read-batch: %s\n", ingest_batch_output(f, cache).summary().c_str());
      std::fflush(stdout);
    } catch (...) {
      error = std::current_exception();
    }
  }
  int ok = error ? 0 : 1;
  MPI_Bcast(&ok, 1, MPI_INT, 0, comm);
  if (error) std::rethrow_exception(error);
  if (!ok) fail("--read-batch failed on rank 0");
}

}  // namespace

void add_explain_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "explain",
      "Explain, simulate and score neurons (offline baseline, or any OpenAI-compatible API).\n"
      "Writes <out>/journal.jsonl as it goes, <out>/results.jsonl and <out>/summary.json at the end;\n"
      "a rerun resumes from the journal and the response cache. Run under mpirun for a request pool.");
  struct Opts {
    ExplainRunOptions run;
    std::string config, tokenizer, simulator;
    bool offline = false, no_retry = false;
    int inflight = 0;
    std::vector<std::string> read_batch;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--records", o->run.records, "Records file from `nexplain collect`")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", o->run.out_dir, "Output directory (journal, cache, results)")->required();
  cmd->add_option("--layers", o->run.layers, "Layers to explain: all, 5, 0-11")->capture_default_str();
  cmd->add_option("--neurons-per-layer", o->run.neurons_per_layer, "Only the first N neurons of each layer (0 = all)")->capture_default_str();
  cmd->add_option("--config", o->config,
                  "Explain settings (.toml or .json): mode, simulator_kind, [explainer] and [simulator] endpoints\n"
                  "(base_url, model, api_key_env or api_key_file, requests_per_minute, tokens_per_minute, prices, ...);\n"
                  "see docs/LLM.md. Without it the offline baseline runs.");
  cmd->add_flag("--offline", o->offline, "Use the built-in offline explainer and simulator, whatever --config says");
  cmd->add_option("--simulator", o->simulator, "all_at_once | chat_logprobs | no_logprobs (overrides the config)");
  cmd->add_option("--inflight", o->inflight, "Neurons in flight per worker (overrides the config)");
  cmd->add_flag("--no-retry-failed", o->no_retry, "On resume, keep neurons journaled as failed instead of retrying them");
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer directory (token texts shown to the explainer): tokenizer.json, else GPT-2's files; a "
                  "model directory that ships one works");
  cmd->add_option("--write-batch", o->run.write_batch_dir,
                  "Send nothing: answer from the response cache what it holds and write every other request\n"
                  "to OpenAI Batch-API JSONL shards in DIR (a new directory each round); see docs/LLM.md")
      ->type_name("DIR");
  cmd->add_option("--read-batch", o->read_batch,
                  "Finished Batch-API output files: stored in the response cache (by custom_id) before the run")
      ->check(CLI::ExistingFile);
  cmd->callback([o] {
    MpiSession mpi;
    auto run = o->run;
    run.command_line = command_line();
    run.retry_failed = !o->no_retry;
    if (!o->config.empty()) run.settings = ExplainSettings::from_json(load_config_file(o->config), o->config);
    if (o->offline) run.settings.mode = "offline";
    if (!o->simulator.empty()) run.settings.simulator_kind = o->simulator;
    if (o->inflight > 0) run.settings.inflight_neurons = o->inflight;
    run.tokenizer_dir = locate_tokenizer_dir(o->tokenizer);
    if (!o->read_batch.empty()) read_batches(run, o->read_batch, mpi.rank(), mpi.world());
    const auto summary = run_explain(run, mpi.world());
    if (mpi.rank() != 0) return;
    if (summary.checkpointed) {
      // SIGUSR1/SIGTERM: everything finished is in the journal; "requeue me", a rerun resumes.
      std::printf("explain: stopped by a signal; finished neurons are journaled in %s, rerun to resume\n",
                  (run.out_dir / "journal.jsonl").string().c_str());
      std::fflush(stdout);
      MPI_Finalize();  // before exit; the session's destructor sees MPI finalized
      std::exit(kExitCheckpointed);
    }
    if (summary.batch_pending > 0) {
      std::printf("write-batch: %llu requests written in %llu shards; manifest %s\n",
                  static_cast<unsigned long long>(summary.batch_requests), static_cast<unsigned long long>(summary.batch_shards),
                  summary.batch_manifest.c_str());
      std::printf("%llu neurons wait on these answers (not journaled); %llu neurons are done\n",
                  static_cast<unsigned long long>(summary.batch_pending), static_cast<unsigned long long>(summary.neurons));
      std::printf("next: submit each shard to the url its manifest entry names (OpenAI Batch API, or vllm run-batch),\n"
                  "then rerun this command with --read-batch <output files> and --write-batch <a new directory>;\n"
                  "the round that writes nothing finishes every neuron and writes results.jsonl\n");
      return;
    }
    std::printf("%s", format_summary(summary).c_str());
    if (!summary.batch_manifest.empty()) std::printf("write-batch: nothing left to ask; every neuron is done\n");
    std::printf("wrote %s\n", (run.out_dir / "results.jsonl").string().c_str());
  });
}

}  // namespace nexplain::cli
