// `nexplain submit jobs/X.toml [--dry-run]`: the sweep as chained Slurm jobs (docs/SLURM.md).
#include <cstdio>

#include "cli/commands.hpp"
#include "slurm/submit.hpp"

namespace nexplain::cli {

void add_submit_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("submit",
                                 "Submit a sweep (jobs/*.toml) to Slurm: one sbatch job per unfinished stage (tokenize,\n"
                                 "collect, explain), chained with --dependency=afterok, each checkpointed on USR1 and requeued;\n"
                                 "a collect job array over layer ranges when [slurm.collect] array_layers is set. Job ids go to\n"
                                 "<out>/slurm/jobs.jsonl. Resubmitting continues a sweep from its files. --dry-run prints the\n"
                                 "scripts and submits nothing. Bad [slurm] settings are refused naming the key. docs/SLURM.md");
  auto o = std::make_shared<SubmitOptions>();
  cmd->add_option("sweep", o->sweep_file, "Sweep description (.toml or .json)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "Sweep directory (overrides [sweep] out)");
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer directory for the jobs (overrides [corpus] tokenizer)");
  cmd->add_option("--templates", o->templates, "Directory of the sbatch templates (default: ./slurm, or next to the build)");
  cmd->add_flag("--dry-run", o->dry_run, "Validate and print the sbatch scripts; submit nothing");
  cmd->callback([o] {
    const auto r = submit_sweep(*o);
    std::printf("%s", r.text.c_str());
  });
}

}  // namespace nexplain::cli
