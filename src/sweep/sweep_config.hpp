#pragma once
// A sweep: one description (TOML or JSON) of model, corpus, collection and explanation, run by
// `nexplain sweep` stage by stage and (issue 8) submitted to Slurm. docs/SWEEP.md documents
// every key; jobs/*.toml are examples.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "collect/collector.hpp"
#include "explain/explain_settings.hpp"
#include "model/planted_family.hpp"

namespace nexplain {

struct SweepConfig {
  std::string name;
  std::filesystem::path out;  // the sweep directory: every stage's output lives here

  // [model]: either an existing HF directory, or a planted model built by the sweep.
  std::filesystem::path model_dir;
  std::string planted;  // make-model SPEC ("" with model_dir set)
  PlantedModelOptions planted_model;  // family, sizes and seed of the planted model

  // [corpus]
  std::vector<std::string> inputs;  // files or glob patterns
  std::string format = "auto", text_field = "text", separator;
  int seq_len = 64;
  std::filesystem::path tokenizer;  // "" = the default search

  // [collect]
  CollectOptions collect;  // model/corpus/out filled in by the sweep
  // Excerpts between periodic checkpoints of the checkpointed collect stage (`--stage collect`,
  // the Slurm job); 0 = only on SIGUSR1/SIGTERM.
  std::uint64_t checkpoint_every = 0;

  // [explain]
  ExplainSettings explain;
  std::string explain_layers = "all";
  std::uint32_t neurons_per_layer = 0;

  // [mpi]: `nexplain sweep` (stage all) under mpirun. Every rank collects, then every rank joins
  // the explain pool; the last explain_ranks world ranks skip the collect and wait for the
  // records instead (docs/SWEEP.md). The --stage jobs ignore it: each runs one role on all ranks.
  int explain_ranks = 0;

  nlohmann::json raw;  // the file as read (for [slurm] and provenance)

  // Parses and validates; unknown sections or keys are errors naming them and `source`.
  static SweepConfig from_json(const nlohmann::json& j, const std::string& source);
  static SweepConfig load(const std::filesystem::path& path);

  std::filesystem::path model_path() const { return model_dir.empty() ? out / "model" : model_dir; }
  std::filesystem::path sequences_path() const { return out / "sequences.h5"; }
  std::filesystem::path records_path() const { return out / "records.h5"; }
  std::filesystem::path explain_dir() const { return out / "explain"; }
  std::filesystem::path parts_dir() const { return out / "parts"; }  // per-layer-range records (job arrays)
  std::filesystem::path checkpoint_for(const std::filesystem::path& records) const {
    auto p = records;
    p.replace_extension(".ckpt.h5");
    return p;
  }
};

}  // namespace nexplain
