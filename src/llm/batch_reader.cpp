#include "llm/batch_reader.hpp"

#include <algorithm>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/error.hpp"
#include "llm/response.hpp"

namespace nexplain {

namespace {

using json = nlohmann::json;

// A request hash as request_hash writes it. Anything else cannot be ours, and must not become
// a path inside the cache either.
bool is_request_hash(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Which API answered: OpenAI and vLLM name it in "object"; otherwise the first choice's shape
// tells (chat has a message, completions a text).
std::optional<ApiKind> kind_of_body(const json& body) {
  const std::string object = body.value("object", "");
  if (object == "chat.completion") return ApiKind::chat;
  if (object == "text_completion") return ApiKind::completion;
  const auto c = body.find("choices");
  if (c == body.end() || !c->is_array() || c->empty() || !c->front().is_object()) return std::nullopt;
  if (c->front().contains("message")) return ApiKind::chat;
  if (c->front().contains("text")) return ApiKind::completion;
  return std::nullopt;
}

std::string error_text(const json& error) {
  if (error.is_object()) {
    const std::string code = error.contains("code") && error["code"].is_string() ? error["code"].get<std::string>() : "";
    const std::string msg = error.contains("message") && error["message"].is_string() ? error["message"].get<std::string>() : "";
    if (!code.empty() || !msg.empty()) return code.empty() ? msg : msg.empty() ? code : code + ": " + msg;
  }
  if (error.is_string()) return error.get<std::string>();
  return error.dump();
}

}  // namespace

std::string BatchIngestReport::summary() const {
  return fmt::format("{}: {} lines: {} ingested, {} already cached, {} failed, {} unknown, {} malformed", file.string(),
                     lines, ingested, already_cached, failed, unknown, malformed);
}

BatchIngestReport ingest_batch_output(const std::filesystem::path& file, ResponseCache& cache) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("--read-batch: cannot open '{}'", file.string());
  BatchIngestReport rep;
  rep.file = file;
  std::uint64_t skipped_problems = 0;
  auto problem = [&](std::uint64_t& counter, std::uint64_t line_no, const std::string& what) {
    ++counter;
    const std::string text = fmt::format("{}:{}: {}", file.string(), line_no, what);
    if (rep.problems.size() < BatchIngestReport::kMaxProblems) {
      spdlog::warn("--read-batch: {}", text);
      rep.problems.push_back(text);
    } else {
      ++skipped_problems;
    }
  };

  std::string line;
  std::uint64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++rep.lines;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      problem(rep.malformed, line_no, fmt::format("not JSON ({} bytes): {}", line.size(), e.what()));
      continue;
    }
    if (!j.is_object()) {
      problem(rep.malformed, line_no, fmt::format("expected a JSON object, got {}", j.type_name()));
      continue;
    }
    // The shard that was submitted, passed by mistake: no line of it can be right.
    if (j.contains("body") && j.contains("method") && !j.contains("response")) {
      fail("{}:{}: this is a batch input line (custom_id, method, url, body), not an output line; pass the output "
           "file the Batch API (or vllm run-batch) returned",
           file.string(), line_no);
    }
    const auto cid = j.find("custom_id");
    if (cid == j.end() || !cid->is_string()) {
      problem(rep.malformed, line_no, "no custom_id string");
      continue;
    }
    if (!j.contains("response") && !j.contains("error")) {
      problem(rep.malformed, line_no, "neither response nor error: not a batch output line");
      continue;
    }
    const std::string hash = cid->get<std::string>();
    if (!is_request_hash(hash)) {
      problem(rep.unknown, line_no, fmt::format("custom_id '{}' is not a nexplain request hash", hash.substr(0, 80)));
      continue;
    }
    const json& error = j.contains("error") ? j["error"] : json();
    const json& response = j.contains("response") ? j["response"] : json();
    if (!error.is_null()) {
      problem(rep.failed, line_no, fmt::format("request {} failed: {}", hash, error_text(error)));
      continue;
    }
    if (!response.is_object()) {
      problem(rep.failed, line_no, fmt::format("request {}: no response", hash));
      continue;
    }
    const json& status = response.contains("status_code") ? response["status_code"] : json();
    const json& body = response.contains("body") ? response["body"] : json();
    if (!status.is_number_integer() || status.get<long>() != 200) {
      problem(rep.failed, line_no,
              fmt::format("request {}: HTTP {}{}", hash, status.dump(),
                          body.is_object() && body.contains("error") ? ": " + error_text(body["error"]) : ""));
      continue;
    }
    const auto kind = body.is_object() ? kind_of_body(body) : std::nullopt;
    if (!kind) {
      problem(rep.failed, line_no, fmt::format("request {}: status 200 but the body is not a chat or completion answer", hash));
      continue;
    }
    const std::string body_text = body.dump(-1, ' ', false, json::error_handler_t::replace);
    try {
      parse_response(*kind, body_text);  // what a run would do with it: refuse now, not then
    } catch (const Error& e) {
      problem(rep.failed, line_no, fmt::format("request {}: {}", hash, e.what()));
      continue;
    }
    if (cache.get(hash)) {
      ++rep.already_cached;
      continue;
    }
    cache.put(hash, *kind, "null", body_text);
    ++rep.ingested;
  }
  if (in.bad()) fail("--read-batch: read error in '{}' after line {}", file.string(), line_no);
  if (skipped_problems) {
    const std::string more = fmt::format("{}: ... and {} more problem lines", file.string(), skipped_problems);
    spdlog::warn("--read-batch: {}", more);
    rep.problems.push_back(more);
  }
  if (rep.lines > 0 && rep.malformed == rep.lines) {
    fail("--read-batch: no line of '{}' is a Batch-API output line (first: {})", file.string(), rep.problems.front());
  }
  return rep;
}

}  // namespace nexplain
