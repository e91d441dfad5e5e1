// safetensors reader, HF checkpoint directories and loading a GPT-2 checkpoint into
// TransformerWeights (HF's "transformer." prefix, Conv1D shapes): every malformed input
// must be an Error naming the file and the byte offset or tensor, never a crash or a silent
// misread. Corrupt files are built from the real fixture's bytes.
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "model/transformer_weights.hpp"
#include "test_support.hpp"

using namespace nexplain;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using test::errmsg;

// A safetensors file split into its header (as JSON) and data area, to be edited and rejoined.
struct Parts {
  json header;
  std::string data;
};

Parts split(const std::string& bytes) {
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

std::string join(const json& header, const std::string& data) {
  const std::string h = header.dump();
  std::string out(8, '\0');
  const std::uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  return out + h + data;
}

std::string with_length(std::string bytes, std::uint64_t n) {
  std::memcpy(bytes.data(), &n, 8);
  return bytes;
}

struct Fixture {
  fs::path dir;
  std::string model_bytes;
  std::string config_bytes;
};

Fixture fixture(const fs::path& shared) {
  const auto dir = shared / "fixtures" / "hf-gpt2-tiny";
  return {dir, test::read_file(dir / "model.safetensors"), test::read_file(dir / "config.json")};
}

// A model directory holding the fixture's config.json and the given model.safetensors bytes.
fs::path model_dir(const test::TempDir& tmp, const Fixture& fx, const std::string& model_bytes,
                   const std::string& name = "m") {
  const auto d = tmp / name;
  fs::create_directories(d);
  test::write_file(d / "config.json", fx.config_bytes);
  test::write_file(d / "model.safetensors", model_bytes);
  return d;
}

}  // namespace

TEST(Safetensors, ReadsTheFixture) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto f = SafetensorsFile::open(shared / "fixtures/hf-gpt2-tiny/model.safetensors");
  EXPECT_EQ(f.names().size(), 28u);
  const auto& t = f.info("transformer.h.0.attn.c_attn.weight");
  EXPECT_EQ(t.dtype, StDtype::F32);
  EXPECT_EQ(t.shape, (std::vector<std::int64_t>{64, 192}));
  EXPECT_EQ(t.end - t.begin, 64u * 192 * 4);
  EXPECT_EQ(f.metadata().value("format", ""), "pt");
  EXPECT_EQ(f.to_float("transformer.h.0.ln_1.weight").size(), 64u);
  EXPECT_HAS(errmsg([&] { f.info("nope"); }), "no tensor named 'nope'");
}

TEST(Safetensors, TruncatedFile) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto fx = fixture(shared);
  test::TempDir tmp;
  const auto p = tmp / "short.safetensors";
  test::write_file(p, fx.model_bytes.substr(0, 5));
  auto msg = errmsg([&] { SafetensorsFile::open(p); });
  EXPECT_HAS(msg, p.string());
  EXPECT_HAS(msg, "truncated: the file is 5 bytes");

  // Cut inside the data area: the header is intact but the last tensors' bytes are missing.
  test::write_file(p, fx.model_bytes.substr(0, fx.model_bytes.size() - 100));
  msg = errmsg([&] { SafetensorsFile::open(p); });
  EXPECT_HAS(msg, p.string());
  EXPECT_HAS(msg, "run past the end of the file");
  EXPECT_HAS(msg, "tensor '");

  // Cut inside the header.
  test::write_file(p, fx.model_bytes.substr(0, 100));
  msg = errmsg([&] { SafetensorsFile::open(p); });
  EXPECT_HAS(msg, "byte 0: header length 2624 runs past the end of the file (100 bytes");
}

TEST(Safetensors, BadHeaderLength) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto fx = fixture(shared);
  test::TempDir tmp;
  const auto p = tmp / "bad.safetensors";
  test::write_file(p, with_length(fx.model_bytes, 200'000'000));
  auto msg = errmsg([&] { SafetensorsFile::open(p); });
  EXPECT_HAS(msg, p.string() + ": byte 0: header length 200000000 exceeds the 100000000-byte limit");
  test::write_file(p, with_length(fx.model_bytes, fx.model_bytes.size()));
  msg = errmsg([&] { SafetensorsFile::open(p); });
  EXPECT_HAS(msg, "byte 0: header length");
  EXPECT_HAS(msg, "runs past the end of the file");
  // Pointing the length short cuts the JSON.
  test::write_file(p, with_length(fx.model_bytes, 100));
  msg = errmsg([&] { SafetensorsFile::open(p); });
  EXPECT_HAS(msg, "the JSON header does not parse");
}

TEST(Safetensors, BadJson) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  auto bytes = fixture(shared).model_bytes;
  const auto colon = bytes.find(':', 8);  // the first key/value separator of the header
  bytes[colon] = '#';
  test::TempDir tmp;
  const auto p = tmp / "bad.safetensors";
  test::write_file(p, bytes);
  const auto msg = errmsg([&] { SafetensorsFile::open(p); });
  EXPECT_HAS(msg, p.string() + ": byte " + std::to_string(colon) + ": the JSON header does not parse");

  // Valid JSON of the wrong shape.
  test::write_file(p, join(json::array({1, 2}), ""));
  EXPECT_HAS(errmsg([&] { SafetensorsFile::open(p); }), "byte 8: the JSON header must be an object");
  test::write_file(p, join(json{{"x", {{"dtype", "F32"}, {"shape", {1}}}}}, "abcd"));
  EXPECT_HAS(errmsg([&] { SafetensorsFile::open(p); }), "tensor 'x': missing 'data_offsets'");
  test::write_file(p, join(json{{"x", {{"dtype", "Q4"}, {"shape", {1}}, {"data_offsets", {0, 4}}}}}, "abcd"));
  EXPECT_HAS(errmsg([&] { SafetensorsFile::open(p); }), "tensor 'x': unknown dtype \"Q4\"");
  test::write_file(p, join(json{{"x", {{"dtype", "F32"}, {"shape", {-1}}, {"data_offsets", {0, 4}}}}}, "abcd"));
  EXPECT_HAS(errmsg([&] { SafetensorsFile::open(p); }), "must hold non-negative integers");
}

TEST(Safetensors, RangePastEndOverlapAndSizeMismatch) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto fx = fixture(shared);
  test::TempDir tmp;
  const auto p = tmp / "bad.safetensors";
  const auto base = split(fx.model_bytes);
  const std::string t = "transformer.ln_f.bias";
  const std::uint64_t size = base.data.size();

  auto h = base.header;
  h[t]["data_offsets"] = {size - 128, size + 128};  // [64] F32 = 256 bytes, half past the end
  test::write_file(p, join(h, base.data));
  auto msg = errmsg([&] { SafetensorsFile::open(p); });
  EXPECT_HAS(msg, p.string() + ": tensor 'transformer.ln_f.bias'");
  EXPECT_HAS(msg, "run past the end of the file");

  h = base.header;
  h[t]["data_offsets"] = h["transformer.ln_f.weight"]["data_offsets"];  // same size, same bytes
  test::write_file(p, join(h, base.data));
  msg = errmsg([&] { SafetensorsFile::open(p); });
  EXPECT_HAS(msg, p.string() + ": byte ");
  EXPECT_HAS(msg, "overlap");
  EXPECT_HAS(msg, "transformer.ln_f.bias");

  h = base.header;
  h[t]["shape"] = {65};
  test::write_file(p, join(h, base.data));
  msg = errmsg([&] { SafetensorsFile::open(p); });
  EXPECT_HAS(msg, "tensor 'transformer.ln_f.bias': dtype F32 x shape [65] needs 260 bytes");
  EXPECT_HAS(msg, "span 256 bytes");

  h = base.header;
  h[t]["dtype"] = "F16";
  test::write_file(p, join(h, base.data));
  EXPECT_HAS(errmsg([&] { SafetensorsFile::open(p); }), "dtype F16 x shape [64] needs 128 bytes");
}

TEST(Safetensors, ConvertsFloatDtypes) {
  test::TempDir tmp;
  const auto p = tmp / "dtypes.safetensors";
  // F16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), +inf; BF16: 1, -0.5; F64: 0.1.
  const std::uint16_t f16[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00};
  const std::uint16_t bf16[] = {0x3F80, 0xBF00};
  const double f64[] = {0.1};
  const std::int32_t i32[] = {-7, 9};
  write_safetensors(p,
                    {{"h", StDtype::F16, {5}, f16},
                     {"b", StDtype::BF16, {2}, bf16},
                     {"d", StDtype::F64, {1}, f64},
                     {"i", StDtype::I32, {2}, i32},
                     {"attn.bias", StDtype::I32, {2}, i32}},
                    json{{"format", "pt"}});
  const auto f = SafetensorsFile::open(p);
  const auto h = f.to_float("h");
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_EQ(h[3], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(h[4]));
  EXPECT_EQ(f.to_float("b"), (std::vector<float>{1.0f, -0.5f}));
  EXPECT_EQ(f.to_float("d"), (std::vector<float>{0.1f}));
  EXPECT_EQ(f.to_int64("i"), (std::vector<std::int64_t>{-7, 9}));
  EXPECT_HAS(errmsg([&] { f.to_float("i"); }), "tensor 'i': dtype I32 is not a floating-point type");
  // The header is padded so the data area is 8-byte aligned.
  EXPECT_EQ(f.data_offset() % 8, 0u);
}

TEST(Checkpoint, PrefixAndBuffers) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto fx = fixture(shared);
  const auto c = Checkpoint::open(fx.dir);
  ASSERT_NE(c.find("h.0.ln_1.weight"), nullptr);
  ASSERT_NE(c.find("transformer.h.0.ln_1.weight"), nullptr);
  EXPECT_EQ(c.find("h.0.ln_1.weight"), c.find("transformer.h.0.ln_1.weight"));
  EXPECT_EQ(c.find("h.0.nothing"), nullptr);
  EXPECT_EQ(c.names().front(), "h.0.attn.c_attn.bias");  // canonical (unprefixed) names

  // A file with old-style causal-mask buffers and no prefix: buffers are ignored.
  test::TempDir tmp;
  const auto d = tmp / "buf";
  fs::create_directories(d);
  const float one[] = {1.0f};
  write_safetensors(d / "model.safetensors", {{"h.0.attn.bias", StDtype::F32, {1}, one},
                                              {"h.0.attn.masked_bias", StDtype::F32, {1}, one},
                                              {"h.0.attn.c_attn.bias", StDtype::F32, {1}, one}});
  const auto cb = Checkpoint::open(d);
  EXPECT_EQ(cb.names(), std::vector<std::string>{"h.0.attn.c_attn.bias"});
  EXPECT_NE(cb.find("transformer.h.0.attn.c_attn.bias"), nullptr);

  // The same tensor with and without the prefix is ambiguous.
  write_safetensors(d / "model.safetensors",
                    {{"wte.weight", StDtype::F32, {1}, one}, {"transformer.wte.weight", StDtype::F32, {1}, one}});
  EXPECT_HAS(errmsg([&] { Checkpoint::open(d); }), "tensor 'wte.weight' appears twice");

  EXPECT_HAS(errmsg([&] { Checkpoint::open(tmp / "none"); }), "not a directory");
  fs::create_directories(tmp / "empty");
  EXPECT_HAS(errmsg([&] { Checkpoint::open(tmp / "empty"); }), "no model.safetensors or model.safetensors.index.json");
}

TEST(Checkpoint, ShardedIndex) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto fx = fixture(shared);
  const auto single = TransformerWeights::load(fx.dir);
  const auto src = SafetensorsFile::open(fx.dir / "model.safetensors");

  // Split the fixture into two shards: block 0 in one file, everything else in the other.
  test::TempDir tmp;
  const auto d = tmp / "sharded";
  fs::create_directories(d);
  test::write_file(d / "config.json", fx.config_bytes);
  std::vector<std::vector<float>> keep;
  std::vector<TensorToWrite> a, b;
  json weight_map;
  for (const auto& name : src.names()) {
    keep.push_back(src.to_float(name));
    const bool first = name.starts_with("transformer.h.0.");
    (first ? a : b).push_back({name, StDtype::F32, src.info(name).shape, keep.back().data()});
    weight_map[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  write_safetensors(d / "model-00001-of-00002.safetensors", a);
  write_safetensors(d / "model-00002-of-00002.safetensors", b);
  test::write_file(d / "model.safetensors.index.json", json{{"metadata", json::object()}, {"weight_map", weight_map}}.dump());
  const auto sharded = TransformerWeights::load(d);
  EXPECT_EQ(sharded.blocks[0].up.w, single.blocks[0].up.w);
  EXPECT_EQ(sharded.blocks[1].down.w, single.blocks[1].down.w);
  EXPECT_EQ(sharded.tok_embed, single.tok_embed);

  fs::remove(d / "model-00002-of-00002.safetensors");
  const auto msg = errmsg([&] { Checkpoint::open(d); });
  EXPECT_HAS(msg, (d / "model.safetensors.index.json").string());
  EXPECT_HAS(msg, "shard file 'model-00002-of-00002.safetensors'");
  EXPECT_HAS(msg, "is missing");

  // The index claims a tensor the shard does not hold.
  write_safetensors(d / "model-00002-of-00002.safetensors", b);
  weight_map["transformer.extra"] = "model-00001-of-00002.safetensors";
  test::write_file(d / "model.safetensors.index.json", json{{"weight_map", weight_map}}.dump());
  EXPECT_HAS(errmsg([&] { Checkpoint::open(d); }), "puts tensor 'transformer.extra' in 'model-00001-of-00002.safetensors'");
}

// GPT-2 through TransformerWeights: shape errors name the stored (prefixed) tensor, its file and
// the config sizes that imply the expected shape.
TEST(TransformerWeights, Gpt2WrongShapeAndMissingTensor) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto fx = fixture(shared);
  test::TempDir tmp;
  const auto base = split(fx.model_bytes);

  // Same bytes, transposed shape: a file-level valid tensor that does not fit the config.
  auto h = base.header;
  h["transformer.h.1.mlp.c_fc.weight"]["shape"] = {256, 64};
  auto d = model_dir(tmp, fx, join(h, base.data), "shape");
  auto msg = errmsg([&] { TransformerWeights::load(d); });
  EXPECT_HAS(msg, (d / "model.safetensors").string());
  EXPECT_HAS(msg, "tensor 'transformer.h.1.mlp.c_fc.weight' has shape [256, 64]");
  EXPECT_HAS(msg, "expects [64, 256]");

  // A config that does not match the tensors.
  auto cfg = json::parse(fx.config_bytes);
  cfg["n_inner"] = 128;
  d = model_dir(tmp, fx, fx.model_bytes, "config");
  test::write_file(d / "config.json", cfg.dump());
  msg = errmsg([&] { TransformerWeights::load(d); });
  EXPECT_HAS(msg, "tensor 'transformer.h.0.mlp.c_fc.weight' has shape [64, 256]");
  EXPECT_HAS(msg, "intermediate 128");
  EXPECT_HAS(msg, "expects [64, 128]");

  h = base.header;
  h.erase("transformer.ln_f.bias");
  d = model_dir(tmp, fx, join(h, base.data), "missing");
  msg = errmsg([&] { TransformerWeights::load(d); });
  EXPECT_HAS(msg, d.string());
  EXPECT_HAS(msg, "tensor 'ln_f.bias' (shape [64]) is missing from the checkpoint (gpt2 model)");
  // ...but a pipeline stage that does not need ln_f loads fine.
  TransformerLoadOptions o;
  o.head = false;
  EXPECT_NO_THROW(TransformerWeights::load(d, o));
}

// A saved GPT-2 is what HF saves for openai-community/gpt2: names without the "transformer."
// prefix, a config HF's GPT2LMHeadModel loads.
TEST(TransformerWeights, Gpt2SaveWritesHfLayoutWithoutPrefix) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto fx = fixture(shared);
  const auto w = TransformerWeights::load(fx.dir);
  test::TempDir tmp;
  w.save(tmp.path());
  const auto f = SafetensorsFile::open(tmp / "model.safetensors");
  EXPECT_EQ(f.names().size(), 28u);
  for (const auto& n : f.names()) EXPECT_FALSE(n.starts_with("transformer.")) << n;
  EXPECT_TRUE(f.contains("h.0.mlp.c_fc.weight"));
  EXPECT_TRUE(f.contains("wte.weight"));
  EXPECT_EQ(f.info("h.1.attn.c_attn.weight").shape, (std::vector<std::int64_t>{64, 192}));  // Conv1D [in, out]
  const auto cfg = json::parse(test::read_file(tmp / "config.json"));
  EXPECT_EQ(cfg["model_type"], "gpt2");
  EXPECT_EQ(cfg["architectures"][0], "GPT2LMHeadModel");
  EXPECT_EQ(cfg["n_inner"], 256);
}
