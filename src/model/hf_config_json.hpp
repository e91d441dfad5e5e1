#pragma once
// Reading a HuggingFace config.json (given the model directory or the file itself), shared by
// Gpt2Config and ArchConfig so both report a missing or malformed file the same way.
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace nexplain {

struct HfConfigJson {
  nlohmann::json json;
  std::string file;  // the path read, for error messages
};

// Error naming the file when it cannot be opened, and the byte when it does not parse.
HfConfigJson read_hf_config_json(const std::filesystem::path& dir_or_file);

}  // namespace nexplain
