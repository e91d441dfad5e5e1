// `nexplain collect`: run the model over a sequences file and reduce every neuron's activations
// to records (top-K, random and quantile excerpts, moments, histogram) in an HDF5 file.
#include <spdlog/spdlog.h>

#include "cli/cli_util.hpp"
#include "cli/commands.hpp"
#include "collect/collector.hpp"
#include "core/progress.hpp"

namespace nexplain::cli {

void add_collect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("collect",
                                 "Run the model over a sequences file and write per-neuron records (records.h5).\n"
                                 "Results are identical for every --batch and --threads value.");
  auto o = std::make_shared<CollectOptions>();
  cmd->add_option("--model", o->model_dir, "HF model directory (config.json + *.safetensors)")->required()->check(CLI::ExistingDirectory);
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
  cmd->add_option("--device", o->device, "cpu | cuda | auto")->capture_default_str();
  cmd->add_option("--precision", o->precision, "fp32 | tf32 | bf16 (cuda only; cpu is fp32)")->capture_default_str();
  cmd->callback([o] {
    o->command_line = command_line();
    const auto s = run_collect(*o);
    std::printf("collected %llu excerpts (%llu tokens) in %.1f s: %s tokens/s on %s; pre-pass %llu excerpts\nwrote %s\n",
                static_cast<unsigned long long>(s.excerpts), static_cast<unsigned long long>(s.tokens), s.seconds,
                Progress::human(s.main_tokens_per_s).c_str(), s.backend.c_str(),
                static_cast<unsigned long long>(s.prepass_excerpts), o->out.string().c_str());
  });
}

}  // namespace nexplain::cli
