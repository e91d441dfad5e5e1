#include "plan/plan.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "capture/hist_bins.hpp"
#include "core/error.hpp"
#include "plan/pipeline_split.hpp"

namespace nexplain {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string commas(double v) {
  const std::string digits = fmt::format("{:.0f}", std::fabs(std::round(v)));
  std::string out = v <= -0.5 ? "-" : "";
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string gib(double bytes) { return fmt::format("{:.2f} GiB", bytes / kGiB); }

std::string duration(double s) {
  if (s < 120) return fmt::format("{:.1f} s", s);
  if (s < 7200) return fmt::format("{:.1f} min", s / 60);
  return fmt::format("{:.2f} h", s / 3600);
}

int activation_bytes_per_value(const std::string& precision) { return precision == "bf16" || precision == "fp16" ? 2 : 4; }

}  // namespace

std::uint64_t capture_state_bytes(const CaptureParams& p, std::uint64_t n_neurons) {
  const std::uint64_t T = p.T, K = p.K, R = p.R, Q = p.Q, m = p.n_boundaries(), B = p.n_quantile_bins();
  const std::uint64_t per_neuron = 4 + K * (8 + 4) + K * T * 4             // top-K: count, ids, maxima, activations
                                   + 4 + R * (8 + 8 + 4) + R * T * 4       // random: count, ids, hashes, maxima, acts
                                   + B * 4 + B * Q * (8 + 8 + 4) + B * Q * T * 4  // quantile bins, the same
                                   + m * 8                                  // quantile boundaries
                                   + kHistBins * 8                          // excerpt-max histogram
                                   + 8 + 4 * 8;                             // moments: count, mean, m2, m3, m4
  return per_neuron * n_neurons;
}

double block_flops_per_token(const ArchConfig& a, int T) {
  const double C = a.hidden, I = a.intermediate;
  const double gemm_params = C * a.qkv_dim() + static_cast<double>(a.q_dim()) * C +
                             (a.mlp == MlpKind::Gated ? 2.0 : 1.0) * C * I + I * C;
  const double attention = 2.0 * 2.0 * a.q_dim() * (T + 1) / 2.0;  // q k^T and p v over (T+1)/2 keys on average
  return 2.0 * gemm_params + attention;
}

int weight_bytes_per_param(const std::string& precision) { return activation_bytes_per_value(precision); }

double activation_bytes_per_micro_batch(const ArchConfig& a, int micro_batch, int T, const std::string& precision) {
  const double rows = static_cast<double>(micro_batch) * T;
  const double v = activation_bytes_per_value(precision);
  const double C = a.hidden, I = a.intermediate;
  const double up_width = (a.mlp == MlpKind::Gated ? 2.0 : 1.0) * I;
  const double residual = 2.0 * rows * C * 4.0;  // fp32 residual stream in and out (double-buffered between stages)
  const double block = rows * (C + a.qkv_dim() + a.q_dim() + C + C + up_width + (a.mlp == MlpKind::Gated ? I : 0.0)) * v;
  const double neurons_fp32 = v == 4 ? 0.0 : rows * I * 4.0;  // the reduction reads fp32 neurons
  const double scores = static_cast<double>(micro_batch) * a.n_head * T * T * 4.0;
  return residual + block + neurons_fp32 + scores;
}

Plan make_plan(const PlanInputs& in) {
  const ArchConfig& a = in.arch;
  if (in.gpus < 1) fail("plan: --gpus must be at least 1, got {}", in.gpus);
  if (in.seq_len < 1 || in.micro_batch < 1) fail("plan: seq-len and micro-batch must be positive");
  if (!(in.gpu_mem_gib > in.reserve_gib)) fail("plan: --gpu-mem {} GiB leaves nothing after the {} GiB reserve", in.gpu_mem_gib, in.reserve_gib);
  if (a.position == PositionKind::Learned && in.seq_len > a.max_positions)
    fail("plan: seq-len {} exceeds the model's {} positions", in.seq_len, a.max_positions);
  CaptureParams cp = in.capture;
  cp.T = static_cast<std::uint32_t>(in.seq_len);
  cp.validate();
  const KernelRates& r = in.rates;
  const double wb = weight_bytes_per_param(r.precision);
  const double tokens = static_cast<double>(in.micro_batch) * in.seq_len;

  Plan base;
  base.layer_weight_bytes = static_cast<double>(a.block_params()) * wb;
  base.embedding_bytes = static_cast<double>(a.embedding_params()) * wb;
  base.layer_state_bytes = static_cast<double>(capture_state_bytes(cp, static_cast<std::uint64_t>(a.intermediate)));
  base.activation_bytes = activation_bytes_per_micro_batch(a, in.micro_batch, in.seq_len, r.precision);
  base.layer_flops_per_token = block_flops_per_token(a, in.seq_len);
  const double layer_forward = base.layer_flops_per_token * tokens / r.forward_flops;
  const double layer_reduce = static_cast<double>(a.intermediate) * tokens * r.reduce_seconds;
  base.layer_seconds_per_micro_batch = layer_forward + layer_reduce;
  base.records_bytes = a.n_layer * base.layer_state_bytes;
  const double transfer = tokens * a.hidden * 4.0 / r.link_bytes_per_s;  // fp32 residual into a stage
  const double usable = (in.gpu_mem_gib - in.reserve_gib) * kGiB;

  const std::vector<double> cost(static_cast<std::size_t>(a.n_layer), base.layer_seconds_per_micro_batch);
  Plan best;
  bool have_fit = false;
  for (int P = 1; P <= std::min(in.gpus, a.n_layer); ++P) {
    Plan p = base;
    p.stages = P;
    p.replicas = in.gpus / P;
    p.idle_gpus = in.gpus - P * p.replicas;
    const auto first = split_layers(cost, P);
    double worst = 0, worst_forward = 0, max_bytes = 0;
    for (int s = 0; s < P; ++s) {
      StagePlan st;
      st.first_layer = first[static_cast<std::size_t>(s)];
      st.last_layer = (s + 1 < P ? first[static_cast<std::size_t>(s) + 1] : a.n_layer) - 1;
      st.embeddings = s == 0;
      const int n = st.last_layer - st.first_layer + 1;
      st.weight_bytes = n * p.layer_weight_bytes + (st.embeddings ? p.embedding_bytes : 0);
      st.state_bytes = n * p.layer_state_bytes;
      st.activation_bytes = p.activation_bytes;
      const double in_transfer = s > 0 ? transfer : 0.0;  // overlapped with compute
      st.seconds_per_micro_batch = std::max(n * p.layer_seconds_per_micro_batch, in_transfer);
      st.forward_seconds_per_micro_batch = std::max(n * layer_forward, in_transfer);
      worst = std::max(worst, st.seconds_per_micro_batch);
      worst_forward = std::max(worst_forward, st.forward_seconds_per_micro_batch);
      max_bytes = std::max(max_bytes, st.total_bytes());
      p.stage.push_back(st);
    }
    p.fits = max_bytes <= usable;
    p.tokens_per_s = p.replicas * tokens / worst;
    p.forward_tokens_per_s = p.replicas * tokens / worst_forward;
    const double pre = static_cast<double>(std::min(in.prepass_excerpts, in.excerpts)) * in.seq_len;
    p.prepass_seconds = pre / p.forward_tokens_per_s + (P - 1) * worst_forward;
    // Steady state plus the pipeline's fill and drain ((P - 1) stage times).
    p.main_seconds = static_cast<double>(in.excerpts) * in.seq_len / p.tokens_per_s + (P - 1) * worst;
    best.alternatives.push_back(fmt::format("P={} stage(s) x {} replica(s){}: largest rank {} of {} usable -> {}, {} tokens/s",
                                            P, p.replicas, p.idle_gpus ? fmt::format(" ({} GPU(s) idle)", p.idle_gpus) : "",
                                            gib(max_bytes), gib(usable), p.fits ? "fits" : "does not fit",
                                            commas(p.tokens_per_s)));
    const bool better = p.fits && (!have_fit || p.tokens_per_s > best.tokens_per_s * (1 + 1e-9));
    if (better || (!have_fit && !p.fits)) {
      auto alts = std::move(best.alternatives);
      best = std::move(p);
      best.alternatives = std::move(alts);
      have_fit = have_fit || best.fits;
    }
  }
  return best;
}

std::string format_plan(const PlanInputs& in, const Plan& p) {
  const ArchConfig& a = in.arch;
  const KernelRates& r = in.rates;
  const double tokens = static_cast<double>(in.micro_batch) * in.seq_len;
  const double wb = weight_bytes_per_param(r.precision);
  CaptureParams cp = in.capture;
  cp.T = static_cast<std::uint32_t>(in.seq_len);
  std::string o;
  auto line = [&o](const std::string& s) { o += s + "\n"; };

  line(fmt::format("plan for {} ({}): {} layers, hidden {}, {} heads ({} k/v), {} neurons/layer = {} neurons, {} parameters",
                   in.model_name, a.model_type, a.n_layer, a.hidden, a.n_head, a.n_kv_head, a.intermediate,
                   commas(static_cast<double>(a.n_neurons())), commas(static_cast<double>(a.total_params()))));
  line(fmt::format("{} GPU(s) x {} GiB ({} GiB reserved each), precision {}, T={} tokens, micro-batch {} excerpts = {} tokens",
                   in.gpus, in.gpu_mem_gib, in.reserve_gib, r.precision, in.seq_len, in.micro_batch, commas(tokens)));
  line(fmt::format("capture: top-K {}, random {}, {} quantile bins x {}", cp.K, cp.R, cp.n_quantile_bins(), cp.Q));
  line("");
  line("per layer:");
  line(fmt::format("  weights      {} params x {:.0f} B = {}", commas(static_cast<double>(a.block_params())), wb,
                   gib(p.layer_weight_bytes)));
  line(fmt::format("  reduction    {} neurons x {} B = {}  ((K+R+B*Q) x T x 4 B of activations + ids, hashes, "
                   "histogram, moments)",
                   a.intermediate, commas(p.layer_state_bytes / a.intermediate), gib(p.layer_state_bytes)));
  line(fmt::format("  FLOPs/token  2 x {} GEMM params + attention 4 x {} x (T+1)/2 = {:.3f} GFLOP",
                   commas((p.layer_flops_per_token - 2.0 * a.q_dim() * (in.seq_len + 1)) / 2), a.q_dim(),
                   p.layer_flops_per_token / 1e9));
  const double fwd = p.layer_flops_per_token * tokens / r.forward_flops;
  const double red = static_cast<double>(a.intermediate) * tokens * r.reduce_seconds;
  line(fmt::format("  time/micro-batch  {} tokens x {:.3f} GFLOP / {:.1f} TFLOP/s = {:.2f} ms forward"
                   " + {} neurons x {} tokens x {:.1f} ps = {:.2f} ms reduction -> {:.2f} ms",
                   commas(tokens), p.layer_flops_per_token / 1e9, r.forward_flops / 1e12, fwd * 1e3, a.intermediate,
                   commas(tokens), r.reduce_seconds * 1e12, red * 1e3, p.layer_seconds_per_micro_batch * 1e3));
  line(fmt::format("embeddings (stage 0 only): {} params x {:.0f} B = {}; no LM head (collect needs no logits)",
                   commas(static_cast<double>(a.embedding_params())), wb, gib(p.embedding_bytes)));
  line(fmt::format("activations per micro-batch (every stage): {}", gib(p.activation_bytes)));
  line("");
  line(fmt::format("chosen split: {} pipeline stage(s) x {} data-parallel replica(s){}{}", p.stages, p.replicas,
                   p.idle_gpus ? fmt::format(", {} GPU(s) idle", p.idle_gpus) : "",
                   p.fits ? "" : "  ** DOES NOT FIT: no split fits in memory **"));
  for (std::size_t s = 0; s < p.stage.size(); ++s) {
    const auto& st = p.stage[s];
    const int n = st.last_layer - st.first_layer + 1;
    line(fmt::format("  stage {}: layers {}-{} ({}){}: weights {} + reduction {} + activations {} = {}; {:.1f} ms/micro-batch",
                     s, st.first_layer, st.last_layer, n, st.embeddings ? " + embeddings" : "", gib(st.weight_bytes),
                     gib(st.state_bytes), gib(st.activation_bytes), gib(st.total_bytes()),
                     st.seconds_per_micro_batch * 1e3));
  }
  double worst = 0;
  for (const auto& st : p.stage) worst = std::max(worst, st.seconds_per_micro_batch);
  line(fmt::format("throughput: {} replica(s) x {} tokens / {:.1f} ms (slowest stage) = {} tokens/s "
                   "(forward only: {} tokens/s)",
                   p.replicas, commas(tokens), worst * 1e3, commas(p.tokens_per_s), commas(p.forward_tokens_per_s)));
  line(fmt::format("records file: {} layers x {} = {} (uncompressed; deflate shrinks unused slots)", a.n_layer,
                   gib(p.layer_state_bytes), gib(p.records_bytes)));
  line(fmt::format("sweep of {} excerpts x {} tokens: pre-pass {} excerpts {} + main pass {} = {}",
                   commas(static_cast<double>(in.excerpts)), in.seq_len,
                   commas(static_cast<double>(std::min(in.prepass_excerpts, in.excerpts))), duration(p.prepass_seconds),
                   duration(p.main_seconds), duration(p.sweep_seconds())));
  line("");
  line("stage counts tried:");
  for (const auto& alt : p.alternatives) line("  " + alt);
  line("rates: " + r.source);
  line(fmt::format("       stage-to-stage link {:.0f} GB/s (assumed; transfers overlap compute)", r.link_bytes_per_s / 1e9));
  return o;
}

}  // namespace nexplain
