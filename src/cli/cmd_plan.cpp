// `nexplain plan`: how a collect sweep of a model would be laid out on N GPUs (pipeline split,
// per-rank memory, tokens/s, records size, sweep time), from its config.json alone -- no
// weights needed, so it answers "how many GPUs for Llama-3.1-70B?" before downloading 140 GB.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "plan/plan.hpp"

namespace nexplain::cli {

namespace {

struct PlanOptions {
  std::filesystem::path model;
  PlanInputs in;
  std::string precision = "bf16";
  double tflops = 0;         // override of the measured forward rate
  double reduce_ps = 0;      // override of the measured reduction cost
  double link_gbs = 0;
  bool json = false;
};

}  // namespace

void add_plan_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plan",
      "Plan a collect sweep on N GPUs from a model's config.json: the pipeline split (contiguous\n"
      "layer ranges balanced by cost, times data-parallel replicas), per-rank memory (weights in the\n"
      "compute precision, activations per micro-batch, reduction state of its layers), expected\n"
      "tokens/s from measured kernel rates (bench/NOTES.md), records-file size and sweep time.\n"
      "The arithmetic is printed; docs/PLAN.md explains every term.\n"
      "Example: nexplain plan --model jobs/models/llama-3.1-70b --gpus 8 --gpu-mem 80");
  auto o = std::make_shared<PlanOptions>();
  cmd->add_option("--model", o->model, "Model directory with config.json, or the config.json file")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--gpus", o->in.gpus, "GPUs available")->required();
  cmd->add_option("--gpu-mem", o->in.gpu_mem_gib, "Memory per GPU, GiB")->capture_default_str();
  cmd->add_option("--reserve", o->in.reserve_gib, "GiB per GPU kept free (CUDA context, workspaces)")->capture_default_str();
  cmd->add_option("--excerpts", o->in.excerpts, "Excerpts in the sweep")->capture_default_str();
  cmd->add_option("--seq-len", o->in.seq_len, "Tokens per excerpt (T)")->capture_default_str();
  cmd->add_option("--micro-batch", o->in.micro_batch, "Excerpts per micro-batch")->capture_default_str();
  cmd->add_option("--precision", o->precision, "bf16 | fp16 | tf32 | fp32 (weights kept in bf16/fp16, else fp32)")
      ->capture_default_str();
  cmd->add_option("--top-k", o->in.capture.K, "Top excerpts kept per neuron")->capture_default_str();
  cmd->add_option("--random", o->in.capture.R, "Random excerpts kept per neuron")->capture_default_str();
  cmd->add_option("--quantile-samples", o->in.capture.Q, "Excerpts kept per quantile bin per neuron")
      ->capture_default_str();
  cmd->add_option("--quantiles", o->in.capture.quantile_fractions, "Quantile bin boundaries (fractions)")
      ->capture_default_str()
      ->delimiter(',');
  cmd->add_option("--tflops", o->tflops, "Effective forward TFLOP/s (default: measured, see the report)");
  cmd->add_option("--reduce-ps", o->reduce_ps, "Reduction cost, picoseconds per neuron-token (default: measured)");
  cmd->add_option("--link-gbs", o->link_gbs, "Stage-to-stage bandwidth, GB/s (default: 100)");
  cmd->add_flag("--json", o->json, "Print the plan as JSON instead of the report");
  cmd->callback([o] {
    auto& in = o->in;
    in.arch = ArchConfig::load(o->model);
    in.model_name = std::filesystem::is_directory(o->model) ? o->model.filename().string() : o->model.parent_path().filename().string();
    if (in.model_name.empty()) in.model_name = o->model.string();
    in.rates = measured_rates(o->precision);
    if (o->tflops > 0) {
      in.rates.forward_flops = o->tflops * 1e12;
      in.rates.source += fmt::format("; forward rate overridden: {} TFLOP/s", o->tflops);
    }
    if (o->reduce_ps > 0) {
      in.rates.reduce_seconds = o->reduce_ps * 1e-12;
      in.rates.source += fmt::format("; reduction overridden: {} ps per neuron-token", o->reduce_ps);
    }
    if (o->link_gbs > 0) in.rates.link_bytes_per_s = o->link_gbs * 1e9;
    const Plan p = make_plan(in);
    if (!o->json) {
      std::fputs(format_plan(in, p).c_str(), stdout);
      return;
    }
    nlohmann::json stages = nlohmann::json::array();
    for (const auto& s : p.stage)
      stages.push_back({{"first_layer", s.first_layer}, {"last_layer", s.last_layer}, {"embeddings", s.embeddings},
                        {"weight_bytes", s.weight_bytes}, {"state_bytes", s.state_bytes},
                        {"activation_bytes", s.activation_bytes}, {"total_bytes", s.total_bytes()},
                        {"seconds_per_micro_batch", s.seconds_per_micro_batch}});
    const nlohmann::json j = {{"model", in.model_name},           {"arch", in.arch.to_json()},
                              {"gpus", in.gpus},                  {"gpu_mem_gib", in.gpu_mem_gib},
                              {"precision", in.rates.precision},  {"stages", p.stages},
                              {"replicas", p.replicas},           {"idle_gpus", p.idle_gpus},
                              {"fits", p.fits},                   {"stage", stages},
                              {"tokens_per_s", p.tokens_per_s},   {"forward_tokens_per_s", p.forward_tokens_per_s},
                              {"records_bytes", p.records_bytes}, {"prepass_seconds", p.prepass_seconds},
                              {"main_seconds", p.main_seconds},   {"sweep_seconds", p.sweep_seconds()},
                              {"rates_source", in.rates.source}};
    std::printf("%s\n", j.dump(2).c_str());
  });
}

}  // namespace nexplain::cli
