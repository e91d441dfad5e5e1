// Batch-API sweeps through the real CLI: --write-batch writes the requests a run needs instead of
// sending them (the endpoints point at a loopback port nobody serves, so any send would fail),
// the test plays the Batch API by answering each line with the test server, --read-batch stores
// the outputs, and round after round the sweep finishes with the same results.jsonl as an
// ordinary online run against the same server.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../servers/openai_test_server.hpp"
#include "core/error.hpp"
#include "io/sequences.hpp"
#include "llm/batch_reader.hpp"
#include "llm/batch_writer.hpp"
#include "llm/client.hpp"
#include "llm/response_cache.hpp"
#include "test_support.hpp"

using namespace nexplain;
using ::testing::HasSubstr;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A loopback port that refuses connections for as long as this object lives: bound (so no one
// else gets it) but never listening.
class DeadPort {
 public:
  DeadPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind failed");
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~DeadPort() { ::close(fd_); }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

fs::path make_planted(const test::TempDir& dir, const std::string& spec) {
  const auto model = dir / "model";
  auto r = test::run_cli({"make-model", "--planted", spec, "--out", model.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return model;
}

// Random excerpts over a small slice of the vocabulary, with planted token 464 sprinkled in.
fs::path make_sequences(const test::TempDir& dir, std::uint64_t n, int T, std::uint32_t seed) {
  const auto path = dir / "seqs.h5";
  SequencesInfo info;
  info.seq_len = T;
  info.vocab_size = 50257;
  info.eot_id = 50256;
  info.tokenizer_sha256 = "synthetic";
  SequencesWriter w(path, info);
  std::mt19937 rng(seed);
  std::vector<std::uint32_t> ids(n * static_cast<std::uint64_t>(T));
  for (auto& t : ids) t = rng() % 40 == 0 ? 464u : 300u + rng() % 2000u;
  w.append(ids);
  w.finish({{"source", "synthetic"}});
  return path;
}

void write_config(const fs::path& path, const std::string& base_url) {
  json endpoint = {{"base_url", base_url},        {"model", "test-model"},     {"max_retries", 1},
                   {"backoff_base_s", 0.02},      {"backoff_max_s", 0.05},     {"connect_timeout_s", 2},
                   {"prompt_per_million", 2.5},   {"completion_per_million", 10.0}};
  json cfg = {{"simulator_kind", "all_at_once"}, {"inflight_neurons", 8}, {"explainer", endpoint}, {"simulator", endpoint}};
  test::write_file(path, cfg.dump(2));
}

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::ifstream f(p);
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// Plays the Batch API for one round: every line of every shard is answered by the test server
// (through the client, without a cache) and written as a Batch-API output line, in reverse
// order (the Batch API does not keep the input order). Checks the shards' format on the way.
struct AnsweredRound {
  std::vector<fs::path> outputs;
  std::uint64_t requests = 0;
  std::set<std::string> urls;
};

AnsweredRound answer_round(const fs::path& batch_dir, const test::OpenAiTestServer& server) {
  AnsweredRound round;
  const json manifest = json::parse(test::read_file(batch_dir / "manifest.json"));
  EXPECT_EQ(manifest["format"], "openai-batch-input");
  std::vector<EndpointConfig> endpoints;
  for (const char* stage : {"explainer", "simulator"}) {
    EndpointConfig c;
    c.stage = stage;
    c.base_url = server.base_url();
    c.model = "test-model";
    c.max_concurrency = 8;
    endpoints.push_back(c);
  }
  LlmClient client(endpoints);
  std::set<std::string> ids;
  for (const auto& shard : manifest["shards"]) {
    const fs::path file = batch_dir / shard["file"].get<std::string>();
    const std::string url = shard["url"];
    const ApiKind kind = url == "/v1/chat/completions" ? ApiKind::chat : ApiKind::completion;
    EXPECT_EQ(shard["kind"], api_name(kind));
    EXPECT_EQ(shard["model"], "test-model");
    EXPECT_EQ(shard["stage"], kind == ApiKind::chat ? "explainer" : "simulator");  // all_at_once simulates by completions
    round.urls.insert(url);
    const auto lines = read_jsonl(file);
    EXPECT_EQ(lines.size(), shard["requests"].get<std::size_t>()) << file;
    EXPECT_EQ(fs::file_size(file), shard["bytes"].get<std::uint64_t>()) << file;
    std::vector<LlmRequest> reqs;
    for (const auto& l : lines) {
      EXPECT_EQ(l.size(), 4u) << l.dump().substr(0, 200);
      EXPECT_EQ(l["method"], "POST");
      EXPECT_EQ(l["url"], url) << "one endpoint per shard";
      const std::string id = l["custom_id"];
      EXPECT_TRUE(ids.insert(id).second) << "custom_id " << id << " twice";
      // The body is the exact payload: re-hashing it gives the custom_id back.
      EXPECT_EQ(request_hash(kind, l["body"].dump(-1, ' ', false, json::error_handler_t::replace)), id);
      EXPECT_EQ(l["body"]["model"], "test-model");
      LlmRequest r;
      r.stage = shard["stage"];
      r.kind = kind;
      r.tag = id;
      r.body = l["body"];
      r.body.erase("model");
      reqs.push_back(std::move(r));
    }
    auto results = client.run_all(std::move(reqs));
    std::string out;
    for (std::size_t i = results.size(); i-- > 0;) {
      const auto& r = results[i];
      EXPECT_TRUE(r.ok) << r.error;
      EXPECT_EQ(r.hash, r.tag) << "the client hashes the shard's body to its custom_id";
      const json line = {{"id", "batch_req_" + std::to_string(i)},
                         {"custom_id", r.tag},
                         {"response", {{"status_code", 200}, {"request_id", "req_" + std::to_string(i)}, {"body", json::parse(r.body)}}},
                         {"error", nullptr}};
      out += line.dump() + "\n";
    }
    const fs::path output = batch_dir / (file.stem().string() + "_output.jsonl");
    test::write_file(output, out);
    round.outputs.push_back(output);
    round.requests += lines.size();
  }
  EXPECT_EQ(ids.size(), manifest["requests"].get<std::size_t>());
  return round;
}

std::size_t api_requests(const test::OpenAiTestServer& server) { return server.log().size(); }

}  // namespace

TEST(ExplainBatch, RoundsOfBatchFilesGiveTheOnlineResults) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  const auto model = make_planted(dir, "L0.N5=token:464;L1.N17=token:464");
  const auto seqs = make_sequences(dir, 60, 24, 11);
  const auto rec = dir / "rec.h5";
  auto r = test::run_cli({"collect", "--model", model.string(), "--corpus", seqs.string(), "--out", rec.string(), "--top-k",
                          "6", "--random", "4", "--quantile-samples", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string tokenizer = (shared / "data/gpt2-tokenizer").string();
  auto explain = [&](const fs::path& config, const fs::path& out, std::vector<std::string> extra) {
    std::vector<std::string> args{"explain", "--records", rec.string(), "--out", out.string(), "--config", config.string(),
                                  "--tokenizer", tokenizer, "--layers", "0-1", "--neurons-per-layer", "4"};
    args.insert(args.end(), extra.begin(), extra.end());
    return test::run_cli(args);
  };
  constexpr std::size_t kNeurons = 8;

  test::OpenAiTestServer server(dir / "server-log.jsonl");
  write_config(dir / "online.json", server.base_url());
  DeadPort dead;
  write_config(dir / "offline-endpoint.json", dead.base_url());

  // The reference: an ordinary run against the server.
  r = explain(dir / "online.json", dir / "online", {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string online = test::read_file(dir / "online" / "results.jsonl");
  ASSERT_EQ(read_jsonl(dir / "online" / "results.jsonl").size(), kNeurons);

  const fs::path out = dir / "batch-run";
  std::vector<std::string> read_args;  // --read-batch of the previous round
  std::vector<std::uint64_t> written;
  for (int round = 1;; ++round) {
    ASSERT_LE(round, 6) << "the sweep does not converge";
    const fs::path bdir = dir / ("round-" + std::to_string(round));
    std::vector<std::string> args = read_args;
    args.insert(args.end(), {"--write-batch", bdir.string()});
    const auto before = api_requests(server);
    r = explain(dir / "offline-endpoint.json", out, args);
    ASSERT_EQ(r.exit_code, 0) << "round " << round << ": " << r.err;
    EXPECT_EQ(api_requests(server), before) << "a --write-batch run sent requests";
    const json manifest = json::parse(test::read_file(bdir / "manifest.json"));
    written.push_back(manifest["requests"].get<std::uint64_t>());

    if (round == 1) {
      // Only the explainer requests can be asked before any answer is in.
      EXPECT_EQ(manifest["requests"], kNeurons);
      ASSERT_EQ(manifest["shards"].size(), 1u);
      EXPECT_EQ(manifest["shards"][0]["file"], "batch-0000.jsonl");
      EXPECT_EQ(manifest["shards"][0]["url"], "/v1/chat/completions");
      EXPECT_THAT(r.out, HasSubstr("8 requests written in 1 shards"));
      EXPECT_THAT(r.out, HasSubstr("8 neurons wait on these answers"));
      EXPECT_FALSE(fs::exists(out / "results.jsonl"));
      EXPECT_TRUE(!fs::exists(out / "journal.jsonl") || fs::file_size(out / "journal.jsonl") == 0) << "pending neurons journaled";
    }
    if (manifest["requests"] == 0) {
      EXPECT_THAT(r.out, HasSubstr("nothing left to ask; every neuron is done"));
      EXPECT_TRUE(manifest["shards"].empty());
      break;
    }
    EXPECT_FALSE(fs::exists(out / "results.jsonl")) << "round " << round;
    AnsweredRound answered = answer_round(bdir, server);
    if (round == 2) {
      // The explanation that failed in round 1 is asked again, next to the simulations of the
      // others: two endpoints, two shards.
      EXPECT_EQ(answered.urls, (std::set<std::string>{"/v1/chat/completions", "/v1/completions"}));
    }
    if (round == 1) {
      // Spoil round 1's output the ways real outputs go wrong: one request failed, a line cut
      // short, a line that is not ours.
      auto lines = test::read_file(answered.outputs[0]);
      std::vector<std::string> ls;
      for (std::size_t p = 0, q; (q = lines.find('\n', p)) != std::string::npos; p = q + 1) ls.push_back(lines.substr(p, q - p));
      ASSERT_EQ(ls.size(), kNeurons);
      json failed = json::parse(ls[3]);
      failed["response"] = nullptr;
      failed["error"] = {{"code", "batch_expired"}, {"message", "This request could not be executed before the completion window expired."}};
      ls[3] = failed.dump();
      json unknown = json::parse(ls[4]);
      unknown["custom_id"] = "request-1";
      ls.push_back(unknown.dump());
      ls.push_back(ls[5].substr(0, ls[5].size() / 2));
      std::string spoiled;
      for (const auto& l : ls) spoiled += l + "\n";
      test::write_file(answered.outputs[0], spoiled);
    }
    read_args = {"--read-batch"};
    for (const auto& o : answered.outputs) read_args.push_back(o.string());

    if (round == 1) {
      // Reading alone (no further run yet) must report each kind of line, naming file:line.
      const fs::path probe_cache = dir / "probe-cache";
      ResponseCache cache(probe_cache);
      const auto rep = ingest_batch_output(answered.outputs[0], cache);
      EXPECT_EQ(rep.lines, kNeurons + 2);
      EXPECT_EQ(rep.ingested, kNeurons - 1);
      EXPECT_EQ(rep.failed, 1u);
      EXPECT_EQ(rep.unknown, 1u);
      EXPECT_EQ(rep.malformed, 1u);
      const std::string f = answered.outputs[0].string();
      EXPECT_THAT(rep.problems, ::testing::Contains(HasSubstr(f + ":4: request ")));
      EXPECT_THAT(rep.problems, ::testing::Contains(HasSubstr("batch_expired")));
      EXPECT_THAT(rep.problems, ::testing::Contains(HasSubstr(f + ":9: custom_id 'request-1' is not a nexplain request hash")));
      EXPECT_THAT(rep.problems, ::testing::Contains(HasSubstr(f + ":10: not JSON")));
      const auto again = ingest_batch_output(answered.outputs[0], cache);
      EXPECT_EQ(again.ingested, 0u);
      EXPECT_EQ(again.already_cached, kNeurons - 1);
    }
  }
  EXPECT_EQ(written.size(), 4u) << "rounds: explain; explain again + simulate; simulate; done";
  EXPECT_THAT(r.out, HasSubstr("explained 8 neurons: 8 ok"));
  EXPECT_EQ(read_jsonl(out / "journal.jsonl").size(), kNeurons);
  EXPECT_EQ(test::read_file(out / "results.jsonl"), online);

  // Everything is cached now: an ordinary run against the server sends nothing and agrees.
  fs::remove(out / "journal.jsonl");
  const auto before = api_requests(server);
  r = explain(dir / "online.json", out, {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(api_requests(server), before);
  EXPECT_EQ(test::read_file(out / "results.jsonl"), online);
}

TEST(ExplainBatch, ClearErrors) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  const auto model = make_planted(dir, "L0.N5=token:464");
  const auto seqs = make_sequences(dir, 30, 16, 3);
  const auto rec = dir / "rec.h5";
  auto r = test::run_cli({"collect", "--model", model.string(), "--corpus", seqs.string(), "--out", rec.string(), "--top-k",
                          "4", "--random", "2", "--quantile-samples", "2", "--layers", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  DeadPort dead;
  write_config(dir / "cfg.json", dead.base_url());
  const std::vector<std::string> base{"explain", "--records", rec.string(), "--out", (dir / "out").string(), "--tokenizer",
                                      (shared / "data/gpt2-tokenizer").string(), "--neurons-per-layer", "2"};
  auto with = [&](std::vector<std::string> extra) {
    auto args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return test::run_cli(args);
  };

  r = with({"--write-batch", (dir / "b").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("--write-batch needs LLM endpoints"));

  r = with({"--config", (dir / "cfg.json").string(), "--write-batch", (dir / "b").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("2 requests written in 1 shards"));

  // The same directory again: files of two rounds must not mix.
  r = with({"--config", (dir / "cfg.json").string(), "--write-batch", (dir / "b").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("already holds batch files"));

  // The submitted shard instead of the output.
  r = with({"--config", (dir / "cfg.json").string(), "--read-batch", (dir / "b" / "batch-0000.jsonl").string(),
            "--write-batch", (dir / "b2").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr((dir / "b" / "batch-0000.jsonl").string() + ":1: this is a batch input line"));

  test::write_file(dir / "junk.jsonl", "hello\n{\"a\": 1\n");
  r = with({"--config", (dir / "cfg.json").string(), "--read-batch", (dir / "junk.jsonl").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("no line of"));
  EXPECT_THAT(r.err, HasSubstr("junk.jsonl:1: not JSON"));
}

TEST(ExplainBatch, ShardsRollOverAtTheLimitsAndKeepEndpointsApart) {
  test::TempDir dir;
  const std::string payload_chat = R"({"messages":[{"content":"hi","role":"user"}],"model":"m"})";
  const std::string payload_comp = R"({"model":"m","prompt":"hi"})";
  auto hash = [](int i) {
    std::string h = std::to_string(i);
    return std::string(64 - h.size(), 'a') + h;
  };
  {
    BatchWriter w(dir / "n", BatchLimits{3, 1'000'000});
    for (int i = 0; i < 7; ++i) EXPECT_TRUE(w.add("explainer", ApiKind::chat, "m", hash(i), payload_chat));
    EXPECT_FALSE(w.add("explainer", ApiKind::chat, "m", hash(2), payload_chat)) << "a custom_id is written once";
    for (int i = 10; i < 12; ++i) EXPECT_TRUE(w.add("simulator", ApiKind::completion, "m", hash(i), payload_comp));
    const auto& shards = w.finish();
    ASSERT_EQ(shards.size(), 4u);
    std::vector<std::uint64_t> counts;
    for (const auto& s : shards) counts.push_back(s.requests);
    EXPECT_EQ(counts, (std::vector<std::uint64_t>{3, 3, 1, 2}));
    EXPECT_EQ(shards[3].url, "/v1/completions");
    EXPECT_EQ(shards[3].file, "batch-0003.jsonl");
    EXPECT_EQ(w.requests(), 9u);
  }
  const auto lines = read_jsonl(dir / "n" / "batch-0001.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["custom_id"], hash(3));
  EXPECT_EQ(lines[0]["body"].dump(), payload_chat);
  EXPECT_EQ(json::parse(test::read_file(dir / "n" / "manifest.json"))["requests"], 9);

  // The byte limit: each line is ~150 bytes, so 400 bytes hold two.
  {
    BatchWriter w(dir / "b", BatchLimits{50'000, 400});
    for (int i = 0; i < 5; ++i) w.add("explainer", ApiKind::chat, "m", hash(i), payload_chat);
    const auto& shards = w.finish();
    ASSERT_EQ(shards.size(), 3u);
    for (const auto& s : shards) EXPECT_LE(s.bytes, 400u);
    EXPECT_EQ(shards[2].requests, 1u);
  }
  // Unfinished shards are not left behind looking complete.
  {
    BatchWriter w(dir / "u", BatchLimits{2, 1'000'000});
    for (int i = 0; i < 3; ++i) w.add("explainer", ApiKind::chat, "m", hash(i), payload_chat);
  }
  EXPECT_FALSE(fs::exists(dir / "u" / "manifest.json"));
  EXPECT_FALSE(fs::exists(dir / "u" / "batch-0001.jsonl"));
  for (const auto& e : fs::directory_iterator(dir / "u")) EXPECT_THAT(e.path().filename().string(), ::testing::Not(HasSubstr("partial")));
}
