// `nexplain status SWEEP_DIR`: a sweep's progress from its files and, when reachable, Slurm.
#include <cstdio>

#include "cli/commands.hpp"
#include "slurm/sweep_status.hpp"

namespace nexplain::cli {

void add_status_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("status",
                                 "Where a sweep stands: per stage done/total, the latest progress line (rate, ETA), failures\n"
                                 "and cost so far, from the sweep directory's files; with a Slurm controller reachable, the\n"
                                 "state, restarts and run time of every job of the last `nexplain submit`.");
  struct Opts {
    std::string dir, sweep;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("sweep_dir", o->dir, "The sweep directory ([sweep] out)")->required();
  cmd->add_option("--sweep", o->sweep, "Sweep file (default: the copy `nexplain submit` keeps in <dir>/slurm/)");
  cmd->callback([o] { std::printf("%s", sweep_status(o->dir, o->sweep).c_str()); });
}

}  // namespace nexplain::cli
