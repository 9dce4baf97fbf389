#include <gtest/gtest.h>

#include <set>

#include "src/train/config.h"

namespace mmdflow {
namespace {

// Every name table maps distinct values to distinct, non-empty names that parse back.
template <typename E>
void expect_bijective() {
  std::set<std::string> names;
  std::set<E> values;
  for (const auto& [value, name] : Names<E>::table) {
    EXPECT_TRUE(names.insert(name).second) << name;
    EXPECT_TRUE(values.insert(value).second) << name;
    EXPECT_FALSE(std::string(name).empty());
    EXPECT_EQ(parse_name<E>(name), value);
    EXPECT_STREQ(name_of(value), name);
  }
}

TEST(Names, EveryTableIsABijection) {
  expect_bijective<Activation>();
  expect_bijective<OutputKind>();
  expect_bijective<InputDist>();
  expect_bijective<Method>();
  expect_bijective<Layout>();
  expect_bijective<BetaKind>();
  expect_bijective<StepKind>();
  expect_bijective<Backend>();
  expect_bijective<c10::ScalarType>();
}

TEST(Names, UnknownNamesListTheValidOnes) {
  try {
    parse_name<Method>("svgd");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "unknown flow method 'svgd' (valid: mmd, diffusion, sobolev, drmmd)");
  }
  EXPECT_EQ(from_name<InputDist>("cube"), std::nullopt);
  EXPECT_EQ(name_list<BetaKind>(), "constant, step, exponential, inverse");
}

}  // namespace
}  // namespace mmdflow
