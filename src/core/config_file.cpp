#include "core/config_file.hpp"

#include <fstream>
#include <sstream>

#include "core/error.hpp"

#ifdef NEXPLAIN_HAVE_TOML
#include <toml++/toml.h>
#endif

namespace nexplain {

namespace {

#ifdef NEXPLAIN_HAVE_TOML
nlohmann::json to_json(const toml::node& n) {
  if (auto t = n.as_table()) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, v] : *t) j[std::string(k.str())] = to_json(v);
    return j;
  }
  if (auto a = n.as_array()) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& v : *a) j.push_back(to_json(v));
    return j;
  }
  if (auto v = n.as_string()) return v->get();
  if (auto v = n.as_integer()) return v->get();
  if (auto v = n.as_floating_point()) return v->get();
  if (auto v = n.as_boolean()) return v->get();
  // Dates and times have no JSON form; keep their TOML text.
  std::ostringstream os;
  n.visit([&](const auto& v) { os << v; });
  return os.str();
}
#endif

}  // namespace

nlohmann::json load_config_file(const std::filesystem::path& path) {
  std::ifstream f(path);
  if (!f) fail("{}: cannot open config file", path.string());
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  if (path.extension() == ".json") {
    try {
      return nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      fail("{}: byte {}: invalid JSON: {}", path.string(), e.byte, e.what());
    }
  }
  if (path.extension() != ".toml") fail("{}: unknown config format (expected .toml or .json)", path.string());
#ifdef NEXPLAIN_HAVE_TOML
  try {
    return to_json(toml::parse(text, path.string()));
  } catch (const toml::parse_error& e) {
    fail("{}:{}:{}: invalid TOML: {}", path.string(), e.source().begin.line, e.source().begin.column, e.description());
  }
#else
  fail("{}: this build has no TOML support (toml++ was not found); write the file as JSON", path.string());
#endif
}

}  // namespace nexplain
