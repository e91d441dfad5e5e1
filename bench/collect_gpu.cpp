// Throughput of the CUDA collect path: the forward of every layer plus the capture and reduction
// of every neuron of every layer (top-K with activations, random and quantile samples, histogram,
// moments), in the steady state after warm-up batches. The pre-pass is excluded (it runs once,
// on a subset). Random HF-style weights are generated on the device, so GPT-2 XL (1.5B
// parameters) starts in seconds; random tokens, fresh excerpt ids every batch. Models (--models):
// small, medium, large, xl (GPT-2) and llama-1b (the shape of Llama 3.2 1B).
//
// Prints one line per (model, precision):
//   RESULT nexplain <model> <precision> <tokens/s> <ms/batch> fwd_only=<tokens/s> ...
// scripts/gpu-check.sh pairs these with bench/hf_anchor.py's lines into the comparison table.
//
// usage: collect_gpu [--models small,xl] [--precisions fp32,tf32,bf16] [--batch 256] [--seq 64]
//                    [--seconds 4] [--warmup 6] [--min-batches 3] [--variants] [--breakdown]
//
// --variants: after the default configuration, the same batches with other cuda::ForwardTuning
//   choices (each epilogue fusion and the overlap of reduction and forward switched off in turn,
//   the list tests of the reduction moved, and all of them off: the original path), one line
//   each:
//     VARIANT nexplain <model> <precision> <variant> <tokens/s> <ms/batch> tuning=<summary>
// --breakdown: GPU time per phase of one batch (events between the steps, overlap off so the
//   phases run one after another), one line per phase:
//     PHASE nexplain <model> <precision> <phase> <ms/batch> <percent>
//
// The token batches cycle through a pool of 4, so after the pool has been seen once the top-K
// lists meet only repeats (rejected, as in a long run where winners are rare); the default
// warm-up of 6 batches gets past that, and the random and quantile samples, which see fresh
// ids every batch, are timed in their early (busier than long-run) regime.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#ifdef NEXPLAIN_HAVE_CUDA
#include "capture/capture_state.hpp"
#include "collect/cuda_backend.hpp"
#include "core/error.hpp"
#include "cuda_engine.hpp"
#include "device_info.hpp"
#include "model/arch_config.hpp"
#include "phase_timer.hpp"
#endif

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

struct Options {
  std::vector<std::string> models{"small", "xl"};
  std::vector<std::string> precisions{"fp32", "tf32", "bf16"};
  int batch = 256, seq = 64, warmup = 6, min_batches = 3;
  double seconds = 4.0;
  bool variants = false, breakdown = false;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "collect_gpu: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--models") o.models = split(value());
    else if (a == "--precisions") o.precisions = split(value());
    else if (a == "--batch") o.batch = std::atoi(value().c_str());
    else if (a == "--seq") o.seq = std::atoi(value().c_str());
    else if (a == "--seconds") o.seconds = std::atof(value().c_str());
    else if (a == "--warmup") o.warmup = std::atoi(value().c_str());
    else if (a == "--min-batches") o.min_batches = std::atoi(value().c_str());
    else if (a == "--variants") o.variants = true;
    else if (a == "--breakdown") o.breakdown = true;
    else {
      std::fprintf(stderr, "collect_gpu: unknown option %s\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.batch < 1 || o.seq < 1 || o.min_batches < 1 || o.warmup < 0) {
    std::fprintf(stderr, "collect_gpu: bad sizes\n");
    std::exit(2);
  }
  return o;
}

}  // namespace

#ifdef NEXPLAIN_HAVE_CUDA

namespace {

using namespace nexplain;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The benchmark models, written as the config.json HF would save for them and read by
// ArchConfig's own parser, so a preset is exactly the model collect would run: GPT-2 small to
// XL, and the shape of Llama 3.2 1B (grouped-query attention, RoPE, SwiGLU; its 128k vocabulary
// only sizes the embedding table here).
ArchConfig model_config(const std::string& name) {
  const std::string source = "collect_gpu preset '" + name + "'";
  const auto gpt2 = [&](int n_embd, int n_layer, int n_head) {
    return ArchConfig::from_json({{"model_type", "gpt2"},
                                  {"n_embd", n_embd},
                                  {"n_layer", n_layer},
                                  {"n_head", n_head},
                                  {"n_positions", 1024},
                                  {"vocab_size", 50257}},
                                 source);
  };
  if (name == "small") return gpt2(768, 12, 12);
  if (name == "medium") return gpt2(1024, 24, 16);
  if (name == "large") return gpt2(1280, 36, 20);
  if (name == "xl") return gpt2(1600, 48, 25);
  if (name == "llama-1b")
    return ArchConfig::from_json({{"model_type", "llama"},
                                  {"hidden_size", 2048},
                                  {"num_hidden_layers", 16},
                                  {"num_attention_heads", 32},
                                  {"num_key_value_heads", 8},
                                  {"head_dim", 64},
                                  {"intermediate_size", 8192},
                                  {"max_position_embeddings", 131072},
                                  {"vocab_size", 128256},
                                  {"rms_norm_eps", 1e-5},
                                  {"rope_theta", 500000.0},
                                  {"rope_scaling",
                                   {{"rope_type", "llama3"},
                                    {"factor", 32.0},
                                    {"low_freq_factor", 1.0},
                                    {"high_freq_factor", 4.0},
                                    {"original_max_position_embeddings", 8192}}},
                                  {"tie_word_embeddings", true}},
                                 source);
  fail("collect_gpu: unknown model '{}' (small, medium, large, xl, llama-1b)", name);
}

void run(const std::string& model, const std::string& precision, const Options& o) {
  const ArchConfig cfg = model_config(model);
  const auto prec = cuda::parse_precision(precision);
  const auto t_init = Clock::now();
  auto dev = cuda::TransformerDevice::random(cfg, cfg.n_layer - 1, prec, 2024);
  const double weight_gb = static_cast<double>(dev->weight_bytes()) / 1e9;
  std::vector<int> layers(static_cast<std::size_t>(cfg.n_layer));
  for (int l = 0; l < cfg.n_layer; ++l) layers[static_cast<std::size_t>(l)] = l;
  CaptureParams params;  // defaults: K 20, R 20, Q 5, fractions .5 .9 .99 .999
  params.T = static_cast<std::uint32_t>(o.seq);
  params.seed = 1;
  CudaCollectBackend backend(std::move(dev), layers, params);

  // A few batches of random tokens, cycled; excerpt ids always new.
  constexpr int kPool = 4;
  std::vector<std::vector<std::uint32_t>> pool(kPool);
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::uint32_t> tok(0, static_cast<std::uint32_t>(cfg.vocab_size) - 1);
  for (auto& b : pool) {
    b.resize(static_cast<std::size_t>(o.batch) * o.seq);
    for (auto& t : b) t = tok(rng);
  }
  // Pre-pass on one batch for quantile boundaries (as a real run has), not timed.
  backend.prepass(pool[0].data(), o.batch);
  const auto hists = backend.histograms();
  std::vector<CaptureState> states;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    CaptureParams lp = params;
    lp.layer = static_cast<std::uint32_t>(layers[l]);
    states.emplace_back(lp, static_cast<std::uint32_t>(cfg.intermediate), hists[l].boundaries(params.quantile_fractions));
  }
  backend.start_main(std::move(states));
  backend.synchronize();
  const double init_s = since(t_init);

  std::vector<std::uint64_t> ids(static_cast<std::size_t>(o.batch));
  std::uint64_t next_id = 0;
  int k = 0;
  const auto main_batch = [&] {
    for (auto& id : ids) id = next_id++;
    backend.main(pool[static_cast<std::size_t>(k++ % kPool)].data(), ids.data(), o.batch);
  };
  // `warmup` untimed batches, then timed ones for at least `seconds` and min_batches: the rate
  // in tokens/s and the number of timed batches. (The lists keep growing: a later call sees
  // quieter batches than an earlier one, which favours the later slightly.)
  const auto timed = [&](int warmup, double seconds) {
    for (int i = 0; i < warmup; ++i) main_batch();
    backend.synchronize();
    int n = 0;
    const auto t = Clock::now();
    double el = 0.0;
    while (n < o.min_batches || el < seconds) {
      main_batch();
      ++n;
      if (n >= o.min_batches) {
        backend.synchronize();
        el = since(t);
      }
      if (n >= 1000) break;
    }
    backend.synchronize();
    el = since(t);
    return std::pair<double, int>{static_cast<double>(n) * o.batch * o.seq / el, n};
  };
  const auto [tps_main, batches] = timed(o.warmup, o.seconds);

  // The forward alone (no capture), same batches: what the reduction costs on top.
  auto& m = backend.model();
  auto t0 = Clock::now();
  const int fwd_batches = std::max(o.min_batches, std::min(batches, 20));
  for (int i = 0; i < fwd_batches + 1; ++i) {
    if (i == 1) {
      m.stream().synchronize();
      t0 = Clock::now();
    }
    m.forward(pool[static_cast<std::size_t>(i % kPool)].data(), o.batch, o.seq, cfg.n_layer - 1, nullptr);
  }
  m.stream().synchronize();
  const double fwd_s = since(t0);
  const double fwd_tps = static_cast<double>(fwd_batches) * o.batch * o.seq / fwd_s;

  std::printf(
      "RESULT nexplain %s %s %.0f %.2f fwd_only=%.0f batch=%dx%d batches=%d weights=%.2fGB init=%.1fs tuning=%s\n",
      model.c_str(), precision.c_str(), tps_main, 1e3 * o.batch * o.seq / tps_main, fwd_tps, o.batch, o.seq, batches,
      weight_gb, init_s, m.tuning_summary().c_str());
  std::fflush(stdout);
  const cuda::ForwardTuning defaults = m.tuning();


  if (o.variants) {
    struct Variant {
      const char* name;
      cuda::ForwardTuning t;
    };
    std::vector<Variant> vs;
    cuda::ForwardTuning t = defaults;
    t.overlap = false;
    vs.push_back({"no-overlap", t});
    t = defaults;
    t.bias_epilogue = false;
    t.residual_epilogue = false;
    t.gelu_epilogue = 0;
    vs.push_back({"no-epilogues", t});
    t = defaults;
    t.gelu_epilogue = defaults.gelu_epilogue == 0 ? 1 : 0;
    vs.push_back({t.gelu_epilogue ? "gelu-epilogue" : "gelu-kernel", t});
    t = defaults;
    t.parallel_list_tests = !defaults.parallel_list_tests;
    vs.push_back({t.parallel_list_tests ? "parallel-list-tests" : "serial-list-tests", t});
    t.bias_epilogue = false;
    t.residual_epilogue = false;
    t.gelu_epilogue = 0;
    t.overlap = false;
    vs.push_back({"original", t});
    vs.push_back({"default-again", defaults});
    for (const auto& v : vs) {
      backend.set_tuning(v.t);
      const auto [tps, n] = timed(2, std::max(0.5, o.seconds / 2));
      std::printf("VARIANT nexplain %s %s %s %.0f %.2f batches=%d tuning=%s\n", model.c_str(), precision.c_str(),
                  v.name, tps, 1e3 * o.batch * o.seq / tps, n, m.tuning_summary().c_str());
      std::fflush(stdout);
    }
    backend.set_tuning(defaults);
  }

  if (o.breakdown) {
    cuda::ForwardTuning t = defaults;
    t.overlap = false;
    backend.set_tuning(t);
    for (int i = 0; i < 2; ++i) main_batch();
    backend.synchronize();
    cuda::PhaseTimer timer;
    backend.set_phase_timer(&timer);
    constexpr int kTimedBatches = 3;
    for (int i = 0; i < kTimedBatches; ++i) {
      main_batch();
      timer.collect();
    }
    backend.set_phase_timer(nullptr);
    backend.set_tuning(defaults);
    double total = 0.0;
    for (const auto& [name, ms] : timer.totals_ms()) total += ms;
    for (const auto& [name, ms] : timer.totals_ms())
      std::printf("PHASE nexplain %s %s \"%s\" %.3f %.1f\n", model.c_str(), precision.c_str(), name.c_str(),
                  ms / kTimedBatches, 100.0 * ms / total);
    std::printf("PHASE nexplain %s %s \"total\" %.3f 100.0 tuning=%s\n", model.c_str(), precision.c_str(),
                total / kTimedBatches, m.tuning_summary().c_str());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const auto info = nexplain::cuda::query_device();
  if (!info.available) {
    std::printf("collect_gpu: no CUDA device: %s\n", info.reason.c_str());
    return 0;
  }
  std::printf("collect_gpu: %s (sm_%d%d, %.1f GiB), batch %d excerpts x %d tokens, every neuron of every layer\n",
              info.name.c_str(), info.sm_major, info.sm_minor,
              static_cast<double>(info.memory_bytes) / (1024.0 * 1024.0 * 1024.0), o.batch, o.seq);
  std::fflush(stdout);
  int failures = 0;
  for (const auto& model : o.models)
    for (const auto& prec : o.precisions) {
      try {
        run(model, prec, o);
      } catch (const std::exception& e) {
        std::printf("RESULT nexplain %s %s FAILED %s\n", model.c_str(), prec.c_str(), e.what());
        std::fflush(stdout);
        ++failures;
      }
    }
  return failures ? 1 : 0;
}

#else

int main(int argc, char** argv) {
  (void)parse(argc, argv);
  std::printf("collect_gpu: built without the CUDA backend (nvcc was not found at configure time)\n");
  return 0;
}

#endif
