#include "model/arch_config.hpp"

#include <cmath>

#include "core/error.hpp"
#include "model/hf_config_json.hpp"
#include "model/gpt2_config.hpp"

namespace nexplain {

namespace fs = std::filesystem;

const char* kind_name(NormKind k) { return k == NormKind::LayerNorm ? "layernorm" : "rmsnorm"; }
const char* kind_name(PositionKind k) { return k == PositionKind::Learned ? "learned" : "rotary"; }
const char* kind_name(MlpKind k) { return k == MlpKind::Plain ? "plain" : "gated"; }
const char* kind_name(ResidualKind k) { return k == ResidualKind::Sequential ? "sequential" : "parallel"; }
const char* kind_name(ActKind k) {
  switch (k) {
    case ActKind::GeluTanh: return "gelu_tanh";
    case ActKind::GeluErf: return "gelu_erf";
    case ActKind::Silu: return "silu";
    case ActKind::Relu: return "relu";
  }
  return "?";
}
const char* kind_name(RopeScalingKind k) {
  switch (k) {
    case RopeScalingKind::None: return "default";
    case RopeScalingKind::Linear: return "linear";
    case RopeScalingKind::Dynamic: return "dynamic";
    case RopeScalingKind::Llama3: return "llama3";
  }
  return "?";
}

namespace {

// A field reader that knows the file it reads from, so every error names file and key.
struct Fields {
  const nlohmann::json& j;
  const std::string& source;
  std::string prefix = "";  // "rope_scaling." for nested objects

  const nlohmann::json* get(const char* key) const {
    const auto it = j.find(key);
    return (it == j.end() || it->is_null()) ? nullptr : &*it;
  }
  [[noreturn]] void bad(const char* key, const char* what, const nlohmann::json& v) const {
    fail("{}: field '{}{}' must be {}, got {}", source, prefix, key, what, v.dump());
  }
  int positive_int(const char* key) const {
    const auto* v = get(key);
    if (!v) fail("{}: missing field '{}{}'", source, prefix, key);
    if (!v->is_number_integer() || v->get<std::int64_t>() <= 0 || v->get<std::int64_t>() > (1 << 30))
      bad(key, "a positive integer", *v);
    return v->get<int>();
  }
  int positive_int_or(const char* key, int dflt) const { return get(key) ? positive_int(key) : dflt; }
  double number_or(const char* key, double dflt) const {
    const auto* v = get(key);
    if (!v) return dflt;
    if (!v->is_number()) bad(key, "a number", *v);
    return v->get<double>();
  }
  double positive_number_or(const char* key, double dflt) const {
    const double x = number_or(key, dflt);
    if (!(x > 0) || !std::isfinite(x)) bad(key, "a positive number", *get(key));
    return x;
  }
  bool bool_or(const char* key, bool dflt) const {
    const auto* v = get(key);
    if (!v) return dflt;
    if (!v->is_boolean()) bad(key, "true or false", *v);
    return v->get<bool>();
  }
  std::string string_or(const char* key, const std::string& dflt) const {
    const auto* v = get(key);
    if (!v) return dflt;
    if (!v->is_string()) bad(key, "a string", *v);
    return v->get<std::string>();
  }
};

ActKind parse_act(const Fields& f, const char* key, const std::string& dflt) {
  const std::string a = f.string_or(key, dflt);
  // gelu_new and gelu_pytorch_tanh are the same tanh approximation; "gelu" is the exact erf form.
  if (a == "gelu_new" || a == "gelu_pytorch_tanh") return ActKind::GeluTanh;
  if (a == "gelu") return ActKind::GeluErf;
  if (a == "silu" || a == "swish") return ActKind::Silu;
  if (a == "relu") return ActKind::Relu;
  fail("{}: field '{}' = \"{}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, silu, relu)", f.source, key, a);
}

// RoPE: transformers 5 writes one "rope_parameters" object (rope_theta, rope_type, factor, ...,
// partial_rotary_factor); transformers 4 wrote "rope_theta" (GPT-NeoX: "rotary_emb_base") at the
// top level and an optional "rope_scaling" object whose kind is "rope_type" or the older "type".
void parse_rope(const Fields& top, ArchConfig& c, double default_partial) {
  const nlohmann::json* params = top.get("rope_parameters");
  const char* params_key = "rope_parameters";
  if (!params) {
    params = top.get("rope_scaling");
    params_key = "rope_scaling";
  }
  static const nlohmann::json empty = nlohmann::json::object();
  if (params && !params->is_object()) top.bad(params_key, "an object", *params);
  Fields p{params ? *params : empty, top.source, std::string(params_key) + "."};

  double theta = top.positive_number_or("rope_theta", top.positive_number_or("rotary_emb_base", 10000.0));
  theta = p.positive_number_or("rope_theta", theta);
  double partial = top.positive_number_or("rotary_pct", default_partial);
  partial = top.positive_number_or("partial_rotary_factor", partial);
  partial = p.positive_number_or("partial_rotary_factor", partial);
  if (partial > 1) fail("{}: the rotary fraction (rotary_pct / partial_rotary_factor) {} exceeds 1", top.source, partial);

  c.position = PositionKind::Rotary;
  c.rope.theta = theta;
  // HF: int(head_dim * partial_rotary_factor); it must be even (dims rotate in pairs).
  c.rope.rotary_dim = static_cast<int>(c.head_dim * partial);
  if (c.rope.rotary_dim < 2 || c.rope.rotary_dim % 2 != 0)
    fail("{}: rotary dimension int(head_dim {} x {}) = {} must be even and at least 2", top.source, c.head_dim, partial,
         c.rope.rotary_dim);

  std::string type = p.string_or("rope_type", p.string_or("type", "default"));
  if (type == "default") {
    c.rope.scaling = RopeScalingKind::None;
  } else if (type == "linear" || type == "dynamic" || type == "llama3") {
    c.rope.scaling = type == "linear" ? RopeScalingKind::Linear
                     : type == "dynamic" ? RopeScalingKind::Dynamic
                                         : RopeScalingKind::Llama3;
    if (!p.get("factor")) fail("{}: missing field '{}factor' (rope type \"{}\")", top.source, p.prefix, type);
    c.rope.factor = p.positive_number_or("factor", 1.0);
    if (c.rope.scaling == RopeScalingKind::Dynamic && c.rope.factor < 1)
      fail("{}: field '{}factor' must be at least 1 for dynamic scaling, got {}", top.source, p.prefix, c.rope.factor);
    if (c.rope.scaling == RopeScalingKind::Llama3) {
      c.rope.low_freq_factor = p.positive_number_or("low_freq_factor", 0);
      c.rope.high_freq_factor = p.positive_number_or("high_freq_factor", 0);
      if (!p.get("low_freq_factor")) fail("{}: missing field '{}low_freq_factor'", top.source, p.prefix);
      if (!p.get("high_freq_factor")) fail("{}: missing field '{}high_freq_factor'", top.source, p.prefix);
      c.rope.original_max_position_embeddings = p.positive_int("original_max_position_embeddings");
      if (!(c.rope.high_freq_factor > c.rope.low_freq_factor))
        fail("{}: '{}high_freq_factor' ({}) must exceed '{}low_freq_factor' ({})", top.source, p.prefix,
             c.rope.high_freq_factor, p.prefix, c.rope.low_freq_factor);
    }
  } else {
    fail("{}: field '{}rope_type' = \"{}\" is not supported (default, linear, dynamic, llama3); yarn, longrope and "
         "others change every neuron and are refused rather than approximated",
         top.source, p.prefix, type);
  }
}

std::string parse_dtype(const Fields& f) {
  // transformers 5 writes "dtype", 4 wrote "torch_dtype".
  return f.string_or("dtype", f.string_or("torch_dtype", ""));
}

ArchConfig from_gpt2(const nlohmann::json& j, const std::string& source) {
  // Gpt2Config holds every check GPT-2 needs (activation, attention variants); reuse it.
  const Gpt2Config g = Gpt2Config::from_json(j, source);
  ArchConfig c;
  c.model_type = "gpt2";
  c.hidden = g.n_embd;
  c.n_layer = g.n_layer;
  c.n_head = c.n_kv_head = g.n_head;
  c.head_dim = g.head_dim();
  c.intermediate = g.n_inner;
  c.max_positions = g.n_positions;
  c.vocab_size = g.vocab_size;
  c.norm_eps = g.layer_norm_epsilon;
  c.norm = NormKind::LayerNorm;
  c.position = PositionKind::Learned;
  c.mlp = MlpKind::Plain;
  c.act = ActKind::GeluTanh;
  c.residual = ResidualKind::Sequential;
  c.qkv_bias = c.o_bias = c.mlp_bias = true;
  c.tied_embeddings = true;  // GPT-2's LM head is always wte
  c.dtype = parse_dtype(Fields{j, source});
  return c;
}

// Llama and Qwen2 share a block: RMSNorm, RoPE, SwiGLU, grouped-query attention. Qwen2 always
// has q/k/v biases and never an o_proj bias; Llama has both or neither (attention_bias).
ArchConfig from_llama_like(const nlohmann::json& j, const std::string& source, const std::string& type) {
  const Fields f{j, source};
  ArchConfig c;
  c.model_type = type;
  c.hidden = f.positive_int("hidden_size");
  c.n_layer = f.positive_int("num_hidden_layers");
  c.n_head = f.positive_int("num_attention_heads");
  c.n_kv_head = f.positive_int_or("num_key_value_heads", c.n_head);
  if (c.hidden % c.n_head != 0 && !f.get("head_dim"))
    fail("{}: hidden_size {} is not divisible by num_attention_heads {} and no 'head_dim' is given", source, c.hidden,
         c.n_head);
  c.head_dim = f.positive_int_or("head_dim", c.hidden / c.n_head);
  c.intermediate = f.positive_int("intermediate_size");
  c.max_positions = f.positive_int_or("max_position_embeddings", 2048);
  c.vocab_size = f.positive_int("vocab_size");
  c.norm_eps = f.positive_number_or("rms_norm_eps", 1e-6);
  c.norm = NormKind::RMSNorm;
  c.mlp = MlpKind::Gated;
  c.act = parse_act(f, "hidden_act", "silu");
  c.residual = ResidualKind::Sequential;
  if (type == "qwen2") {
    c.qkv_bias = true;
    c.o_bias = false;
    c.mlp_bias = false;
    // Sliding-window layers see only the last `sliding_window` positions; we compute full
    // causal attention, so refuse rather than give different neurons.
    if (f.bool_or("use_sliding_window", false))
      fail("{}: field 'use_sliding_window' = true is not supported (sliding-window attention)", source);
    if (const auto* lt = f.get("layer_types")) {
      if (!lt->is_array()) f.bad("layer_types", "an array", *lt);
      for (std::size_t i = 0; i < lt->size(); ++i)
        if ((*lt)[i] != "full_attention")
          fail("{}: field 'layer_types[{}]' = {} is not supported (only \"full_attention\")", source, i,
               (*lt)[i].dump());
    }
  } else {
    c.qkv_bias = c.o_bias = f.bool_or("attention_bias", false);
    c.mlp_bias = f.bool_or("mlp_bias", false);
  }
  c.tied_embeddings = f.bool_or("tie_word_embeddings", false);
  parse_rope(f, c, 1.0);
  c.dtype = parse_dtype(f);
  return c;
}

// GPT-NeoX / Pythia: LayerNorm with bias, partial rotary (rotary_pct of each head), a fused
// per-head-interleaved qkv, plain MLP with exact-erf GELU, and (by default) parallel residual.
ArchConfig from_neox(const nlohmann::json& j, const std::string& source) {
  const Fields f{j, source};
  ArchConfig c;
  c.model_type = "gpt_neox";
  c.hidden = f.positive_int("hidden_size");
  c.n_layer = f.positive_int("num_hidden_layers");
  c.n_head = c.n_kv_head = f.positive_int("num_attention_heads");
  if (c.hidden % c.n_head != 0)
    fail("{}: hidden_size {} is not divisible by num_attention_heads {}", source, c.hidden, c.n_head);
  c.head_dim = c.hidden / c.n_head;
  c.intermediate = f.positive_int("intermediate_size");
  c.max_positions = f.positive_int_or("max_position_embeddings", 2048);
  c.vocab_size = f.positive_int("vocab_size");
  c.norm_eps = f.positive_number_or("layer_norm_eps", 1e-5);
  c.norm = NormKind::LayerNorm;
  c.mlp = MlpKind::Plain;
  c.act = parse_act(f, "hidden_act", "gelu");
  c.residual = f.bool_or("use_parallel_residual", true) ? ResidualKind::Parallel : ResidualKind::Sequential;
  c.qkv_bias = c.o_bias = f.bool_or("attention_bias", true);
  c.mlp_bias = true;
  c.tied_embeddings = f.bool_or("tie_word_embeddings", false);
  parse_rope(f, c, 0.25);
  c.dtype = parse_dtype(f);
  return c;
}

}  // namespace

ArchConfig ArchConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: expected a JSON object, got {}", source, j.type_name());
  const auto mt = j.find("model_type");
  if (mt == j.end() || mt->is_null()) fail("{}: missing field 'model_type'", source);
  if (!mt->is_string()) fail("{}: field 'model_type' must be a string, got {}", source, mt->dump());
  const std::string type = mt->get<std::string>();
  ArchConfig c;
  if (type == "gpt2")
    c = from_gpt2(j, source);
  else if (type == "llama" || type == "qwen2")
    c = from_llama_like(j, source, type);
  else if (type == "gpt_neox")
    c = from_neox(j, source);
  else
    fail("{}: model_type \"{}\" is not supported (gpt2, llama, gpt_neox, qwen2)", source, type);
  c.validate(source);
  return c;
}

ArchConfig ArchConfig::load(const fs::path& path) {
  const HfConfigJson c = read_hf_config_json(path);
  return from_json(c.json, c.file);
}

void ArchConfig::validate(const std::string& source) const {
  auto positive = [&](int v, const char* name) {
    if (v <= 0) fail("{}: {} must be positive, got {}", source, name, v);
  };
  positive(hidden, "hidden size");
  positive(n_layer, "number of layers");
  positive(n_head, "number of attention heads");
  positive(n_kv_head, "number of key/value heads");
  positive(head_dim, "head_dim");
  positive(intermediate, "intermediate size");
  positive(max_positions, "max positions");
  positive(vocab_size, "vocab_size");
  if (n_head % n_kv_head != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {} (each k/v head serves a whole "
         "group of query heads)",
         source, n_head, n_kv_head);
  if (position == PositionKind::Learned && n_head * head_dim != hidden)
    fail("{}: n_head {} x head_dim {} != hidden size {}", source, n_head, head_dim, hidden);
  if (position == PositionKind::Rotary && (rope.rotary_dim > head_dim || rope.rotary_dim % 2 != 0))
    fail("{}: rotary dimension {} must be even and at most head_dim {}", source, rope.rotary_dim, head_dim);
  if (!(norm_eps > 0)) fail("{}: the norm epsilon must be positive, got {}", source, norm_eps);
}

std::int64_t ArchConfig::block_params() const {
  const std::int64_t C = hidden, I = intermediate;
  const std::int64_t norms = 2 * C * (norm == NormKind::LayerNorm ? 2 : 1);
  const std::int64_t attn = C * qkv_dim() + (qkv_bias ? qkv_dim() : 0) + std::int64_t{q_dim()} * C + (o_bias ? C : 0);
  const std::int64_t up = (mlp == MlpKind::Gated ? 2 : 1) * (C * I + (mlp_bias ? I : 0));
  const std::int64_t down = I * C + (mlp_bias ? C : 0);
  return norms + attn + up + down;
}

std::int64_t ArchConfig::embedding_params() const {
  return std::int64_t{vocab_size} * hidden + (position == PositionKind::Learned ? std::int64_t{max_positions} * hidden : 0);
}

std::int64_t ArchConfig::head_params() const {
  return std::int64_t{hidden} * (norm == NormKind::LayerNorm ? 2 : 1) +
         (tied_embeddings ? 0 : std::int64_t{vocab_size} * hidden);
}

nlohmann::json ArchConfig::to_json() const {
  nlohmann::json j = {{"model_type", model_type},   {"hidden", hidden},
                      {"n_layer", n_layer},         {"n_head", n_head},
                      {"n_kv_head", n_kv_head},     {"head_dim", head_dim},
                      {"intermediate", intermediate}, {"max_positions", max_positions},
                      {"vocab_size", vocab_size},   {"norm_eps", norm_eps},
                      {"norm", kind_name(norm)},    {"position", kind_name(position)},
                      {"mlp", kind_name(mlp)},      {"act", kind_name(act)},
                      {"residual", kind_name(residual)}, {"qkv_bias", qkv_bias},
                      {"o_bias", o_bias},           {"mlp_bias", mlp_bias},
                      {"tied_embeddings", tied_embeddings}, {"dtype", dtype}};
  if (position == PositionKind::Rotary) {
    j["rope"] = {{"theta", rope.theta}, {"rotary_dim", rope.rotary_dim}, {"scaling", kind_name(rope.scaling)},
                 {"factor", rope.factor}};
    if (rope.scaling == RopeScalingKind::Llama3) {
      j["rope"]["low_freq_factor"] = rope.low_freq_factor;
      j["rope"]["high_freq_factor"] = rope.high_freq_factor;
      j["rope"]["original_max_position_embeddings"] = rope.original_max_position_embeddings;
    }
  }
  return j;
}

nlohmann::json ArchConfig::to_hf_json() const {
  if (model_type == "gpt2") {
    Gpt2Config g;
    g.n_embd = hidden;
    g.n_layer = n_layer;
    g.n_head = n_head;
    g.n_inner = intermediate;
    g.n_positions = max_positions;
    g.vocab_size = vocab_size;
    g.layer_norm_epsilon = norm_eps;
    nlohmann::json j = g.to_json();
    j["architectures"] = {"GPT2LMHeadModel"};
    j["tie_word_embeddings"] = true;
    if (!dtype.empty()) j["torch_dtype"] = dtype;
    return j;
  }
  const char* act_name = act == ActKind::GeluTanh ? "gelu_pytorch_tanh"
                         : act == ActKind::GeluErf ? "gelu"
                         : act == ActKind::Silu    ? "silu"
                                                   : "relu";
  nlohmann::json j = {{"model_type", model_type},
                      {"hidden_size", hidden},
                      {"intermediate_size", intermediate},
                      {"num_hidden_layers", n_layer},
                      {"num_attention_heads", n_head},
                      {"max_position_embeddings", max_positions},
                      {"vocab_size", vocab_size},
                      {"hidden_act", act_name},
                      {"tie_word_embeddings", tied_embeddings}};
  if (model_type == "gpt_neox") {
    j["architectures"] = {"GPTNeoXForCausalLM"};
    j["layer_norm_eps"] = norm_eps;
    j["rotary_pct"] = static_cast<double>(rope.rotary_dim) / head_dim;
    j["rotary_emb_base"] = rope.theta;
    j["use_parallel_residual"] = residual == ResidualKind::Parallel;
    j["attention_bias"] = qkv_bias;
  } else {
    j["architectures"] = {model_type == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
    j["num_key_value_heads"] = n_kv_head;
    j["head_dim"] = head_dim;
    j["rms_norm_eps"] = norm_eps;
    j["rope_theta"] = rope.theta;
    if (model_type == "qwen2") {
      j["use_sliding_window"] = false;
    } else {
      j["attention_bias"] = qkv_bias;
      j["mlp_bias"] = mlp_bias;
    }
  }
  if (rope.scaling != RopeScalingKind::None) {
    nlohmann::json r = {{"rope_type", kind_name(rope.scaling)}, {"factor", rope.factor}};
    if (rope.scaling == RopeScalingKind::Llama3) {
      r["low_freq_factor"] = rope.low_freq_factor;
      r["high_freq_factor"] = rope.high_freq_factor;
      r["original_max_position_embeddings"] = rope.original_max_position_embeddings;
    }
    j["rope_scaling"] = r;
  }
  if (!dtype.empty()) j["torch_dtype"] = dtype;
  return j;
}

}  // namespace nexplain
