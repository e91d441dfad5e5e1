// HfTokenizer (tokenizer.json byte-level BPE): a tokenizer.json built from GPT-2's own files
// must reproduce every GPT-2 golden and agree with Gpt2Tokenizer on real text; the Llama-3
// pre-tokenizer pattern is checked on hand-worked cases; unsupported features are named.
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "explain/record_splits.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/gpt2_tokenizer.hpp"
#include "tokenizer/hf_tokenizer.hpp"
#include "tokenizer/regex_split.hpp"
#include "test_support.hpp"

using namespace nexplain;
using nlohmann::json;
using test::errmsg;

namespace {

using test::gpt2_tokenizer_json;

std::string shown(const std::string& bytes) { return gpt2_bytes_to_shown(bytes); }

constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A small Llama-3-style tokenizer.json: Sequence[Split(pattern), ByteLevel(use_regex false)],
// ignore_merges, the 256 byte tokens (ids 0..255 in byte order) plus a few merged ones.
json llama3_style(bool ignore_merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[shown(std::string(1, static_cast<char>(b)))] = b;
  const std::vector<std::string> extra = {" t", "he", " the", "hello"};  // ids 256..259
  for (std::size_t i = 0; i < extra.size(); ++i) vocab[shown(extra[i])] = 256 + i;
  const json merges = json::array({json::array({shown(" "), "t"}), json::array({"h", "e"}),
                                   json::array({shown(" t"), "he"})});
  return {{"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             json::array({{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}}, {"behavior", "Isolated"},
                           {"invert", false}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                           {"use_regex", false}}})}}},
          {"added_tokens", json::array({{{"id", 300}, {"content", "<|begin_of_text|>"}, {"special", true}},
                                        {{"id", 301}, {"content", "<tool>"}, {"special", false}}})},
          {"model",
           {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
            {"ignore_merges", ignore_merges}, {"vocab", vocab}, {"merges", merges}}}};
}

}  // namespace

TEST(HfTokenizer, Gpt2TokenizerJsonReproducesEveryGolden) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto dir = shared / "data" / "gpt2-tokenizer";
  for (const bool array_merges : {false, true}) {
    SCOPED_TRACE(array_merges ? "merges as pairs" : "merges as strings");
    const auto tok = HfTokenizer::from_json_text(gpt2_tokenizer_json(dir, array_merges), "gpt2/tokenizer.json");
    EXPECT_EQ(tok.vocab_size(), 50257u);
    EXPECT_EQ(tok.token_id("<|endoftext|>"), 50256u);
    std::ifstream f(shared / "fixtures" / "gpt2-tokenizer-goldens.jsonl");
    ASSERT_TRUE(f) << "goldens missing";
    std::string line;
    int rows = 0, line_no = 0;
    while (std::getline(f, line)) {
      ++line_no;
      if (line.empty()) continue;
      const auto j = json::parse(line);
      const auto text = j.at("text").get<std::string>();
      const auto expected = j.at("ids").get<std::vector<std::uint32_t>>();
      EXPECT_EQ(tok.encode(text), expected) << "goldens line " << line_no << ": " << text.substr(0, 60);
      EXPECT_EQ(tok.decode(expected), text) << "goldens line " << line_no;
      ++rows;
    }
    EXPECT_GE(rows, 60);
    std::printf("tokenizer.json goldens matched: %d rows (%s)\n", rows, array_merges ? "pair merges" : "string merges");
    // The special token spelled in text stays text, as with Gpt2Tokenizer.
    EXPECT_NE(tok.encode("<|endoftext|>"), (std::vector<std::uint32_t>{50256}));
  }
}

TEST(HfTokenizer, AgreesWithGpt2TokenizerOnCorpora) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto dir = shared / "data" / "gpt2-tokenizer";
  const auto hf = HfTokenizer::from_json_text(gpt2_tokenizer_json(dir, false), "gpt2/tokenizer.json");
  const auto gpt2 = Gpt2Tokenizer::load(dir);
  for (const char* name : {"tinyshakespeare.txt", "wikitext2-valid.txt"}) {
    std::string text = test::read_file(shared / "data" / "corpora" / name);
    text.resize(std::min<std::size_t>(text.size(), 300000));
    const auto a = hf.encode(text);
    EXPECT_EQ(a, gpt2.encode(text)) << name;
    EXPECT_EQ(hf.decode(a), text);
    std::printf("%s: %zu tokens agree\n", name, a.size());
  }
  // Bytes that are not UTF-8 are kept, as by Gpt2Tokenizer.
  const std::string junk = "ok \xff\xfe caf\xc3 \xe2\x82 <|endoftext|>";
  EXPECT_EQ(hf.encode(junk), gpt2.encode(junk));
  EXPECT_EQ(hf.decode(hf.encode(junk)), junk);
}

// Every id of GPT-2's vocabulary, read from tokenizer.json, has the bytes and the shown text that
// GPT-2's own files give it, through the Tokenizer interface the commands use: tokens that are
// part of a UTF-8 character (shown with U+FFFD), and <|endoftext|>, an added special token there.
TEST(HfTokenizer, Gpt2TokenizerJsonDecodesEveryIdAsGpt2Tokenizer) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto dir = shared / "data" / "gpt2-tokenizer";
  const HfTokenizer hf = HfTokenizer::from_json_text(gpt2_tokenizer_json(dir), "gpt2/tokenizer.json");
  const Gpt2Tokenizer gpt2 = Gpt2Tokenizer::load(dir);
  const Tokenizer& a = hf;
  const Tokenizer& b = gpt2;
  ASSERT_EQ(a.vocab_size(), b.vocab_size());
  std::size_t partial = 0;
  for (std::uint32_t id = 0; id < b.vocab_size(); ++id) {
    ASSERT_TRUE(a.has_token(id)) << id;
    ASSERT_EQ(a.token_bytes(id), b.token_bytes(id)) << "id " << id;
    const std::string text = display_token(a, id);
    ASSERT_EQ(text, display_token(b, id)) << "id " << id;
    if (text.find("\xEF\xBF\xBD") != std::string::npos) ++partial;
  }
  // At least the 128 lone bytes 0x80..0xFF are partial characters.
  EXPECT_GE(partial, 128u);
  EXPECT_EQ(display_token(a, 50256), "<|endoftext|>");
  EXPECT_FALSE(a.has_token(b.vocab_size()));
  // A character split across tokens: each piece shows U+FFFD, the decoded ids give it back whole.
  const std::string text = "price: 5\xe2\x82\xac, \xf0\x9f\x98\x80!";
  const auto ids = gpt2.encode(text);
  EXPECT_EQ(a.decode(ids), text);
  EXPECT_EQ(a.decode(ids), b.decode(ids));
  EXPECT_EQ(display_tokens(a, ids), display_tokens(b, ids));
  std::size_t split = 0;
  for (const auto& t : display_tokens(a, ids)) split += t.find("\xEF\xBF\xBD") != std::string::npos;
  EXPECT_GT(split, 0u) << "the emoji was expected to span tokens";
  std::printf("tokenizer.json decodes all %u ids as GPT-2's files do (%zu partial characters)\n", b.vocab_size(), partial);
}

// Cases worked by hand through Llama 3's pattern (and confirmed with Python's `regex` module,
// the engine tiktoken uses): case-insensitive contractions, a non-letter glued before letters,
// digits in threes, punctuation runs that take the line breaks after them, whitespace before
// a word splitting off all but its last space.
TEST(HfTokenizer, Llama3PatternSplitsByHand) {
  const auto tok = HfTokenizer::from_json_text(llama3_style(true).dump(), "llama3/tokenizer.json");
  using V = std::vector<std::string>;
  EXPECT_EQ(tok.pretokenize("I'M here, don't"), (V{"I", "'M", " here", ",", " don", "'t"}));
  EXPECT_EQ(tok.pretokenize("HELLO'S"), (V{"HELLO", "'S"}));
  EXPECT_EQ(tok.pretokenize("12345 abc"), (V{"123", "45", " abc"}));
  EXPECT_EQ(tok.pretokenize("$hello world!!!\n\nNext"), (V{"$hello", " world", "!!!\n\n", "Next"}));
  EXPECT_EQ(tok.pretokenize("  foo"), (V{" ", " foo"}));
  EXPECT_EQ(tok.pretokenize("x\n\n  y"), (V{"x", "\n\n", " ", " y"}));
  EXPECT_EQ(tok.pretokenize("caf\xc3\xa9 1\xc2\xa0" "000"), (V{"caf\xc3\xa9", " ", "1", "\xc2\xa0", "000"}));
  EXPECT_EQ(tok.pretokenize("(a+b)=c;\r\n"), (V{"(a", "+b", ")=", "c", ";\r\n"}));
}

TEST(HfTokenizer, MergesIgnoreMergesAndAddedTokens) {
  const auto tok = HfTokenizer::from_json_text(llama3_style(true).dump(), "t.json");
  EXPECT_EQ(tok.vocab_size(), 302u);
  // " the" merges " "+"t" -> " t", "h"+"e" -> "he", " t"+"he" -> " the".
  EXPECT_EQ(tok.encode(" the"), (std::vector<std::uint32_t>{258}));
  EXPECT_EQ(tok.encode("the"), (std::vector<std::uint32_t>{'t', 257}));
  // "hello" is a vocabulary token without a merge path: ignore_merges takes it whole ...
  EXPECT_EQ(tok.encode("hello"), (std::vector<std::uint32_t>{259}));
  // ... while without ignore_merges only the merges count (h+e, then no more).
  const auto plain = HfTokenizer::from_json_text(llama3_style(false).dump(), "t.json");
  EXPECT_EQ(plain.encode("hello"), (std::vector<std::uint32_t>{257, 'l', 'l', 'o'}));
  // A non-special added token is cut out of text; a special one is not (text cannot forge it).
  EXPECT_EQ(tok.encode("a<tool>b"), (std::vector<std::uint32_t>{'a', 301, 'b'}));
  const std::string bot = "<|begin_of_text|>";  // no merge applies to its bytes
  EXPECT_EQ(tok.encode(bot), std::vector<std::uint32_t>(bot.begin(), bot.end()));
  EXPECT_EQ(tok.token_id("<|begin_of_text|>"), 300u);
  EXPECT_EQ(tok.decode(std::vector<std::uint32_t>{300, 258}), "<|begin_of_text|> the");
  EXPECT_HAS(errmsg([&] { tok.decode(std::vector<std::uint32_t>{299}); }), "token id 299 is not in the vocabulary");
}

TEST(HfTokenizer, UnsupportedFeaturesAreNamed) {
  auto msg = [](const json& j) { return errmsg([&] { HfTokenizer::from_json_text(j.dump(), "x/tokenizer.json"); }); };
  json j = llama3_style(true);
  j["normalizer"] = {{"type", "NFKC"}};
  EXPECT_HAS(msg(j), "x/tokenizer.json: 'normalizer.type' = \"NFKC\" is not supported (NFC, Sequence)");
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "Lowercase"}}, {{"type", "NFC"}}})}};
  EXPECT_HAS(msg(j), "x/tokenizer.json: 'normalizer.normalizers[0].type' = \"Lowercase\" is not supported");
  j = llama3_style(true);
  j = llama3_style(true);
  j["model"]["type"] = "WordPiece";
  EXPECT_HAS(msg(j), "'model.type' = \"WordPiece\" is not supported");
  j = llama3_style(true);
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  EXPECT_HAS(msg(j), "'pre_tokenizer.pretokenizers[0].behavior' = \"Removed\" is not supported");
  j = llama3_style(true);
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(unclosed"}};
  EXPECT_HAS(msg(j), "pre_tokenizer.pretokenizers[0].pattern: pattern does not compile");
  j = llama3_style(true);
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_HAS(msg(j), "'pre_tokenizer.type' = \"Whitespace\" is not supported");
  j = llama3_style(true);
  j["model"]["merges"].push_back("h zz");
  EXPECT_HAS(msg(j), "'model.merges[3]': token \"zz\" is not in model.vocab");
  j = llama3_style(true);
  j["model"]["merges"].push_back(json::array({"l", "o"}));
  EXPECT_HAS(msg(j), "'model.merges[3]': the merged token \"lo\" is not in model.vocab");
  j = llama3_style(true);
  j["model"]["vocab"].erase("a");
  EXPECT_HAS(msg(j), "'model.vocab' has no token for byte 0x61");
  j = llama3_style(true);
  j["model"]["byte_fallback"] = true;
  EXPECT_HAS(msg(j), "'model.byte_fallback' = true is not supported");
  j = llama3_style(true);
  j["added_tokens"][0]["id"] = 97;
  EXPECT_HAS(msg(j), "'added_tokens[0].id' 97 is already model.vocab's token \"a\"");
  EXPECT_HAS(errmsg([] { HfTokenizer::from_json_text("{\"model\": ", "y.json"); }), "y.json: byte");
}

TEST(HfRegex, WhiteSpaceIsUnicodeWhiteSpace) {
  EXPECT_EQ(hf_regex_to_pcre2(R"(\s+(?!\S))", "p"), R"([\t-\r\x{85}\p{Z}]+(?![^\t-\r\x{85}\p{Z}]))");
  EXPECT_EQ(hf_regex_to_pcre2(R"([^\s\p{L}]\\s)", "p"), R"([^\t-\r\x{85}\p{Z}\p{L}]\\s)");
  EXPECT_EQ(hf_regex_to_pcre2(R"([]\s])", "p"), R"([]\t-\r\x{85}\p{Z}])");
  EXPECT_HAS(errmsg([] { hf_regex_to_pcre2(R"([\S])", "p"); }), "p: pattern offset 1: \\S inside a character class");
  // U+180E (MONGOLIAN VOWEL SEPARATOR) is not White_Space: it must not split like a space.
  const RegexSplitter s(hf_regex_to_pcre2(R"(\s+|\S+)", "p"), "p");
  std::vector<std::string> words;
  s.split("a\xe1\xa0\x8e" "b c", [&](std::string_view w) { words.emplace_back(w); });
  EXPECT_EQ(words, (std::vector<std::string>{"a\xe1\xa0\x8e" "b", " ", "c"}));
}
