#pragma once
// Configuration files (sweep definitions, explain endpoints) are TOML or JSON; both are read
// into one JSON value so that every consumer validates a single representation.
#include <filesystem>

#include <nlohmann/json.hpp>

namespace nexplain {

// .toml (when built with toml++) or .json by extension. Errors name the file, line and column.
nlohmann::json load_config_file(const std::filesystem::path& path);

}  // namespace nexplain
