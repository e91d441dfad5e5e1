// `nexplain sweep jobs/X.toml`: the whole pipeline for one sweep description, resumable.
#include <cstdio>

#include "cli/cli_util.hpp"
#include "cli/commands.hpp"
#include "tokenizer/tokenizer_dir.hpp"
#include "dist/mpi_session.hpp"
#include "sweep/sweep_run.hpp"

namespace nexplain::cli {

void add_sweep_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("sweep",
                                 "Run a sweep (jobs/*.toml): make or load the model, tokenize, collect, explain/simulate/score,\n"
                                 "then print a summary. Rerunning resumes: finished stages are skipped, explain resumes\n"
                                 "from its journal. Under mpirun the explain stage uses every rank.");
  struct Opts {
    std::string file, out, tokenizer;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("sweep", o->file, "Sweep description (.toml or .json); see docs/SWEEP.md")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "Sweep directory (overrides [sweep] out)");
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer directory (overrides [corpus] tokenizer)");
  cmd->callback([o] {
    MpiSession mpi;
    auto config = SweepConfig::load(o->file);
    if (!o->out.empty()) config.out = o->out;
    SweepRunOptions ro;
    ro.command_line = command_line();
    const std::filesystem::path given = !o->tokenizer.empty() ? std::filesystem::path(o->tokenizer) : config.tokenizer;
    ro.tokenizer_dir = locate_tokenizer_dir(given);
    const auto summary = run_sweep(config, ro, mpi.world());
    if (mpi.rank() == 0) std::printf("%s", summary.c_str());
  });
}

}  // namespace nexplain::cli
