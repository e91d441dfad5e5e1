// `nexplain make-model`: write a small random GPT-2 in HF layout with planted neurons that are
// exact token / token-set / position detectors, as ground truth for testing the pipeline
// end to end without a real model.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "model/planted.hpp"

namespace nexplain::cli {

namespace {

struct MakeModelOptions {
  std::string planted;
  std::filesystem::path out;
  Gpt2Config config{.n_embd = 64, .n_layer = 2, .n_head = 4, .n_inner = 256, .n_positions = 128, .vocab_size = 50257};
  std::uint64_t seed = 1;
};

}  // namespace

void add_make_model_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "make-model",
      "Write a random GPT-2 (HF layout: config.json, model.safetensors) with planted detector neurons,\n"
      "plus planted.json listing them (ground truth).\n"
      "SPEC: entries separated by ';', each L<layer>.N<neuron>=<kind>:<args>, kinds:\n"
      "  token:<id>                 fires on that token id            e.g. L0.N5=token:464\n"
      "  tokens:<id>,<id>,...       fires on any of them (a-b ranges ok)  e.g. L1.N17=tokens:11,13\n"
      "  position:<p> or <a>-<b>    fires at those positions, any token   e.g. L0.N3=position:0-3\n"
      "Example: nexplain make-model --planted 'L0.N5=token:464;L1.N17=tokens:11,13' --out planted-gpt2");
  auto o = std::make_shared<MakeModelOptions>();
  cmd->add_option("--planted", o->planted, "Planted neurons (SPEC above; empty = a purely random model)");
  cmd->add_option("--out", o->out, "Output model directory (created if missing)")->required();
  cmd->add_option("--n-layer", o->config.n_layer, "Transformer blocks")->capture_default_str();
  cmd->add_option("--n-embd", o->config.n_embd, "Residual width")->capture_default_str();
  cmd->add_option("--n-head", o->config.n_head, "Attention heads")->capture_default_str();
  cmd->add_option("--n-inner", o->config.n_inner, "MLP width (neurons per layer)")->capture_default_str();
  cmd->add_option("--n-positions", o->config.n_positions, "Longest sequence")->capture_default_str();
  cmd->add_option("--vocab-size", o->config.vocab_size, "Vocabulary size (GPT-2's tokenizer needs 50257)")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the random weights")->capture_default_str();
  cmd->callback([o] {
    o->config.validate("make-model");
    const auto neurons = parse_planted_spec(o->planted, o->config);
    const auto model = build_planted_model(o->config, neurons, o->seed, o->planted);
    write_planted_model(o->out, model);
    std::printf("wrote %s: GPT-2 n_layer=%d n_embd=%d n_inner=%d vocab=%d, %zu planted neuron(s)\n",
                o->out.string().c_str(), o->config.n_layer, o->config.n_embd, o->config.n_inner,
                o->config.vocab_size, neurons.size());
  });
}

}  // namespace nexplain::cli
