#include "sweep/sweep_layers.hpp"

#include <algorithm>

#include "collect/layer_range.hpp"
#include "core/error.hpp"
#include "model/arch_config.hpp"

namespace nexplain {

namespace fs = std::filesystem;

int sweep_n_layer(const SweepConfig& c) {
  if (!c.planted.empty()) return c.planted_model.n_layer;
  return ArchConfig::load(c.model_dir).n_layer;
}

std::vector<std::string> sweep_layer_parts(const SweepConfig& c, int layers_per_part) {
  if (layers_per_part < 1) fail("layers per array task must be at least 1 (got {})", layers_per_part);
  const auto layers = parse_layer_range(c.collect.layers, sweep_n_layer(c));
  std::vector<std::string> parts;
  for (std::size_t i = 0; i < layers.size(); i += static_cast<std::size_t>(layers_per_part)) {
    const std::size_t end = std::min(layers.size(), i + static_cast<std::size_t>(layers_per_part));
    const bool contiguous = layers[end - 1] - layers[i] == static_cast<int>(end - 1 - i);
    std::string text;
    if (contiguous) {
      text = end - i == 1 ? std::to_string(layers[i]) : std::to_string(layers[i]) + "-" + std::to_string(layers[end - 1]);
    } else {
      for (std::size_t k = i; k < end; ++k) {
        if (k != i) text += ',';
        text += std::to_string(layers[k]);
      }
    }
    parts.push_back(text);
  }
  return parts;
}

fs::path part_records_path(const SweepConfig& c, const std::string& layers) {
  std::string name = layers;
  std::replace(name.begin(), name.end(), ',', '_');  // a file name without commas for shells and globs
  return c.parts_dir() / ("records.L" + name + ".h5");
}

std::vector<fs::path> existing_parts(const SweepConfig& c) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(c.parts_dir(), ec)) {
    const auto name = e.path().filename().string();
    // records.L<range>.h5 only: not checkpoints (.ckpt.h5) nor temporaries of atomic writes.
    if (name.rfind("records.L", 0) == 0 && name.size() > 3 && name.compare(name.size() - 3, 3, ".h5") == 0 &&
        name.find(".ckpt.") == std::string::npos && e.is_regular_file())
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace nexplain
