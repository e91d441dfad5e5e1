// NFC for tokenizer.json normalizers (Qwen2's "normalizer": {"type": "NFC"}): cases checked by
// hand against the Unicode tables (UAX #15), then through HfTokenizer, where NFC must run before
// pre-tokenization and BPE. Builds without utf8proc refuse such a tokenizer, saying why.
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/hf_tokenizer.hpp"
#include "tokenizer/unicode_nfc.hpp"
#include "test_support.hpp"

using namespace nexplain;
using nlohmann::json;
using test::errmsg;

namespace {

#define NEXPLAIN_REQUIRE_NFC()                                                                    \
  if (!nfc_available()) GTEST_SKIP() << "this build lacks utf8proc (libutf8proc-dev): NFC normalizers are " \
                                        "refused instead (tested by NfcWithoutUtf8procIsRefused)"

constexpr std::uint32_t kE = 256;  // "é" (U+00E9, bytes C3 A9)

// Qwen2's shape: Split with the Llama-3 style pattern, then ByteLevel without its own regex;
// vocabulary: the 256 byte tokens (ids = bytes) and "é". `normalizer` as given.
std::string tokenizer_json(const json& normalizer) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[gpt2_bytes_to_shown(std::string(1, static_cast<char>(b)))] = b;
  vocab[gpt2_bytes_to_shown("\xc3\xa9")] = kE;
  const json merges = json::array({json::array({gpt2_bytes_to_shown("\xc3"), gpt2_bytes_to_shown("\xa9")})});
  const char* pattern =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  return json{{"normalizer", normalizer},
              {"pre_tokenizer",
               {{"type", "Sequence"},
                {"pretokenizers",
                 json::array({{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}},
                              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
              {"added_tokens", json::array({{{"id", 257}, {"content", "<|endoftext|>"}, {"special", true}}})},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}}
      .dump();
}

const json kNfc = {{"type", "NFC"}};

// The byte tokens of `s` (ids 0..255 are the bytes).
std::vector<std::uint32_t> bytes_of(const std::string& s) {
  std::vector<std::uint32_t> ids;
  for (const unsigned char c : s) ids.push_back(c);
  return ids;
}

}  // namespace

// Worked from UnicodeData.txt / CompositionExclusions.txt: canonical composition, canonical
// reordering of combining marks, singletons, Hangul syllables from conjoining jamo.
TEST(UnicodeNfc, HandCheckedCases) {
  NEXPLAIN_REQUIRE_NFC();
  std::printf("utf8proc Unicode %s\n", nfc_unicode_version().c_str());
  // e + COMBINING ACUTE ACCENT (U+0301) -> U+00E9.
  EXPECT_EQ(nfc_normalize("cafe\xcc\x81"), "caf\xc3\xa9");
  // Already NFC: unchanged (precomposed Latin, Hangul syllables, Greek, CJK, emoji, controls, NUL).
  const std::string nfc_text = std::string("caf\xc3\xa9 \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xce\xa9 \xe4\xb8\xad "
                                           "\xf0\x9f\x98\x80 tab\there\nnul:") + '\0' + "!";
  EXPECT_EQ(nfc_normalize(nfc_text), nfc_text);
  EXPECT_EQ(nfc_normalize(""), "");
  // a + U+0302 + U+0323 and a + U+0323 + U+0302 are both U+1EAD (marks reordered by class: 220 before 230).
  EXPECT_EQ(nfc_normalize("a\xcc\x82\xcc\xa3"), "\xe1\xba\xad");
  EXPECT_EQ(nfc_normalize("a\xcc\xa3\xcc\x82"), "\xe1\xba\xad");
  // Singletons: ANGSTROM SIGN U+212B -> U+00C5, OHM SIGN U+2126 -> U+03A9.
  EXPECT_EQ(nfc_normalize("\xe2\x84\xab"), "\xc3\x85");
  EXPECT_EQ(nfc_normalize("\xe2\x84\xa6"), "\xce\xa9");
  // Hangul: L U+1100 + V U+1161 -> U+AC00; + T U+11A8 -> U+AC01.
  EXPECT_EQ(nfc_normalize("\xe1\x84\x80\xe1\x85\xa1"), "\xea\xb0\x80");
  EXPECT_EQ(nfc_normalize("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8"), "\xea\xb0\x81");
  // Not UTF-8: the bytes stay, the valid text around them is normalized on its own; an invalid
  // byte between a letter and its mark keeps them apart.
  EXPECT_EQ(nfc_normalize("e\xff\xcc\x81"), "e\xff\xcc\x81");
  EXPECT_EQ(nfc_normalize("cafe\xcc\x81\xff\xc3"), "caf\xc3\xa9\xff\xc3");
  EXPECT_EQ(nfc_normalize("\xed\xa0\x80" "e\xcc\x81"), "\xed\xa0\x80\xc3\xa9");  // a surrogate, then e + U+0301
  EXPECT_EQ(nfc_normalize("\xc0\xaf" "A\xcc\x8a"), "\xc0\xaf\xc3\x85");          // overlong "/", then A + ring
}

TEST(HfTokenizer, NfcNormalizerComposesBeforeBpe) {
  NEXPLAIN_REQUIRE_NFC();
  const auto nfc = HfTokenizer::from_json_text(tokenizer_json(kNfc), "qwen2ish/tokenizer.json");
  const auto plain = HfTokenizer::from_json_text(tokenizer_json(nullptr), "plain/tokenizer.json");
  // Decomposed é is composed first, so the pre-tokenizer sees one word and BPE merges it.
  const std::vector<std::uint32_t> cafe{'c', 'a', 'f', kE};
  EXPECT_EQ(nfc.encode("cafe\xcc\x81"), cafe);
  EXPECT_EQ(nfc.encode("caf\xc3\xa9"), cafe);
  EXPECT_EQ(plain.encode("cafe\xcc\x81"), bytes_of("cafe\xcc\x81"));  // without: e, then the mark's bytes
  // Already-NFC text tokenizes exactly as without a normalizer.
  const std::string text = "Le caf\xc3\xa9 \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xce\xa9 12, don't!\n\n  next";
  EXPECT_EQ(nfc.encode(text), plain.encode(text));
  EXPECT_EQ(nfc.decode(nfc.encode(text)), text);
  // Hangul jamo become the syllable's bytes.
  EXPECT_EQ(nfc.encode("\xe1\x84\x80\xe1\x85\xa1"), bytes_of("\xea\xb0\x80"));
  // A Sequence of NFCs is NFC.
  const auto seq = HfTokenizer::from_json_text(
      tokenizer_json({{"type", "Sequence"}, {"normalizers", json::array({kNfc, kNfc})}}), "seq/tokenizer.json");
  EXPECT_EQ(seq.encode("cafe\xcc\x81 \xe2\x84\xab"), nfc.encode("cafe\xcc\x81 \xe2\x84\xab"));
  EXPECT_EQ(nfc.decode(nfc.encode("\xe2\x84\xab")), "\xc3\x85");
  // Invalid UTF-8 stays lossless, as without a normalizer: its bytes are kept, not replaced.
  const std::string junk = "ok \xff\xfe e\xff\xcc\x81 caf\xc3 \xe2\x82 \xed\xa0\x80";
  EXPECT_EQ(nfc.encode(junk), plain.encode(junk));
  EXPECT_EQ(nfc.decode(nfc.encode(junk)), junk);
  // The special token spelled in text stays text, normalized or not.
  EXPECT_EQ(nfc.encode("<|endoftext|>"), bytes_of("<|endoftext|>"));
}

TEST(HfTokenizer, NfcWithoutUtf8procIsRefused) {
  if (nfc_available()) GTEST_SKIP() << "this build has utf8proc: the refusal is for builds without it (configure "
                                       "with -DNEXPLAIN_UTF8PROC=OFF to run this test)";
  EXPECT_HAS(errmsg([] { HfTokenizer::from_json_text(tokenizer_json(kNfc), "q/tokenizer.json"); }),
             "q/tokenizer.json: 'normalizer.type' = \"NFC\" needs Unicode normalization, but this build of nexplain "
             "lacks utf8proc (install libutf8proc-dev and rebuild)");
  EXPECT_HAS(errmsg([] { nfc_normalize("e\xcc\x81"); }), "lacks utf8proc");
  // A tokenizer without a normalizer loads as before.
  EXPECT_EQ(HfTokenizer::from_json_text(tokenizer_json(nullptr), "p.json").encode("caf\xc3\xa9"),
            (std::vector<std::uint32_t>{'c', 'a', 'f', kE}));
}
