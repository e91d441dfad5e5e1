#include "llm/response_cache.hpp"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/atomic_file.hpp"
#include "core/error.hpp"

namespace nexplain {

namespace fs = std::filesystem;

ResponseCache::ResponseCache(fs::path dir) : dir_(std::move(dir)) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || !fs::is_directory(dir_)) fail("response cache: cannot create directory '{}': {}", dir_.string(), ec.message());
}

fs::path ResponseCache::path_for(const std::string& hash) const {
  if (hash.size() < 8) fail("response cache: '{}' is not a request hash", hash);
  return dir_ / hash.substr(0, 2) / hash.substr(2, 2) / (hash + ".json");
}

std::optional<std::string> ResponseCache::get(const std::string& hash) {
  const fs::path p = path_for(hash);
  std::ifstream f(p, std::ios::binary);
  if (!f) {
    ++misses_;
    return std::nullopt;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    const auto j = nlohmann::json::parse(ss.str());
    if (j.at("hash").get<std::string>() != hash) fail("it is stored under the wrong name");
    ++hits_;
    return j.at("response").dump();
  } catch (const std::exception& e) {
    spdlog::warn("response cache: ignoring unreadable entry {}: {}", p.string(), e.what());
    ++misses_;
    return std::nullopt;
  }
}

void ResponseCache::put(const std::string& hash, ApiKind kind, const std::string& request_payload, const std::string& response_body) {
  nlohmann::json entry;
  entry["hash"] = hash;
  entry["kind"] = api_name(kind);
  try {
    entry["request"] = nlohmann::json::parse(request_payload);
    entry["response"] = nlohmann::json::parse(response_body);
  } catch (const nlohmann::json::exception& e) {
    fail("response cache: refusing to store a non-JSON answer for {}: {}", hash, e.what());
  }
  const fs::path p = path_for(hash);
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  if (ec) fail("response cache: cannot create '{}': {}", p.parent_path().string(), ec.message());
  write_file_atomic(p, entry.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  ++stores_;
}

}  // namespace nexplain
