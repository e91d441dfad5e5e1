#pragma once
// `nexplain plan`: how a collect sweep of a model would run on N GPUs -- the pipeline split,
// per-rank memory, expected tokens/s, records-file size and sweep time -- computed from the
// model's config.json, the capture parameters and measured kernel rates (kernel_rates.hpp).
// docs/PLAN.md states every formula; format_plan() prints them with the numbers filled in.
#include <cstdint>
#include <string>
#include <vector>

#include "capture/params.hpp"
#include "model/arch_config.hpp"
#include "plan/kernel_rates.hpp"

namespace nexplain {

struct PlanInputs {
  ArchConfig arch;
  std::string model_name;       // for the report
  int gpus = 1;
  double gpu_mem_gib = 80;      // per GPU
  double reserve_gib = 3;       // CUDA context, cuBLAS workspaces, allocator slack
  std::uint64_t excerpts = 1000000;
  int seq_len = 64;             // T
  int micro_batch = 256;        // excerpts per micro-batch (bench/NOTES.md's batch)
  std::uint64_t prepass_excerpts = 100000;  // collect's default histogram pre-pass size
  CaptureParams capture;        // K, R, Q, quantile fractions (T is seq_len)
  KernelRates rates;
};

// Bytes of one layer's reduction state / records (CaptureArrays with quantile boundaries, no
// moment-block split): per neuron the K + R + B*Q sample slots with T activations each, their ids,
// hashes and maxima, counts, boundaries, the 82-bin histogram and the moments.
std::uint64_t capture_state_bytes(const CaptureParams& p, std::uint64_t n_neurons);

// FLOPs of one token through one block at sequence length T: 2 x every weight (GEMMs) plus the
// causal attention (q k^T and p v: 2 x 2 x head_dim x n_head x (T + 1) / 2 on average).
double block_flops_per_token(const ArchConfig& a, int T);

// Bytes per parameter when weights are kept in the compute precision's storage type.
int weight_bytes_per_param(const std::string& precision);

struct StagePlan {
  int first_layer = 0, last_layer = 0;  // inclusive
  bool embeddings = false;
  double weight_bytes = 0, state_bytes = 0, activation_bytes = 0;
  double total_bytes() const { return weight_bytes + state_bytes + activation_bytes; }
  double seconds_per_micro_batch = 0;   // compute + reduction (or the transfer, if longer)
  double forward_seconds_per_micro_batch = 0;
};

struct Plan {
  int stages = 1, replicas = 1, idle_gpus = 0;
  bool fits = false;
  std::vector<StagePlan> stage;
  double activation_bytes = 0;       // per micro-batch, on every stage
  double layer_weight_bytes = 0, layer_state_bytes = 0, embedding_bytes = 0;
  double layer_flops_per_token = 0, layer_seconds_per_micro_batch = 0;
  double tokens_per_s = 0, forward_tokens_per_s = 0;
  double records_bytes = 0;
  double prepass_seconds = 0, main_seconds = 0;
  double sweep_seconds() const { return prepass_seconds + main_seconds; }
  // One line per stage count tried: "P=2 x 4 replicas: 61.2 GiB max/rank, fits, 123,456 tokens/s".
  std::vector<std::string> alternatives;
};

// Activation memory of one micro-batch on one stage (the buffers of one block at a time plus
// the residual stream in and out): see docs/PLAN.md.
double activation_bytes_per_micro_batch(const ArchConfig& a, int micro_batch, int T, const std::string& precision);

// Tries every stage count P = 1..min(gpus, n_layer) with floor(gpus / P) data-parallel replicas,
// keeps those whose every rank fits in gpu_mem - reserve, and picks the fastest (ties: fewer
// stages). When none fits, returns the largest P with fits = false.
Plan make_plan(const PlanInputs& in);

// The human-readable report with the arithmetic (what `nexplain plan` prints).
std::string format_plan(const PlanInputs& in, const Plan& p);

}  // namespace nexplain
