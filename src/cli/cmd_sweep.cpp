// `nexplain sweep jobs/X.toml`: the whole pipeline for one sweep description, resumable; with
// --stage, one stage of it (what each Slurm job of `nexplain submit` runs).
#include <cstdio>
#include <cstdlib>

#include "cli/cli_util.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "dist/mpi_session.hpp"
#include "sweep/sweep_run.hpp"
#include "tokenizer/tokenizer_dir.hpp"

namespace nexplain::cli {

void add_sweep_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("sweep",
                                 "Run a sweep (jobs/*.toml): make or load the model, tokenize, collect, explain/simulate/score,\n"
                                 "then print a summary. Rerunning resumes: finished stages are skipped, explain resumes\n"
                                 "from its journal. Under mpirun (mpirun -np N nexplain sweep FILE) every rank runs the\n"
                                 "checkpointed MPI collect, then joins the explain pool (rank 0 coordinates); --explain-ranks K\n"
                                 "keeps the last K ranks out of the collect (they wait for the records, then explain).\n"
                                 "--stage runs one stage (the Slurm jobs of `nexplain submit`): collect is then the checkpointed\n"
                                 "MPI collect on every rank. Exit codes: 0 done, 1 error, 2 usage, 75 checkpointed after\n"
                                 "SIGUSR1/SIGTERM (collect or explain; rerun or requeue to resume).");
  struct Opts {
    std::string file, out, tokenizer, stage = "all", layers;
    int explain_ranks = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("sweep", o->file, "Sweep description (.toml or .json); see docs/SWEEP.md")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "Sweep directory (overrides [sweep] out)");
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer directory (overrides [corpus] tokenizer)");
  cmd->add_option("--stage", o->stage, "all | tokenize | collect | explain")->capture_default_str();
  cmd->add_option("--layers", o->layers,
                  "With --stage collect: only these layers, into <out>/parts/records.L<range>.h5 (a job array task);\n"
                  "the explain stage merges the parts into records.h5");
  auto* explain_ranks =
      cmd->add_option("--explain-ranks", o->explain_ranks,
                      "Stage all under mpirun: the last K ranks skip the collect and only join the explain pool\n"
                      "(overrides [mpi] explain_ranks; default 0: every rank collects, then explains)")
          ->check(CLI::NonNegativeNumber);
  cmd->callback([o, explain_ranks] {
    bool checkpointed = false;
    {
      MpiSession mpi;
      auto config = SweepConfig::load(o->file);
      if (!o->out.empty()) config.out = o->out;
      SweepRunOptions ro;
      ro.command_line = command_line();
      ro.stage = parse_sweep_stage(o->stage);
      if (explain_ranks->count() > 0) {
        if (ro.stage != SweepStage::all)
          throw CLI::ValidationError("--explain-ranks", "splits the ranks of a whole sweep: it needs --stage all");
        config.explain_ranks = o->explain_ranks;
      }
      ro.collect_layers = o->layers;
      const std::filesystem::path given = !o->tokenizer.empty() ? std::filesystem::path(o->tokenizer) : config.tokenizer;
      // Only the stages that read text need the tokenizer.
      if (ro.stage != SweepStage::collect) ro.tokenizer_dir = locate_tokenizer_dir(given);
      SweepOutcome outcome;
      // Another rank may wait in a collective (the collect stage): an error ends them all.
      mpi.run_or_abort_all([&] { outcome = run_sweep(config, ro, mpi); }, kExitError);
      if (mpi.rank() == 0) std::printf("%s", outcome.summary.c_str());
      checkpointed = outcome.checkpointed;
    }
    if (checkpointed) {
      std::fflush(stdout);
      std::exit(kExitCheckpointed);  // after MPI_Finalize: "requeue me"
    }
  });
}

}  // namespace nexplain::cli
