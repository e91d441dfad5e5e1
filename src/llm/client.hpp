#pragma once
// The LLM client: many requests in flight on one thread over libcurl's multi interface.
//
// The caller submits requests (each names its stage and carries the caller's tag) and polls;
// every submitted request comes back exactly once, as an LlmResult that is either ok or failed
// with the reason. In between the client
//   - answers from the response cache when it can (nothing is sent),
//   - merges identical requests in flight (sent once, answered to each),
//   - admits requests under each stage's rate budget and concurrency cap,
//   - retries 429 / 5xx / timeouts / resets / malformed or truncated bodies with jittered
//     exponential backoff (Retry-After honoured), and never other 4xx,
//   - stores every good answer in the cache and counts its cost.
// libcurl keeps connections alive between requests, speaks TLS, and negotiates HTTP/2 (one
// multiplexed connection) with servers that offer it.
//
// Not thread-safe: one thread owns a client (an MPI worker runs one loop).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llm/cost.hpp"
#include "llm/endpoint.hpp"
#include "llm/rate_limiter.hpp"
#include "llm/request.hpp"
#include "llm/response.hpp"

namespace nexplain {

struct LlmResult {
  std::uint64_t id = 0;  // what submit() returned
  std::string stage;
  std::string tag;
  std::string hash;      // request_hash: the cache key
  bool ok = false;
  std::string error;     // why it failed (final); never contains the API key
  long http_status = 0;  // of the last attempt (0: no HTTP response, or from the cache)
  int attempts = 0;      // HTTP attempts made for it (0 when answered from the cache)
  bool from_cache = false;  // answered without a request of its own (cache, or a merged twin)
  LlmResponse response;
  std::string body;      // the response JSON as received (or as cached)
  double cost_usd = 0.0;    // what this answer cost now (0 when from the cache)
  double seconds = 0.0;     // submit to completion
};

struct ClientStats {
  std::uint64_t submitted = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
  std::uint64_t cache_hits = 0;
  std::uint64_t merged = 0;        // identical to a request already in flight
  std::uint64_t http_attempts = 0;  // requests put on the wire
  std::uint64_t retries = 0;
  std::uint64_t http_429 = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t connections = 0;   // new connections opened (keep-alive keeps this small)
};

struct ClientOptions {
  std::filesystem::path cache_dir;  // empty: no response cache
  std::uint64_t seed = 0;           // jitter; 0 = from std::random_device
};

class LlmClient {
 public:
  // Validates the endpoints and loads their keys: a missing key for a remote server is an
  // Error here, before any work.
  explicit LlmClient(std::vector<EndpointConfig> endpoints, ClientOptions options = {});
  ~LlmClient();
  LlmClient(const LlmClient&) = delete;
  LlmClient& operator=(const LlmClient&) = delete;

  // Checks every stage before work starts: the server answers GET /models, accepts the key,
  // and lists the model (when check_model). Error with a clear message otherwise. A server
  // without /models (404) is accepted with a warning.
  void preflight();

  // Queues a request; returns its id. A cached answer is ready at the next poll. Error for an
  // unknown stage.
  std::uint64_t submit(LlmRequest request);
  // Drives transfers for up to max_wait_s seconds and returns as soon as some results are
  // finished (possibly none, when the time runs out or nothing is outstanding).
  std::vector<LlmResult> poll(double max_wait_s);
  // The same, handing each finished result to `on_result`; returns how many it handed over.
  std::size_t poll(double max_wait_s, const std::function<void(LlmResult&&)>& on_result);
  // Submitted requests whose results have not been returned by poll yet.
  std::size_t outstanding() const;

  // Synchronous convenience: submits and waits. Results of other requests that finish
  // meanwhile are kept for the next poll.
  LlmResult run(LlmRequest request);
  std::vector<LlmResult> run_all(std::vector<LlmRequest> requests);  // results in request order

  // The bytes a request would be sent as, and its cache key (for batch files and journals).
  std::string payload_for(const LlmRequest& request) const;
  std::string hash_for(const LlmRequest& request) const;

  const EndpointConfig& endpoint(const std::string& stage) const;
  // The stage's limiter, e.g. for a coordinator to set this worker's share or pause it.
  RateLimiter& limiter(const std::string& stage);
  // Seconds on the clock the limiters use (monotonic, from the client's creation).
  double now() const;

  const CostLedger& costs() const;
  const ClientStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nexplain
