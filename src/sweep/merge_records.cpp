#include "sweep/merge_records.hpp"

#include <algorithm>
#include <map>
#include <memory>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "io/records_file.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

// The fields two parts of one collect must share; a mismatch means they were not made from the
// same corpus, model or settings, and their union would describe no single run.
void check_same(const RecordsMeta& a, const RecordsMeta& b, const fs::path& first, const fs::path& part) {
  auto differ = [&](const char* field) {
    fail("{}: cannot merge with {}: '{}' differs (the parts must come from one collect configuration)", part.string(),
         first.string(), field);
  };
  const auto& p = a.params;
  const auto& q = b.params;
  if (p.T != q.T) differ("T");
  if (p.K != q.K) differ("top_k");
  if (p.R != q.R) differ("random");
  if (p.Q != q.Q) differ("quantile_samples");
  if (p.seed != q.seed) differ("seed");
  if (p.quantile_fractions != q.quantile_fractions) differ("quantiles");
  if (a.n_excerpts != b.n_excerpts) differ("n_excerpts");
  if (a.prepass_rate != b.prepass_rate) differ("prepass_rate");
  if (a.prepass_excerpts != b.prepass_excerpts) differ("prepass_excerpts");
  if (a.corpus.value("sha256", "") != b.corpus.value("sha256", "")) differ("corpus sha256");
  if (a.model.value("files", nlohmann::json()) != b.model.value("files", nlohmann::json())) differ("model files");
  if (a.backend != b.backend) differ("backend");
}

}  // namespace

void merge_records(const std::vector<fs::path>& parts, const fs::path& out, const std::string& command_line,
                   const std::vector<int>& expected_layers) {
  if (parts.empty()) fail("merge records: no input files for {}", out.string());
  std::vector<std::unique_ptr<RecordsFile>> files;
  std::map<int, std::size_t> layer_owner;  // layer -> index of the part holding it
  for (const auto& p : parts) {
    files.push_back(std::make_unique<RecordsFile>(p));
    const auto& m = files.back()->meta();
    if (files.size() > 1) check_same(files.front()->meta(), m, parts.front(), p);
    for (int l : m.layers) {
      auto [it, fresh] = layer_owner.emplace(l, files.size() - 1);
      if (!fresh) fail("{}: layer {} is also in {}: the parts must hold disjoint layers", p.string(), l, parts[it->second].string());
    }
  }
  if (!expected_layers.empty()) {
    std::string missing, extra;
    auto add = [](std::string& list, int layer) {
      if (!list.empty()) list += ',';
      list += std::to_string(layer);
    };
    for (int l : expected_layers)
      if (!layer_owner.count(l)) add(missing, l);
    for (const auto& [l, idx] : layer_owner)
      if (std::find(expected_layers.begin(), expected_layers.end(), l) == expected_layers.end()) add(extra, l);
    if (!missing.empty()) fail("merge into {}: no part holds layers {} (their collect has not finished)", out.string(), missing);
    if (!extra.empty()) fail("merge into {}: parts hold layers {} that the collect does not select", out.string(), extra);
  }
  // Layers ascending, as one collect writes them.
  std::vector<CaptureState> states;
  states.reserve(layer_owner.size());
  RecordsMeta meta = files.front()->meta();
  meta.layers.clear();
  for (const auto& [layer, idx] : layer_owner) {
    states.push_back(files[idx]->layer_state(layer));
    meta.layers.push_back(layer);
  }
  meta.command_line = command_line;
  std::vector<std::uint64_t> referenced;
  std::vector<const CaptureState*> ptrs;
  for (const auto& s : states) {
    collect_referenced_ids(s.arrays(), referenced);
    ptrs.push_back(&s);
  }
  std::sort(referenced.begin(), referenced.end());
  referenced.erase(std::unique(referenced.begin(), referenced.end()), referenced.end());
  std::map<std::uint64_t, std::vector<std::uint32_t>> tokens;
  for (auto id : referenced) {
    // Any part referring to the excerpt holds its tokens; take the first that does.
    bool found = false;
    for (const auto& f : files) {
      try {
        tokens.emplace(id, f->excerpt_tokens(id));
        found = true;
        break;
      } catch (const Error&) {
      }
    }
    if (!found) fail("merge records: excerpt {} is referenced but no part holds its tokens", id);
  }
  AtomicOutput ao(out);
  write_records_file(ao.temp_path(), meta, ptrs, tokens);
  ao.commit();
}

}  // namespace nexplain
