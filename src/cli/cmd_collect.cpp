// `nexplain collect`: run the model over a sequences file and reduce every neuron's activations
// to records (top-K, random and quantile excerpts, moments, histogram) in an HDF5 file.
#include <cstdio>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "cli/cli_util.hpp"
#include "cli/commands.hpp"
#include "collect/collector.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "dist/collect_mpi.hpp"
#include "dist/mpi_session.hpp"

namespace nexplain::cli {

namespace {
// Started by mpirun/srun (Open MPI, MPICH/Hydra, PMIx): then collect runs the MPI driver, even
// on one rank; a plain `nexplain collect` keeps the single-process path without MPI_Init.
bool under_mpi_launcher() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}
}  // namespace

void add_collect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("collect",
                                 "Run the model over a sequences file and write per-neuron records (records.h5).\n"
                                 "Results are identical for every --batch and --threads value, and for every MPI rank count and\n"
                                 "grid (mpirun -np N nexplain collect [--pipeline-stages P] ...; docs/MPI.md).\n"
                                 "Exit codes: 0 done, 1 error, 2 usage, 75 checkpointed after SIGUSR1/SIGTERM\n"
                                 "(rerun with the same --checkpoint to resume; Slurm: requeue).");
  auto o = std::make_shared<CollectOptions>();
  cmd->add_option("--model", o->model_dir, "HF model directory (config.json + *.safetensors): gpt2, llama, gpt_neox or qwen2")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--corpus", o->sequences, "Sequences file written by `nexplain tokenize`")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "Records file to write (HDF5; written atomically)")->required();
  cmd->add_option("--layers", o->layers, "Layers to capture: all, 5, 0-11, 0-3,8")->capture_default_str();
  cmd->add_option("--top-k", o->params.K, "Top excerpts kept per neuron (by max activation)")->capture_default_str();
  cmd->add_option("--random", o->params.R, "Random excerpts kept per neuron")->capture_default_str();
  cmd->add_option("--quantile-samples", o->params.Q, "Excerpts kept per quantile bin per neuron")->capture_default_str();
  cmd->add_option("--quantiles", o->params.quantile_fractions, "Quantile bin boundaries (fractions)")->capture_default_str()->delimiter(',');
  cmd->add_option("--seed", o->params.seed, "Seed of the random and quantile samples")->capture_default_str();
  cmd->add_option("--seq-len", o->seq_len, "Expected excerpt length (default: the sequences file's)");
  cmd->add_option("--batch", o->batch, "Excerpts per forward batch")->capture_default_str();
  cmd->add_option("--threads", o->threads, "Threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--max-excerpts", o->max_excerpts, "Use only the first N excerpts (0 = all)")->capture_default_str();
  cmd->add_option("--prepass-rate", o->prepass_rate,
                  "Fraction of excerpts in the histogram pre-pass that sets quantile boundaries (default: auto, ~100k excerpts)");
  cmd->add_option("--device", o->device, "cpu | cuda | auto (auto: cuda when a device is present, else cpu)")->capture_default_str();
  cmd->add_option("--precision", o->precision, "fp32 | tf32 | bf16 (cuda only; cpu is fp32)")->capture_default_str();
  auto d = std::make_shared<DistCollectOptions>();
  cmd->add_option("--pipeline-stages", d->pipeline_stages,
                  "MPI: pipeline stages P: the layers split into P contiguous ranges balanced by cost, hidden states "
                  "passed stage to stage; the rank count / P is the number of data-parallel groups")
      ->capture_default_str();
  cmd->add_option("--checkpoint", d->checkpoint,
                  "Checkpoint file (HDF5): written at --checkpoint-every and on SIGUSR1/SIGTERM (then exit 75); "
                  "resumed from automatically when it exists, with any rank count and number of stages");
  cmd->add_option("--checkpoint-every", d->checkpoint_every, "Excerpts between periodic checkpoints (0 = only on a signal)")
      ->capture_default_str();
  cmd->callback([o, d] {
    o->command_line = command_line();
    CollectSummary s;
    if (under_mpi_launcher() || !d->checkpoint.empty() || d->pipeline_stages != 1) {
      DistCollectSummary ds;
      bool checkpointed = false;
      int rank = 0;
      {
        MpiSession mpi;
        rank = mpi.rank();
        // The other ranks may wait in a collective: an error on one ends them all.
        mpi.run_or_abort_all(
            [&] {
              // Every rank has the collect role here; the communicator keeps collect's messages
              // apart from whatever else the job runs on other roles (an explain pool).
              const MpiComm ranks = mpi.split_roles(RankRole::collect);
              ds = run_collect_mpi(*o, *d, ranks.get());
            },
            kExitError);
        checkpointed = ds.checkpointed;
      }
      if (checkpointed) {
        std::fflush(stdout);
        std::exit(kExitCheckpointed);  // after MPI_Finalize: "requeue me"
      }
      if (rank != 0) return;
      if (ds.resumed_from > 0) std::printf("resumed from a checkpoint at excerpt %llu\n", static_cast<unsigned long long>(ds.resumed_from));
      s = ds.collect;
    } else {
      s = run_collect(*o);
    }
    std::printf("collected %llu excerpts (%llu tokens) in %.1f s: %s tokens/s on %s; pre-pass %llu excerpts\nwrote %s\n",
                static_cast<unsigned long long>(s.excerpts), static_cast<unsigned long long>(s.tokens), s.seconds,
                Progress::human(s.main_tokens_per_s).c_str(), s.backend.c_str(),
                static_cast<unsigned long long>(s.prepass_excerpts), o->out.string().c_str());
  });
}

}  // namespace nexplain::cli
