#include "llm/backoff.hpp"

#include <algorithm>
#include <cmath>

namespace nexplain {

double backoff_delay(const BackoffPolicy& policy, int retry, double u) {
  u = std::clamp(u, 0.0, 1.0);
  const int exponent = std::clamp(retry - 1, 0, 62);  // 2^62 seconds already exceeds any max_s
  const double d = std::min(policy.max_s, policy.base_s * std::ldexp(1.0, exponent));
  return d / 2.0 + u * d / 2.0;
}

double retry_delay(const BackoffPolicy& policy, int retry, std::optional<double> retry_after_s, double u) {
  if (retry_after_s && *retry_after_s > 0.0) return *retry_after_s * (1.0 + 0.1 * std::clamp(u, 0.0, 1.0));
  return backoff_delay(policy, retry, u);
}

bool is_retryable_status(long status) {
  return status == 408 || status == 409 || status == 429 || (status >= 500 && status <= 599);
}

}  // namespace nexplain
