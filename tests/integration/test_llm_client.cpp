// The LLM client against tests/servers/openai_test_server.py: real HTTP on loopback, one
// server process per test, its request log as the witness of what was really sent.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "../servers/openai_test_server.hpp"
#include "core/error.hpp"
#include "llm/client.hpp"
#include "llm/journal.hpp"
#include "test_support.hpp"

using namespace nexplain;
namespace fs = std::filesystem;
using test::OpenAiTestServer;

namespace {

// The server's deterministic simulation value: FNV-1a-32 of the token text, mod 11.
int value_of(const std::string& tok) {
  std::uint32_t h = 0x811C9DC5u;
  for (unsigned char c : tok) {
    h ^= c;
    h *= 0x01000193u;
  }
  return static_cast<int>(h % 11u);
}

EndpointConfig config_for(const OpenAiTestServer& s, const std::string& stage = "sim") {
  EndpointConfig c;
  c.stage = stage;
  c.base_url = s.base_url();
  c.model = "test-model";
  c.connect_timeout_s = 5;
  c.request_timeout_s = 10;
  c.max_retries = 8;
  c.backoff = {0.02, 0.2};  // fast retries keep the tests short
  c.max_concurrency = 16;
  return c;
}

std::vector<std::string> tokens_for(int i) {
  return {" tok" + std::to_string(i), " and", " w" + std::to_string(i * 7 % 13)};
}

// An all-at-once simulation request (completions, echo + logprobs).
LlmRequest sim_request(const std::string& stage, int i) {
  CompletionParams p;
  p.prompt = "Neuron " + std::to_string(i) + "\n<start>\n";
  for (const auto& t : tokens_for(i)) p.prompt += t + "\tunknown\n";
  p.prompt += "<end>\n";
  p.max_tokens = 1;
  p.logprobs = 5;
  return make_completion_request(stage, "sim/" + std::to_string(i), p);
}

// A chat request; the server echoes a hash-derived answer.
LlmRequest chat_request(const std::string& stage, int i) {
  ChatParams p;
  p.messages = {{"system", "You explain neurons."}, {"user", "question number " + std::to_string(i)}};
  p.max_tokens = 20;
  return make_chat_request(stage, "chat/" + std::to_string(i), p);
}

// Checks a simulation answer: at every "unknown" the most likely value is value_of(token).
void expect_sim_answer(const LlmResult& r, int i) {
  ASSERT_TRUE(r.ok) << r.tag << ": " << r.error;
  const auto& lp = r.response.choices.at(0).logprobs;
  std::vector<int> got;
  for (std::size_t k = 2; k < lp.size(); ++k) {
    if (lp[k].token == "unknown" && lp[k - 1].token == "\t") got.push_back(std::stoi(lp[k].top.at(0).token));
  }
  std::vector<int> want;
  for (const auto& t : tokens_for(i)) want.push_back(value_of(t));
  EXPECT_EQ(got, want) << r.tag;
}

std::map<std::string, std::vector<nlohmann::json>> log_by_hash(const OpenAiTestServer& s) {
  std::map<std::string, std::vector<nlohmann::json>> m;
  for (auto& e : s.log()) m[e["hash"].get<std::string>()].push_back(e);
  return m;
}

}  // namespace

TEST(LlmClient, ManyConcurrentRequestsComplete) {
  test::TempDir dir;
  OpenAiTestServer server(dir / "requests.jsonl");
  auto cfg = config_for(server);
  cfg.max_concurrency = 32;
  LlmClient client({cfg}, {});
  client.preflight();
  const int n = 200;
  std::map<std::uint64_t, int> ids;
  for (int i = 0; i < n; ++i) ids[client.submit(i % 2 ? sim_request("sim", i) : chat_request("sim", i))] = i;
  std::set<std::uint64_t> seen;
  const auto t0 = std::chrono::steady_clock::now();
  while (client.outstanding() > 0) {
    for (auto& r : client.poll(5.0)) {
      EXPECT_TRUE(seen.insert(r.id).second) << "result returned twice: " << r.tag;
      const int i = ids.at(r.id);
      if (i % 2) {
        expect_sim_answer(r, i);
      } else {
        ASSERT_TRUE(r.ok) << r.error;
        EXPECT_EQ(r.response.choices[0].text, "echo " + r.hash.substr(0, 12));  // the server saw the same bytes we hashed
      }
    }
    ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(50));
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(n));
  const auto log = server.log();
  EXPECT_EQ(log.size(), static_cast<std::size_t>(n));
  std::set<int> peers;
  for (const auto& e : log) peers.insert(e["peer"].get<int>());
  // Keep-alive: connections are reused, not one per request.
  EXPECT_LE(client.stats().connections, 2u * 32u);
  EXPECT_LE(peers.size(), 2u * 32u);
  std::printf("[ info ] %d requests in %.2f s (%.0f/s) over %zu connections\n", n, secs, n / secs, peers.size());
}

TEST(LlmClient, FaultsEndDoneOrFailedNoneLost) {
  test::TempDir dir;
  OpenAiTestServer server(dir / "requests.jsonl",
                          {"--seed", "7", "--fault", "500:p=0.08", "--fault", "503:p=0.05", "--fault", "429:p=0.05:retry_after=0",
                           "--fault", "malformed:p=0.06", "--fault", "truncated:p=0.06", "--fault", "drop:p=0.06",
                           "--fault", "slow:p=0.03:delay=1.5", "--fault", "400:p=0.03"});
  auto cfg = config_for(server);
  cfg.request_timeout_s = 0.75;  // a slow answer times out and is retried
  cfg.max_retries = 10;
  LlmClient client({cfg}, {});
  const int n = 150;
  std::map<std::uint64_t, int> ids;
  for (int i = 0; i < n; ++i) ids[client.submit(sim_request("sim", i))] = i;
  std::map<std::uint64_t, LlmResult> results;
  const auto t0 = std::chrono::steady_clock::now();
  while (client.outstanding() > 0) {
    for (auto& r : client.poll(5.0)) EXPECT_TRUE(results.emplace(r.id, std::move(r)).second);
    ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(50));
  }
  ASSERT_EQ(results.size(), static_cast<std::size_t>(n));  // none lost
  const auto by_hash = log_by_hash(server);
  int ok = 0, failed = 0;
  for (const auto& [id, r] : results) {
    if (r.ok) {
      ++ok;
      expect_sim_answer(r, ids.at(id));
    } else {
      ++failed;
      EXPECT_FALSE(r.error.empty());
      // The only final failures are the injected 400s (perhaps after a retried fault), and a
      // 400 is never retried: it is the last thing the server saw of that request.
      EXPECT_EQ(r.http_status, 400) << r.error;
      EXPECT_NE(r.error.find("Injected bad request"), std::string::npos) << r.error;
      const auto& entries = by_hash.at(r.hash);
      EXPECT_EQ(entries.back()["status"], 400);
      EXPECT_EQ(std::count_if(entries.begin(), entries.end(), [](const auto& e) { return e["status"] == 400; }), 1);
      EXPECT_LE(static_cast<std::size_t>(r.attempts), entries.size());
    }
  }
  std::map<std::string, int> faults;
  for (const auto& e : server.log()) {
    if (!e["fault"].is_null()) faults[e["fault"].get<std::string>()] += 1;
  }
  std::string summary;
  int injected = 0;
  for (const auto& [k, v] : faults) {
    summary += " " + k + "=" + std::to_string(v);
    injected += v;
  }
  EXPECT_GT(injected, 20);
  EXPECT_GE(faults.size(), 6u);
  std::printf("[ info ] %d ok, %d failed (injected 400s); %d faults survived:%s; %llu retries, %llu timeouts\n", ok, failed,
              injected, summary.c_str(), static_cast<unsigned long long>(client.stats().retries),
              static_cast<unsigned long long>(client.stats().timeouts));
}

TEST(LlmClient, RetryAfterIsHonoured) {
  test::TempDir dir;
  OpenAiTestServer server(dir / "requests.jsonl", {"--fault", "429:nth=1:retry_after=1", "--fault", "503:nth=3:retry_after=1"});
  LlmClient client({config_for(server)}, {});
  for (int i = 0; i < 2; ++i) {
    const LlmResult r = client.run(chat_request("sim", i));
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.attempts, 2);
    const auto entries = log_by_hash(server).at(r.hash);
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[0]["status"], i == 0 ? 429 : 503);
    const double gap = entries[1]["t"].get<double>() - entries[0]["t"].get<double>();
    EXPECT_GE(gap, 1.0) << "retried " << gap << " s after a Retry-After of 1 s";
    EXPECT_LT(gap, 1.5);
  }
  EXPECT_EQ(client.stats().http_429, 1u);
}

TEST(LlmClient, BadRequestIsNotRetried) {
  test::TempDir dir;
  OpenAiTestServer server(dir / "requests.jsonl", {"--fault", "400:nth=1"});
  LlmClient client({config_for(server)}, {});
  const LlmResult r = client.run(chat_request("sim", 1));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.attempts, 1);
  EXPECT_EQ(r.http_status, 400);
  EXPECT_NE(r.error.find("HTTP 400: Injected bad request"), std::string::npos) << r.error;
  EXPECT_EQ(server.log().size(), 1u);
  EXPECT_EQ(client.stats().retries, 0u);
}

TEST(LlmClient, ClearErrorsBeforeWork) {
  test::TempDir dir;
  ::setenv("NEXPLAIN_TEST_SERVER_KEY", "sk-right-key-0001", 1);
  OpenAiTestServer server(dir / "requests.jsonl", {"--api-key-env", "NEXPLAIN_TEST_SERVER_KEY", "--echo-key-in-errors"});
  auto cfg = config_for(server);
  cfg.api_key_env = "NEXPLAIN_TEST_CLIENT_KEY";
  auto expect_error = [](LlmClient& c, const std::string& want) {
    try {
      c.preflight();
      ADD_FAILURE() << "expected an error containing '" << want << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("sk-"), std::string::npos) << "a key leaked: " << e.what();
    }
  };
  // Wrong key.
  ::setenv("NEXPLAIN_TEST_CLIENT_KEY", "sk-wrong-key-0002", 1);
  {
    LlmClient c({cfg}, {});
    expect_error(c, "rejected the API key (HTTP 401)");
  }
  // Right key, model the server does not offer.
  ::setenv("NEXPLAIN_TEST_CLIENT_KEY", "sk-right-key-0001", 1);
  cfg.model = "no-such-model";
  {
    LlmClient c({cfg}, {});
    expect_error(c, "does not offer model 'no-such-model' (it offers: test-model)");
    // Without the preflight, the request itself fails at once with the server's words.
    const LlmResult r = c.run(chat_request("sim", 1));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.http_status, 404);
    EXPECT_EQ(r.attempts, 1);
    EXPECT_NE(r.error.find("The model `no-such-model` does not exist"), std::string::npos) << r.error;
    EXPECT_EQ(r.error.find("sk-right-key-0001"), std::string::npos) << r.error;
  }
  // Nothing listening.
  auto down = cfg;
  down.base_url = "http://127.0.0.1:1/v1";
  down.model = "test-model";
  {
    LlmClient c({down}, {});
    expect_error(c, "cannot reach the server");
  }
  // All good.
  cfg.model = "test-model";
  LlmClient c({cfg}, {});
  EXPECT_NO_THROW(c.preflight());
  ::unsetenv("NEXPLAIN_TEST_CLIENT_KEY");
  ::unsetenv("NEXPLAIN_TEST_SERVER_KEY");
}

TEST(LlmClient, KeyNeverStoredOrLogged) {
  test::TempDir dir;
  const std::string key = "sk-nexplain-test-SECRET-7f3a9c";
  ::setenv("NEXPLAIN_TEST_SECRET_KEY", key.c_str(), 1);
  // The server quotes the key in every error, and fails some requests, so the key passes
  // through error paths and retry logging.
  OpenAiTestServer server(dir / "requests.jsonl", {"--api-key-env", "NEXPLAIN_TEST_SECRET_KEY", "--echo-key-in-errors",
                                                   "--fault", "500:nth=1,2,5", "--fault", "400:nth=7"});
  std::ostringstream captured;
  auto logger = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  logger->set_level(spdlog::level::trace);
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);

  auto cfg = config_for(server);
  cfg.api_key_env = "NEXPLAIN_TEST_SECRET_KEY";
  std::vector<LlmResult> results;
  {
    LlmClient client({cfg}, {dir / "cache"});
    client.preflight();
    std::vector<LlmRequest> reqs;
    for (int i = 0; i < 10; ++i) reqs.push_back(i % 2 ? sim_request("sim", i) : chat_request("sim", i));
    results = client.run_all(std::move(reqs));
    auto bad = cfg;
    bad.model = "unknown-model";
    bad.stage = "bad";
    LlmClient other({bad}, {dir / "cache"});
    results.push_back(other.run(chat_request("bad", 99)));
    Journal journal(dir / "journal.jsonl");
    for (const auto& r : results) {
      journal.append(r.tag, {{"ok", r.ok}, {"error", r.error}, {"hash", r.hash}, {"body", r.body}});
    }
  }
  spdlog::set_default_logger(previous);
  ::unsetenv("NEXPLAIN_TEST_SECRET_KEY");

  int failures = 0;
  for (const auto& r : results) {
    if (!r.ok) ++failures;
    EXPECT_EQ(r.error.find(key), std::string::npos) << r.error;
  }
  EXPECT_EQ(failures, 2);  // the injected 400 and the unknown model
  const std::string logs = captured.str();
  EXPECT_NE(logs.find("[REDACTED]"), std::string::npos) << "the test should have provoked a quoted key:\n" << logs;
  EXPECT_EQ(logs.find(key), std::string::npos) << logs;
  std::size_t files = 0;
  for (const auto& f : fs::recursive_directory_iterator(dir.path())) {
    if (!f.is_regular_file() || f.path().filename() == "requests.jsonl") continue;  // the server's own log
    ++files;
    EXPECT_EQ(test::read_file(f.path()).find(key), std::string::npos) << "key found in " << f.path();
  }
  EXPECT_GE(files, 9u);  // 8 cached answers + the journal
}

TEST(LlmClient, CacheMakesTheRerunFree) {
  test::TempDir dir;
  OpenAiTestServer server(dir / "requests.jsonl");
  const int n = 30;
  auto requests = [&] {
    std::vector<LlmRequest> v;
    for (int i = 0; i < n; ++i) v.push_back(i % 3 ? sim_request("sim", i) : chat_request("sim", i));
    return v;
  };
  std::vector<LlmResult> first, second;
  {
    LlmClient client({config_for(server)}, {dir / "cache"});
    first = client.run_all(requests());
  }
  ASSERT_EQ(server.log().size(), static_cast<std::size_t>(n));
  {
    LlmClient client({config_for(server)}, {dir / "cache"});
    second = client.run_all(requests());
    EXPECT_EQ(client.stats().cache_hits, static_cast<std::uint64_t>(n));
    EXPECT_EQ(client.stats().http_attempts, 0u);
    EXPECT_EQ(client.costs().total().cached_requests, n);
  }
  EXPECT_EQ(server.log().size(), static_cast<std::size_t>(n));  // nothing re-sent
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(first[i].ok && second[i].ok);
    EXPECT_FALSE(first[i].from_cache);
    EXPECT_TRUE(second[i].from_cache);
    EXPECT_EQ(first[i].hash, second[i].hash);
    EXPECT_EQ(first[i].response.choices[0].text, second[i].response.choices[0].text);
    if (i % 3) expect_sim_answer(second[i], i);
  }
}

TEST(LlmClient, IdenticalRequestsInFlightAreSentOnce) {
  test::TempDir dir;
  OpenAiTestServer server(dir / "requests.jsonl");
  LlmClient client({config_for(server)}, {});
  // An earlier submission still outstanding when run_all starts: run_all leaves its result
  // for the caller's own poll, here through the callback form.
  const auto early = client.submit(chat_request("sim", 7));
  std::vector<LlmRequest> reqs;
  for (int i = 0; i < 5; ++i) {
    auto r = sim_request("sim", 42);
    r.tag = "copy/" + std::to_string(i);
    reqs.push_back(r);
  }
  const auto results = client.run_all(std::move(reqs));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(results[i].tag, "copy/" + std::to_string(i));
    expect_sim_answer(results[i], 42);
  }
  std::vector<std::uint64_t> later;
  while (client.outstanding() > 0) client.poll(5.0, [&](LlmResult&& r) { later.push_back(r.id); });
  EXPECT_EQ(later, std::vector<std::uint64_t>{early});
  EXPECT_EQ(server.log().size(), 2u);  // the early chat and one of the five copies
  EXPECT_EQ(client.stats().merged, 4u);
}

TEST(LlmClient, SustainedRequestRateMeetsTheLimit) {
  // Server and client both at 120 requests/min; the server's bucket holds one second, as
  // strict as OpenAI's sub-minute enforcement. ~11 s of traffic.
  test::TempDir dir;
  OpenAiTestServer server(dir / "requests.jsonl", {"--rpm", "120", "--burst-seconds", "1"});
  auto cfg = config_for(server);
  cfg.budget.requests_per_minute = 120;
  cfg.max_concurrency = 8;
  LlmClient client({cfg}, {});
  const int n = 23;
  std::vector<LlmRequest> reqs;
  for (int i = 0; i < n; ++i) reqs.push_back(sim_request("sim", i));
  const auto results = client.run_all(std::move(reqs));
  for (const auto& r : results) EXPECT_TRUE(r.ok) << r.error;
  const auto log = server.log();
  int rate_429 = 0;
  std::vector<double> ok_times;
  for (const auto& e : log) {
    if (e["reason"] == "rate_limit") ++rate_429;
    if (e["status"] == 200) ok_times.push_back(e["t"].get<double>());
  }
  EXPECT_EQ(rate_429, 0) << "the client overshot the limit";
  ASSERT_EQ(ok_times.size(), static_cast<std::size_t>(n));
  std::sort(ok_times.begin(), ok_times.end());
  // Steady state: after the initial one-second burst (2 requests), intervals between admissions.
  const double span = ok_times.back() - ok_times[1];
  const double rpm = 60.0 * (n - 2) / span;
  EXPECT_GE(rpm, 0.95 * 120) << "sustained " << rpm << " requests/min";
  EXPECT_LE(rpm, 1.01 * 120);
  std::printf("[ info ] sustained %.1f requests/min against a limit of 120 (%.1f%%), %d rate-limit 429s\n", rpm, rpm / 1.2,
              rate_429);
}

TEST(LlmClient, SustainedTokenRateMeetsTheLimit) {
  // Tokens/min as the binding limit: 3000 tpm (50 tokens/s), requests of 20 tokens reserved
  // with max_tokens and refunded from usage on both sides. ~7 s of traffic.
  test::TempDir dir;
  OpenAiTestServer server(dir / "requests.jsonl", {"--tpm", "3000", "--burst-seconds", "1"});
  auto cfg = config_for(server);
  cfg.budget.tokens_per_minute = 3000;
  cfg.max_concurrency = 8;
  LlmClient client({cfg}, {});
  const int n = 20;
  std::vector<LlmRequest> reqs;
  for (int i = 0; i < n; ++i) reqs.push_back(sim_request("sim", i));
  const auto results = client.run_all(std::move(reqs));
  for (const auto& r : results) EXPECT_TRUE(r.ok) << r.error;
  int rate_429 = 0;
  std::vector<std::pair<double, double>> ok;  // time, tokens
  for (const auto& e : server.log()) {
    if (e["reason"] == "rate_limit") ++rate_429;
    if (e["status"] == 200) ok.emplace_back(e["t"].get<double>(), e["prompt_tokens"].get<double>() + e["completion_tokens"].get<double>());
  }
  EXPECT_EQ(rate_429, 0);
  ASSERT_EQ(ok.size(), static_cast<std::size_t>(n));
  std::sort(ok.begin(), ok.end());
  // Tokens admitted after the first request, over the time they took to be admitted. The first
  // request's reservation includes max_tokens, so it is excluded along with the burst.
  double tokens = 0.0;
  for (std::size_t i = 2; i < ok.size(); ++i) tokens += ok[i].second;
  const double tpm = 60.0 * tokens / (ok.back().first - ok[1].first);
  EXPECT_GE(tpm, 0.90 * 3000) << tpm;
  EXPECT_LE(tpm, 1.05 * 3000) << tpm;
  std::printf("[ info ] sustained %.0f tokens/min against a limit of 3000 (%.1f%%), %d rate-limit 429s\n", tpm, tpm / 30.0,
              rate_429);
}
