#pragma once
// One configured LLM endpoint per stage (explainer, simulator, ...): where it is, which model,
// where its key comes from, and how hard it may be pushed.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "llm/backoff.hpp"
#include "llm/cost.hpp"
#include "llm/rate_limiter.hpp"

namespace nexplain {

struct EndpointConfig {
  std::string stage;     // the name requests use to pick this endpoint
  std::string base_url;  // up to and including /v1, e.g. "https://api.openai.com/v1"
  std::string model;
  // Where the key comes from: the named environment variable, else the named file (its first
  // line, trimmed). The key itself never appears in any config.
  std::string api_key_env;
  std::string api_key_file;
  double connect_timeout_s = 10.0;
  double request_timeout_s = 120.0;  // whole request, including a slow generation
  int max_retries = 6;               // retries after the first attempt
  BackoffPolicy backoff;
  int max_concurrency = 16;          // requests in flight at once for this stage
  RateBudget budget;                 // requests and tokens per minute (0 = unlimited)
  RateLimiterOptions rate;
  Prices prices;
  std::string ca_file;               // extra CA bundle for TLS (clusters with their own CA)
  bool check_model = true;           // preflight: GET /models must list `model`

  // Reads the fields present in `j` (names as above; budget as requests_per_minute /
  // tokens_per_minute; prices as prompt_per_million / completion_per_million; backoff as
  // backoff_base_s / backoff_max_s; rate as burst_seconds / headroom). Unknown keys are an
  // error, so a typo does not silently fall back to a default.
  static EndpointConfig from_json(const std::string& stage, const nlohmann::json& j);
  // Throws Error naming the stage when a field is out of range or missing.
  void validate() const;
};

// Whether the URL's host is this machine (localhost, 127.0.0.0/8, ::1): a local server may
// run without a key.
bool is_loopback_url(std::string_view url);

// A secret that cannot be printed by accident: no formatting, no streaming; the value is only
// reachable through reveal(), which the client uses to build the Authorization header.
class ApiKey {
 public:
  ApiKey() = default;
  explicit ApiKey(std::string value) : value_(std::move(value)) {}
  bool empty() const { return value_.empty(); }
  const std::string& reveal() const { return value_; }
  // `text` with every occurrence of the key replaced by "[REDACTED]": server error messages
  // sometimes quote the key they were given.
  std::string redact(std::string text) const;

 private:
  std::string value_;
};

// Loads the stage's key. Errors (before any work is done) when the named variable is unset or
// the file unreadable or empty and the URL is not loopback, or when no key source is named for
// a non-loopback URL. A loopback URL without a key gets an empty ApiKey.
ApiKey load_api_key(const EndpointConfig& config);

}  // namespace nexplain
