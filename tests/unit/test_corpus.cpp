// Corpus readers (txt, jsonl, llm.c .bin), the sequences file, and corpus -> sequences joining.
// Every bad-input case checks that the message names the file and the position.
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/sha256.hpp"
#include "io/corpus_bin.hpp"
#include "io/corpus_reader.hpp"
#include "io/corpus_tokenize.hpp"
#include "io/corpus_txt.hpp"
#include "io/h5file.hpp"
#include "io/sequences.hpp"
#include "model/thread_pool.hpp"
#include "test_support.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/gpt2_tokenizer.hpp"

using namespace nexplain;
namespace fs = std::filesystem;

namespace {

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Documents of a source, each the concatenation of its pieces.
std::vector<std::string> documents(CorpusSource& src, std::size_t* pieces = nullptr, std::uint64_t* bytes = nullptr) {
  std::vector<std::string> docs;
  CorpusPiece p;
  while (src.next(p)) {
    if (p.new_document || docs.empty()) docs.emplace_back();
    docs.back() += p.text;
    if (pieces) ++*pieces;
    if (bytes) *bytes += p.bytes;
  }
  return docs;
}

std::string bin_shard(const std::vector<std::uint16_t>& tokens, std::int32_t magic = kBinShardMagic, std::int32_t count = -1) {
  std::vector<std::int32_t> header(256, 0);
  header[0] = magic;
  header[1] = 1;
  header[2] = count >= 0 ? count : static_cast<std::int32_t>(tokens.size());
  std::string out(reinterpret_cast<const char*>(header.data()), 1024);  // little-endian host
  out.append(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 2);
  return out;
}

// Byte-level vocabulary with no merges beyond one ("a a"), so token ids are predictable:
// byte b -> id b, "aa" -> 256, <|endoftext|> -> 257.
Gpt2Tokenizer tiny_tokenizer(const fs::path& dir) {
  fs::create_directories(dir);
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = gpt2_byte_to_codepoint(static_cast<unsigned char>(b));
    std::string s;
    if (cp < 0x80) s.push_back(static_cast<char>(cp));
    else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    vocab[s] = b;
  }
  vocab["aa"] = 256;
  vocab["<|endoftext|>"] = 257;
  test::write_file(dir / "encoder.json", vocab.dump());
  test::write_file(dir / "vocab.bpe", "#version: 0.2\na a\n");
  return Gpt2Tokenizer::load(dir);
}

std::vector<std::uint32_t> all_tokens(const fs::path& path) {
  SequencesReader r(path);
  std::vector<std::uint32_t> out(r.size() * static_cast<std::uint64_t>(r.seq_len()));
  r.read(0, r.size(), out.data());
  return out;
}

std::vector<std::uint32_t> ids_of(const std::string& s) { return {s.begin(), s.end()}; }

}  // namespace

// ------------------------------------------------------------------ txt

TEST(CorpusTxt, OneDocumentPerFileStreamedInPieces) {
  test::TempDir dir;
  std::string text;
  for (int i = 0; i < 500; ++i) text += "line number " + std::to_string(i) + " of the file\n";
  test::write_file(dir / "a.txt", text);
  TxtSource src(dir / "a.txt", std::nullopt, 256);
  std::size_t pieces = 0;
  std::uint64_t bytes = 0;
  const auto docs = documents(src, &pieces, &bytes);
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0], text);
  EXPECT_GT(pieces, 50u);  // read in chunks, never as a whole
  EXPECT_EQ(bytes, text.size());
  EXPECT_EQ(src.sha256(), sha256_file(dir / "a.txt"));
}

TEST(CorpusTxt, SeparatorSplitsDocumentsAcrossChunkBoundaries) {
  test::TempDir dir;
  std::mt19937 rng(99);
  const std::vector<std::string> alphabet = {"a", "b", " ", "\n", "X", "x"};
  for (const std::string sep : {"\n\n", "XX", "<doc>"}) {
    for (int round = 0; round < 40; ++round) {
      std::string text;
      for (int i = 0, n = 200 + static_cast<int>(rng() % 800); i < n; ++i) text += rng() % 13 == 0 ? sep : alphabet[rng() % alphabet.size()];
      std::vector<std::string> expected;
      for (std::size_t pos = 0;;) {
        const auto at = text.find(sep, pos);
        const std::string doc = text.substr(pos, at == std::string::npos ? std::string::npos : at - pos);
        if (!doc.empty()) expected.push_back(doc);
        if (at == std::string::npos) break;
        pos = at + sep.size();
      }
      test::write_file(dir / "s.txt", text);
      TxtSource src(dir / "s.txt", sep, 16 + rng() % 48);
      std::uint64_t bytes = 0;
      ASSERT_EQ(documents(src, nullptr, &bytes), expected) << "separator '" << sep << "' round " << round;
      EXPECT_LE(bytes, text.size());
    }
  }
}

TEST(CorpusTxt, EmptySeparatorIsAnError) {
  test::TempDir dir;
  test::write_file(dir / "a.txt", "x");
  const auto e = error_of([&] { TxtSource src(dir / "a.txt", std::string(), 64); });
  EXPECT_NE(e.find("a.txt"), std::string::npos) << e;
}

TEST(CorpusTxt, ChunkedReadingEqualsWholeOnBothCorpora) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto tok = Gpt2Tokenizer::load(shared / "data" / "gpt2-tokenizer");
  for (const char* name : {"tinyshakespeare.txt", "wikitext2-valid.txt"}) {
    const auto path = shared / "data" / "corpora" / name;
    const auto whole = tok.encode(test::read_file(path));
    TxtSource src(path, std::nullopt, 10000);
    std::vector<std::uint32_t> chunked;
    std::size_t pieces = 0;
    CorpusPiece p;
    while (src.next(p)) {
      tok.encode_append(p.text, chunked);
      ++pieces;
    }
    EXPECT_GT(pieces, 100u) << name;
    EXPECT_TRUE(chunked == whole) << name << ": " << chunked.size() << " vs " << whole.size() << " tokens";
  }
}

// ------------------------------------------------------------------ jsonl

TEST(CorpusJsonl, ReadsTheTextFieldSkippingBlankLines) {
  test::TempDir dir;
  test::write_file(dir / "c.jsonl", "{\"text\": \"one\"}\n\n{\"body\": 1, \"text\": \"two\\nlines\"}\r\n  \n{\"text\": \"\"}\n{\"text\": \"three\"}");
  CorpusOptions opt;
  auto src = open_corpus_source(dir / "c.jsonl", opt);
  std::uint64_t bytes = 0;
  EXPECT_EQ(documents(*src, nullptr, &bytes), (std::vector<std::string>{"one", "two\nlines", "three"}));
  EXPECT_EQ(bytes, fs::file_size(dir / "c.jsonl"));
  EXPECT_EQ(src->sha256(), sha256_file(dir / "c.jsonl"));

  test::write_file(dir / "d.jsonl", "{\"content\": \"x\"}\n");
  opt.text_field = "content";
  src = open_corpus_source(dir / "d.jsonl", opt);
  EXPECT_EQ(documents(*src), std::vector<std::string>{"x"});
}

TEST(CorpusJsonl, MalformedLineNamesFileAndLine) {
  test::TempDir dir;
  const auto path = dir / "bad.jsonl";
  test::write_file(path, "{\"text\": \"ok\"}\n{\"text\": \"broken}\n");
  auto src = open_corpus_source(path, {});
  const auto e = error_of([&] { documents(*src); });
  EXPECT_NE(e.find(path.string() + ":2: invalid JSON: "), std::string::npos) << e;
}

TEST(CorpusJsonl, MissingOrNonStringFieldNamesFileAndLine) {
  test::TempDir dir;
  const auto path = dir / "f.jsonl";
  test::write_file(path, "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"txt\": \"typo\"}\n");
  auto src = open_corpus_source(path, {});
  auto e = error_of([&] { documents(*src); });
  EXPECT_NE(e.find(path.string() + ":3: field 'text' missing"), std::string::npos) << e;

  test::write_file(path, "{\"text\": 42}\n");
  src = open_corpus_source(path, {});
  e = error_of([&] { documents(*src); });
  EXPECT_NE(e.find(path.string() + ":1: field 'text' missing"), std::string::npos) << e;
  EXPECT_NE(e.find("a number"), std::string::npos) << e;

  test::write_file(path, "[1, 2]\n");
  src = open_corpus_source(path, {});
  e = error_of([&] { documents(*src); });
  EXPECT_NE(e.find(path.string() + ":1: expected a JSON object"), std::string::npos) << e;
}

// ------------------------------------------------------------------ llm.c .bin

TEST(CorpusBin, ReadsTokensAndHashesTheFile) {
  test::TempDir dir;
  const std::vector<std::uint16_t> tokens = {50256, 10, 20, 30, 50256, 40};
  test::write_file(dir / "s.bin", bin_shard(tokens));
  BinSource src(dir / "s.bin", 50257);
  CorpusPiece p;
  ASSERT_TRUE(src.next(p));
  EXPECT_TRUE(p.pretokenized);
  EXPECT_TRUE(p.new_document);
  EXPECT_EQ(p.ids, (std::vector<std::uint32_t>{50256, 10, 20, 30, 50256, 40}));
  EXPECT_FALSE(src.next(p));
  EXPECT_EQ(src.sha256(), sha256_file(dir / "s.bin"));
}

TEST(CorpusBin, WrongMagicNamesFileAndByteZero) {
  test::TempDir dir;
  const auto path = dir / "m.bin";
  test::write_file(path, bin_shard({1, 2}, 12345));
  const auto e = error_of([&] { BinSource src(path, 50257); });
  EXPECT_NE(e.find(path.string() + ": byte 0:"), std::string::npos) << e;
  EXPECT_NE(e.find("12345"), std::string::npos) << e;
  EXPECT_NE(e.find("20240520"), std::string::npos) << e;
  test::write_file(path, "ab");
  EXPECT_NE(error_of([&] { BinSource src(path, 50257); }).find(path.string() + ": byte 0:"), std::string::npos);
}

TEST(CorpusBin, OddPayloadLengthIsAnErrorWithSizes) {
  test::TempDir dir;
  const auto path = dir / "o.bin";
  test::write_file(path, bin_shard({1, 2, 3}) + "x");
  const auto e = error_of([&] { BinSource src(path, 50257); });
  EXPECT_NE(e.find(path.string()), std::string::npos) << e;
  EXPECT_NE(e.find("7 bytes"), std::string::npos) << e;
  EXPECT_NE(e.find("odd"), std::string::npos) << e;
}

TEST(CorpusBin, TokenCountDisagreeingWithFileSizeIsAnError) {
  test::TempDir dir;
  const auto path = dir / "c.bin";
  test::write_file(path, bin_shard({1, 2, 3}, kBinShardMagic, 5));
  const auto e = error_of([&] { BinSource src(path, 50257); });
  EXPECT_NE(e.find(path.string() + ": byte 8: header says 5 tokens (10 bytes)"), std::string::npos) << e;
  EXPECT_NE(e.find("6 bytes (3 tokens)"), std::string::npos) << e;
}

TEST(CorpusBin, TokenOutsideTheVocabularyNamesItsByte) {
  test::TempDir dir;
  const auto path = dir / "v.bin";
  test::write_file(path, bin_shard({1, 60000}));
  BinSource src(path, 50257);
  CorpusPiece p;
  const auto e = error_of([&] { src.next(p); });
  EXPECT_NE(e.find(path.string() + ": byte 1026: token id 60000"), std::string::npos) << e;
}

TEST(CorpusFormat, DetectsByExtension) {
  EXPECT_EQ(detect_corpus_format("a/b.jsonl"), CorpusFormat::Jsonl);
  EXPECT_EQ(detect_corpus_format("x.bin"), CorpusFormat::Bin);
  EXPECT_EQ(detect_corpus_format("x.txt"), CorpusFormat::Txt);
  EXPECT_EQ(detect_corpus_format("README"), CorpusFormat::Txt);
  EXPECT_EQ(parse_corpus_format("jsonl"), CorpusFormat::Jsonl);
  EXPECT_NE(error_of([] { parse_corpus_format("csv"); }).find("csv"), std::string::npos);
}

// ------------------------------------------------------------------ sequences file

TEST(Sequences, WriteThenReadBothWidths) {
  test::TempDir dir;
  for (std::uint32_t vocab : {50257u, 70000u}) {
    const auto path = dir / ("s" + std::to_string(vocab) + ".h5");
    SequencesInfo info{8, vocab, vocab - 1, "abc"};
    std::vector<std::uint32_t> all;
    {
      SequencesWriter w(path, info);
      std::mt19937 rng(vocab);
      for (int i = 0; i < 3000; ++i) {
        std::vector<std::uint32_t> ids(rng() % 20);
        for (auto& id : ids) id = rng() % vocab;
        w.append(ids);
        all.insert(all.end(), ids.begin(), ids.end());
      }
      EXPECT_FALSE(fs::exists(path));  // nothing visible before finish()
      w.finish({{"hello", "world"}});
      EXPECT_EQ(w.tokens_dropped(), all.size() % 8);
    }
    SequencesReader r(path);
    EXPECT_EQ(r.size(), all.size() / 8);
    EXPECT_EQ(r.seq_len(), 8);
    EXPECT_EQ(r.vocab_size(), vocab);
    EXPECT_EQ(r.eot_id(), vocab - 1);
    EXPECT_EQ(r.tokenizer_sha256(), "abc");
    EXPECT_EQ(r.provenance().at("hello"), "world");
    std::vector<std::uint32_t> rows(3 * 8);
    r.read(1000, 3, rows.data());
    EXPECT_TRUE(std::equal(rows.begin(), rows.end(), all.begin() + 1000 * 8));
    const auto every = all_tokens(path);
    EXPECT_TRUE(std::equal(every.begin(), every.end(), all.begin()));
    const auto e = error_of([&] { r.read(r.size() - 1, 2, rows.data()); });
    EXPECT_NE(e.find(path.string()), std::string::npos) << e;
    h5::File f = h5::File::open_read(path);
    EXPECT_EQ(f.attr_string("format"), "nexplain-sequences");
    EXPECT_EQ(f.attr_int("format_version"), 1);
    EXPECT_EQ(f.attr_int("n_sequences"), static_cast<std::int64_t>(r.size()));
  }
}

// Chunks compressed on a pool (and written with H5Dwrite_chunk) read back through HDF5's own
// shuffle + deflate filters exactly as chunks HDF5 compressed itself.
TEST(Sequences, ParallelCompressedChunksReadBackTheSame) {
  test::TempDir dir;
  ThreadPool pool(3);
  for (std::uint32_t vocab : {50257u, 70000u}) {
    std::vector<std::uint32_t> all(64 * 1024 * 40 + 64 * 5 + 17);
    std::mt19937 rng(vocab);
    for (auto& id : all) id = rng() % 1000 + (rng() % 7 == 0 ? vocab - 1000 : 0);
    for (const bool parallel : {false, true}) {
      const auto path = dir / (std::to_string(vocab) + (parallel ? "p.h5" : "s.h5"));
      SequencesWriter w(path, SequencesInfo{64, vocab, 0, ""});
      if (parallel) w.set_thread_pool(&pool);
      for (std::size_t i = 0; i < all.size(); i += 100000) w.append(all.data() + i, std::min<std::size_t>(100000, all.size() - i));
      w.finish(nlohmann::json::object());
      const auto back = all_tokens(path);
      ASSERT_EQ(back.size(), all.size() - 17);
      EXPECT_TRUE(std::equal(back.begin(), back.end(), all.begin())) << path;
    }
    EXPECT_LT(fs::file_size(dir / (std::to_string(vocab) + "p.h5")), all.size() * (vocab > 65536 ? 4 : 2));  // compressed
  }
}

TEST(Sequences, UnfinishedWriterLeavesNothing) {
  test::TempDir dir;
  {
    SequencesWriter w(dir / "x.h5", SequencesInfo{4, 100, 99, ""});
    w.append(std::vector<std::uint32_t>(100, 1));
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(Sequences, ReaderRejectsOtherFiles) {
  test::TempDir dir;
  test::write_file(dir / "text.h5", "not hdf5");
  auto e = error_of([&] { SequencesReader r(dir / "text.h5"); });
  EXPECT_NE(e.find("text.h5"), std::string::npos) << e;
  {
    auto f = h5::File::create(dir / "other.h5");
    f.set_attr_string("format", "something-else");
  }
  e = error_of([&] { SequencesReader r(dir / "other.h5"); });
  EXPECT_NE(e.find("other.h5: not a nexplain sequences file"), std::string::npos) << e;
  e = error_of([&] { SequencesReader r(dir / "missing.h5"); });
  EXPECT_NE(e.find("missing.h5"), std::string::npos) << e;
}

// ------------------------------------------------------------------ corpus -> sequences

TEST(TokenizeCorpus, JoinsDocumentsWithOneEndOfText) {
  test::TempDir dir;
  const auto tok = tiny_tokenizer(dir / "tok");
  test::write_file(dir / "a.jsonl", "{\"text\": \"ab\"}\n{\"text\": \"c\"}\n");
  test::write_file(dir / "b.txt", "d1|e||f");
  // A shard that starts with <|endoftext|> (llm.c style) gets no second one, one without does.
  test::write_file(dir / "c.bin", bin_shard({257, 'g'}));
  test::write_file(dir / "d.bin", bin_shard({'h'}));
  TokenizeOptions opt;
  opt.seq_len = 1;
  opt.threads = 3;
  opt.progress = false;
  opt.corpus.separator = "|";
  const auto s = tokenize_corpus({dir / "a.jsonl", dir / "b.txt", dir / "c.bin", dir / "d.bin"}, opt, tok, dir / "out.h5");
  const std::uint32_t E = 257;
  const std::vector<std::uint32_t> expected = {'a', 'b', E, 'c', E, 'd', '1', E, 'e', E, 'f', E, 'g', E, 'h'};
  EXPECT_EQ(all_tokens(dir / "out.h5"), expected);
  EXPECT_EQ(s.documents, 7u);
  EXPECT_EQ(s.tokens, expected.size());
  EXPECT_EQ(s.dropped, 0u);
  ASSERT_EQ(s.provenance.at("sources").size(), 4u);
  EXPECT_EQ(s.provenance["sources"][2]["sha256"], sha256_file(dir / "c.bin"));
  EXPECT_EQ(s.provenance["sources"][2]["format"], "bin");
  EXPECT_EQ(s.provenance["separator"], "|");
}

TEST(TokenizeCorpus, DropsTheFinalPartialWindow) {
  test::TempDir dir;
  const auto tok = tiny_tokenizer(dir / "tok");
  test::write_file(dir / "a.txt", "0123456789");
  TokenizeOptions opt;
  opt.seq_len = 4;
  opt.progress = false;
  const auto s = tokenize_corpus({dir / "a.txt"}, opt, tok, dir / "out.h5");
  EXPECT_EQ(s.sequences, 2u);
  EXPECT_EQ(s.dropped, 2u);
  EXPECT_EQ(all_tokens(dir / "out.h5"), ids_of("01234567"));
  EXPECT_EQ(SequencesReader(dir / "out.h5").provenance().at("tokens_dropped"), 2);
}

TEST(TokenizeCorpus, EmptyCorpusIsAClearErrorAndLeavesNoFile) {
  test::TempDir dir;
  const auto tok = tiny_tokenizer(dir / "tok");
  test::write_file(dir / "empty.txt", "");
  test::write_file(dir / "blank.jsonl", "\n\n{\"text\": \"\"}\n");
  TokenizeOptions opt;
  opt.progress = false;
  auto e = error_of([&] { tokenize_corpus({dir / "empty.txt", dir / "blank.jsonl"}, opt, tok, dir / "out.h5"); });
  EXPECT_NE(e.find("empty corpus"), std::string::npos) << e;
  EXPECT_NE(e.find("empty.txt"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(dir / "out.h5"));
  test::write_file(dir / "short.txt", "abc");
  e = error_of([&] { tokenize_corpus({dir / "short.txt"}, opt, tok, dir / "out.h5"); });
  EXPECT_NE(e.find("less than one sequence"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(dir / "out.h5"));
  e = error_of([&] { tokenize_corpus({dir / "nope.txt"}, opt, tok, dir / "out.h5"); });
  EXPECT_NE(e.find("nope.txt: no such file"), std::string::npos) << e;
  for (const auto& entry : fs::directory_iterator(dir.path()))
    EXPECT_EQ(entry.path().string().find(".partial-"), std::string::npos) << entry.path();
}

TEST(TokenizeCorpus, SameOutputForAnyThreadCount) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  const auto tok = Gpt2Tokenizer::load(shared / "data" / "gpt2-tokenizer");
  const std::vector<fs::path> inputs = {shared / "data" / "corpora" / "tinyshakespeare.txt",
                                        shared / "data" / "corpora" / "wikitext2-valid.txt"};
  TokenizeOptions opt;
  opt.progress = false;
  opt.piece_bytes = 50000;  // many tasks per batch, several batches
  opt.corpus.chunk_bytes = 300000;
  opt.threads = 1;
  const auto a = tokenize_corpus(inputs, opt, tok, dir / "a.h5");
  opt.threads = 4;
  const auto b = tokenize_corpus(inputs, opt, tok, dir / "b.h5");
  EXPECT_EQ(a.tokens, 338025u + 1 + 258659u);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_TRUE(all_tokens(dir / "a.h5") == all_tokens(dir / "b.h5"));
  // The stream is exactly shakespeare, <|endoftext|>, wikitext.
  const auto t = all_tokens(dir / "a.h5");
  EXPECT_EQ(t.at(338025), 50256u);
  const auto shk = tok.encode(test::read_file(inputs[0]));
  EXPECT_TRUE(std::equal(shk.begin(), shk.end(), t.begin()));
}
