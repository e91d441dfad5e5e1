#pragma once
// Rate limits as budgets: a requests/min and a tokens/min token bucket with continuous refill,
// tightened by what the server says (x-ratelimit-* headers) and paused by a 429.
//
// All times are seconds on a monotonic clock chosen by the caller (the client uses
// steady_clock), passed in explicitly so the arithmetic is testable without sleeping.
//
// Sharing across MPI ranks: the configured budget is global; each limiter enforces `share` of
// it. A coordinator hands each worker a share (set_share) and may rebalance at any time, and
// it can copy a worker's whole state (state()) since it is plain data. A 429 seen anywhere can be
// broadcast and applied with pause_until on every worker.
#include <cstdint>
#include <optional>

#include "llm/http_headers.hpp"

namespace nexplain {

// The limits the account has, per minute; 0 = unlimited.
struct RateBudget {
  double requests_per_minute = 0.0;
  double tokens_per_minute = 0.0;
};

struct RateLimiterOptions {
  // Bucket capacity in seconds of refill. OpenAI enforces per-minute limits over shorter
  // windows ("60,000 requests/minute may be enforced as 1,000 requests/second"), so a bucket
  // that could burst a whole minute's budget would earn 429s; one second's worth does not.
  // The request bucket always holds at least one request. It starts with one request in it
  // (the token bucket starts full), so a restart does not open with a burst.
  double burst_seconds = 1.0;
  // Fraction of the budget left unused: our clock and the server's disagree by the network's
  // jitter, and sending at exactly 100% turns that jitter into 429s. 2% costs 2% throughput.
  double headroom = 0.02;
};

// One bucket. rate_per_s == 0 means unlimited. `level` may go negative: a request costing more
// than the capacity is let through when the bucket is full and leaves a debt that refills.
struct TokenBucket {
  double rate_per_s = 0.0;
  double capacity = 0.0;
  double level = 0.0;
  double updated = 0.0;     // time of the last refill
  double not_before = 0.0;  // the server said it is empty until then

  bool unlimited() const { return rate_per_s <= 0.0; }
  void refill(double now);
  // Seconds from `now` until `cost` may be taken (0 = now). Call after refill.
  double wait(double cost, double now) const;
};

// Everything the limiter knows, as plain data.
struct RateLimiterState {
  TokenBucket requests;
  TokenBucket tokens;
  double paused_until = 0.0;           // a 429 stops everything until then
  std::uint64_t admitted_requests = 0;  // cumulative, to count what was sent after a response's request
  double admitted_tokens = 0.0;
};

class RateLimiter {
 public:
  explicit RateLimiter(RateBudget budget = {}, RateLimiterOptions options = {}, double now = 0.0);

  // This limiter enforces `fraction` (0 < fraction <= 1) of the global budget; levels scale
  // with it so that a rebalance neither grants a burst nor loses the debt.
  void set_share(double fraction, double now);
  double share() const { return share_; }
  const RateBudget& budget() const { return budget_; }
  // The per-minute rates actually enforced: min(configured, server's limit header) x share x (1 - headroom).
  RateBudget effective() const;

  // Seconds until a request estimated at `tokens` may be sent; 0 = now.
  double wait_seconds(double tokens, double now);
  // Takes one request and `tokens` when wait_seconds would be 0; returns whether it did.
  bool try_acquire(double tokens, double now);
  // After the response: the estimate charged at admission is replaced by the real usage
  // (a refund when the estimate was high, a further charge when it was low).
  void correct_tokens(double estimated, double actual, double now);
  // Applies a response's x-ratelimit-* headers. later_requests / later_tokens: what this
  // limiter admitted after the request that got this response (the server had not yet seen
  // those when it counted, so they come off its "remaining").
  void observe(const RateLimitHeaders& headers, double later_requests, double later_tokens, double now);
  // A 429: nothing is sent until now + retry_after (1 s when the server gave none), and the
  // request bucket is emptied, since the server just said we are over.
  void on_rate_limited(std::optional<double> retry_after_s, double now);
  void pause_until(double t);

  const RateLimiterState& state() const { return state_; }

 private:
  void apply_rates(double now);

  RateBudget budget_;
  RateLimiterOptions options_;
  double share_ = 1.0;
  std::optional<double> server_rpm_, server_tpm_;  // the server's limit headers, when lower
  RateLimiterState state_;
};

}  // namespace nexplain
