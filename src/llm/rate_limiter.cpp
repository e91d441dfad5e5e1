#include "llm/rate_limiter.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace nexplain {

void TokenBucket::refill(double now) {
  if (unlimited()) return;
  if (now > updated) {
    level = std::min(capacity, level + (now - updated) * rate_per_s);
    updated = now;
  }
}

double TokenBucket::wait(double cost, double now) const {
  if (unlimited()) return 0.0;
  const double need = std::min(cost, capacity);
  double w = level >= need ? 0.0 : (need - level) / rate_per_s;
  return std::max(w, not_before - now);
}

RateLimiter::RateLimiter(RateBudget budget, RateLimiterOptions options, double now) : budget_(budget), options_(options) {
  if (budget_.requests_per_minute < 0 || budget_.tokens_per_minute < 0) fail("rate limit: budgets must be >= 0");
  if (!(options_.burst_seconds > 0)) fail("rate limit: burst_seconds must be > 0");
  if (options_.headroom < 0 || options_.headroom >= 1) fail("rate limit: headroom must be in [0, 1)");
  state_.requests.updated = state_.tokens.updated = now;
  apply_rates(now);
  // The request bucket starts with one request, not full: a run restarted right after a killed
  // one finds the server's bucket drained, and even a fresh server sees our first requests
  // late by the network's jitter; sending the whole burst at once would earn 429s in both
  // cases. Starting low keeps a reserve on the server's side for the price of a second's
  // throughput once. The token bucket starts full (the request bucket paces the start).
  state_.requests.level = state_.requests.unlimited() ? 0.0 : std::min(1.0, state_.requests.capacity);
  state_.tokens.level = state_.tokens.capacity;
}

RateBudget RateLimiter::effective() const {
  auto eff = [&](double configured, const std::optional<double>& server) {
    double v = configured;
    if (server && *server > 0) v = v > 0 ? std::min(v, *server) : *server;
    return v * share_ * (1.0 - options_.headroom);
  };
  return {eff(budget_.requests_per_minute, server_rpm_), eff(budget_.tokens_per_minute, server_tpm_)};
}

void RateLimiter::apply_rates(double now) {
  const RateBudget e = effective();
  auto set = [&](TokenBucket& b, double per_minute, double min_capacity) {
    b.refill(now);
    const double old_capacity = b.capacity;
    b.rate_per_s = per_minute / 60.0;
    b.capacity = b.unlimited() ? 0.0 : std::max(min_capacity, b.rate_per_s * options_.burst_seconds);
    // Keep the fill fraction (and any debt, proportionally) across a change of rate.
    if (!b.unlimited() && old_capacity > 0) b.level = b.level * (b.capacity / old_capacity);
    b.updated = now;
  };
  set(state_.requests, e.requests_per_minute, 1.0);
  set(state_.tokens, e.tokens_per_minute, 1.0);
}

void RateLimiter::set_share(double fraction, double now) {
  if (!(fraction > 0.0) || fraction > 1.0) fail("rate limit: share must be in (0, 1], got {}", fraction);
  share_ = fraction;
  apply_rates(now);
}

double RateLimiter::wait_seconds(double tokens, double now) {
  state_.requests.refill(now);
  state_.tokens.refill(now);
  const double w = std::max({state_.paused_until - now, state_.requests.wait(1.0, now), state_.tokens.wait(tokens, now)});
  return std::max(0.0, w);
}

bool RateLimiter::try_acquire(double tokens, double now) {
  if (wait_seconds(tokens, now) > 0.0) return false;
  if (!state_.requests.unlimited()) state_.requests.level -= 1.0;
  if (!state_.tokens.unlimited()) state_.tokens.level -= tokens;
  state_.admitted_requests += 1;
  state_.admitted_tokens += tokens;
  return true;
}

void RateLimiter::correct_tokens(double estimated, double actual, double now) {
  if (state_.tokens.unlimited()) return;
  state_.tokens.refill(now);
  state_.tokens.level = std::min(state_.tokens.capacity, state_.tokens.level + (estimated - actual));
}

void RateLimiter::observe(const RateLimitHeaders& h, double later_requests, double later_tokens, double now) {
  // A limit below the configured one is the account's real limit: adopt it (never raise ours).
  bool rates_changed = false;
  if (h.limit_requests && *h.limit_requests > 0 && (!server_rpm_ || *h.limit_requests < *server_rpm_) &&
      (budget_.requests_per_minute <= 0 || *h.limit_requests < budget_.requests_per_minute)) {
    server_rpm_ = h.limit_requests;
    rates_changed = true;
  }
  if (h.limit_tokens && *h.limit_tokens > 0 && (!server_tpm_ || *h.limit_tokens < *server_tpm_) &&
      (budget_.tokens_per_minute <= 0 || *h.limit_tokens < budget_.tokens_per_minute)) {
    server_tpm_ = h.limit_tokens;
    rates_changed = true;
  }
  if (rates_changed) apply_rates(now);

  // The server's "remaining" (our share of it, less what we sent since) caps our level. A
  // margin (one request; 1% of a minute's tokens) keeps the integer rounding of the header from
  // eating the fraction we have already refilled on every response.
  auto tighten = [&](TokenBucket& b, const std::optional<double>& remaining, const std::optional<double>& reset_s,
                     const std::optional<double>& limit, double later, double margin) {
    if (b.unlimited() || !remaining) return;
    b.refill(now);
    const double target = share_ * *remaining - later;
    if (b.level > target + margin) b.level = target;
    // Empty on the server: nothing before it has refilled one unit. With the limit known that
    // is reset / (limit - remaining); without it, the reset time itself (capped at a minute).
    if (*remaining < 1.0 && reset_s) {
      const double one = limit && *limit > *remaining ? *reset_s / (*limit - *remaining) : std::min(*reset_s, 60.0);
      b.not_before = std::max(b.not_before, now + one);
    }
  };
  tighten(state_.requests, h.remaining_requests, h.reset_requests_s, h.limit_requests, later_requests, 1.0);
  tighten(state_.tokens, h.remaining_tokens, h.reset_tokens_s, h.limit_tokens, later_tokens,
          std::max(1.0, state_.tokens.rate_per_s * 60.0 * 0.01));
}

void RateLimiter::on_rate_limited(std::optional<double> retry_after_s, double now) {
  pause_until(now + (retry_after_s ? *retry_after_s : 1.0));
  state_.requests.refill(now);
  if (!state_.requests.unlimited()) state_.requests.level = std::min(state_.requests.level, 0.0);
}

void RateLimiter::pause_until(double t) { state_.paused_until = std::max(state_.paused_until, t); }

}  // namespace nexplain
