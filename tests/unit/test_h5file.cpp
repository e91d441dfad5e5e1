#include <gtest/gtest.h>

#include "core/error.hpp"
#include "io/h5file.hpp"
#include "test_support.hpp"

using namespace nexplain;

TEST(H5File, RoundTripDatasetsAndAttributes) {
  test::TempDir dir;
  const auto path = dir / "t.h5";
  {
    auto f = h5::File::create(path);
    std::vector<float> a(6 * 4);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f;
    f.write<float>("layers/0/acts", {6, 4}, a.data(), {.chunk = {2, 4}});
    auto ds = f.create_dataset<std::uint32_t>("tokens", {0, 3}, {.chunk = {16, 3}, .unlimited_rows = true});
    std::vector<std::uint32_t> rows{1, 2, 3, 4, 5, 6};
    ds.append_rows(2, rows.data());
    ds.append_rows(1, rows.data());
    f.set_attr_string("format", "nexplain-test");
    f.set_attr_int("T", 64);
    f.set_attr_double("eps", 1e-5);
    f.set_attr_string("note", "layer attr", "layers/0/acts");
  }
  auto f = h5::File::open_read(path);
  EXPECT_EQ(f.attr_string("format"), "nexplain-test");
  EXPECT_EQ(f.attr_int("T"), 64);
  EXPECT_DOUBLE_EQ(f.attr_double("eps"), 1e-5);
  EXPECT_EQ(f.attr_string("note", "layers/0/acts"), "layer attr");
  auto acts = f.open_dataset("layers/0/acts");
  EXPECT_EQ(acts.shape(), (std::vector<hsize_t>{6, 4}));
  std::vector<float> rows(8);
  acts.read_rows(2, 2, rows.data());
  EXPECT_FLOAT_EQ(rows[0], 4.0f);
  auto tok = f.open_dataset("tokens").read_all<std::uint32_t>();
  EXPECT_EQ(tok, (std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 1, 2, 3}));
  EXPECT_FALSE(f.exists("layers/9/acts"));
  EXPECT_THROW(f.open_dataset("nope"), Error);
  EXPECT_THROW(f.attr_int("missing"), Error);
}

TEST(H5File, NotAnHdf5FileIsAClearError) {
  test::TempDir dir;
  test::write_file(dir / "x.h5", "hello");
  try {
    h5::File::open_read(dir / "x.h5");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not an HDF5 file"), std::string::npos);
  }
}
