// GPT-2 config.json parsing: defaults HF applies, and clear errors for what we cannot run.
#include <functional>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "model/gpt2_config.hpp"
#include "test_support.hpp"

using namespace nexplain;
using nlohmann::json;

namespace {

using test::errmsg;

json tiny() {
  return {{"model_type", "gpt2"}, {"n_embd", 64},      {"n_layer", 2},          {"n_head", 4},
          {"n_inner", nullptr},   {"n_positions", 128}, {"vocab_size", 1000},   {"layer_norm_epsilon", 1e-5},
          {"activation_function", "gelu_new"}};
}

}  // namespace

TEST(Gpt2Config, ParsesAndDefaultsInner) {
  const auto c = Gpt2Config::from_json(tiny());
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.n_inner, 256);  // null => 4 * n_embd
  EXPECT_EQ(c.head_dim(), 16);
  EXPECT_EQ(c.n_neurons(), 512);
  EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-5);
  auto j = tiny();
  j["n_inner"] = 100;
  EXPECT_EQ(Gpt2Config::from_json(j).n_inner, 100);
  j.erase("n_inner");
  EXPECT_EQ(Gpt2Config::from_json(j).n_inner, 256);
  // to_json round-trips, with n_inner explicit.
  EXPECT_EQ(Gpt2Config::from_json(c.to_json()), c);
  EXPECT_EQ(c.to_json()["n_inner"], 256);
}

TEST(Gpt2Config, LoadsTheFixtureFromDirOrFile) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  const auto dir = shared / "fixtures" / "hf-gpt2-tiny";
  const auto a = Gpt2Config::load(dir);
  const auto b = Gpt2Config::load(dir / "config.json");
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.vocab_size, 1000);
  EXPECT_EQ(a.n_inner, 256);
}

TEST(Gpt2Config, MissingFields) {
  for (const char* field : {"n_embd", "n_layer", "n_head", "n_positions", "vocab_size", "model_type"}) {
    auto j = tiny();
    j.erase(field);
    EXPECT_EQ(errmsg([&] { Gpt2Config::from_json(j); }), std::string("config.json: missing field '") + field + "'");
  }
  auto j = tiny();
  j["n_embd"] = "64";
  EXPECT_HAS(errmsg([&] { Gpt2Config::from_json(j); }), "field 'n_embd' must be a positive integer, got \"64\"");
  j = tiny();
  j["n_head"] = 0;
  EXPECT_HAS(errmsg([&] { Gpt2Config::from_json(j); }), "field 'n_head' must be a positive integer");
  j = tiny();
  j["n_head"] = 5;
  EXPECT_HAS(errmsg([&] { Gpt2Config::from_json(j); }), "n_embd 64 is not divisible by n_head 5");
  // Optional fields fall back to HF's defaults.
  j = tiny();
  j.erase("layer_norm_epsilon");
  j.erase("activation_function");
  const auto c = Gpt2Config::from_json(j);
  EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-5);
  EXPECT_EQ(c.activation_function, "gelu_new");
}

TEST(Gpt2Config, UnsupportedVariants) {
  auto j = tiny();
  j["activation_function"] = "gelu";
  auto msg = errmsg([&] { Gpt2Config::from_json(j, "m/config.json"); });
  EXPECT_HAS(msg, "m/config.json: activation_function \"gelu\" is not supported");
  EXPECT_HAS(msg, "gelu_new");
  j["activation_function"] = "gelu_pytorch_tanh";  // the same tanh formula under another name
  EXPECT_NO_THROW(Gpt2Config::from_json(j));

  j = tiny();
  j["model_type"] = "llama";
  EXPECT_HAS(errmsg([&] { Gpt2Config::from_json(j); }), "model_type \"llama\" is not supported (expected \"gpt2\")");
  j = tiny();
  j["scale_attn_by_inverse_layer_idx"] = true;
  EXPECT_HAS(errmsg([&] { Gpt2Config::from_json(j); }), "scale_attn_by_inverse_layer_idx=true is not supported");
  j = tiny();
  j["scale_attn_weights"] = false;
  EXPECT_HAS(errmsg([&] { Gpt2Config::from_json(j); }), "scale_attn_weights=false is not supported");
  j = tiny();
  j["reorder_and_upcast_attn"] = true;  // a precision detail; fp32 is already upcast
  EXPECT_NO_THROW(Gpt2Config::from_json(j));
}

TEST(Gpt2Config, FileErrors) {
  test::TempDir tmp;
  EXPECT_HAS(errmsg([&] { Gpt2Config::load(tmp.path()); }), "config.json: cannot open");
  test::write_file(tmp / "config.json", "{\"n_embd\": 64,,}");
  EXPECT_HAS(errmsg([&] { Gpt2Config::load(tmp.path()); }), (tmp / "config.json").string() + ": byte 15");
}
