#include "model/hf_config_json.hpp"

#include <fstream>

#include "core/error.hpp"

namespace nexplain {

HfConfigJson read_hf_config_json(const std::filesystem::path& path) {
  std::error_code ec;
  const std::filesystem::path file = std::filesystem::is_directory(path, ec) ? path / "config.json" : path;
  std::ifstream in(file);
  if (!in) fail("{}: cannot open (expected a HuggingFace config.json)", file.string());
  HfConfigJson out;
  out.file = file.string();
  try {
    out.json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: byte {}: does not parse as JSON: {}", out.file, e.byte, e.what());
  }
  return out;
}

}  // namespace nexplain
