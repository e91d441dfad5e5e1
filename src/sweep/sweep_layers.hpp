#pragma once
// A sweep's collect split by layer: the layer parts a job array collects one per task, and the
// records file of each part. Without a split, one collect writes <out>/records.h5 directly.
#include <filesystem>
#include <string>
#include <vector>

#include "sweep/sweep_config.hpp"

namespace nexplain {

// The model's layer count: the planted shape, or <model dir>/config.json (Error when unreadable).
int sweep_n_layer(const SweepConfig& c);

// The [collect] layers in consecutive groups of `layers_per_part`, each as a layer-range text
// ("0-5", or "0,2,4" when the selection has gaps). layers_per_part >= 1.
std::vector<std::string> sweep_layer_parts(const SweepConfig& c, int layers_per_part);

// <out>/parts/records.L<range>.h5, the records of one part.
std::filesystem::path part_records_path(const SweepConfig& c, const std::string& layers);

// Complete part files present in <out>/parts (each written atomically), sorted by name.
std::vector<std::filesystem::path> existing_parts(const SweepConfig& c);

}  // namespace nexplain
