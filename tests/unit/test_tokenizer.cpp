// GPT-2 tokenizer: SHA-256 vectors, goldens from tiktoken/gpt-3-encoder, corpus token counts,
// lossless round trips for arbitrary bytes, the safe-split rule, and load errors.
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/sha256.hpp"
#include "test_support.hpp"
#include "tokenizer/bpe_merges.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/gpt2_tokenizer.hpp"
#include "tokenizer/hf_tokenizer.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/safe_split.hpp"
#include "tokenizer/tokenizer_dir.hpp"

using namespace nexplain;
namespace fs = std::filesystem;

namespace {

std::string sha(const std::string& s, bool allow_cpu_extensions = true) {
  Sha256 h(allow_cpu_extensions);
  h.update(s.data(), s.size());
  return h.hex_digest();
}

std::string shown(unsigned char b) {
  const char32_t cp = gpt2_byte_to_codepoint(b);
  std::string s;
  if (cp < 0x80) s.push_back(static_cast<char>(cp));
  else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

// A tiny byte-level BPE vocabulary: ids 0..255 are the bytes, then "he", "ll", "hell", and
// <|endoftext|>. Written as OpenAI's file pair, or Hugging Face's.
void write_tiny_tokenizer(const fs::path& dir, bool hf_names = false) {
  fs::create_directories(dir);
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[shown(static_cast<unsigned char>(b))] = b;
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["<|endoftext|>"] = 259;
  test::write_file(dir / (hf_names ? "vocab.json" : "encoder.json"), vocab.dump(1));
  test::write_file(dir / (hf_names ? "merges.txt" : "vocab.bpe"), "#version: 0.2\nh e\nl l\nhe ll\n");
}

std::vector<std::uint32_t> words_of(const Gpt2Tokenizer& tok, std::string_view text, std::vector<std::string>& words) {
  words.clear();
  gpt2_pretokenize(text, [&](std::string_view w) { words.emplace_back(w); });
  return tok.encode(text);
}

const Gpt2Tokenizer& gpt2(const fs::path& shared) {
  static const Gpt2Tokenizer tok = Gpt2Tokenizer::load(shared / "data" / "gpt2-tokenizer");
  return tok;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// ------------------------------------------------------------------ SHA-256

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, CpuInstructionsAgreeWithPortableCode) {
  std::mt19937 rng(3);
  for (std::size_t n : {0, 1, 55, 56, 63, 64, 65, 127, 128, 1000, 100000}) {
    std::string data(n, '\0');
    for (auto& c : data) c = static_cast<char>(rng());
    EXPECT_EQ(sha(data, true), sha(data, false)) << n << " bytes";
  }
  std::printf("SHA CPU instructions %s\n", sha256_cpu_extensions_available() ? "used" : "not available: portable code only");
}

TEST(Sha256, StreamingInAnyPiecesEqualsOneShot) {
  std::string data(10000, '\0');
  std::mt19937 rng(7);
  for (auto& c : data) c = static_cast<char>(rng());
  const std::string whole = sha(data);
  for (std::size_t step : {1, 3, 55, 56, 63, 64, 65, 1000}) {
    Sha256 h;
    for (std::size_t i = 0; i < data.size(); i += step) h.update(data.data() + i, std::min(step, data.size() - i));
    EXPECT_EQ(h.hex_digest(), whole) << "step " << step;
  }
  test::TempDir dir;
  test::write_file(dir / "f", data);
  EXPECT_EQ(sha256_file(dir / "f"), whole);
  EXPECT_NE(error_of([&] { sha256_file(dir / "missing"); }).find("missing"), std::string::npos);
}

// ------------------------------------------------------------------ tiny vocabulary (no ../shared)

TEST(Gpt2Tokenizer, TinyVocabularyMergesByRank) {
  test::TempDir dir;
  write_tiny_tokenizer(dir.path());
  const auto tok = Gpt2Tokenizer::load(dir.path());
  EXPECT_EQ(tok.vocab_size(), 260u);
  EXPECT_EQ(tok.eot_id(), 259u);
  EXPECT_EQ(tok.encode("hello"), (std::vector<std::uint32_t>{258, 'o'}));
  EXPECT_EQ(tok.encode("hello hell"), (std::vector<std::uint32_t>{258, 'o', ' ', 258}));
  EXPECT_EQ(tok.decode(tok.encode("hello hell")), "hello hell");
  EXPECT_EQ(tok.token_bytes(258), "hell");
  EXPECT_EQ(tok.files_sha256(), sha(sha256_file(dir / "encoder.json") + "\n" + sha256_file(dir / "vocab.bpe") + "\n"));
  EXPECT_NE(error_of([&] { tok.token_bytes(260); }).find("out of range"), std::string::npos);
  const std::vector<std::uint32_t> bad{1, 99999};
  EXPECT_NE(error_of([&] { tok.decode(bad); }).find("99999"), std::string::npos);
}

TEST(Gpt2Tokenizer, HuggingFaceFileNamesLoadTheSame) {
  test::TempDir dir;
  write_tiny_tokenizer(dir / "openai");
  write_tiny_tokenizer(dir / "hf", true);
  const auto a = Gpt2Tokenizer::load(dir / "openai");
  const auto b = Gpt2Tokenizer::load(dir / "hf");
  EXPECT_EQ(b.vocab_file().filename(), "vocab.json");
  EXPECT_EQ(a.encode("hello, hell!"), b.encode("hello, hell!"));
}

TEST(Gpt2Tokenizer, LoadErrorsNameFileAndLine) {
  test::TempDir dir;
  std::string e = error_of([&] { Gpt2Tokenizer::load(dir / "nope"); });
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
  EXPECT_NE(e.find("fetch-tokenizer.sh"), std::string::npos) << e;

  e = error_of([&] { Gpt2Tokenizer::load(dir.path()); });
  EXPECT_NE(e.find("encoder.json + vocab.bpe"), std::string::npos) << e;

  write_tiny_tokenizer(dir / "t");
  fs::remove(dir / "t" / "vocab.bpe");
  e = error_of([&] { Gpt2Tokenizer::load(dir / "t"); });
  EXPECT_NE(e.find("vocab.bpe: missing"), std::string::npos) << e;

  // Corrupt JSON: line 3, column 5 of encoder.json.
  write_tiny_tokenizer(dir / "j");
  test::write_file(dir / "j" / "encoder.json", "{\n \"a\": 0,\n    x\n}");
  e = error_of([&] { Gpt2Tokenizer::load(dir / "j"); });
  EXPECT_NE(e.find("encoder.json:3:5: invalid JSON"), std::string::npos) << e;

  // A vocabulary without every byte.
  test::write_file(dir / "j" / "encoder.json", R"({"a": 0, "<|endoftext|>": 1})");
  e = error_of([&] { Gpt2Tokenizer::load(dir / "j"); });
  EXPECT_NE(e.find("no token for byte 0x00"), std::string::npos) << e;

  // Malformed merges line 3.
  write_tiny_tokenizer(dir / "m");
  test::write_file(dir / "m" / "vocab.bpe", "#version: 0.2\nh e\nl  l\n");
  e = error_of([&] { Gpt2Tokenizer::load(dir / "m"); });
  EXPECT_NE(e.find("vocab.bpe:3: expected two tokens separated by one space"), std::string::npos) << e;

  // A merge whose result is not in the vocabulary (line 2).
  test::write_file(dir / "m" / "vocab.bpe", "#version: 0.2\nx y\n");
  e = error_of([&] { Gpt2Tokenizer::load(dir / "m"); });
  EXPECT_NE(e.find("vocab.bpe:2: merge \"x y\": the merged token \"xy\" is not in the vocabulary"), std::string::npos) << e;

  // A token outside GPT-2's byte alphabet (a raw space) in encoder.json, reported with its line.
  write_tiny_tokenizer(dir / "s");
  auto text = test::read_file(dir / "s" / "encoder.json");
  text.insert(2, "\"a b\": 7,\n");
  test::write_file(dir / "s" / "encoder.json", text);
  e = error_of([&] { Gpt2Tokenizer::load(dir / "s"); });
  EXPECT_NE(e.find("encoder.json:"), std::string::npos) << e;
  EXPECT_NE(e.find("\"a b\""), std::string::npos) << e;
}

TEST(Gpt2Tokenizer, LocateDefaultDirectory) {
  test::TempDir dir;
  write_tiny_tokenizer(dir / "tok");
  EXPECT_EQ(locate_tokenizer_dir(dir / "explicit"), dir / "explicit");
  const char* old = std::getenv("NEXPLAIN_TOKENIZER_DIR");
  const std::string saved = old ? old : "";
  setenv("NEXPLAIN_TOKENIZER_DIR", (dir / "tok").c_str(), 1);
  EXPECT_EQ(locate_tokenizer_dir(), dir / "tok");
  setenv("NEXPLAIN_TOKENIZER_DIR", (dir / "empty").c_str(), 1);
  const std::string e = error_of([] { locate_tokenizer_dir(); });
  EXPECT_NE(e.find("fetch-tokenizer.sh"), std::string::npos) << e;
  if (old) setenv("NEXPLAIN_TOKENIZER_DIR", saved.c_str(), 1);
  else unsetenv("NEXPLAIN_TOKENIZER_DIR");
}

// The tiny vocabulary above as a tokenizer.json, plus a special added token at id 300 (ids
// 260..299 are holes), so that a test can tell which of the two files a directory was read from.
void write_tiny_tokenizer_json(const fs::path& file, const fs::path& encoder_json) {
  fs::create_directories(file.parent_path());
  const auto vocab = nlohmann::json::parse(test::read_file(encoder_json));
  const nlohmann::json j = {
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"added_tokens", nlohmann::json::array({{{"id", 300}, {"content", "<|im_start|>"}, {"special", true}}})},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"h e", "l l", "he ll"}}}}};
  test::write_file(file, j.dump());
}

// load_tokenizer: a tokenizer.json wins over GPT-2's pair beside it (Qwen2 ships both, and only
// the .json has its specials and pattern); the pair alone, or the .json named directly, load too.
TEST(TokenizerDir, PicksTokenizerJsonElseGpt2Files) {
  test::TempDir dir;
  write_tiny_tokenizer(dir / "src");
  write_tiny_tokenizer_json(dir / "json" / "tokenizer.json", dir / "src" / "encoder.json");
  write_tiny_tokenizer(dir / "both");
  fs::copy_file(dir / "json" / "tokenizer.json", dir / "both" / "tokenizer.json");

  const auto pair = load_tokenizer(dir / "src");
  EXPECT_NE(dynamic_cast<const Gpt2Tokenizer*>(pair.get()), nullptr);
  EXPECT_EQ(pair->vocab_size(), 260u);
  EXPECT_EQ(find_tokenizer_files(dir / "src")->kind, TokenizerFiles::Kind::gpt2_pair);
  for (const fs::path& p : {dir / "json", dir / "both", dir / "json" / "tokenizer.json"}) {
    SCOPED_TRACE(p.string());
    const auto files = find_tokenizer_files(p);
    ASSERT_TRUE(files);
    EXPECT_EQ(files->kind, TokenizerFiles::Kind::tokenizer_json);
    EXPECT_EQ(files->path.filename(), "tokenizer.json");
    const auto tok = load_tokenizer(p);
    EXPECT_NE(dynamic_cast<const HfTokenizer*>(tok.get()), nullptr);
    EXPECT_EQ(tok->vocab_size(), 301u);
    // Same tokens for the shared vocabulary; the added token decodes to its content; holes are no tokens.
    EXPECT_EQ(tok->encode("hello"), pair->encode("hello"));
    EXPECT_EQ(tok->decode(std::vector<std::uint32_t>{258, 300, 'o'}), "hell<|im_start|>o");
    EXPECT_TRUE(tok->has_token(300));
    EXPECT_FALSE(tok->has_token(299));
    EXPECT_FALSE(tok->has_token(301));
    EXPECT_NE(error_of([&] { tok->token_bytes(299); }).find("token id 299 is not in the vocabulary"), std::string::npos);
  }
  EXPECT_FALSE(pair->has_token(260));
  // NEXPLAIN_TOKENIZER_DIR may name a directory with a tokenizer.json only.
  const char* old = std::getenv("NEXPLAIN_TOKENIZER_DIR");
  const std::string saved = old ? old : "";
  setenv("NEXPLAIN_TOKENIZER_DIR", (dir / "json").c_str(), 1);
  EXPECT_EQ(locate_tokenizer_dir(), dir / "json");
  if (old) setenv("NEXPLAIN_TOKENIZER_DIR", saved.c_str(), 1);
  else unsetenv("NEXPLAIN_TOKENIZER_DIR");
}

TEST(TokenizerDir, ErrorsNameTheDirectoryAndWhatWasLookedFor) {
  test::TempDir dir;
  fs::create_directories(dir / "empty");
  auto e = error_of([&] { load_tokenizer(dir / "empty"); });
  EXPECT_NE(e.find((dir / "empty").string() + ": no tokenizer files: looked for tokenizer.json, or GPT-2's vocab.json + "
                   "merges.txt or encoder.json + vocab.bpe"),
            std::string::npos) << e;
  e = error_of([&] { load_tokenizer(dir / "nowhere"); });
  EXPECT_NE(e.find((dir / "nowhere").string() + ": tokenizer directory does not exist"), std::string::npos) << e;
  test::write_file(dir / "notes.txt", "x");
  e = error_of([&] { load_tokenizer(dir / "notes.txt"); });
  EXPECT_NE(e.find("notes.txt: not a tokenizer directory or a .json tokenizer file"), std::string::npos) << e;
  // Half of GPT-2's pair: the missing file is named.
  write_tiny_tokenizer(dir / "half", true);
  fs::remove(dir / "half" / "merges.txt");
  e = error_of([&] { load_tokenizer(dir / "half"); });
  EXPECT_NE(e.find("merges.txt: missing"), std::string::npos) << e;
  // A broken tokenizer.json is reported by its loader, naming the file.
  fs::create_directories(dir / "bad");
  test::write_file(dir / "bad" / "tokenizer.json", "{\"model\": ");
  e = error_of([&] { load_tokenizer(dir / "bad"); });
  EXPECT_NE(e.find((dir / "bad" / "tokenizer.json").string() + ": byte"), std::string::npos) << e;
}

// ------------------------------------------------------------------ pre-tokenizer and safe cuts

TEST(Pretokenizer, WordsCoverEveryByteEvenInvalidUtf8) {
  const std::string text = "I'm here:  \xff\xfe ok\xc3 \xe2\x82 caf\xc3\xa9 \xed\xa0\x80 \xc0\xaf end \n\n";
  std::string joined;
  gpt2_pretokenize(text, [&](std::string_view w) {
    EXPECT_FALSE(w.empty());
    joined += w;
  });
  EXPECT_EQ(joined, text);
}

// For every cut that is_safe_split() allows, the words of the two halves are the words of the
// whole: checked exhaustively on random strings over an alphabet that exercises each rule.
TEST(SafeSplit, SafeCutsNeverChangeTheWords) {
  const std::vector<std::string> alphabet = {"a", "Z", "1", ".", "'", "s", " ", " ", "\n", "\n", "\t", "\xc3\xa9", "\xe2\x80\x83", "\xff", "  "};
  std::mt19937 rng(12345);
  std::size_t cuts = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string text;
    const int n = 2 + static_cast<int>(rng() % 24);
    for (int i = 0; i < n; ++i) text += alphabet[rng() % alphabet.size()];
    std::vector<std::string> whole;
    gpt2_pretokenize(text, [&](std::string_view w) { whole.emplace_back(w); });
    for (std::size_t p = 0; p <= text.size(); ++p) {
      if (!is_safe_split(text, p)) continue;
      ++cuts;
      std::vector<std::string> parts;
      gpt2_pretokenize(std::string_view(text).substr(0, p), [&](std::string_view w) { parts.emplace_back(w); });
      gpt2_pretokenize(std::string_view(text).substr(p), [&](std::string_view w) { parts.emplace_back(w); });
      ASSERT_EQ(parts, whole) << "cut at " << p << " of '" << text << "'";
    }
  }
  EXPECT_GT(cuts, 1000u);
}

TEST(SafeSplit, PiecesConcatenateToTheText) {
  const std::string text = "one two\nthree four five. six\nseven eight nine ten eleven twelve";
  for (std::size_t target : {1, 5, 10, 100}) {
    const auto pieces = split_safely(text, target);
    std::string joined;
    for (auto p : pieces) joined += p;
    EXPECT_EQ(joined, text);
    if (target == 5) {
      EXPECT_GT(pieces.size(), 5u);
    }
  }
  EXPECT_EQ(split_safely("", 10).size(), 0u);
  EXPECT_EQ(split_safely("nocutpossiblehere", 3).size(), 1u);
}

// ------------------------------------------------------------------ real GPT-2 (../shared)

TEST(Gpt2Tokenizer, ReproducesEveryGolden) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto& tok = gpt2(shared);
  std::ifstream f(shared / "fixtures" / "gpt2-tokenizer-goldens.jsonl");
  ASSERT_TRUE(f) << "goldens missing";
  std::string line;
  int rows = 0, line_no = 0;
  while (std::getline(f, line)) {
    ++line_no;
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    const auto text = j.at("text").get<std::string>();
    const auto expected = j.at("ids").get<std::vector<std::uint32_t>>();
    EXPECT_EQ(tok.encode(text), expected) << "goldens line " << line_no << ": " << text.substr(0, 60);
    EXPECT_EQ(tok.decode(expected), text) << "goldens line " << line_no;
    ++rows;
  }
  EXPECT_GE(rows, 60);
  std::printf("goldens matched: %d rows\n", rows);
}

TEST(Gpt2Tokenizer, CorpusTokenCounts) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto& tok = gpt2(shared);
  EXPECT_EQ(tok.vocab_size(), 50257u);
  EXPECT_EQ(tok.eot_id(), 50256u);
  EXPECT_EQ(tok.vocab_file_sha256(), "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783");
  EXPECT_EQ(tok.merges_file_sha256(), "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5");
  const std::string shakespeare = test::read_file(shared / "data" / "corpora" / "tinyshakespeare.txt");
  const std::string wiki = test::read_file(shared / "data" / "corpora" / "wikitext2-valid.txt");
  const auto a = tok.encode(shakespeare);
  const auto b = tok.encode(wiki);
  EXPECT_EQ(a.size(), 338025u);
  EXPECT_EQ(b.size(), 258659u);
  EXPECT_EQ(tok.decode(a), shakespeare);
  EXPECT_EQ(tok.decode(b), wiki);
}

TEST(Gpt2Tokenizer, EndOfTextInTheInputIsOrdinaryText) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto& tok = gpt2(shared);
  const auto ids = tok.encode("a<|endoftext|>b");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tok.eot_id()), 0);
  EXPECT_EQ(tok.decode(ids), "a<|endoftext|>b");
  const std::vector<std::uint32_t> eot{tok.eot_id()};
  EXPECT_EQ(tok.decode(eot), "<|endoftext|>");
}

TEST(Gpt2Tokenizer, RoundTripsArbitraryBytes) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto& tok = gpt2(shared);
  const std::vector<std::string> cases = {
      "\xff", "\xc3", "a\x80" "b", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "  \xff  x", "\xe2\x82", "x\xe2\x82 y",
      std::string("nul\0byte", 8), "\xef\xbb\xbf" "bom", "\r\n\r\n", std::string(3000, ' ') + "x", std::string(5000, 'a'),
      std::string(4000, '7'), "\xf0\x9f\x98\x80\xf0\x9f"};
  for (const auto& c : cases) EXPECT_EQ(tok.decode(tok.encode(c)), c) << "case of " << c.size() << " bytes";
  std::mt19937 rng(2024);
  for (int i = 0; i < 3000; ++i) {
    std::string s(rng() % 200, '\0');
    const int mode = i % 3;
    for (auto& c : s) {
      const unsigned r = rng();
      // Mode 0: any byte. 1: mostly ASCII text with stray high bytes. 2: UTF-8 lead/continuation soup.
      c = static_cast<char>(mode == 0 ? r : mode == 1 ? (r % 10 == 0 ? 0x80 + r % 128 : 32 + r % 95) : 0x80 + r % 0x78);
    }
    ASSERT_EQ(tok.decode(tok.encode(s)), s) << "random case " << i;
  }
}

TEST(Gpt2Tokenizer, HeapMergeLoopAgreesWithSimpleLoop) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto& tok = gpt2(shared);
  const std::string text = test::read_file(shared / "data" / "corpora" / "wikitext2-valid.txt").substr(0, 200000);
  std::vector<std::string> words;
  words_of(tok, text, words);
  std::mt19937 rng(5);
  for (int i = 0; i < 300; ++i) {  // long runs of random letters and bytes exercise the heap path
    std::string w;
    for (int k = 0, n = 2 + static_cast<int>(rng() % 120); k < n; ++k) w.push_back(static_cast<char>(i % 2 ? 'a' + rng() % 6 : rng()));
    words.push_back(w);
  }
  int checked = 0;
  for (const auto& w : words) {
    if (w.size() < 2) continue;
    std::vector<std::uint32_t> a, b;
    for (const char c : w) a.push_back(tok.encode(std::string(1, c)).at(0));
    b = a;
    tok.merges().apply(a);
    tok.merges().apply_with_heap(b);
    ASSERT_EQ(a, b) << "word '" << w << "'";
    ++checked;
  }
  EXPECT_GT(checked, 10000);
  // A long word goes through the heap inside encode() and still round-trips.
  std::string long_word;
  for (int k = 0; k < 20000; ++k) long_word.push_back(static_cast<char>('a' + rng() % 26));
  EXPECT_EQ(tok.decode(tok.encode(long_word)), long_word);
}

TEST(Gpt2Tokenizer, ChunkedEqualsWholeOnBothCorpora) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto& tok = gpt2(shared);
  for (const char* name : {"tinyshakespeare.txt", "wikitext2-valid.txt"}) {
    const std::string text = test::read_file(shared / "data" / "corpora" / name);
    const auto whole = tok.encode(text);
    for (std::size_t target : {777, 4096, 100000}) {
      const auto pieces = split_safely(text, target);
      EXPECT_GT(pieces.size(), text.size() / target / 2) << name << " target " << target;
      std::vector<std::uint32_t> chunked;
      for (auto p : pieces) tok.encode_append(p, chunked);
      EXPECT_EQ(chunked.size(), whole.size()) << name << " target " << target;
      EXPECT_TRUE(chunked == whole) << name << " target " << target;
    }
  }
}

TEST(Gpt2Tokenizer, EncodeIsThreadSafe) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto& tok = gpt2(shared);
  const std::string text = test::read_file(shared / "data" / "corpora" / "tinyshakespeare.txt");
  const auto pieces = split_safely(text, 20000);
  std::vector<std::vector<std::uint32_t>> serial;
  for (auto p : pieces) serial.push_back(tok.encode(p));
  std::vector<std::vector<std::uint32_t>> parallel(pieces.size());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (std::size_t i = static_cast<std::size_t>(t); i < pieces.size(); i += 4) parallel[i] = tok.encode(pieces[i]);
    });
  for (auto& th : threads) th.join();
  EXPECT_TRUE(parallel == serial);
}

TEST(Gpt2Tokenizer, HuggingFaceNamesForTheRealFiles) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  fs::copy_file(shared / "data" / "gpt2-tokenizer" / "encoder.json", dir / "vocab.json");
  fs::copy_file(shared / "data" / "gpt2-tokenizer" / "vocab.bpe", dir / "merges.txt");
  const auto tok = Gpt2Tokenizer::load(dir.path());
  EXPECT_EQ(tok.encode("Hello world, it's 2024!"), gpt2(shared).encode("Hello world, it's 2024!"));
}
