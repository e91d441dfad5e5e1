#include "sweep/sweep_config.hpp"

#include <set>

#include "core/config_file.hpp"
#include "core/error.hpp"

namespace nexplain {

namespace {

using json = nlohmann::json;

// Checks that a section holds only known keys, so a typo is an error rather than a default.
void only_keys(const json& section, const std::string& name, const std::set<std::string>& known, const std::string& source) {
  if (!section.is_object()) fail("{}: [{}] must be a table", source, name);
  for (const auto& [k, v] : section.items())
    if (!known.count(k)) {
      std::string list;
      for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
      fail("{}: [{}] has an unknown key '{}' (expected one of: {})", source, name, k, list);
    }
}

template <typename T>
void get(const json& s, const char* key, T& out, const std::string& source, const std::string& section) {
  if (!s.contains(key)) return;
  try {
    out = s.at(key).get<T>();
  } catch (const json::exception& e) {
    fail("{}: [{}] {}: {}", source, section, key, e.what());
  }
}

}  // namespace

SweepConfig SweepConfig::from_json(const json& j, const std::string& source) {
  SweepConfig c;
  c.raw = j;
  only_keys(j, "top level", {"sweep", "model", "corpus", "collect", "explain", "mpi", "slurm"}, source);
  const json empty = json::object();
  const json& sw = j.value("sweep", empty);
  only_keys(sw, "sweep", {"name", "out"}, source);
  get(sw, "name", c.name, source, "sweep");
  std::string out = "out/" + (c.name.empty() ? std::string("sweep") : c.name);
  get(sw, "out", out, source, "sweep");
  c.out = out;

  const json& m = j.value("model", empty);
  only_keys(m, "model",
            {"dir", "planted", "family", "n_layer", "n_embd", "n_head", "n_kv_head", "n_inner", "n_positions", "seed"},
            source);
  std::string dir;
  get(m, "dir", dir, source, "model");
  c.model_dir = dir;
  get(m, "planted", c.planted, source, "model");
  auto& pm = c.planted_model;
  get(m, "family", pm.family, source, "model");
  get(m, "n_layer", pm.n_layer, source, "model");
  get(m, "n_embd", pm.n_embd, source, "model");
  get(m, "n_head", pm.n_head, source, "model");
  get(m, "n_kv_head", pm.n_kv_head, source, "model");
  get(m, "n_inner", pm.n_inner, source, "model");
  get(m, "n_positions", pm.n_positions, source, "model");
  get(m, "seed", pm.seed, source, "model");
  if (c.model_dir.empty() == !m.contains("planted"))
    fail("{}: [model] needs exactly one of 'dir' (a HF model directory) or 'planted' (a make-model SPEC)", source);

  const json& co = j.value("corpus", empty);
  only_keys(co, "corpus", {"inputs", "format", "text_field", "separator", "seq_len", "tokenizer"}, source);
  get(co, "inputs", c.inputs, source, "corpus");
  if (c.inputs.empty()) fail("{}: [corpus] inputs: at least one file or glob pattern is needed", source);
  get(co, "format", c.format, source, "corpus");
  get(co, "text_field", c.text_field, source, "corpus");
  get(co, "separator", c.separator, source, "corpus");
  get(co, "seq_len", c.seq_len, source, "corpus");
  std::string tok;
  get(co, "tokenizer", tok, source, "corpus");
  c.tokenizer = tok;

  const json& cl = j.value("collect", empty);
  only_keys(cl, "collect", {"layers", "top_k", "random", "quantile_samples", "quantiles", "seed", "batch", "threads",
                            "max_excerpts", "prepass_rate", "device", "precision", "checkpoint_every"}, source);
  auto& o = c.collect;
  get(cl, "layers", o.layers, source, "collect");
  get(cl, "top_k", o.params.K, source, "collect");
  get(cl, "random", o.params.R, source, "collect");
  get(cl, "quantile_samples", o.params.Q, source, "collect");
  get(cl, "quantiles", o.params.quantile_fractions, source, "collect");
  get(cl, "seed", o.params.seed, source, "collect");
  get(cl, "batch", o.batch, source, "collect");
  get(cl, "threads", o.threads, source, "collect");
  get(cl, "max_excerpts", o.max_excerpts, source, "collect");
  get(cl, "prepass_rate", o.prepass_rate, source, "collect");
  get(cl, "device", o.device, source, "collect");
  get(cl, "precision", o.precision, source, "collect");
  get(cl, "checkpoint_every", c.checkpoint_every, source, "collect");

  const json& mp = j.value("mpi", empty);
  only_keys(mp, "mpi", {"explain_ranks"}, source);
  get(mp, "explain_ranks", c.explain_ranks, source, "mpi");
  if (c.explain_ranks < 0) fail("{}: [mpi] explain_ranks = {}: must be 0 or more", source, c.explain_ranks);

  json ex = j.value("explain", empty);
  if (!ex.is_object()) fail("{}: [explain] must be a table", source);
  get(ex, "layers", c.explain_layers, source, "explain");
  get(ex, "neurons_per_layer", c.neurons_per_layer, source, "explain");
  ex.erase("layers");
  ex.erase("neurons_per_layer");
  c.explain = ExplainSettings::from_json(ex, source + " [explain]");
  return c;
}

SweepConfig SweepConfig::load(const std::filesystem::path& path) { return from_json(load_config_file(path), path.string()); }

}  // namespace nexplain
