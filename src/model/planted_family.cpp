#include "model/planted_family.hpp"

#include "core/error.hpp"
#include "model/planted.hpp"
#include "model/planted_transformer.hpp"

namespace nexplain {

void PlantedModelOptions::validate(const std::string& source) const {
  if (family != "gpt2" && family != "llama" && family != "qwen2" && family != "gpt_neox")
    fail("{}: family '{}' has no planted-model builder (gpt2, llama, qwen2, gpt_neox)", source, family);
  if ((family == "gpt2" || family == "gpt_neox") && n_kv_head != 0 && n_kv_head != n_head)
    fail("{}: {} has no grouped-query attention: n_kv_head {} must equal n_head {} (or be left out)", source,
         family == "gpt2" ? "GPT-2" : "GPT-NeoX", n_kv_head, n_head);
  // The family's own checks (sizes, divisibility): GPT-2's with its key names, the others' with HF's.
  if (family == "gpt2") gpt2_config().validate(source);
  else arch_config();
}

Gpt2Config PlantedModelOptions::gpt2_config() const {
  Gpt2Config c;
  c.n_embd = n_embd;
  c.n_layer = n_layer;
  c.n_head = n_head;
  c.n_inner = n_inner;
  c.n_positions = n_positions;
  c.vocab_size = vocab_size;
  return c;
}

ArchConfig PlantedModelOptions::arch_config() const {
  if (family == "gpt2") return ArchConfig::from_json(gpt2_config().to_json(), "make-model (gpt2)");
  // Untied head: the planted channels then never leak into the logits' weights; nothing reads
  // the logits in collect anyway.
  if (family == "gpt_neox")  // Pythia's choices: rotary_pct 0.25, parallel residual, gelu, biases
    return ArchConfig::from_json({{"model_type", family},
                                  {"hidden_size", n_embd},
                                  {"num_hidden_layers", n_layer},
                                  {"num_attention_heads", n_head},
                                  {"intermediate_size", n_inner},
                                  {"max_position_embeddings", n_positions},
                                  {"vocab_size", vocab_size},
                                  {"rotary_pct", 0.25},
                                  {"use_parallel_residual", true},
                                  {"hidden_act", "gelu"},
                                  {"tie_word_embeddings", false}},
                                 "make-model (gpt_neox)");
  return ArchConfig::from_json({{"model_type", family},
                                {"hidden_size", n_embd},
                                {"num_hidden_layers", n_layer},
                                {"num_attention_heads", n_head},
                                {"num_key_value_heads", n_kv_head > 0 ? n_kv_head : n_head},
                                {"intermediate_size", n_inner},
                                {"max_position_embeddings", n_positions},
                                {"vocab_size", vocab_size},
                                {"tie_word_embeddings", false}},
                               "make-model (" + family + ")");
}

std::size_t write_planted_family_model(const std::filesystem::path& dir, const std::string& spec,
                                       const PlantedModelOptions& o) {
  o.validate("make-model");
  if (o.family == "gpt2") {
    const auto cfg = o.gpt2_config();
    const auto neurons = parse_planted_spec(spec, cfg);
    write_planted_model(dir, build_planted_model(cfg, neurons, o.seed, spec));
    return neurons.size();
  }
  const auto cfg = o.arch_config();
  const auto neurons = parse_planted_spec(spec, cfg);
  write_planted_transformer(dir, build_planted_transformer(cfg, neurons, o.seed, spec));
  return neurons.size();
}

}  // namespace nexplain
