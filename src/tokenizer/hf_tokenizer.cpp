#include "tokenizer/hf_tokenizer.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/sha256.hpp"
#include "tokenizer/bpe_merges.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/regex_split.hpp"
#include "tokenizer/unicode_nfc.hpp"

namespace nexplain {

namespace fs = std::filesystem;
using nlohmann::json;

struct HfTokenizer::Tables {
  std::vector<std::string> bytes_of;       // id -> raw bytes
  std::vector<bool> present;               // ids with a token (added tokens may leave holes)
  std::unordered_map<std::string, std::uint32_t> id_of_bytes;  // model vocabulary, raw bytes
  std::array<std::uint32_t, 256> byte_token{};
  BpeMerges merges;
  bool ignore_merges = false;
  // Pre-tokenizer steps, applied in order, each splitting every word of the previous one.
  // A null splitter stands for GPT-2's own pattern (ByteLevel with use_regex).
  std::vector<std::unique_ptr<RegexSplitter>> steps;
  bool nfc = false;  // normalizer: NFC (a Sequence of NFCs is one)
  struct Added {
    std::string content;
    std::uint32_t id;
  };
  // Non-special added tokens, longest first: those with "normalized": false are cut out of the
  // text as it is, those with "normalized": true out of the normalized text, as HF does.
  std::vector<Added> raw_added, normalized_added;
  std::unordered_map<std::string, std::uint32_t> added_by_content;
  std::string sha;
};

namespace {

// Field access that reports "<source>: <key path>: ..." on every failure.
const json& need(const json& j, const char* key, const std::string& where, const std::string& source) {
  const auto it = j.find(key);
  if (it == j.end()) fail("{}: missing field '{}{}'", source, where, key);
  return *it;
}


void add_pre_tokenizer(HfTokenizer::Tables& t, const json& p, const std::string& where, const std::string& source) {
  if (p.is_null()) return;
  if (!p.is_object()) fail("{}: '{}' must be an object, got {}", source, where, p.type_name());
  const json& type = need(p, "type", where + ".", source);
  const std::string kind = type.is_string() ? type.get<std::string>() : type.dump();
  if (kind == "Sequence") {
    const json& list = need(p, "pretokenizers", where + ".", source);
    if (!list.is_array()) fail("{}: '{}.pretokenizers' must be an array", source, where);
    for (std::size_t i = 0; i < list.size(); ++i)
      add_pre_tokenizer(t, list[i], fmt::format("{}.pretokenizers[{}]", where, i), source);
  } else if (kind == "ByteLevel") {
    // Byte-level mapping is what this tokenizer does anyway; the flags decide the splitting.
    if (p.value("add_prefix_space", false))
      fail("{}: '{}.add_prefix_space' = true is not supported", source, where);
    if (p.value("use_regex", true)) t.steps.push_back(nullptr);  // GPT-2's pattern
  } else if (kind == "Split") {
    const json& pat = need(p, "pattern", where + ".", source);
    std::string regex;
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      regex = hf_regex_to_pcre2(pat["Regex"].get<std::string>(), source + ": " + where + ".pattern.Regex");
    } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
      // A literal: quote it for PCRE2 (\Q...\E cannot hold "\E", so escape byte by byte).
      for (const char ch : pat["String"].get<std::string>()) {
        if (std::isalnum(static_cast<unsigned char>(ch)) || static_cast<unsigned char>(ch) >= 0x80) regex += ch;
        else regex += std::string("\\") + ch;
      }
    } else {
      fail("{}: '{}.pattern' must be {{\"Regex\": ...}} or {{\"String\": ...}}, got {}", source, where, pat.dump());
    }
    const std::string behavior = p.value("behavior", std::string("Isolated"));
    if (behavior != "Isolated")
      fail("{}: '{}.behavior' = \"{}\" is not supported (only \"Isolated\")", source, where, behavior);
    if (p.value("invert", false)) fail("{}: '{}.invert' = true is not supported", source, where);
    t.steps.push_back(std::make_unique<RegexSplitter>(regex, source + ": " + where + ".pattern"));
  } else {
    fail("{}: '{}.type' = {} is not supported (ByteLevel, Split, Sequence)", source, where, type.dump());
  }
}

void load_model(HfTokenizer::Tables& t, const json& m, const std::string& source) {
  if (!m.is_object()) fail("{}: 'model' must be an object", source);
  const json& type = need(m, "type", "model.", source);
  if (type != "BPE") fail("{}: 'model.type' = {} is not supported (only \"BPE\")", source, type.dump());
  for (const char* k : {"dropout", "unk_token"})
    if (m.contains(k) && !m[k].is_null()) fail("{}: 'model.{}' = {} is not supported", source, k, m[k].dump());
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && !m[k].is_null() && m[k] != "")
      fail("{}: 'model.{}' = {} is not supported (byte-level BPE has none)", source, k, m[k].dump());
  if (m.value("byte_fallback", false)) fail("{}: 'model.byte_fallback' = true is not supported", source);
  t.ignore_merges = m.value("ignore_merges", false);

  const json& vocab = need(m, "vocab", "model.", source);
  if (!vocab.is_object() || vocab.empty()) fail("{}: 'model.vocab' must be a non-empty object", source);
  std::unordered_map<std::string, std::uint32_t> id_of_shown;
  id_of_shown.reserve(vocab.size());
  for (const auto& [shown, v] : vocab.items()) {
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() >= (1u << 31))
      fail("{}: 'model.vocab' token {}: id {} is not a non-negative integer", source, json(shown).dump(), v.dump());
    const auto id = v.get<std::uint32_t>();
    std::size_t bad = 0;
    auto bytes = gpt2_shown_to_bytes(shown, &bad);
    if (!bytes)
      fail("{}: 'model.vocab' token {}: character at byte {} is not in the byte-level alphabet (is this a "
           "byte-level BPE tokenizer?)",
           source, json(shown).dump(), bad);
    if (id >= t.bytes_of.size()) {
      t.bytes_of.resize(id + 1);
      t.present.resize(id + 1, false);
    }
    if (t.present[id]) fail("{}: 'model.vocab' token {}: id {} is used twice", source, json(shown).dump(), id);
    t.present[id] = true;
    t.id_of_bytes.emplace(*bytes, id);
    t.bytes_of[id] = std::move(*bytes);
    id_of_shown.emplace(shown, id);
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = t.id_of_bytes.find(std::string(1, static_cast<char>(b)));
    if (it == t.id_of_bytes.end())
      fail("{}: 'model.vocab' has no token for byte 0x{:02x} (\"{}\"): byte-level BPE needs all 256", source, b,
           gpt2_bytes_to_shown(std::string(1, static_cast<char>(b))));
    t.byte_token[static_cast<std::size_t>(b)] = it->second;
  }

  const json& merges = need(m, "merges", "model.", source);
  if (!merges.is_array()) fail("{}: 'model.merges' must be an array", source);
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const json& e = merges[i];
    std::string left, right;
    if (e.is_string()) {  // "a b" (tokenizers < 0.20)
      const std::string s = e.get<std::string>();
      const auto sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos)
        fail("{}: 'model.merges[{}]' = {}: expected two tokens separated by one space", source, i, e.dump());
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {  // ["a", "b"]
      left = e[0].get<std::string>();
      right = e[1].get<std::string>();
    } else {
      fail("{}: 'model.merges[{}]' = {}: expected \"a b\" or [\"a\", \"b\"]", source, i, e.dump());
    }
    const auto l = id_of_shown.find(left), r = id_of_shown.find(right), lr = id_of_shown.find(left + right);
    if (l == id_of_shown.end() || r == id_of_shown.end())
      fail("{}: 'model.merges[{}]': token {} is not in model.vocab", source, i,
           json(l == id_of_shown.end() ? left : right).dump());
    if (lr == id_of_shown.end())
      fail("{}: 'model.merges[{}]': the merged token {} is not in model.vocab", source, i, json(left + right).dump());
    t.merges.add(l->second, r->second, static_cast<std::uint32_t>(i), lr->second);
  }
}

void load_added(HfTokenizer::Tables& t, const json& added, const std::string& source) {
  if (added.is_null()) return;
  if (!added.is_array()) fail("{}: 'added_tokens' must be an array", source);
  for (std::size_t i = 0; i < added.size(); ++i) {
    const json& a = added[i];
    const std::string where = fmt::format("added_tokens[{}].", i);
    const json& id_j = need(a, "id", where, source);
    const json& content_j = need(a, "content", where, source);
    if (!id_j.is_number_unsigned() || !content_j.is_string())
      fail("{}: '{}' needs an integer id and a string content, got {}", source, where, a.dump());
    const auto id = id_j.get<std::uint32_t>();
    const std::string content = content_j.get<std::string>();
    const bool special = a.value("special", false);
    if (id < t.present.size() && t.present[id] && t.bytes_of[id] != content)
      fail("{}: '{}id' {} is already model.vocab's token {}", source, where, id, json(t.bytes_of[id]).dump());
    if (id >= t.bytes_of.size()) {
      t.bytes_of.resize(id + 1);
      t.present.resize(id + 1, false);
    }
    t.present[id] = true;
    t.bytes_of[id] = content;
    t.added_by_content[content] = id;
    if (!special) {
      for (const char* k : {"lstrip", "rstrip", "single_word"})
        if (a.value(k, false)) fail("{}: '{}{}' = true is not supported for a non-special added token", source, where, k);
      // HF's default: a non-special added token is matched in normalized text.
      if (!content.empty()) (a.value("normalized", true) ? t.normalized_added : t.raw_added).push_back({content, id});
    }
  }
  // Longest first, so that at one position the longest added token wins (HF's leftmost-longest).
  for (auto* list : {&t.raw_added, &t.normalized_added})
    std::stable_sort(list->begin(), list->end(),
                     [](const auto& a, const auto& b) { return a.content.size() > b.content.size(); });
}

// One normalizer (or a Sequence of them): only NFC is understood, and only when this build has
// utf8proc; anything else would tokenize differently from HF, so it is refused.
void add_normalizer(HfTokenizer::Tables& t, const json& n, const std::string& where, const std::string& source) {
  if (n.is_null()) return;
  if (!n.is_object()) fail("{}: '{}' must be an object or null, got {}", source, where, n.type_name());
  const json& type = need(n, "type", where + ".", source);
  const std::string kind = type.is_string() ? type.get<std::string>() : type.dump();
  if (kind == "Sequence") {
    const json& list = need(n, "normalizers", where + ".", source);
    if (!list.is_array()) fail("{}: '{}.normalizers' must be an array", source, where);
    for (std::size_t i = 0; i < list.size(); ++i)
      add_normalizer(t, list[i], fmt::format("{}.normalizers[{}]", where, i), source);
  } else if (kind == "NFC") {
    if (!nfc_available())
      fail("{}: '{}.type' = \"NFC\" needs Unicode normalization, but this build of nexplain lacks utf8proc (install "
           "libutf8proc-dev and rebuild)",
           source, where);
    t.nfc = true;  // NFC is idempotent: twice in a Sequence is once
  } else {
    fail("{}: '{}.type' = {} is not supported (NFC, Sequence)", source, where, type.dump());
  }
}

// Cuts the added tokens of `list` out of `text`: `on_text` gets the pieces between them, `on_token`
// their ids, in order.
template <typename OnText, typename OnToken>
void split_added(const std::vector<HfTokenizer::Tables::Added>& list, std::string_view text, OnText&& on_text,
                 OnToken&& on_token) {
  std::size_t from = 0;
  if (!list.empty()) {
    for (std::size_t i = 0; i < text.size();) {
      const HfTokenizer::Tables::Added* hit = nullptr;
      for (const auto& a : list)
        if (text.compare(i, a.content.size(), a.content) == 0) {
          hit = &a;
          break;
        }
      if (!hit) {
        ++i;
        continue;
      }
      on_text(text.substr(from, i - from));
      on_token(hit->id);
      i += hit->content.size();
      from = i;
    }
  }
  on_text(text.substr(from));
}

void pretok(const HfTokenizer::Tables& t, std::size_t step, std::string_view text,
            const std::function<void(std::string_view)>& on_word) {
  if (text.empty()) return;
  if (step == t.steps.size()) {
    on_word(text);
    return;
  }
  const auto next = [&](std::string_view w) { pretok(t, step + 1, w, on_word); };
  if (t.steps[step]) t.steps[step]->split(text, next);
  else gpt2_pretokenize(text, next);
}

}  // namespace

HfTokenizer HfTokenizer::from_json_text(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: byte {}: does not parse as JSON: {}", source, e.byte, e.what());
  }
  if (!j.is_object()) fail("{}: expected a JSON object (a HuggingFace tokenizer.json)", source);
  auto t = std::make_shared<Tables>();
  add_normalizer(*t, j.value("normalizer", json()), "normalizer", source);
  load_model(*t, need(j, "model", "", source), source);
  add_pre_tokenizer(*t, j.value("pre_tokenizer", json()), "pre_tokenizer", source);
  load_added(*t, j.value("added_tokens", json()), source);
  Sha256 h;
  h.update(text.data(), text.size());
  t->sha = h.hex_digest();
  return HfTokenizer(std::move(t));
}

HfTokenizer HfTokenizer::load(const fs::path& path) {
  std::error_code ec;
  const fs::path file = fs::is_directory(path, ec) ? path / "tokenizer.json" : path;
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("{}: cannot open (expected a HuggingFace tokenizer.json)", file.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return from_json_text(ss.str(), file.string());
}

void HfTokenizer::encode_append(std::string_view text, std::vector<std::uint32_t>& out) const {
  const Tables& t = *t_;
  std::vector<std::uint32_t> ids;
  auto encode_word = [&](std::string_view word) {
    if (t.ignore_merges) {
      const auto it = t.id_of_bytes.find(std::string(word));
      if (it != t.id_of_bytes.end()) {
        out.push_back(it->second);
        return;
      }
    }
    ids.clear();
    for (const char c : word) ids.push_back(t.byte_token[static_cast<unsigned char>(c)]);
    t.merges.apply(ids);
    out.insert(out.end(), ids.begin(), ids.end());
  };
  const auto push_id = [&](std::uint32_t id) { out.push_back(id); };
  // HF's order: non-special added tokens that are not normalized are cut out of the text first;
  // each piece between them is normalized, the normalized ones cut out of it, and what remains
  // pre-tokenized.
  const auto normalized_piece = [&](std::string_view piece) {
    split_added(t.normalized_added, piece, [&](std::string_view rest) { pretok(t, 0, rest, encode_word); }, push_id);
  };
  split_added(t.raw_added, text, [&](std::string_view piece) {
    if (piece.empty()) return;
    if (t.nfc) normalized_piece(nfc_normalize(piece));
    else normalized_piece(piece);
  }, push_id);
}

std::vector<std::uint32_t> HfTokenizer::encode(std::string_view text) const {
  std::vector<std::uint32_t> out;
  encode_append(text, out);
  return out;
}

std::vector<std::string> HfTokenizer::pretokenize(std::string_view text) const {
  std::vector<std::string> words;
  pretok(*t_, 0, text, [&](std::string_view w) { words.emplace_back(w); });
  return words;
}

const std::string& HfTokenizer::token_bytes(std::uint32_t id) const {
  if (!has_token(id))
    fail("token id {} is not in the vocabulary ({} ids)", id, t_->bytes_of.size());
  return t_->bytes_of[id];
}

bool HfTokenizer::has_token(std::uint32_t id) const { return id < t_->present.size() && t_->present[id]; }

std::uint32_t HfTokenizer::vocab_size() const { return static_cast<std::uint32_t>(t_->bytes_of.size()); }

std::optional<std::uint32_t> HfTokenizer::token_id(std::string_view content) const {
  const std::string s(content);
  if (const auto it = t_->added_by_content.find(s); it != t_->added_by_content.end()) return it->second;
  if (const auto it = t_->id_of_bytes.find(s); it != t_->id_of_bytes.end()) return it->second;
  return std::nullopt;
}

const std::string& HfTokenizer::sha256() const { return t_->sha; }

}  // namespace nexplain
