#include "llm/endpoint.hpp"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <set>

#include "core/error.hpp"

namespace nexplain {

EndpointConfig EndpointConfig::from_json(const std::string& stage, const nlohmann::json& j) {
  if (!j.is_object()) fail("llm endpoint '{}': expected a table/object, got {}", stage, j.type_name());
  static const std::set<std::string> known = {
      "base_url", "model", "api_key_env", "api_key_file", "connect_timeout_s", "request_timeout_s", "max_retries",
      "backoff_base_s", "backoff_max_s", "max_concurrency", "requests_per_minute", "tokens_per_minute",
      "burst_seconds", "headroom", "prompt_per_million", "completion_per_million", "ca_file", "check_model"};
  for (const auto& [k, v] : j.items()) {
    if (!known.count(k)) fail("llm endpoint '{}': unknown key '{}'", stage, k);
  }
  EndpointConfig c;
  c.stage = stage;
  try {
    c.base_url = j.value("base_url", c.base_url);
    c.model = j.value("model", c.model);
    c.api_key_env = j.value("api_key_env", c.api_key_env);
    c.api_key_file = j.value("api_key_file", c.api_key_file);
    c.connect_timeout_s = j.value("connect_timeout_s", c.connect_timeout_s);
    c.request_timeout_s = j.value("request_timeout_s", c.request_timeout_s);
    c.max_retries = j.value("max_retries", c.max_retries);
    c.backoff.base_s = j.value("backoff_base_s", c.backoff.base_s);
    c.backoff.max_s = j.value("backoff_max_s", c.backoff.max_s);
    c.max_concurrency = j.value("max_concurrency", c.max_concurrency);
    c.budget.requests_per_minute = j.value("requests_per_minute", c.budget.requests_per_minute);
    c.budget.tokens_per_minute = j.value("tokens_per_minute", c.budget.tokens_per_minute);
    c.rate.burst_seconds = j.value("burst_seconds", c.rate.burst_seconds);
    c.rate.headroom = j.value("headroom", c.rate.headroom);
    c.prices.prompt_per_million = j.value("prompt_per_million", c.prices.prompt_per_million);
    c.prices.completion_per_million = j.value("completion_per_million", c.prices.completion_per_million);
    c.ca_file = j.value("ca_file", c.ca_file);
    c.check_model = j.value("check_model", c.check_model);
  } catch (const nlohmann::json::exception& e) {
    fail("llm endpoint '{}': {}", stage, e.what());
  }
  c.validate();
  return c;
}

void EndpointConfig::validate() const {
  if (stage.empty()) fail("llm endpoint: the stage name is empty");
  if (base_url.rfind("http://", 0) != 0 && base_url.rfind("https://", 0) != 0) {
    fail("llm endpoint '{}': base_url '{}' must start with http:// or https://", stage, base_url);
  }
  if (model.empty()) fail("llm endpoint '{}': no model named", stage);
  if (!(connect_timeout_s > 0) || !(request_timeout_s > 0)) fail("llm endpoint '{}': timeouts must be > 0", stage);
  if (max_retries < 0) fail("llm endpoint '{}': max_retries must be >= 0", stage);
  if (!(backoff.base_s >= 0) || !(backoff.max_s >= backoff.base_s)) {
    fail("llm endpoint '{}': need 0 <= backoff_base_s <= backoff_max_s", stage);
  }
  if (max_concurrency < 1) fail("llm endpoint '{}': max_concurrency must be >= 1", stage);
  if (budget.requests_per_minute < 0 || budget.tokens_per_minute < 0) fail("llm endpoint '{}': rate budgets must be >= 0", stage);
  if (prices.prompt_per_million < 0 || prices.completion_per_million < 0) fail("llm endpoint '{}': prices must be >= 0", stage);
}

bool is_loopback_url(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return false;
  std::string_view rest = url.substr(scheme + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = rest.rfind('@'); at != std::string_view::npos) rest = rest.substr(at + 1);  // user:pass@
  std::string host;
  if (!rest.empty() && rest.front() == '[') {
    host = std::string(rest.substr(1, rest.find(']') - 1));
  } else {
    host = std::string(rest.substr(0, rest.find(':')));
  }
  for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1") return true;
  // 127.0.0.0/8, written as a dotted quad of digits.
  if (host.rfind("127.", 0) != 0) return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.') ++dots;
    else if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return dots == 3;
}

std::string ApiKey::redact(std::string text) const {
  if (value_.empty()) return text;
  for (std::size_t pos = text.find(value_); pos != std::string::npos; pos = text.find(value_, pos)) {
    text.replace(pos, value_.size(), "[REDACTED]");
    pos += 10;
  }
  return text;
}

ApiKey load_api_key(const EndpointConfig& c) {
  const bool local = is_loopback_url(c.base_url);
  std::string key;
  std::string source;
  if (!c.api_key_env.empty()) {
    source = "environment variable " + c.api_key_env;
    if (const char* v = std::getenv(c.api_key_env.c_str())) key = v;
  } else if (!c.api_key_file.empty()) {
    source = "file " + c.api_key_file;
    std::ifstream f(c.api_key_file);
    if (!f) fail("llm endpoint '{}': cannot read the API key file '{}'", c.stage, c.api_key_file);
    std::getline(f, key);
  }
  // Trim whitespace (a key file written by `echo` ends in a newline).
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
  std::size_t start = 0;
  while (start < key.size() && std::isspace(static_cast<unsigned char>(key[start]))) ++start;
  key.erase(0, start);
  if (key.empty() && !local) {
    if (source.empty()) {
      fail("llm endpoint '{}': {} is not a local server and no API key is configured (set api_key_env or api_key_file)",
           c.stage, c.base_url);
    }
    fail("llm endpoint '{}': no API key in {} (needed for {})", c.stage, source, c.base_url);
  }
  return ApiKey(std::move(key));
}

}  // namespace nexplain
