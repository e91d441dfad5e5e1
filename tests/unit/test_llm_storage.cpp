// Crash safety of the journal and the response cache.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "llm/journal.hpp"
#include "llm/response_cache.hpp"
#include "test_support.hpp"

using namespace nexplain;
namespace fs = std::filesystem;

// ---------------------------------------------------------------- journal

TEST(LlmJournal, AppendsAndReadsBack) {
  test::TempDir dir;
  const auto path = dir / "journal.jsonl";
  {
    Journal j(path);
    EXPECT_EQ(j.recovered(), 0u);
    j.append("L0/N1", {{"score", 0.5}});
    j.append("L0/N2", {{"score", -0.25}, {"text", "line\nbreak"}});
    j.append("L0/N1", {{"score", 0.75}});  // a later record for the same key wins
    EXPECT_EQ(j.records().size(), 2u);
  }
  const std::string data = test::read_file(path);
  EXPECT_EQ(std::count(data.begin(), data.end(), '\n'), 3);  // one line per record, escapes kept inside
  Journal j(path);
  EXPECT_EQ(j.recovered(), 3u);
  EXPECT_EQ(j.truncated_bytes(), 0u);
  EXPECT_TRUE(j.contains("L0/N2"));
  EXPECT_DOUBLE_EQ(j.records().at("L0/N1")["score"].get<double>(), 0.75);
  EXPECT_EQ(j.records().at("L0/N2")["text"], "line\nbreak");
}

TEST(LlmJournal, TornLastLineIsDroppedAndTruncated) {
  test::TempDir dir;
  const auto path = dir / "journal.jsonl";
  {
    Journal j(path);
    j.append("a", 1);
    j.append("b", 2);
  }
  const auto good_size = fs::file_size(path);
  // A crash in the middle of the third append: half a line, no newline.
  {
    std::ofstream f(path, std::ios::app | std::ios::binary);
    f << R"({"key":"c","val)";
  }
  {
    Journal j(path);
    EXPECT_EQ(j.recovered(), 2u);
    EXPECT_EQ(j.truncated_bytes(), 15u);
    EXPECT_FALSE(j.contains("c"));
    EXPECT_EQ(fs::file_size(path), good_size);  // the torn bytes are gone from disk
    j.append("c", 3);                           // and the next record starts on a clean line
  }
  Journal j(path);
  EXPECT_EQ(j.recovered(), 3u);
  EXPECT_EQ(j.records().at("c"), 3);
}

TEST(LlmJournal, CompleteButGarbledLastLineIsTornToo) {
  test::TempDir dir;
  const auto path = dir / "journal.jsonl";
  test::write_file(path, "{\"key\":\"a\",\"value\":1}\n{\"key\":\"b\",\"va??\n");
  Journal j(path);
  EXPECT_EQ(j.recovered(), 1u);
  EXPECT_GT(j.truncated_bytes(), 0u);
}

TEST(LlmJournal, DamageBeforeTheLastLineIsAnError) {
  test::TempDir dir;
  const auto path = dir / "journal.jsonl";
  test::write_file(path, "{\"key\":\"a\",\"value\":1}\nnot json\n{\"key\":\"b\",\"value\":2}\n");
  try {
    Journal j(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
  // Lines without the record fields are damage too.
  test::write_file(path, "{\"nokey\":1}\n{\"key\":\"b\",\"value\":2}\n");
  EXPECT_THROW(Journal{path}, Error);
}

TEST(LlmJournal, SecondWriterIsRefused) {
  test::TempDir dir;
  const auto path = dir / "journal.jsonl";
  Journal first(path);
  try {
    Journal second(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
}

TEST(LlmJournal, EmptyFileAndNewlineOnly) {
  test::TempDir dir;
  const auto path = dir / "journal.jsonl";
  test::write_file(path, "");
  EXPECT_EQ(Journal(path).recovered(), 0u);
  test::write_file(path, "\n");
  Journal j(path);  // a lone newline is a (torn) empty last line
  EXPECT_EQ(j.recovered(), 0u);
  EXPECT_EQ(fs::file_size(path), 0u);
}

// ---------------------------------------------------------------- response cache

namespace {
const std::string kHash = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";
}

TEST(LlmCache, StoresByHashWithFanOut) {
  test::TempDir dir;
  ResponseCache c(dir / "cache");
  EXPECT_EQ(c.path_for(kHash), dir / "cache" / "ab" / "12" / (kHash + ".json"));
  EXPECT_FALSE(c.get(kHash));
  c.put(kHash, ApiKind::chat, R"({"model":"m","messages":[]})", R"({"choices":[{"message":{"content":"hi"}}]})");
  const auto got = c.get(kHash);
  ASSERT_TRUE(got);
  EXPECT_EQ(nlohmann::json::parse(*got)["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(c.hits(), 1u);
  EXPECT_EQ(c.misses(), 1u);
  EXPECT_EQ(c.stores(), 1u);
  // The stored entry is self-describing and no temporary is left behind.
  const auto entry = nlohmann::json::parse(test::read_file(c.path_for(kHash)));
  EXPECT_EQ(entry["hash"], kHash);
  EXPECT_EQ(entry["kind"], "chat");
  EXPECT_EQ(entry["request"]["model"], "m");
  for (const auto& f : fs::recursive_directory_iterator(dir / "cache")) {
    EXPECT_EQ(f.path().string().find(".partial"), std::string::npos) << f.path();
  }
  // A second cache object on the same directory (a rerun, another rank) sees it.
  ResponseCache again(dir / "cache");
  EXPECT_TRUE(again.get(kHash));
}

TEST(LlmCache, DamagedEntryIsAMiss) {
  test::TempDir dir;
  ResponseCache c(dir / "cache");
  c.put(kHash, ApiKind::completion, "{}", "{\"choices\":[]}");
  test::write_file(c.path_for(kHash), "{\"hash\": \"ab1");
  EXPECT_FALSE(c.get(kHash));
  // An entry filed under another name is not trusted either.
  const std::string other = "ff" + kHash.substr(2);
  fs::create_directories(c.path_for(other).parent_path());
  fs::copy_file(c.path_for(kHash), c.path_for(other));
  c.put(kHash, ApiKind::completion, "{}", "{\"choices\":[]}");
  fs::copy_file(c.path_for(kHash), c.path_for(other), fs::copy_options::overwrite_existing);
  EXPECT_FALSE(c.get(other));
  EXPECT_TRUE(c.get(kHash));
}

TEST(LlmCache, RefusesNonJsonAndBadHashes) {
  test::TempDir dir;
  ResponseCache c(dir / "cache");
  EXPECT_THROW(c.put(kHash, ApiKind::chat, "{}", "not json"), Error);
  EXPECT_THROW(c.path_for("ab"), Error);
  EXPECT_FALSE(fs::exists(c.path_for(kHash)));
}
