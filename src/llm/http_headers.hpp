#pragma once
// Response headers that steer retries and rate limits: Retry-After and OpenAI's
// x-ratelimit-{limit,remaining,reset}-{requests,tokens}.
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace nexplain {

// Response header fields by lower-cased name (HTTP names are case-insensitive; HTTP/2 sends
// them lower-case anyway). A repeated field keeps its last value.
class HeaderMap {
 public:
  // Feeds one raw header line as libcurl delivers it ("Name: value\r\n"). A status line
  // ("HTTP/1.1 200 OK") starts a new response and clears the fields: after a 100 Continue or a
  // redirect only the final response's headers count.
  void add_line(std::string_view line);
  void set(std::string_view name, std::string_view value);
  std::optional<std::string> get(std::string_view name) const;
  std::size_t size() const { return fields_.size(); }

 private:
  std::map<std::string, std::string, std::less<>> fields_;
};

// Go-style durations as OpenAI writes them in x-ratelimit-reset-*: "1s", "6m0s", "20ms",
// "1h2m3.5s", "0.5s"; a bare number is seconds. Returns seconds, or nullopt when unparsable.
std::optional<double> parse_duration(std::string_view text);

// Retry-After: delay-seconds ("120", fractions tolerated) or an HTTP-date ("Wed, 21 Oct 2015
// 07:28:00 GMT", the other legacy forms too), the latter relative to `now` (UTC seconds).
// Returns seconds to wait (>= 0; a date in the past gives 0), nullopt when unparsable.
std::optional<double> parse_retry_after(std::string_view text, std::time_t now);

// What a server said about its rate-limit state. Every field is optional: servers send some,
// all or none of them.
struct RateLimitHeaders {
  std::optional<double> limit_requests, limit_tokens;          // per minute
  std::optional<double> remaining_requests, remaining_tokens;  // left now
  std::optional<double> reset_requests_s, reset_tokens_s;      // seconds until fully replenished
  bool any() const {
    return limit_requests || limit_tokens || remaining_requests || remaining_tokens || reset_requests_s || reset_tokens_s;
  }
};
RateLimitHeaders parse_rate_limit_headers(const HeaderMap& headers);

}  // namespace nexplain
