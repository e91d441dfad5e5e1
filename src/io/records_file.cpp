#include "io/records_file.hpp"

#include <algorithm>

#include "capture/hist_bins.hpp"
#include "capture/moments.hpp"
#include "core/error.hpp"

namespace nexplain {

namespace {

// Rows (neurons) per chunk: about 64 KiB per chunk, so one neuron's records are one small read
// and the chunk index stays small for 307,200 neurons.
hsize_t chunk_rows(std::size_t row_bytes, std::uint32_t n) {
  const std::size_t rows = std::max<std::size_t>(1, 65536 / std::max<std::size_t>(row_bytes, 1));
  return static_cast<hsize_t>(std::min<std::size_t>(rows, std::max<std::uint32_t>(n, 1)));
}

template <typename T>
void write_array(h5::File& f, const std::string& name, std::vector<hsize_t> shape, const std::vector<T>& v) {
  std::size_t expect = 1, row = sizeof(T);
  for (std::size_t i = 0; i < shape.size(); ++i) {
    expect *= shape[i];
    if (i > 0) row *= shape[i];
  }
  if (v.size() != expect) fail("{}: internal: dataset '{}' has {} values, shape needs {}", f.path(), name, v.size(), expect);
  std::vector<hsize_t> chunk = shape;
  chunk[0] = chunk_rows(row, static_cast<std::uint32_t>(shape[0]));
  f.write<T>(name, shape, v.data(), {.chunk = chunk, .deflate = 4});
}

template <typename T>
void read_row(const h5::File& f, const std::string& name, std::uint32_t row, std::vector<T>& out, std::size_t row_len) {
  out.resize(row_len);
  f.open_dataset(name).read_rows(row, 1, out.data());
}

std::string join_layers(const std::vector<int>& layers) {
  nlohmann::json j = layers;
  return j.dump();
}

}  // namespace

void collect_referenced_ids(const CaptureArrays& a, std::vector<std::uint64_t>& out) {
  for (auto* v : {&a.topk_ids, &a.random_ids, &a.quantile_ids})
    for (auto id : *v)
      if (id != kNoExcerpt) out.push_back(id);
}

void sort_unique_ids(std::vector<std::uint64_t>& ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
}

// Why steps, each its own open/close session, in every writer: HDF5 (1.10, serial, default
// file-space strategy) keeps no free-space information across a close and gives back the
// unused rest of its metadata and raw-data aggregation blocks when it closes a file, so where
// object headers, B-tree nodes and heaps land depends on how the writes are split into
// sessions. Measured with cmp on a 4-layer x 64-neuron records file: written in one session it
// is 884,384 bytes, written by these steps 886,517, with the same data (h5diff: no
// differences). Within one sequence of steps the placement depends only on the file's bytes at
// each open and the calls made, not on the process: the MPI collect's stage roots, each
// appending its layers in its own process, write the file a single process writes by the same
// steps (tests/mpi/test_mpi_collect.cpp compares the whole files). Datasets carry no
// modification times (h5file.cpp), which would make any two runs differ.

void create_records_file(const std::filesystem::path& path, const RecordsMeta& meta) {
  const auto& p = meta.params;
  auto f = h5::File::create(path);
  f.set_attr_string("format", kRecordsFormat);
  f.set_attr_int("format_version", kRecordsFormatVersion);
  f.set_attr_string("nexplain_version", meta.nexplain_version);
  f.set_attr_int("T", p.T);
  f.set_attr_int("K", p.K);
  f.set_attr_int("R", p.R);
  f.set_attr_int("Q", p.Q);
  // The seed is a full 64-bit value: stored as a decimal string so no reader mangles it.
  f.set_attr_string("seed", std::to_string(p.seed));
  f.set_attr_string("quantile_fractions", nlohmann::json(p.quantile_fractions).dump());
  f.set_attr_int("hist_bins", kHistBins);
  f.set_attr_string("layers", join_layers(meta.layers));
  f.set_attr_int("n_excerpts", static_cast<std::int64_t>(meta.n_excerpts));
  f.set_attr_double("prepass_rate", meta.prepass_rate);
  f.set_attr_int("prepass_excerpts", static_cast<std::int64_t>(meta.prepass_excerpts));
  f.set_attr_string("model", meta.model.dump());
  f.set_attr_string("corpus", meta.corpus.dump());
  f.set_attr_string("backend", meta.backend);
  f.set_attr_string("command_line", meta.command_line);
  f.close();  // checked: a full disk fails this step, not a later reader
}

void append_records_layer(const std::filesystem::path& path, const CaptureState& s) {
  auto f = h5::File::open_rw(path);
  const CaptureParams& p = s.params();
  const int layer = static_cast<int>(p.layer);
  // The steps' order is part of the file's bytes: the layers go in the order the file lists them.
  const auto layers = nlohmann::json::parse(f.attr_string("layers")).get<std::vector<int>>();
  const auto at = std::find(layers.begin(), layers.end(), layer);
  if (at == layers.end()) fail("{}: internal: layer {} is not among the file's layers {}", path.string(), layer, join_layers(layers));
  for (auto it = layers.begin(); it != at; ++it)
    if (!f.exists("layers/" + std::to_string(*it)))
      fail("{}: internal: layer {} is appended before layer {}", path.string(), layer, *it);
  if (f.exists("layers/" + std::to_string(layer))) fail("{}: internal: layer {} is already written", path.string(), layer);
  if (static_cast<std::uint32_t>(f.attr_int("T")) != p.T || static_cast<std::uint32_t>(f.attr_int("K")) != p.K ||
      static_cast<std::uint32_t>(f.attr_int("R")) != p.R || static_cast<std::uint32_t>(f.attr_int("Q")) != p.Q)
    fail("{}: internal: layer {}'s T, K, R, Q differ from the file's", path.string(), layer);

  const CaptureArrays& a = s.arrays();
  const std::uint64_t N = a.n_neurons, K = p.K, R = p.R, Q = p.Q, T = p.T, B = p.n_quantile_bins(),
                      m = s.has_boundaries() ? p.n_boundaries() : 0;
  const std::string g = "layers/" + std::to_string(layer) + "/";
  write_array(f, g + "topk_count", {N}, a.topk_count);
  write_array(f, g + "topk_ids", {N, K}, a.topk_ids);
  write_array(f, g + "topk_max", {N, K}, a.topk_max);
  write_array(f, g + "topk_acts", {N, K, T}, a.topk_acts);
  write_array(f, g + "random_count", {N}, a.random_count);
  write_array(f, g + "random_ids", {N, R}, a.random_ids);
  write_array(f, g + "random_hash", {N, R}, a.random_hash);
  write_array(f, g + "random_max", {N, R}, a.random_max);
  write_array(f, g + "random_acts", {N, R, T}, a.random_acts);
  write_array(f, g + "quantile_count", {N, B}, a.quantile_count);
  write_array(f, g + "quantile_ids", {N, B, Q}, a.quantile_ids);
  write_array(f, g + "quantile_hash", {N, B, Q}, a.quantile_hash);
  write_array(f, g + "quantile_max", {N, B, Q}, a.quantile_max);
  write_array(f, g + "quantile_acts", {N, B, Q, T}, a.quantile_acts);
  write_array(f, g + "boundaries", {N, m}, a.boundaries);
  write_array(f, g + "hist", {N, kHistBins}, a.hist);
  write_array(f, g + "mom_count", {N}, a.mom_count);
  write_array(f, g + "mom_mean", {N}, a.mom_mean);
  write_array(f, g + "mom_m2", {N}, a.mom_m2);
  write_array(f, g + "mom_m3", {N}, a.mom_m3);
  write_array(f, g + "mom_m4", {N}, a.mom_m4);
  // Derived statistics, for readers that want them without the formulas.
  std::vector<double> var(N), skew(N), kurt(N);
  for (std::uint64_t n = 0; n < N; ++n) {
    Moments mo{a.mom_count[n], a.mom_mean[n], a.mom_m2[n], a.mom_m3[n], a.mom_m4[n]};
    var[n] = moments_variance(mo);
    skew[n] = moments_skewness(mo);
    kurt[n] = moments_kurtosis(mo);
  }
  write_array(f, g + "variance", {N}, var);
  write_array(f, g + "skewness", {N}, skew);
  write_array(f, g + "kurtosis", {N}, kurt);
  f.set_attr_int("n_neurons", static_cast<std::int64_t>(N), "layers/" + std::to_string(layer));
  f.close();  // checked: a full disk fails this step, not a later reader
}

void append_records_excerpts(const std::filesystem::path& path, const std::vector<std::uint64_t>& ids,
                             const std::vector<std::uint32_t>& tokens) {
  auto f = h5::File::open_rw(path);
  const auto T = static_cast<std::uint64_t>(f.attr_int("T"));
  for (int layer : nlohmann::json::parse(f.attr_string("layers")).get<std::vector<int>>())
    if (!f.exists("layers/" + std::to_string(layer)))
      fail("{}: internal: the excerpts are appended before layer {}", path.string(), layer);
  if (!std::is_sorted(ids.begin(), ids.end()) || std::adjacent_find(ids.begin(), ids.end()) != ids.end())
    fail("{}: internal: excerpt ids are not ascending and unique", path.string());
  if (tokens.size() != ids.size() * T)
    fail("{}: internal: {} tokens for {} excerpts of {} tokens", path.string(), tokens.size(), ids.size(), T);
  const std::uint64_t M = ids.size();
  write_array(f, "excerpts/ids", {M}, ids);
  write_array(f, "excerpts/tokens", {M, T}, tokens);
  f.close();  // checked: a full disk fails this step, not a later reader
}

void write_records_file(const std::filesystem::path& path, const RecordsMeta& meta,
                        const std::vector<const CaptureState*>& states,
                        const std::map<std::uint64_t, std::vector<std::uint32_t>>& excerpt_tokens) {
  if (states.size() != meta.layers.size())
    fail("{}: internal: {} layer states for {} layers", path.string(), states.size(), meta.layers.size());
  create_records_file(path, meta);
  std::vector<std::uint64_t> referenced;
  for (std::size_t i = 0; i < states.size(); ++i) {
    if (static_cast<int>(states[i]->params().layer) != meta.layers[i])
      fail("{}: internal: state {} is of layer {}, expected {}", path.string(), i, states[i]->params().layer, meta.layers[i]);
    append_records_layer(path, *states[i]);
    collect_referenced_ids(states[i]->arrays(), referenced);
  }
  sort_unique_ids(referenced);
  const std::uint32_t T = meta.params.T;
  std::vector<std::uint32_t> tokens(referenced.size() * T);
  for (std::size_t i = 0; i < referenced.size(); ++i) {
    auto it = excerpt_tokens.find(referenced[i]);
    if (it == excerpt_tokens.end() || it->second.size() != T)
      fail("{}: internal: tokens of excerpt {} were not provided", path.string(), referenced[i]);
    std::copy(it->second.begin(), it->second.end(), tokens.begin() + static_cast<std::ptrdiff_t>(i * T));
  }
  append_records_excerpts(path, referenced, tokens);
}

RecordsFile::RecordsFile(const std::filesystem::path& path) : file_(h5::File::open_read(path)) {
  if (!file_.has_attr("format") || file_.attr_string("format") != kRecordsFormat)
    fail("{}: not a nexplain records file (attribute 'format' is not '{}')", path.string(), kRecordsFormat);
  const auto version = file_.attr_int("format_version");
  if (version != kRecordsFormatVersion)
    fail("{}: records format version {} is not supported (expected {})", path.string(), version, kRecordsFormatVersion);
  auto& p = meta_.params;
  p.T = static_cast<std::uint32_t>(file_.attr_int("T"));
  p.K = static_cast<std::uint32_t>(file_.attr_int("K"));
  p.R = static_cast<std::uint32_t>(file_.attr_int("R"));
  p.Q = static_cast<std::uint32_t>(file_.attr_int("Q"));
  p.seed = std::stoull(file_.attr_string("seed"));
  p.quantile_fractions = nlohmann::json::parse(file_.attr_string("quantile_fractions")).get<std::vector<double>>();
  meta_.layers = nlohmann::json::parse(file_.attr_string("layers")).get<std::vector<int>>();
  meta_.n_excerpts = static_cast<std::uint64_t>(file_.attr_int("n_excerpts"));
  meta_.prepass_rate = file_.attr_double("prepass_rate");
  meta_.prepass_excerpts = static_cast<std::uint64_t>(file_.attr_int("prepass_excerpts"));
  meta_.model = nlohmann::json::parse(file_.attr_string("model"));
  meta_.corpus = nlohmann::json::parse(file_.attr_string("corpus"));
  meta_.backend = file_.attr_string("backend");
  meta_.command_line = file_.attr_string("command_line");
  meta_.nexplain_version = file_.attr_string("nexplain_version");
  excerpt_ids_ = file_.open_dataset("excerpts/ids").read_all<std::uint64_t>();
}

bool RecordsFile::has_layer(int layer) const {
  return std::find(meta_.layers.begin(), meta_.layers.end(), layer) != meta_.layers.end();
}

std::uint32_t RecordsFile::n_neurons(int layer) const {
  if (!has_layer(layer)) fail("{}: layer {} is not in this records file (it has layers {})", path(), layer, join_layers(meta_.layers));
  return static_cast<std::uint32_t>(file_.attr_int("n_neurons", "layers/" + std::to_string(layer)));
}

NeuronRecord RecordsFile::neuron(int layer, std::uint32_t n) const {
  const std::uint32_t N = n_neurons(layer);
  if (n >= N) fail("{}: layer {} has {} neurons; neuron {} does not exist", path(), layer, N, n);
  CaptureParams p = meta_.params;
  p.layer = static_cast<std::uint32_t>(layer);
  const std::string g = "layers/" + std::to_string(layer) + "/";
  const std::size_t K = p.K, R = p.R, Q = p.Q, T = p.T, B = p.n_quantile_bins();
  const std::size_t m = file_.open_dataset(g + "boundaries").shape().at(1);
  // A one-neuron state built from the neuron's rows; CaptureState::record does the unpacking.
  CaptureArrays a;
  a.n_neurons = 1;
  read_row(file_, g + "topk_count", n, a.topk_count, 1);
  read_row(file_, g + "topk_ids", n, a.topk_ids, K);
  read_row(file_, g + "topk_max", n, a.topk_max, K);
  read_row(file_, g + "topk_acts", n, a.topk_acts, K * T);
  read_row(file_, g + "random_count", n, a.random_count, 1);
  read_row(file_, g + "random_ids", n, a.random_ids, R);
  read_row(file_, g + "random_hash", n, a.random_hash, R);
  read_row(file_, g + "random_max", n, a.random_max, R);
  read_row(file_, g + "random_acts", n, a.random_acts, R * T);
  read_row(file_, g + "quantile_count", n, a.quantile_count, B);
  read_row(file_, g + "quantile_ids", n, a.quantile_ids, B * Q);
  read_row(file_, g + "quantile_hash", n, a.quantile_hash, B * Q);
  read_row(file_, g + "quantile_max", n, a.quantile_max, B * Q);
  read_row(file_, g + "quantile_acts", n, a.quantile_acts, B * Q * T);
  if (m > 0) read_row(file_, g + "boundaries", n, a.boundaries, m);
  read_row(file_, g + "hist", n, a.hist, kHistBins);
  read_row(file_, g + "mom_count", n, a.mom_count, 1);
  read_row(file_, g + "mom_mean", n, a.mom_mean, 1);
  read_row(file_, g + "mom_m2", n, a.mom_m2, 1);
  read_row(file_, g + "mom_m3", n, a.mom_m3, 1);
  read_row(file_, g + "mom_m4", n, a.mom_m4, 1);
  NeuronRecord r = CaptureState(p, std::move(a)).record(0);
  r.layer = static_cast<std::uint32_t>(layer);
  r.neuron = n;
  return r;
}

CaptureState RecordsFile::layer_state(int layer) const {
  const std::uint32_t N = n_neurons(layer);
  CaptureParams p = meta_.params;
  p.layer = static_cast<std::uint32_t>(layer);
  const std::string g = "layers/" + std::to_string(layer) + "/";
  CaptureArrays a;
  a.n_neurons = N;
  auto rd = [&](const char* name, auto& v) { v = file_.open_dataset(g + name).template read_all<typename std::decay_t<decltype(v)>::value_type>(); };
  rd("topk_count", a.topk_count);
  rd("topk_ids", a.topk_ids);
  rd("topk_max", a.topk_max);
  rd("topk_acts", a.topk_acts);
  rd("random_count", a.random_count);
  rd("random_ids", a.random_ids);
  rd("random_hash", a.random_hash);
  rd("random_max", a.random_max);
  rd("random_acts", a.random_acts);
  rd("quantile_count", a.quantile_count);
  rd("quantile_ids", a.quantile_ids);
  rd("quantile_hash", a.quantile_hash);
  rd("quantile_max", a.quantile_max);
  rd("quantile_acts", a.quantile_acts);
  rd("boundaries", a.boundaries);
  rd("hist", a.hist);
  rd("mom_count", a.mom_count);
  rd("mom_mean", a.mom_mean);
  rd("mom_m2", a.mom_m2);
  rd("mom_m3", a.mom_m3);
  rd("mom_m4", a.mom_m4);
  return CaptureState(p, std::move(a));
}

std::vector<std::uint32_t> RecordsFile::excerpt_tokens(std::uint64_t id) const {
  auto it = std::lower_bound(excerpt_ids_.begin(), excerpt_ids_.end(), id);
  if (it == excerpt_ids_.end() || *it != id) fail("{}: excerpt {} is not stored in this records file", path(), id);
  std::vector<std::uint32_t> t(meta_.params.T);
  file_.open_dataset("excerpts/tokens").read_rows(static_cast<std::uint64_t>(it - excerpt_ids_.begin()), 1, t.data());
  return t;
}

}  // namespace nexplain
