#include "tokenizer/gpt2_tokenizer.hpp"

#include <array>
#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/error.hpp"
#include "core/sha256.hpp"
#include "tokenizer/bpe_merges.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/pretokenizer.hpp"

namespace nexplain {

namespace fs = std::filesystem;

struct Gpt2Tokenizer::Tables {
  std::uint64_t serial = 0;  // tells the per-thread word caches apart
  std::vector<std::string> bytes_of;
  std::array<std::uint32_t, 256> byte_token{};
  BpeMerges merges;
  std::uint32_t eot = 0;
  fs::path vocab_path, merges_path;
  std::string vocab_sha, merges_sha, combined_sha;
};

namespace {

constexpr const char* kEot = "<|endoftext|>";

struct FilePair {
  const char* vocab;
  const char* merges;
};
constexpr FilePair kPairs[] = {{"encoder.json", "vocab.bpe"}, {"vocab.json", "merges.txt"}};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("{}: cannot open tokenizer file for reading", p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail("{}: read error", p.string());
  return ss.str();
}

// 1-based line and column of byte `offset` in `text`.
std::pair<std::size_t, std::size_t> line_col(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {line, col};
}

// Where a token's key appears in encoder.json, as " (line N)" or "" when it cannot be found;
// only used on the error path, where a second look at the text is cheap.
std::string where_key(std::string_view text, const std::string& key) {
  const std::string quoted = nlohmann::json(key).dump();
  const auto at = text.find(quoted);
  if (at == std::string_view::npos) return "";
  return fmt::format(":{}", line_col(text, at).first);
}

// nlohmann's message minus its "[json.exception...] parse error at line L, column C: " prefix.
std::string parse_error_tail(const nlohmann::json::parse_error& e) {
  std::string s = e.what();
  const auto p = s.find("parse error");
  if (p == std::string::npos) return s;
  const auto colon = s.find(": ", p);
  return colon == std::string::npos ? s.substr(p) : s.substr(colon + 2);
}

void load_vocab(Gpt2Tokenizer::Tables& t, const fs::path& path,
                std::unordered_map<std::string, std::uint32_t>& id_of_shown) {
  const std::string text = slurp(path);
  t.vocab_sha = [&] {
    Sha256 h;
    h.update(text.data(), text.size());
    return h.hex_digest();
  }();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    const auto [line, col] = line_col(text, e.byte > 0 ? e.byte - 1 : 0);
    fail("{}:{}:{}: invalid JSON: {}", path.string(), line, col, parse_error_tail(e));
  }
  if (!j.is_object() || j.empty())
    fail("{}:1:1: expected a JSON object mapping each token (as GPT-2 shows it) to its id", path.string());
  const std::size_t n = j.size();
  t.bytes_of.assign(n, {});
  std::vector<bool> seen(n, false);
  id_of_shown.reserve(n);
  for (const auto& [shown, value] : j.items()) {
    if (!value.is_number_unsigned() || value.get<std::uint64_t>() >= n)
      fail("{}{}: token {}: id {} is not an integer in [0, {}) (the file has {} tokens)", path.string(),
           where_key(text, shown), nlohmann::json(shown).dump(), value.dump(), n, n);
    const auto id = value.get<std::uint32_t>();
    if (seen[id])
      fail("{}{}: token {}: id {} is used twice", path.string(), where_key(text, shown), nlohmann::json(shown).dump(), id);
    seen[id] = true;
    std::size_t bad = 0;
    auto bytes = gpt2_shown_to_bytes(shown, &bad);
    if (!bytes)
      fail("{}{}: token {}: character at byte {} of the token is not in GPT-2's byte alphabet", path.string(),
           where_key(text, shown), nlohmann::json(shown).dump(), bad);
    t.bytes_of[id] = std::move(*bytes);
    id_of_shown.emplace(shown, id);
  }
  for (int b = 0; b < 256; ++b) {
    std::string shown;
    const char32_t cp = gpt2_byte_to_codepoint(static_cast<unsigned char>(b));
    if (cp < 0x80) shown.push_back(static_cast<char>(cp));
    else {
      shown.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      shown.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    const auto it = id_of_shown.find(shown);
    if (it == id_of_shown.end())
      fail("{}: no token for byte 0x{:02x} (shown as \"{}\"): a byte-level BPE vocabulary needs all 256", path.string(), b,
           shown);
    t.byte_token[static_cast<std::size_t>(b)] = it->second;
  }
  const auto eot = id_of_shown.find(kEot);
  if (eot == id_of_shown.end()) fail("{}: no \"{}\" token: this is not a GPT-2 vocabulary", path.string(), kEot);
  t.eot = eot->second;
}

void load_merges(Gpt2Tokenizer::Tables& t, const fs::path& path,
                 const std::unordered_map<std::string, std::uint32_t>& id_of_shown) {
  const std::string text = slurp(path);
  Sha256 h;
  h.update(text.data(), text.size());
  t.merges_sha = h.hex_digest();
  std::uint32_t rank = 0;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (line_no == 1 && line.starts_with("#version")) continue;
    const auto sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size() || line.find(' ', sp + 1) != std::string_view::npos)
      fail("{}:{}: expected two tokens separated by one space, found \"{}\"", path.string(), line_no,
           line.substr(0, 80));
    const std::string left(line.substr(0, sp)), right(line.substr(sp + 1));
    const auto l = id_of_shown.find(left);
    const auto r = id_of_shown.find(right);
    if (l == id_of_shown.end() || r == id_of_shown.end())
      fail("{}:{}: merge \"{}\": token \"{}\" is not in the vocabulary ({})", path.string(), line_no, line,
           l == id_of_shown.end() ? left : right, t.vocab_path.filename().string());
    const auto m = id_of_shown.find(left + right);
    if (m == id_of_shown.end())
      fail("{}:{}: merge \"{}\": the merged token \"{}\" is not in the vocabulary ({})", path.string(), line_no, line,
           left + right, t.vocab_path.filename().string());
    // A repeated pair keeps its first (lowest) rank, as a rank dictionary built from the file does.
    t.merges.add(l->second, r->second, rank++, m->second);
  }
  if (t.merges.size() == 0) fail("{}: no merges found: expected lines \"A B\" after the #version header", path.string());
}

// Per-thread cache of word -> tokens, for words up to kCacheable bytes: most words of real text
// repeat, and a lookup is far cheaper than the merge loop. Open addressing over a power-of-two
// table (std::unordered_map's prime-modulo bucket index was the hottest instruction of
// encoding); keys and ids live in two arenas, so an entry costs no allocation.
constexpr std::size_t kCacheable = 48;
constexpr std::size_t kMaxCached = std::size_t{1} << 18;

std::uint64_t hash_word(std::string_view w) {
  std::uint64_t h = 0x9E3779B97F4A7C15ull ^ (w.size() * 0xC2B2AE3D27D4EB4Full);
  std::size_t i = 0;
  for (; i + 8 <= w.size(); i += 8) {
    std::uint64_t v;
    std::memcpy(&v, w.data() + i, 8);
    h = (h ^ v) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, w.data() + i, w.size() - i);
  h = (h ^ tail) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 29;
  return h | 1;  // 0 marks an empty slot
}

class WordCache {
 public:
  std::vector<std::uint32_t> scratch;

  void bind(std::uint64_t serial) {
    if (serial_ != serial) {
      clear();
      serial_ = serial;
    }
  }

  // The cached tokens of `w` (hash h), or nullptr.
  const std::uint32_t* find(std::string_view w, std::uint64_t h, std::size_t& n) const {
    if (slots_.empty()) return nullptr;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.hash == 0) return nullptr;
      if (s.hash == h && s.key_len == w.size() && std::memcmp(keys_.data() + s.key_off, w.data(), w.size()) == 0) {
        n = s.ids_len;
        return ids_.data() + s.ids_off;
      }
    }
  }

  void insert(std::string_view w, std::uint64_t h, const std::vector<std::uint32_t>& ids) {
    if (used_ >= kMaxCached) clear();  // crude but bounded; refills quickly
    if ((used_ + 1) * 2 > slots_.size()) grow();
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = h & mask;
    while (slots_[i].hash != 0) i = (i + 1) & mask;
    slots_[i] = Slot{h, static_cast<std::uint32_t>(keys_.size()), static_cast<std::uint32_t>(w.size()),
                     static_cast<std::uint32_t>(ids_.size()), static_cast<std::uint32_t>(ids.size())};
    keys_.append(w);
    ids_.insert(ids_.end(), ids.begin(), ids.end());
    ++used_;
  }

 private:
  struct Slot {
    std::uint64_t hash;
    std::uint32_t key_off, key_len, ids_off, ids_len;
  };

  void clear() {
    slots_.clear();
    keys_.clear();
    ids_.clear();
    used_ = 0;
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 4096 : old.size() * 2, Slot{0, 0, 0, 0, 0});
    const std::size_t mask = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.hash == 0) continue;
      std::size_t i = s.hash & mask;
      while (slots_[i].hash != 0) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }

  std::uint64_t serial_ = 0;
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<std::uint32_t> ids_;
  std::size_t used_ = 0;
};

std::atomic<std::uint64_t> g_serial{0};

}  // namespace

bool Gpt2Tokenizer::has_files(const fs::path& dir) {
  std::error_code ec;
  for (const auto& p : kPairs)
    if (fs::is_regular_file(dir / p.vocab, ec) && fs::is_regular_file(dir / p.merges, ec)) return true;
  return false;
}

Gpt2Tokenizer Gpt2Tokenizer::load(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("{}: tokenizer directory does not exist (run scripts/fetch-tokenizer.sh to get GPT-2's files)", dir.string());
  auto t = std::make_shared<Tables>();
  for (const auto& p : kPairs) {
    if (fs::is_regular_file(dir / p.vocab, ec) || fs::is_regular_file(dir / p.merges, ec)) {
      t->vocab_path = dir / p.vocab;
      t->merges_path = dir / p.merges;
      break;
    }
  }
  if (t->vocab_path.empty())
    fail("{}: no GPT-2 tokenizer files: expected encoder.json + vocab.bpe (OpenAI) or vocab.json + merges.txt "
         "(Hugging Face); run scripts/fetch-tokenizer.sh",
         dir.string());
  for (const auto* f : {&t->vocab_path, &t->merges_path})
    if (!fs::is_regular_file(*f, ec))
      fail("{}: missing: {} needs both {} and {}", f->string(), dir.string(), t->vocab_path.filename().string(),
           t->merges_path.filename().string());

  std::unordered_map<std::string, std::uint32_t> id_of_shown;
  load_vocab(*t, t->vocab_path, id_of_shown);
  load_merges(*t, t->merges_path, id_of_shown);
  Sha256 h;
  const std::string both = t->vocab_sha + "\n" + t->merges_sha + "\n";
  h.update(both.data(), both.size());
  t->combined_sha = h.hex_digest();
  t->serial = ++g_serial;
  spdlog::debug("tokenizer: {} tokens, {} merges from {}", t->bytes_of.size(), t->merges.size(), dir.string());
  return Gpt2Tokenizer(std::move(t));
}

void Gpt2Tokenizer::encode_append(std::string_view text, std::vector<std::uint32_t>& out) const {
  const Tables& t = *t_;
  thread_local WordCache cache;
  cache.bind(t.serial);
  gpt2_pretokenize(text, [&](std::string_view word) {
    if (word.size() == 1) {
      out.push_back(t.byte_token[static_cast<unsigned char>(word[0])]);
      return;
    }
    const bool cacheable = word.size() <= kCacheable;
    const std::uint64_t h = cacheable ? hash_word(word) : 0;
    if (cacheable) {
      std::size_t n = 0;
      if (const std::uint32_t* ids = cache.find(word, h, n)) {
        out.insert(out.end(), ids, ids + n);
        return;
      }
    }
    auto& ids = cache.scratch;
    ids.clear();
    for (const char c : word) ids.push_back(t.byte_token[static_cast<unsigned char>(c)]);
    t.merges.apply(ids);
    out.insert(out.end(), ids.begin(), ids.end());
    if (cacheable) cache.insert(word, h, ids);
  });
}

std::vector<std::uint32_t> Gpt2Tokenizer::encode(std::string_view text) const {
  std::vector<std::uint32_t> out;
  out.reserve(text.size() / 3 + 8);
  encode_append(text, out);
  return out;
}

const std::string& Gpt2Tokenizer::token_bytes(std::uint32_t id) const {
  if (id >= t_->bytes_of.size()) fail("token id {} is out of range: the vocabulary has {} tokens", id, t_->bytes_of.size());
  return t_->bytes_of[id];
}

std::uint32_t Gpt2Tokenizer::vocab_size() const { return static_cast<std::uint32_t>(t_->bytes_of.size()); }
std::uint32_t Gpt2Tokenizer::eot_id() const { return t_->eot; }
const std::string& Gpt2Tokenizer::files_sha256() const { return t_->combined_sha; }
const fs::path& Gpt2Tokenizer::vocab_file() const { return t_->vocab_path; }
const fs::path& Gpt2Tokenizer::merges_file() const { return t_->merges_path; }
const std::string& Gpt2Tokenizer::vocab_file_sha256() const { return t_->vocab_sha; }
const std::string& Gpt2Tokenizer::merges_file_sha256() const { return t_->merges_sha; }
const BpeMerges& Gpt2Tokenizer::merges() const { return t_->merges; }

}  // namespace nexplain
