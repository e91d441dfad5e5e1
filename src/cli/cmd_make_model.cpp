// `nexplain make-model`: write a small random model (GPT-2, Llama, Qwen2 or GPT-NeoX) in HF layout with
// planted neurons that are exact token / token-set (/ position, GPT-2) detectors, as ground
// truth for testing the pipeline end to end without a real model.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "model/planted_family.hpp"

namespace nexplain::cli {

namespace {

struct MakeModelOptions {
  std::string planted;
  std::filesystem::path out;
  PlantedModelOptions model;
};

}  // namespace

void add_make_model_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "make-model",
      "Write a random model (HF layout: config.json, safetensors) with planted detector neurons,\n"
      "plus planted.json listing them (ground truth). --family gpt2 (default), llama, qwen2 or gpt_neox.\n"
      "SPEC: entries separated by ';', each L<layer>.N<neuron>=<kind>:<args>, kinds:\n"
      "  token:<id>                 fires on that token id            e.g. L0.N5=token:464\n"
      "  tokens:<id>,<id>,...       fires on any of them (a-b ranges ok)  e.g. L1.N17=tokens:11,13\n"
      "  position:<p> or <a>-<b>    fires at those positions, any token (gpt2 only: RoPE models have\n"
      "                             no position table)                e.g. L0.N3=position:0-3\n"
      "Example: nexplain make-model --planted 'L0.N5=token:464;L1.N17=tokens:11,13' --out planted-gpt2\n"
      "         nexplain make-model --family llama --n-kv-head 2 --planted 'L1.N7=token:464' --out planted-llama");
  auto o = std::make_shared<MakeModelOptions>();
  auto& m = o->model;
  cmd->add_option("--planted", o->planted, "Planted neurons (SPEC above; empty = a purely random model)");
  cmd->add_option("--out", o->out, "Output model directory (created if missing)")->required();
  cmd->add_option("--family", m.family, "Model family (HF model_type): gpt2, llama, qwen2 or gpt_neox")->capture_default_str();
  cmd->add_option("--n-layer", m.n_layer, "Transformer blocks")->capture_default_str();
  cmd->add_option("--n-embd", m.n_embd, "Residual width (hidden_size)")->capture_default_str();
  cmd->add_option("--n-head", m.n_head, "Attention heads")->capture_default_str();
  cmd->add_option("--n-kv-head", m.n_kv_head, "Key/value heads (llama, qwen2; 0 = --n-head)")->capture_default_str();
  cmd->add_option("--n-inner", m.n_inner, "MLP width (neurons per layer; intermediate_size)")->capture_default_str();
  cmd->add_option("--n-positions", m.n_positions, "Longest sequence (max_position_embeddings)")->capture_default_str();
  cmd->add_option("--vocab-size", m.vocab_size, "Vocabulary size (GPT-2's tokenizer needs 50257)")
      ->capture_default_str();
  cmd->add_option("--seed", m.seed, "Seed of the random weights")->capture_default_str();
  cmd->callback([o] {
    const auto& mo = o->model;
    const std::size_t n = write_planted_family_model(o->out, o->planted, mo);
    std::printf("wrote %s: %s n_layer=%d n_embd=%d n_inner=%d vocab=%d, %zu planted neuron(s)\n",
                o->out.string().c_str(), mo.family.c_str(), mo.n_layer, mo.n_embd, mo.n_inner, mo.vocab_size, n);
  });
}

}  // namespace nexplain::cli
