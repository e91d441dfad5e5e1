#pragma once
// A planted-feature test model of a chosen family, from one set of sizes: what `nexplain
// make-model --planted` and a sweep's `[model] planted` build. GPT-2 uses the GPT-2 builder
// (planted.hpp: token, token-set and position features); Llama, Qwen2 and GPT-NeoX the RoPE one
// (planted_transformer.hpp: token and token-set features). Both write the same planted.json.
#include <cstdint>
#include <filesystem>
#include <string>

#include "model/arch_config.hpp"
#include "model/gpt2_config.hpp"

namespace nexplain {

struct PlantedModelOptions {
  std::string family = "gpt2";  // gpt2 | llama | qwen2 | gpt_neox (the HF model_type written to config.json)
  int n_layer = 2;
  int n_embd = 64;
  int n_head = 4;
  int n_kv_head = 0;  // llama/qwen2: grouped-query attention; 0 = n_head (gpt2, gpt_neox: must be)
  int n_inner = 256;
  int n_positions = 128;
  int vocab_size = 50257;
  std::uint64_t seed = 1;

  // Error naming the family when it is not one of the above.
  void validate(const std::string& source) const;
  Gpt2Config gpt2_config() const;  // family gpt2
  ArchConfig arch_config() const;  // any family, as collect will read it back
};

// Builds the model with `spec`'s neurons planted (checked against the sizes) and writes
// config.json, the safetensors and planted.json into `dir` (created). Returns the number of
// planted neurons.
std::size_t write_planted_family_model(const std::filesystem::path& dir, const std::string& spec,
                                       const PlantedModelOptions& o);

}  // namespace nexplain
