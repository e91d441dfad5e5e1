#pragma once
// When to try a failed request again, and whether to at all.
#include <optional>

namespace nexplain {

struct BackoffPolicy {
  double base_s = 1.0;   // the first retry waits about this long
  double max_s = 60.0;   // no single wait grows beyond this
};

// Jittered exponential backoff before retry number `retry` (1 = the first retry): with
// d = min(max_s, base_s * 2^(retry-1)), the wait is d/2 + u*d/2 for u in [0, 1). Half the delay
// is fixed so a retry never comes back immediately; the random half spreads the workers that
// failed together (a 503 burst) so they do not return together.
double backoff_delay(const BackoffPolicy& policy, int retry, double u);

// The wait before a retry when the server may have said Retry-After: the server's value is
// honoured (never shortened, so we do not come back before it said), plus up to 10% jitter;
// without it, backoff_delay.
double retry_delay(const BackoffPolicy& policy, int retry, std::optional<double> retry_after_s, double u);

// HTTP statuses worth retrying: 408 (request timeout), 409 (OpenAI: conflict, try again),
// 429 (rate limited) and all 5xx. Any other 4xx is the request's own fault and final.
bool is_retryable_status(long status);

}  // namespace nexplain
