#include "llm/client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "core/error.hpp"
#include "llm/backoff.hpp"
#include "llm/http_headers.hpp"
#include "llm/response_cache.hpp"
#include "nexplain_version.hpp"

namespace nexplain {

namespace {

using Clock = std::chrono::steady_clock;

// A response larger than this is not an LLM answer; refusing it bounds memory.
constexpr std::size_t kMaxBody = std::size_t{256} << 20;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) fail("libcurl: global initialisation failed");
  });
}

std::string join_url(const std::string& base, const char* path) {
  std::string b = base;
  while (!b.empty() && b.back() == '/') b.pop_back();
  return b + path;
}

// Transport failures that a second attempt can fix: the server or the path to it had a bad
// moment. Everything else (bad URL, TLS certificate mismatch, unsupported protocol) would fail
// the same way again.
bool is_retryable_curl(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_WEIRD_SERVER_REPLY:
      return true;
    default:
      return false;
  }
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* out = static_cast<std::string*>(user);
  const std::size_t bytes = size * n;
  if (out->size() + bytes > kMaxBody) return 0;  // makes curl fail the transfer (CURLE_WRITE_ERROR)
  out->append(data, bytes);
  return bytes;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  static_cast<HeaderMap*>(user)->add_line(std::string_view(data, size * n));
  return size * n;
}

}  // namespace

// ---------------------------------------------------------------- internal state

struct Job {
  std::uint64_t id = 0;
  LlmRequest request;
  std::string payload;
  std::string hash;
  double submitted_at = 0.0;
  int attempts = 0;
  double estimated_tokens = 0.0;
  // The limiter's cumulative counters right after this job's latest admission: what was
  // admitted later is what the server had not yet counted when it answered.
  std::uint64_t admitted_requests_mark = 0;
  double admitted_tokens_mark = 0.0;
  std::string last_error;
  long last_status = 0;
  std::vector<std::unique_ptr<Job>> twins;  // identical requests merged into this one
};

struct Stage {
  EndpointConfig config;
  ApiKey key;
  RateLimiter limiter;
  std::string url_chat, url_completion;
  std::deque<std::unique_ptr<Job>> queue;
  int in_flight = 0;
  // Learned prompt characters per token. Before any usage is seen the guess is 3, on the safe
  // side of the usual 4 for English prose: activation records (short tokens, tabs, digits)
  // run nearer 3, and an underestimate turns into 429s.
  double chars_seen = 0.0;
  double prompt_tokens_seen = 0.0;
  double chars_per_token() const {
    return prompt_tokens_seen >= 1.0 ? std::clamp(chars_seen / prompt_tokens_seen, 1.0, 8.0) : 3.0;
  }
  // Until the first answer arrives only one request is in flight: it calibrates the token
  // estimate (and checks the endpoint) before a whole burst is sent on a guess.
  bool calibrated = false;
  int cap() const { return calibrated ? config.max_concurrency : 1; }
};

struct Transfer {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string body;
  HeaderMap response_headers;
  char error[CURL_ERROR_SIZE] = {};
  std::unique_ptr<Job> job;
  Stage* stage = nullptr;
  ~Transfer() {
    if (headers) curl_slist_free_all(headers);
    if (easy) curl_easy_cleanup(easy);
  }
};

struct LlmClient::Impl {
  std::map<std::string, Stage> stages;
  std::vector<std::string> stage_order;  // admission order: as configured
  std::unique_ptr<ResponseCache> cache;
  CURLM* multi = nullptr;
  Clock::time_point epoch = Clock::now();
  std::mt19937_64 rng;
  std::uint64_t next_id = 1;
  std::size_t outstanding = 0;
  std::unordered_map<std::string, Job*> active_by_hash;  // queued, in flight or waiting to retry
  std::multimap<double, std::unique_ptr<Job>> delayed;   // retry time -> job
  std::unordered_map<CURL*, std::unique_ptr<Transfer>> transfers;
  std::vector<LlmResult> ready;
  CostLedger ledger;
  ClientStats stats;

  double now() const { return std::chrono::duration<double>(Clock::now() - epoch).count(); }
  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }

  Stage& stage_of(const std::string& name) {
    auto it = stages.find(name);
    if (it == stages.end()) fail("LLM request: unknown stage '{}'", name);
    return it->second;
  }

  // Tokens the server will count for this request: the prompt at the stage's learned
  // characters-per-token, a few tokens of framing per chat message, and the full completion
  // budget (OpenAI reserves max_tokens against the limit when the request arrives).
  double estimate_tokens(const Stage& s, const Job& j) const {
    double t = std::ceil(static_cast<double>(j.request.prompt_chars()) / s.chars_per_token());
    if (j.request.kind == ApiKind::chat) {
      if (auto it = j.request.body.find("messages"); it != j.request.body.end() && it->is_array()) {
        t += 4.0 * static_cast<double>(it->size()) + 3.0;
      }
    }
    return t + static_cast<double>(std::max<std::int64_t>(0, j.request.max_tokens()));
  }

  void start(Stage& s, std::unique_ptr<Job> job) {
    auto t = std::make_unique<Transfer>();
    t->stage = &s;
    t->easy = curl_easy_init();
    if (!t->easy) fail("libcurl: cannot create a transfer");
    CURL* e = t->easy;
    const std::string& url = job->request.kind == ApiKind::chat ? s.url_chat : s.url_completion;
    t->headers = curl_slist_append(t->headers, "Content-Type: application/json");
    t->headers = curl_slist_append(t->headers, "Accept: application/json");
    t->headers = curl_slist_append(t->headers, "Expect:");  // no 100-continue round trip
    if (!s.key.empty()) {
      const std::string auth = "Authorization: Bearer " + s.key.reveal();
      t->headers = curl_slist_append(t->headers, auth.c_str());
    }
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, job->payload.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(job->payload.size()));
    curl_easy_setopt(e, CURLOPT_USERAGENT, "nexplain/" NEXPLAIN_VERSION);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    if (url.rfind("https://", 0) == 0) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);  // prefer multiplexing over new connections
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(s.config.connect_timeout_s * 1000.0));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(s.config.request_timeout_s * 1000.0));
    if (!s.config.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, s.config.ca_file.c_str());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &t->body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &t->response_headers);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    job->attempts += 1;
    t->job = std::move(job);
    s.in_flight += 1;
    stats.http_attempts += 1;
    if (const CURLMcode mc = curl_multi_add_handle(multi, e); mc != CURLM_OK) fail("libcurl: {}", curl_multi_strerror(mc));
    transfers.emplace(e, std::move(t));
  }

  // Starts every queued request that its stage's concurrency cap and rate budget allow.
  void admit() {
    const double t = now();
    for (const auto& name : stage_order) {
      Stage& s = stages.at(name);
      while (!s.queue.empty() && s.in_flight < s.cap()) {
        Job& j = *s.queue.front();
        j.estimated_tokens = estimate_tokens(s, j);
        if (!s.limiter.try_acquire(j.estimated_tokens, t)) break;
        j.admitted_requests_mark = s.limiter.state().admitted_requests;
        j.admitted_tokens_mark = s.limiter.state().admitted_tokens;
        auto job = std::move(s.queue.front());
        s.queue.pop_front();
        start(s, std::move(job));
      }
    }
  }

  // Seconds until something can happen without network activity: a retry comes due or a
  // rate-limited stage may admit again.
  double next_event_in() {
    const double t = now();
    double w = 3600.0;
    if (!delayed.empty()) w = std::min(w, delayed.begin()->first - t);
    for (auto& [name, s] : stages) {
      if (s.queue.empty() || s.in_flight >= s.cap()) continue;
      w = std::min(w, s.limiter.wait_seconds(estimate_tokens(s, *s.queue.front()), t));
    }
    return std::max(0.0, w);
  }

  void promote_due_retries() {
    const double t = now();
    // Retries go to the front of their queue: they have waited longest.
    std::vector<std::unique_ptr<Job>> due;
    while (!delayed.empty() && delayed.begin()->first <= t) {
      due.push_back(std::move(delayed.begin()->second));
      delayed.erase(delayed.begin());
    }
    for (auto it = due.rbegin(); it != due.rend(); ++it) {
      Stage& s = stage_of((*it)->request.stage);
      s.queue.push_front(std::move(*it));
    }
  }

  LlmResult result_for(const Job& j) const {
    LlmResult r;
    r.id = j.id;
    r.stage = j.request.stage;
    r.tag = j.request.tag;
    r.hash = j.hash;
    r.attempts = j.attempts;
    r.http_status = j.last_status;
    r.seconds = now() - j.submitted_at;
    return r;
  }

  // Final answer for a job and its merged twins.
  void complete(std::unique_ptr<Job> job, LlmResult r) {
    active_by_hash.erase(job->hash);
    for (auto& twin : job->twins) {
      LlmResult tr = r;
      tr.id = twin->id;
      tr.tag = twin->request.tag;
      tr.stage = twin->request.stage;
      tr.from_cache = true;
      tr.cost_usd = 0.0;
      tr.attempts = 0;
      tr.seconds = now() - twin->submitted_at;
      if (tr.ok) stats.succeeded += 1;
      else stats.failed += 1;
      ready.push_back(std::move(tr));
    }
    if (r.ok) stats.succeeded += 1;
    else stats.failed += 1;
    ready.push_back(std::move(r));
  }

  void finish_attempt(std::unique_ptr<Transfer> t, CURLcode rc) {
    Stage& s = *t->stage;
    std::unique_ptr<Job> job = std::move(t->job);
    s.in_flight -= 1;
    s.calibrated = true;
    const double tnow = now();
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    long connects = 0;
    curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
    stats.connections += static_cast<std::uint64_t>(std::max(0L, connects));
    job->last_status = status;

    const auto& st = s.limiter.state();
    const double later_requests = static_cast<double>(st.admitted_requests - job->admitted_requests_mark);
    const double later_tokens = st.admitted_tokens - job->admitted_tokens_mark;
    std::optional<double> retry_after;
    if (rc == CURLE_OK) {
      s.limiter.observe(parse_rate_limit_headers(t->response_headers), later_requests, later_tokens, tnow);
      if (auto ra = t->response_headers.get("retry-after")) retry_after = parse_retry_after(*ra, std::time(nullptr));
    }

    std::string reason;
    bool retryable = false;
    if (rc != CURLE_OK) {
      reason = t->error[0] ? fmt::format("{} ({})", curl_easy_strerror(rc), t->error) : curl_easy_strerror(rc);
      retryable = is_retryable_curl(rc);
      if (rc == CURLE_OPERATION_TIMEDOUT) stats.timeouts += 1;
    } else if (status >= 200 && status < 300) {
      try {
        LlmResponse resp = parse_response(job->request.kind, t->body);
        LlmResult r = result_for(*job);
        r.ok = true;
        r.response = std::move(resp);
        const Usage& u = r.response.usage;
        const double actual = r.response.has_usage ? static_cast<double>(u.total()) : job->estimated_tokens;
        s.limiter.correct_tokens(job->estimated_tokens, actual, tnow);
        if (r.response.has_usage && u.prompt_tokens > 0) {
          s.chars_seen += static_cast<double>(job->request.prompt_chars());
          s.prompt_tokens_seen += static_cast<double>(u.prompt_tokens);
        }
        r.cost_usd = s.config.prices.cost(u);
        ledger.add(s.config.stage, u, s.config.prices, /*cached=*/false);
        if (cache) {
          try {
            cache->put(job->hash, job->request.kind, job->payload, t->body);
          } catch (const Error& e) {
            // The answer is still good; only a rerun loses it.
            spdlog::warn("llm {}: could not store the answer to '{}' in the cache: {}", s.config.stage, job->request.tag, e.what());
          }
        }
        r.body = std::move(t->body);
        complete(std::move(job), std::move(r));
        return;
      } catch (const Error& e) {
        reason = e.what();  // malformed or truncated: the next attempt is usually fine
        retryable = true;
      }
    } else {
      reason = fmt::format("HTTP {}: {}", status, error_message_from_body(t->body));
      retryable = is_retryable_status(status);
      if (status == 429) {
        stats.http_429 += 1;
        s.limiter.on_rate_limited(retry_after, tnow);
      }
    }
    reason = s.key.redact(std::move(reason));
    job->last_error = reason;
    if (retryable && job->attempts <= s.config.max_retries) {
      const double delay = retry_delay(s.config.backoff, job->attempts, retry_after, uniform());
      spdlog::debug("llm {}: '{}' attempt {} failed: {}; retrying in {:.2f} s", s.config.stage, job->request.tag,
                    job->attempts, reason, delay);
      stats.retries += 1;
      delayed.emplace(tnow + delay, std::move(job));
      return;
    }
    LlmResult r = result_for(*job);
    r.ok = false;
    r.error = retryable ? fmt::format("gave up after {} attempts; last: {}", job->attempts, reason) : reason;
    spdlog::warn("llm {}: '{}' failed: {}", s.config.stage, job->request.tag, r.error);
    complete(std::move(job), std::move(r));
  }

  void collect_finished() {
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      CURL* e = m->easy_handle;
      const CURLcode rc = m->data.result;
      curl_multi_remove_handle(multi, e);
      auto it = transfers.find(e);
      if (it == transfers.end()) continue;
      auto t = std::move(it->second);
      transfers.erase(it);
      finish_attempt(std::move(t), rc);
    }
  }

  void perform() {
    int running = 0;
    const CURLMcode mc = curl_multi_perform(multi, &running);
    if (mc != CURLM_OK) fail("libcurl: {}", curl_multi_strerror(mc));
    collect_finished();
  }

  std::vector<LlmResult> take_ready() {
    std::vector<LlmResult> out;
    out.swap(ready);
    outstanding -= out.size();
    return out;
  }

  // Returns the first batch of finished results within max_wait_s.
  std::vector<LlmResult> poll(double max_wait_s) {
    const double deadline = now() + std::max(0.0, max_wait_s);
    for (;;) {
      promote_due_retries();
      admit();
      perform();
      if (!ready.empty()) {
        admit();  // keep the pipe full while the caller handles these
        perform();
        return take_ready();
      }
      if (outstanding == 0) return {};
      const double t = now();
      if (t >= deadline) return {};
      double wait = std::min(deadline - t, next_event_in());
      long curl_ms = -1;
      curl_multi_timeout(multi, &curl_ms);
      if (curl_ms >= 0) wait = std::min(wait, static_cast<double>(curl_ms) / 1000.0);
      const int ms = static_cast<int>(std::ceil(std::max(0.0, wait) * 1000.0));
      if (ms > 0) curl_multi_poll(multi, nullptr, 0, ms, nullptr);
    }
  }

  // ------------------------------------------------------------ preflight
  struct Simple {
    CURLcode rc = CURLE_OK;
    long status = 0;
    std::string body;
    std::string error;
  };

  Simple get(const Stage& s, const std::string& url) {
    Simple r;
    CURL* e = curl_easy_init();
    if (!e) fail("libcurl: cannot create a transfer");
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Accept: application/json");
    if (!s.key.empty()) {
      const std::string auth = "Authorization: Bearer " + s.key.reveal();
      headers = curl_slist_append(headers, auth.c_str());
    }
    char err[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "nexplain/" NEXPLAIN_VERSION);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(s.config.connect_timeout_s * 1000.0));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(std::min(s.config.request_timeout_s, 60.0) * 1000.0));
    if (!s.config.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, s.config.ca_file.c_str());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, err);
    r.rc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
    r.error = err[0] ? fmt::format("{} ({})", curl_easy_strerror(r.rc), err) : curl_easy_strerror(r.rc);
    curl_slist_free_all(headers);
    curl_easy_cleanup(e);
    return r;
  }

  void preflight(Stage& s) {
    const std::string url = join_url(s.config.base_url, "/models");
    const std::string where = fmt::format("llm endpoint '{}' ({})", s.config.stage, s.config.base_url);
    Simple r;
    // A few quick tries: a server that is starting or briefly overloaded should not abort a run.
    for (int attempt = 1; attempt <= 3; ++attempt) {
      r = get(s, url);
      const bool transient = r.rc != CURLE_OK ? is_retryable_curl(r.rc) && r.rc != CURLE_COULDNT_CONNECT
                                              : is_retryable_status(r.status);
      if (!transient || attempt == 3) break;
      const double delay = std::min(2.0, backoff_delay(s.config.backoff, attempt, uniform()));
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    }
    if (r.rc != CURLE_OK) fail("{}: cannot reach the server: {}", where, s.key.redact(r.error));
    if (r.status == 401 || r.status == 403) {
      fail("{}: the server rejected the API key (HTTP {}): {}", where, r.status, s.key.redact(error_message_from_body(r.body)));
    }
    if (r.status == 404 || r.status == 405) {
      spdlog::warn("{}: the server has no /models listing (HTTP {}); model '{}' not checked", where, r.status, s.config.model);
      return;
    }
    if (r.status < 200 || r.status >= 300) {
      fail("{}: GET /models answered HTTP {}: {}", where, r.status, s.key.redact(error_message_from_body(r.body)));
    }
    if (!s.config.check_model) return;
    std::vector<std::string> ids;
    try {
      const auto j = nlohmann::json::parse(r.body);
      for (const auto& m : j.at("data")) ids.push_back(m.at("id").get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      fail("{}: GET /models returned an unexpected body: {}", where, e.what());
    }
    if (std::find(ids.begin(), ids.end(), s.config.model) == ids.end()) {
      std::string some;
      for (std::size_t i = 0; i < ids.size() && i < 10; ++i) some += (i ? ", " : "") + ids[i];
      if (ids.size() > 10) some += ", ...";
      fail("{}: the server does not offer model '{}' (it offers: {})", where, s.config.model, some.empty() ? "none" : some);
    }
  }
};

// ---------------------------------------------------------------- public API

LlmClient::LlmClient(std::vector<EndpointConfig> endpoints, ClientOptions options) : impl_(std::make_unique<Impl>()) {
  global_init();
  if (endpoints.empty()) fail("llm client: no endpoints configured");
  auto& im = *impl_;
  im.rng.seed(options.seed ? options.seed : (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}());
  long connections = 8;
  for (auto& c : endpoints) {
    c.validate();
    if (im.stages.count(c.stage)) fail("llm client: stage '{}' is configured twice", c.stage);
    ApiKey key = load_api_key(c);  // Error before any work when a remote server has no key
    Stage s{c, std::move(key), RateLimiter(c.budget, c.rate, im.now()), join_url(c.base_url, api_path(ApiKind::chat)),
            join_url(c.base_url, api_path(ApiKind::completion)), {}, 0, 0.0, 0.0};
    connections += c.max_concurrency;
    im.stage_order.push_back(c.stage);
    im.stages.emplace(c.stage, std::move(s));
  }
  if (!options.cache_dir.empty()) im.cache = std::make_unique<ResponseCache>(options.cache_dir);
  im.multi = curl_multi_init();
  if (!im.multi) fail("libcurl: cannot create a multi handle");
  // Keep as many idle connections as could ever be busy, so keep-alive survives quiet moments.
  curl_multi_setopt(im.multi, CURLMOPT_MAXCONNECTS, connections);
  curl_multi_setopt(im.multi, CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_MULTIPLEX));
}

LlmClient::~LlmClient() {
  auto& im = *impl_;
  for (auto& [easy, t] : im.transfers) curl_multi_remove_handle(im.multi, easy);
  im.transfers.clear();
  if (im.multi) curl_multi_cleanup(im.multi);
}

void LlmClient::preflight() {
  for (const auto& name : impl_->stage_order) impl_->preflight(impl_->stages.at(name));
}

std::string LlmClient::payload_for(const LlmRequest& request) const {
  return request_payload(request, endpoint(request.stage).model);
}

std::string LlmClient::hash_for(const LlmRequest& request) const { return request_hash(request.kind, payload_for(request)); }

std::uint64_t LlmClient::submit(LlmRequest request) {
  auto& im = *impl_;
  Stage& s = im.stage_of(request.stage);
  auto job = std::make_unique<Job>();
  job->id = im.next_id++;
  job->payload = request_payload(request, s.config.model);
  job->hash = request_hash(request.kind, job->payload);
  job->request = std::move(request);
  job->submitted_at = im.now();
  im.stats.submitted += 1;
  im.outstanding += 1;
  const std::uint64_t id = job->id;

  if (im.cache) {
    if (auto body = im.cache->get(job->hash)) {
      try {
        LlmResult r = im.result_for(*job);
        r.response = parse_response(job->request.kind, *body);
        r.ok = true;
        r.from_cache = true;
        r.body = std::move(*body);
        im.ledger.add(s.config.stage, r.response.usage, s.config.prices, /*cached=*/true);
        im.stats.cache_hits += 1;
        im.stats.succeeded += 1;
        im.ready.push_back(std::move(r));
        return id;
      } catch (const Error& e) {
        spdlog::warn("response cache: entry {} does not parse ({}); asking again", job->hash, e.what());
      }
    }
  }
  if (auto it = im.active_by_hash.find(job->hash); it != im.active_by_hash.end()) {
    im.stats.merged += 1;
    it->second->twins.push_back(std::move(job));
    return id;
  }
  im.active_by_hash[job->hash] = job.get();
  s.queue.push_back(std::move(job));
  return id;
}

std::vector<LlmResult> LlmClient::poll(double max_wait_s) { return impl_->poll(max_wait_s); }

std::size_t LlmClient::poll(double max_wait_s, const std::function<void(LlmResult&&)>& on_result) {
  auto results = impl_->poll(max_wait_s);
  for (auto& r : results) on_result(std::move(r));
  return results.size();
}

std::size_t LlmClient::outstanding() const { return impl_->outstanding; }

LlmResult LlmClient::run(LlmRequest request) {
  std::vector<LlmRequest> one;
  one.push_back(std::move(request));
  return std::move(run_all(std::move(one)).front());
}

std::vector<LlmResult> LlmClient::run_all(std::vector<LlmRequest> requests) {
  auto& im = *impl_;
  std::unordered_map<std::uint64_t, std::size_t> index;
  for (std::size_t i = 0; i < requests.size(); ++i) index[submit(std::move(requests[i]))] = i;
  std::vector<LlmResult> out(requests.size());
  std::vector<LlmResult> others;
  std::size_t left = requests.size();
  while (left > 0) {
    for (auto& r : im.poll(1.0)) {
      if (auto it = index.find(r.id); it != index.end()) {
        out[it->second] = std::move(r);
        --left;
      } else {
        others.push_back(std::move(r));
      }
    }
  }
  // Results that belong to earlier submissions go back for the caller's next poll.
  for (auto& r : others) im.ready.push_back(std::move(r));
  im.outstanding += others.size();
  return out;
}

const EndpointConfig& LlmClient::endpoint(const std::string& stage) const {
  auto it = impl_->stages.find(stage);
  if (it == impl_->stages.end()) fail("LLM request: unknown stage '{}'", stage);
  return it->second.config;
}

RateLimiter& LlmClient::limiter(const std::string& stage) { return impl_->stage_of(stage).limiter; }

double LlmClient::now() const { return impl_->now(); }

const CostLedger& LlmClient::costs() const { return impl_->ledger; }

const ClientStats& LlmClient::stats() const { return impl_->stats; }

}  // namespace nexplain
