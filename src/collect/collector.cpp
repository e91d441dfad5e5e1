#include "collect/collector.hpp"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "collect/collect_common.hpp"
#include "collect/cpu_backend.hpp"
#include "collect/cuda_backend.hpp"
#include "collect/layer_range.hpp"
#include "collect/node_local_rank.hpp"
#include "capture/hash.hpp"
#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "core/sha256.hpp"
#include "io/records_file.hpp"
#include "io/sequences.hpp"
#include "model/transformer_weights.hpp"
#include "nexplain_version.hpp"
#ifdef NEXPLAIN_HAVE_CUDA
#include "device_info.hpp"
#endif

namespace nexplain {

namespace fs = std::filesystem;

double auto_prepass_rate(std::uint64_t n, std::uint64_t target) {
  if (n == 0 || n <= target) return 1.0;
  return static_cast<double>(target) / static_cast<double>(n);
}

namespace collect_detail {

// sha256 of the files that define the model, for provenance.
nlohmann::json model_provenance(const fs::path& dir, const ArchConfig& cfg) {
  nlohmann::json files = nlohmann::json::object();
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    if (name == "config.json" || name.ends_with(".safetensors") || name == "model.safetensors.index.json") paths.push_back(e.path());
  }
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) files[p.filename().string()] = sha256_file(p);
  return {{"dir", fs::absolute(dir).string()}, {"config", cfg.to_json()}, {"files", files}};
}

// Token ids must index the model's embedding table; say where the first bad one is.
void check_tokens(std::span<const std::uint32_t> tokens, std::uint64_t first_id, std::uint32_t T, int vocab,
                  const fs::path& seqs) {
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] >= static_cast<std::uint32_t>(vocab))
      fail("{}: excerpt {}, position {}: token id {} is not below the model's vocab_size {}", seqs.string(),
           first_id + i / T, i % T, tokens[i], vocab);
  }
}

// Both backends run every family ArchConfig accepts, so the config no longer decides anything here.
std::unique_ptr<CollectBackend> make_backend(const CollectOptions& o, const ArchConfig& /*cfg*/,
                                             const std::vector<int>& layers, const CaptureParams& p, int block_begin,
                                             int block_end, MPI_Comm node_comm) {
  std::string device = o.device;
  if (device != "cpu" && device != "cuda" && device != "auto")
    fail("--device '{}': expected cpu, cuda or auto", device);
  // Either backend loads only the blocks it runs: a pipeline stage its range, the embeddings on
  // stage 0 only, never the final norm or the LM head.
  const int end = block_end >= 0 ? block_end : (layers.empty() ? block_begin : layers.back() + 1);
  TransformerLoadOptions lo;
  lo.first_layer = block_begin;
  lo.last_layer = end - 1;
  lo.embeddings = block_begin == 0;  // later stages receive hidden states, never tokens
  lo.head = false;                   // collect never needs the final norm or the logits
#ifdef NEXPLAIN_HAVE_CUDA
  if (device == "auto" || device == "cuda") {
    // The device is chosen before anything creates a CUDA context (query_device is the first
    // CUDA call), so each rank of a node holds a context on its own GPU only.
    const NodeLocalRank local = node_local_rank(node_comm);
    const cuda::DeviceInfo info = cuda::query_device(local.rank);
    if (device == "cuda" && !info.available) fail("--device cuda: no CUDA device: {}", info.reason);
    if (info.available) {
      spdlog::info("collect: {}: CUDA device {} of {}: {} (sm_{}{}, {:.1f} GiB); node-local rank {}{} from {}",
                   local.node, info.index, info.count, info.name, info.sm_major, info.sm_minor,
                   static_cast<double>(info.memory_bytes) / (1024.0 * 1024.0 * 1024.0), local.rank,
                   local.size > 0 ? fmt::format(" of {}", local.size) : std::string(), local.source);
      if (local.size > info.count)
        spdlog::warn("collect: {}: {} ranks share {} CUDA devices on this node: device {} runs several of them",
                     local.node, local.size, info.count, info.index);
      const cuda::Precision precision = cuda::parse_precision(o.precision);
      // Uploaded by the constructor; the host copy is freed on return.
      return std::make_unique<CudaCollectBackend>(TransformerWeights::load(o.model_dir, lo), layers, p, precision,
                                                  block_begin, end);
    }
    spdlog::info("collect: --device auto: no CUDA device ({}), using the CPU backend", info.reason);
    device = "cpu";
  }
#else
  if (device == "cuda") fail("--device cuda: no CUDA device: this build has no CUDA backend (rebuild with nvcc found)");
  if (device == "auto") device = "cpu";
#endif
  if (o.precision != "fp32") fail("--precision {}: the CPU backend computes in fp32 only", o.precision);
  return std::make_unique<CpuCollectBackend>(TransformerWeights::load(o.model_dir, lo), layers, p, o.threads,
                                             block_begin, end);
}

void prepare_collect(const CollectOptions& o, CollectSetup& su) {
  su.seqs.open(o.sequences);
  const SequencesReader& seqs = su.seqs;
  const auto T = static_cast<std::uint32_t>(seqs.seq_len());
  if (o.seq_len != 0 && static_cast<std::uint32_t>(o.seq_len) != T)
    fail("--seq-len {}: {} holds excerpts of {} tokens (re-tokenize with --seq-len {} or drop the option)", o.seq_len,
         o.sequences.string(), T, o.seq_len);
  const auto cfg = ArchConfig::load(o.model_dir);
  const std::vector<int> layers = parse_layer_range(o.layers, cfg.n_layer);
  // Only a learned position table limits T; RoPE runs past max_position_embeddings as HF does.
  if (cfg.position == PositionKind::Learned && T > static_cast<std::uint32_t>(cfg.max_positions))
    fail("{}: excerpts of {} tokens are longer than the model's n_positions {}", o.sequences.string(), T,
         cfg.max_positions);
  if (seqs.vocab_size() > static_cast<std::uint64_t>(cfg.vocab_size))
    spdlog::warn("{}: tokenizer vocabulary ({}) is larger than the model's ({}); every token is checked",
                 o.sequences.string(), seqs.vocab_size(), cfg.vocab_size);
  const std::uint64_t N = o.max_excerpts ? std::min<std::uint64_t>(o.max_excerpts, seqs.size()) : seqs.size();
  CaptureParams params = o.params;
  params.T = T;
  params.validate();
  if (N == 0) fail("{}: the corpus holds no excerpts", o.sequences.string());
  if (params.K > N)
    fail("--top-k {} is larger than the number of excerpts ({}) in {}", params.K, N, o.sequences.string());
  if (o.batch < 1) fail("--batch {}: must be at least 1", o.batch);
  su.T = T;
  su.cfg = cfg;
  su.layers = layers;
  su.N = N;
  su.params = params;
  su.rate = o.prepass_rate >= 0 ? std::min(o.prepass_rate, 1.0) : auto_prepass_rate(N, o.prepass_target);
}

RecordsMeta collect_records_meta(const CollectOptions& o, const CollectSetup& su, std::uint64_t pre_n,
                                 const std::string& backend) {
  RecordsMeta meta;
  meta.params = su.params;
  meta.layers = su.layers;
  meta.n_excerpts = su.N;
  meta.prepass_rate = su.rate;
  meta.prepass_excerpts = pre_n;
  meta.model = model_provenance(o.model_dir, su.cfg);
  meta.corpus = {{"path", fs::absolute(o.sequences).string()},
                 {"sha256", sha256_file(o.sequences)},
                 {"provenance", su.seqs.provenance()}};
  meta.backend = backend;
  meta.command_line = o.command_line;
  meta.nexplain_version = NEXPLAIN_VERSION;
  return meta;
}

void append_collect_excerpts(const fs::path& path, const CollectSetup& su, const std::vector<std::uint64_t>& ids) {
  std::vector<std::uint32_t> tokens(ids.size() * su.T);
  for (std::size_t i = 0; i < ids.size(); ++i) su.seqs.read(ids[i], 1, tokens.data() + i * su.T);
  append_records_excerpts(path, ids, tokens);
}

void finish_collect_records(const fs::path& path, const std::function<void(h5::File&)>& extra) {
  if (!extra) return;
  auto f = h5::File::open_rw(path);
  extra(f);
  f.close();
}

void write_collect_records(const fs::path& path, const CollectOptions& o, const CollectSetup& su, std::uint64_t pre_n,
                           const std::string& backend, const std::vector<CaptureState>& final_states,
                           const std::function<void(h5::File&)>& extra) {
  create_records_file(path, collect_records_meta(o, su, pre_n, backend));
  std::vector<std::uint64_t> referenced;
  for (const auto& s : final_states) {
    append_records_layer(path, s);
    collect_referenced_ids(s.arrays(), referenced);
  }
  sort_unique_ids(referenced);
  append_collect_excerpts(path, su, referenced);
  finish_collect_records(path, extra);
}

}  // namespace collect_detail

using namespace collect_detail;

CollectSummary run_collect(const CollectOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  // ---- validate everything before any compute
  AtomicOutput out(o.out);  // fails now when the output directory is missing or unwritable
  CollectSetup su;
  prepare_collect(o, su);
  const SequencesReader& seqs = su.seqs;
  const auto T = su.T;
  const auto& cfg = su.cfg;
  const auto& layers = su.layers;
  const std::uint64_t N = su.N;
  const CaptureParams& params = su.params;

  auto backend = make_backend(o, cfg, layers, params);
  spdlog::info("collect: {} model, {} excerpts x {} tokens, layers {}..{} ({} layers x {} neurons), backend {}, batch {}",
               cfg.model_type, N, T, layers.front(), layers.back(), layers.size(), cfg.intermediate, backend->name(),
               o.batch);

  // ---- pre-pass: histograms of excerpt maxima over a hashed subset -> quantile boundaries
  const double rate = su.rate;
  std::uint64_t pre_n = 0;
  std::vector<std::vector<double>> boundaries(layers.size());
  if (rate > 0 && !params.quantile_fractions.empty()) {
    std::vector<std::uint64_t> subset;
    for (std::uint64_t id = 0; id < N; ++id)
      if (excerpt_in_prepass(params.seed, id, rate)) subset.push_back(id);
    pre_n = subset.size();
    Progress prog("collect pre-pass", pre_n * T, "tokens");
    std::vector<std::uint32_t> tokens;
    for (std::size_t i = 0; i < subset.size(); i += static_cast<std::size_t>(o.batch)) {
      const std::size_t b = std::min<std::size_t>(static_cast<std::size_t>(o.batch), subset.size() - i);
      tokens.resize(b * T);
      for (std::size_t j = 0; j < b; ++j) {
        seqs.read(subset[i + j], 1, tokens.data() + j * T);
        check_tokens(std::span<const std::uint32_t>(tokens.data() + j * T, T), subset[i + j], T, cfg.vocab_size,
                     o.sequences);
      }
      backend->prepass(tokens.data(), static_cast<int>(b));
      prog.update((i + b) * T);
    }
    prog.finish();
    auto hists = backend->histograms();
    for (std::size_t l = 0; l < layers.size(); ++l) boundaries[l] = hists[l].boundaries(params.quantile_fractions);
  }

  // ---- main pass
  std::vector<CaptureState> states;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    CaptureParams lp = params;
    lp.layer = static_cast<std::uint32_t>(layers[l]);
    states.emplace_back(lp, static_cast<std::uint32_t>(cfg.intermediate), boundaries[l]);
  }
  backend->start_main(std::move(states));
  const auto tm = std::chrono::steady_clock::now();
  {
    Progress prog("collect", N * T, "tokens");
    std::vector<std::uint32_t> tokens;
    std::vector<std::uint64_t> ids;
    for (std::uint64_t first = 0; first < N; first += static_cast<std::uint64_t>(o.batch)) {
      const std::uint64_t b = std::min<std::uint64_t>(static_cast<std::uint64_t>(o.batch), N - first);
      tokens.resize(b * T);
      seqs.read(first, b, tokens.data());
      check_tokens(tokens, first, T, cfg.vocab_size, o.sequences);
      ids.resize(b);
      for (std::uint64_t j = 0; j < b; ++j) ids[j] = first + j;
      backend->main(tokens.data(), ids.data(), static_cast<int>(b));
      prog.update((first + b) * T);
    }
    prog.finish();
  }
  const double main_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tm).count();
  auto final_states = backend->states();

  // ---- records file
  write_collect_records(out.temp_path(), o, su, pre_n, backend->name(), final_states, {});
  out.commit();

  CollectSummary s;
  s.excerpts = N;
  s.tokens = N * T;
  s.prepass_excerpts = pre_n;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.main_tokens_per_s = main_s > 0 ? static_cast<double>(N * T) / main_s : 0.0;
  s.backend = backend->name();
  return s;
}

}  // namespace nexplain
