#include "model/gpt2_config.hpp"


#include "core/error.hpp"
#include "model/hf_config_json.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

int get_positive_int(const nlohmann::json& j, const char* field, const std::string& source) {
  const auto it = j.find(field);
  if (it == j.end() || it->is_null()) fail("{}: missing field '{}'", source, field);
  if (!it->is_number_integer() || it->get<std::int64_t>() <= 0 || it->get<std::int64_t>() > (1 << 30))
    fail("{}: field '{}' must be a positive integer, got {}", source, field, it->dump());
  return it->get<int>();
}

// Attention flags that change the arithmetic. Missing means HF's default.
bool get_bool(const nlohmann::json& j, const char* field, bool dflt, const std::string& source) {
  const auto it = j.find(field);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) fail("{}: field '{}' must be true or false, got {}", source, field, it->dump());
  return it->get<bool>();
}

}  // namespace

Gpt2Config Gpt2Config::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: expected a JSON object, got {}", source, j.type_name());

  const auto mt = j.find("model_type");
  if (mt == j.end() || mt->is_null()) fail("{}: missing field 'model_type'", source);
  if (!mt->is_string() || mt->get<std::string>() != "gpt2")
    fail("{}: model_type {} is not supported (expected \"gpt2\")", source, mt->dump());

  Gpt2Config c;
  c.n_embd = get_positive_int(j, "n_embd", source);
  c.n_layer = get_positive_int(j, "n_layer", source);
  c.n_head = get_positive_int(j, "n_head", source);
  c.n_positions = get_positive_int(j, "n_positions", source);
  c.vocab_size = get_positive_int(j, "vocab_size", source);
  // HF writes n_inner: null for the default MLP width of 4 * n_embd.
  const auto ni = j.find("n_inner");
  c.n_inner = (ni == j.end() || ni->is_null()) ? 4 * c.n_embd : get_positive_int(j, "n_inner", source);

  // GPT2Config's own defaults apply when these two are absent (old checkpoints omit them).
  const auto eps = j.find("layer_norm_epsilon");
  if (eps != j.end() && !eps->is_null()) {
    if (!eps->is_number() || eps->get<double>() <= 0 || eps->get<double>() > 1)
      fail("{}: field 'layer_norm_epsilon' must be a small positive number, got {}", source, eps->dump());
    c.layer_norm_epsilon = eps->get<double>();
  }
  const auto act = j.find("activation_function");
  if (act != j.end() && !act->is_null()) {
    if (!act->is_string()) fail("{}: field 'activation_function' must be a string, got {}", source, act->dump());
    c.activation_function = act->get<std::string>();
  }
  // gelu_new is GPT-2's tanh approximation 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))), and
  // gelu_pytorch_tanh is the same formula; exact-erf "gelu", "relu" etc. would change every
  // neuron's value, so they are refused rather than approximated.
  if (c.activation_function != "gelu_new" && c.activation_function != "gelu_pytorch_tanh")
    fail("{}: activation_function \"{}\" is not supported (only \"gelu_new\", the tanh approximation GPT-2 uses)",
         source, c.activation_function);

  if (!get_bool(j, "scale_attn_weights", true, source))
    fail("{}: scale_attn_weights=false is not supported (attention is scaled by 1/sqrt(head_dim))", source);
  if (get_bool(j, "scale_attn_by_inverse_layer_idx", false, source))
    fail("{}: scale_attn_by_inverse_layer_idx=true is not supported", source);
  if (get_bool(j, "add_cross_attention", false, source))
    fail("{}: add_cross_attention=true (an encoder-decoder GPT-2) is not supported", source);
  // reorder_and_upcast_attn only changes the precision of the attention product in fp16; our
  // forward is fp32 throughout, so it is accepted.

  c.validate(source);
  return c;
}

Gpt2Config Gpt2Config::load(const fs::path& path) {
  const HfConfigJson c = read_hf_config_json(path);
  return from_json(c.json, c.file);
}

void Gpt2Config::validate(const std::string& source) const {
  auto positive = [&](int v, const char* name) {
    if (v <= 0) fail("{}: {} must be positive, got {}", source, name, v);
  };
  positive(n_embd, "n_embd");
  positive(n_layer, "n_layer");
  positive(n_head, "n_head");
  positive(n_inner, "n_inner");
  positive(n_positions, "n_positions");
  positive(vocab_size, "vocab_size");
  if (n_embd % n_head != 0)
    fail("{}: n_embd {} is not divisible by n_head {} (each head needs n_embd / n_head dimensions)", source, n_embd,
         n_head);
  if (!(layer_norm_epsilon > 0)) fail("{}: layer_norm_epsilon must be positive, got {}", source, layer_norm_epsilon);
}

nlohmann::json Gpt2Config::to_json() const {
  return {{"model_type", "gpt2"},
          {"n_embd", n_embd},
          {"n_layer", n_layer},
          {"n_head", n_head},
          {"n_inner", n_inner},
          {"n_positions", n_positions},
          {"vocab_size", vocab_size},
          {"layer_norm_epsilon", layer_norm_epsilon},
          {"activation_function", activation_function}};
}

}  // namespace nexplain
