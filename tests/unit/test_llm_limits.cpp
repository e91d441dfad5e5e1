// Rate-limit arithmetic, header parsing and backoff: pure functions of explicit times, no sleeping.
#include <cmath>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "llm/backoff.hpp"
#include "llm/http_headers.hpp"
#include "llm/rate_limiter.hpp"

using namespace nexplain;

// ---------------------------------------------------------------- headers

TEST(LlmHeaders, GoDurations) {
  EXPECT_DOUBLE_EQ(*parse_duration("1s"), 1.0);
  EXPECT_DOUBLE_EQ(*parse_duration("6m0s"), 360.0);
  EXPECT_DOUBLE_EQ(*parse_duration("20ms"), 0.02);
  EXPECT_DOUBLE_EQ(*parse_duration("1h2m3.5s"), 3723.5);
  EXPECT_DOUBLE_EQ(*parse_duration("8.64s"), 8.64);
  EXPECT_DOUBLE_EQ(*parse_duration(" 2 "), 2.0);  // bare seconds
  EXPECT_DOUBLE_EQ(*parse_duration("1500us"), 0.0015);
  EXPECT_DOUBLE_EQ(*parse_duration("5ns"), 5e-9);
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("s"));
  EXPECT_FALSE(parse_duration("5x"));
  EXPECT_FALSE(parse_duration("-1s"));
  EXPECT_FALSE(parse_duration("1.2.3s"));
}

TEST(LlmHeaders, RetryAfterSecondsAndDates) {
  EXPECT_DOUBLE_EQ(*parse_retry_after("120", 0), 120.0);
  EXPECT_DOUBLE_EQ(*parse_retry_after("0.5", 0), 0.5);
  // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 (unix seconds).
  const std::time_t date = 1445412480;
  EXPECT_DOUBLE_EQ(*parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", date - 30), 30.0);
  EXPECT_DOUBLE_EQ(*parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", date - 5), 5.0);  // RFC 850
  EXPECT_DOUBLE_EQ(*parse_retry_after("Wed Oct 21 07:28:00 2015", date - 7), 7.0);           // asctime
  EXPECT_DOUBLE_EQ(*parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", date + 100), 0.0);   // in the past
  EXPECT_FALSE(parse_retry_after("soon", 0));
  EXPECT_FALSE(parse_retry_after("", 0));
  EXPECT_FALSE(parse_retry_after("-3", 0));
}

TEST(LlmHeaders, HeaderMapKeepsTheFinalResponse) {
  HeaderMap h;
  h.add_line("HTTP/1.1 100 Continue\r\n");
  h.add_line("X-Old: 1\r\n");
  h.add_line("HTTP/1.1 429 Too Many Requests\r\n");
  h.add_line("Retry-After: 3\r\n");
  h.add_line("x-RateLimit-Remaining-Requests:  7 \r\n");
  h.add_line("\r\n");
  EXPECT_FALSE(h.get("x-old"));
  EXPECT_EQ(*h.get("retry-after"), "3");
  EXPECT_EQ(*h.get("X-RATELIMIT-REMAINING-REQUESTS"), "7");
  h.set("x-ratelimit-reset-requests", "6m0s");
  h.set("x-ratelimit-limit-tokens", "90000");
  h.set("x-ratelimit-remaining-tokens", "oops");
  const auto r = parse_rate_limit_headers(h);
  EXPECT_DOUBLE_EQ(*r.remaining_requests, 7.0);
  EXPECT_DOUBLE_EQ(*r.reset_requests_s, 360.0);
  EXPECT_DOUBLE_EQ(*r.limit_tokens, 90000.0);
  EXPECT_FALSE(r.remaining_tokens);  // unparsable: ignored, not zero
  EXPECT_FALSE(r.limit_requests);
  EXPECT_TRUE(r.any());
  EXPECT_FALSE(parse_rate_limit_headers(HeaderMap{}).any());
}

// ---------------------------------------------------------------- backoff

TEST(LlmBackoff, JitteredExponential) {
  const BackoffPolicy p{0.5, 8.0};
  // retry k: d = min(8, 0.5 * 2^(k-1)); wait in [d/2, d).
  const double d[] = {0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0};
  for (int k = 1; k <= 7; ++k) {
    EXPECT_DOUBLE_EQ(backoff_delay(p, k, 0.0), d[k - 1] / 2) << k;
    EXPECT_DOUBLE_EQ(backoff_delay(p, k, 1.0), d[k - 1]) << k;
    EXPECT_DOUBLE_EQ(backoff_delay(p, k, 0.5), 0.75 * d[k - 1]) << k;
  }
  EXPECT_DOUBLE_EQ(backoff_delay(p, 1000, 1.0), 8.0);  // no overflow at absurd retry counts
  EXPECT_DOUBLE_EQ(backoff_delay(p, 0, 0.0), 0.25);
}

TEST(LlmBackoff, RetryAfterIsNeverShortened) {
  const BackoffPolicy p{0.5, 8.0};
  EXPECT_DOUBLE_EQ(retry_delay(p, 1, 3.0, 0.0), 3.0);
  EXPECT_DOUBLE_EQ(retry_delay(p, 1, 3.0, 1.0), 3.3);
  EXPECT_DOUBLE_EQ(retry_delay(p, 5, 30.0, 0.0), 30.0);  // longer than max_s: the server decides
  EXPECT_DOUBLE_EQ(retry_delay(p, 2, std::nullopt, 0.0), 0.5);
  EXPECT_DOUBLE_EQ(retry_delay(p, 2, 0.0, 0.0), 0.5);  // "0" falls back to backoff
}

TEST(LlmBackoff, WhichStatusesAreRetried) {
  for (long s : {408L, 409L, 429L, 500L, 502L, 503L, 504L, 599L}) EXPECT_TRUE(is_retryable_status(s)) << s;
  for (long s : {200L, 400L, 401L, 403L, 404L, 413L, 422L}) EXPECT_FALSE(is_retryable_status(s)) << s;
}

// ---------------------------------------------------------------- rate limiter

namespace {
RateLimiterOptions exact() {
  RateLimiterOptions o;
  o.headroom = 0.0;
  o.burst_seconds = 1.0;
  return o;
}
}  // namespace

TEST(LlmRateLimiter, UnlimitedNeverWaits) {
  RateLimiter l({}, exact(), 0.0);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(l.try_acquire(1e6, 0.0));
  EXPECT_EQ(l.state().admitted_requests, 1000u);
}

TEST(LlmRateLimiter, RequestBucketRefillsContinuously) {
  // 120 rpm = 2/s, capacity 2 (one second). It starts with one request, not a full burst.
  RateLimiter l({120, 0}, exact(), 9.0);
  EXPECT_DOUBLE_EQ(l.state().requests.capacity, 2.0);
  EXPECT_DOUBLE_EQ(l.state().requests.level, 1.0);
  EXPECT_TRUE(l.try_acquire(0, 9.0));
  EXPECT_FALSE(l.try_acquire(0, 9.0));
  // Refilled to 2 by 10.0 (capacity): two at once, then one every 0.5 s.
  EXPECT_TRUE(l.try_acquire(0, 10.0));
  EXPECT_TRUE(l.try_acquire(0, 10.0));
  EXPECT_FALSE(l.try_acquire(0, 10.0));
  EXPECT_DOUBLE_EQ(l.wait_seconds(0, 10.0), 0.5);
  EXPECT_DOUBLE_EQ(l.wait_seconds(0, 10.25), 0.25);
  EXPECT_TRUE(l.try_acquire(0, 10.5));
  EXPECT_FALSE(l.try_acquire(0, 10.9));
  EXPECT_TRUE(l.try_acquire(0, 11.0));
  // Idle time refills only up to the capacity: no hoarding a minute's budget.
  EXPECT_TRUE(l.try_acquire(0, 100.0));
  EXPECT_TRUE(l.try_acquire(0, 100.0));
  EXPECT_FALSE(l.try_acquire(0, 100.0));
}

TEST(LlmRateLimiter, SlowBudgetsStillAdmitWholeRequests) {
  // 3 rpm: one second of refill is 0.05 requests, but the bucket holds at least one.
  RateLimiter l({3, 0}, exact(), 0.0);
  EXPECT_TRUE(l.try_acquire(0, 0.0));
  EXPECT_DOUBLE_EQ(l.wait_seconds(0, 0.0), 20.0);
}

TEST(LlmRateLimiter, SustainedRateEqualsBudgetLessHeadroom) {
  // Simulated minute at 600 rpm with 2% headroom, polling every millisecond.
  RateLimiterOptions o;
  o.headroom = 0.02;
  RateLimiter l({600, 0}, o, 0.0);
  int admitted = 0;
  for (int ms = 0; ms < 60000; ++ms) {
    while (l.try_acquire(0, ms / 1000.0)) ++admitted;
  }
  // 588 per minute from the refill plus the one request the bucket starts with.
  EXPECT_NEAR(admitted, 588 + 1, 1);
}

TEST(LlmRateLimiter, TokenBudgetWithDebtAndCorrection) {
  // 6000 tpm = 100/s, capacity 100.
  RateLimiter l({0, 6000}, exact(), 0.0);
  EXPECT_TRUE(l.try_acquire(60, 0.0));
  EXPECT_FALSE(l.try_acquire(60, 0.0));  // 40 left
  EXPECT_DOUBLE_EQ(l.wait_seconds(60, 0.0), 0.2);
  // The answer used 30 tokens, not 60: 30 come back.
  l.correct_tokens(60, 30, 0.0);
  EXPECT_DOUBLE_EQ(l.state().tokens.level, 70.0);
  EXPECT_TRUE(l.try_acquire(60, 0.0));
  // A request bigger than the capacity goes when the bucket is full and leaves a debt.
  EXPECT_FALSE(l.try_acquire(250, 0.0));
  EXPECT_DOUBLE_EQ(l.wait_seconds(250, 0.0), 0.9);  // from 10 up to the capacity 100
  EXPECT_TRUE(l.try_acquire(250, 0.9));
  EXPECT_DOUBLE_EQ(l.state().tokens.level, -150.0);
  EXPECT_DOUBLE_EQ(l.wait_seconds(1, 0.9), 1.51);
  // An underestimate is charged afterwards.
  l.correct_tokens(250, 300, 0.9);
  EXPECT_DOUBLE_EQ(l.state().tokens.level, -200.0);
}

TEST(LlmRateLimiter, ShareScalesRatesAndLevels) {
  RateLimiter l({600, 60000}, exact(), 0.0);  // 10/s, capacity 10
  l.set_share(0.25, 0.0);
  EXPECT_DOUBLE_EQ(l.effective().requests_per_minute, 150.0);
  EXPECT_DOUBLE_EQ(l.effective().tokens_per_minute, 15000.0);
  EXPECT_DOUBLE_EQ(l.state().requests.capacity, 2.5);
  EXPECT_DOUBLE_EQ(l.state().requests.level, 0.25);  // the same fill fraction (1 of 10), not the old level
  EXPECT_THROW(l.set_share(0.0, 0.0), Error);
  EXPECT_THROW(l.set_share(1.5, 0.0), Error);
}

TEST(LlmRateLimiter, HeadersTightenButNeverLoosen) {
  RateLimiter l({600, 0}, exact(), 0.0);  // capacity 10
  ASSERT_DOUBLE_EQ(l.wait_seconds(0, 1.0), 0.0);  // full after a second
  RateLimitHeaders h;
  h.remaining_requests = 3;
  // Two more were admitted after the request this answers: the server has 3 - 2 = 1 for us.
  l.observe(h, 2, 0, 1.0);
  EXPECT_DOUBLE_EQ(l.state().requests.level, 1.0);
  // A "remaining" above our level changes nothing.
  h.remaining_requests = 9;
  l.observe(h, 0, 0, 1.0);
  EXPECT_DOUBLE_EQ(l.state().requests.level, 1.0);
  // Within the one-request margin (the header is an integer floor): untouched.
  h.remaining_requests = 0;
  l.observe(h, 0, 0, 1.0);
  EXPECT_DOUBLE_EQ(l.state().requests.level, 1.0);
}

TEST(LlmRateLimiter, LowerServerLimitIsAdopted) {
  RateLimiter l({600, 100000}, exact(), 0.0);
  RateLimitHeaders h;
  h.limit_requests = 60;     // the account really has 60 rpm
  h.limit_tokens = 1000000;  // higher than configured: ignored
  l.observe(h, 0, 0, 0.0);
  EXPECT_DOUBLE_EQ(l.effective().requests_per_minute, 60.0);
  EXPECT_DOUBLE_EQ(l.effective().tokens_per_minute, 100000.0);
}

TEST(LlmRateLimiter, EmptyServerBucketWaitsForReset) {
  RateLimiter l({600, 0}, exact(), 0.0);
  RateLimitHeaders h;
  h.remaining_requests = 0;
  h.limit_requests = 600;
  h.reset_requests_s = 6.0;  // full in 6 s at 10/s from 540 below: one unit in 6/600 s
  l.observe(h, 0, 0, 1.0);  // we think we are full (10)
  EXPECT_DOUBLE_EQ(l.state().requests.level, 0.0);
  EXPECT_NEAR(l.wait_seconds(0, 1.0), 0.1, 1e-12);  // our own refill (10/s) is the longer wait
}

TEST(LlmRateLimiter, TooManyRequestsPausesEverything) {
  RateLimiter l({600, 0}, exact(), 0.0);
  l.on_rate_limited(2.5, 1.0);
  EXPECT_DOUBLE_EQ(l.state().paused_until, 3.5);
  EXPECT_FALSE(l.try_acquire(0, 3.0));
  EXPECT_DOUBLE_EQ(l.wait_seconds(0, 3.0), 0.5);
  EXPECT_TRUE(l.try_acquire(0, 3.5));
  l.on_rate_limited(std::nullopt, 10.0);  // no Retry-After: one second
  EXPECT_DOUBLE_EQ(l.wait_seconds(0, 10.0), 1.0);
  // A pause broadcast from elsewhere (another rank's 429) only ever extends.
  l.pause_until(5.0);
  EXPECT_DOUBLE_EQ(l.state().paused_until, 11.0);
}

TEST(LlmRateLimiter, RejectsNonsense) {
  RateLimiterOptions o;
  o.headroom = 1.0;
  EXPECT_THROW(RateLimiter({60, 0}, o, 0.0), Error);
  o = {};
  o.burst_seconds = 0.0;
  EXPECT_THROW(RateLimiter({60, 0}, o, 0.0), Error);
  EXPECT_THROW(RateLimiter({-1, 0}, {}, 0.0), Error);
}
