#include "tokenizer/corpus_tokenizer.hpp"

#include <fstream>

#include "core/error.hpp"
#include "tokenizer/tokenizer_dir.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

constexpr const char* kEndOfText = "<|endoftext|>";

// tokenizer_config.json's eos_token: a string, or {"content": ...} (AddedToken); "" when absent.
std::string config_eos_token(const fs::path& dir) {
  const fs::path p = dir / "tokenizer_config.json";
  std::ifstream in(p);
  if (!in) return {};
  const auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) fail("{}: not valid JSON", p.string());
  if (!j.is_object() || !j.contains("eos_token") || j["eos_token"].is_null()) return {};
  const auto& e = j["eos_token"];
  if (e.is_string()) return e.get<std::string>();
  if (e.is_object() && e.contains("content") && e["content"].is_string()) return e["content"].get<std::string>();
  fail("{}: 'eos_token' = {} is neither a string nor an object with 'content'", p.string(), e.dump());
}

}  // namespace

CorpusTokenizer corpus_tokenizer(const Gpt2Tokenizer& tok) {
  CorpusTokenizer c;
  c.encode = [tok](std::string_view text) { return tok.encode(text); };
  c.vocab_size = tok.vocab_size();
  c.eot_id = tok.eot_id();
  c.eot_text = kEndOfText;
  c.sha256 = tok.files_sha256();
  c.provenance = {{"name", "gpt2"},
                  {"sha256", tok.files_sha256()},
                  {"vocab_file", fs::absolute(tok.vocab_file()).lexically_normal().string()},
                  {"vocab_sha256", tok.vocab_file_sha256()},
                  {"merges_file", fs::absolute(tok.merges_file()).lexically_normal().string()},
                  {"merges_sha256", tok.merges_file_sha256()},
                  {"vocab_size", tok.vocab_size()},
                  {"eot_id", tok.eot_id()}};
  return c;
}

CorpusTokenizer corpus_tokenizer(const HfTokenizer& tok, const fs::path& file, const std::string& eot_token) {
  const auto eot = tok.token_id(eot_token);
  if (!eot)
    fail("{}: no token '{}' to put between documents; name the end-of-text token with --eot-token", file.string(),
         eot_token);
  CorpusTokenizer c;
  c.encode = [tok](std::string_view text) { return tok.encode(text); };
  c.vocab_size = tok.vocab_size();
  c.eot_id = *eot;
  c.eot_text = eot_token;
  c.sha256 = tok.sha256();
  c.provenance = {{"name", "tokenizer.json"},
                  {"sha256", tok.sha256()},
                  {"file", fs::absolute(file).lexically_normal().string()},
                  {"vocab_size", tok.vocab_size()},
                  {"eot_id", *eot},
                  {"eot_token", eot_token}};
  return c;
}

CorpusTokenizer load_corpus_tokenizer(const fs::path& dir, const std::string& eot_token) {
  const TokenizerFiles files = require_tokenizer_files(dir);
  if (files.kind == TokenizerFiles::Kind::tokenizer_json) {
    std::string eot = eot_token;
    if (eot.empty()) eot = config_eos_token(files.path.parent_path());
    if (eot.empty()) eot = kEndOfText;
    return corpus_tokenizer(HfTokenizer::load(files.path), files.path, eot);
  }
  if (!eot_token.empty() && eot_token != kEndOfText)
    fail("--eot-token {}: GPT-2's tokenizer files ({}) join documents with {}", eot_token, dir.string(), kEndOfText);
  return corpus_tokenizer(Gpt2Tokenizer::load(files.path));
}

}  // namespace nexplain
