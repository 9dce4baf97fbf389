// Shards draw their rows of the initial particles alone, exactly as the whole measure draws them.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "models/init.h"
#include "models/particle_net.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

TEST(Init, RowsEqualTheWholeDrawAndLeaveTheGeneratorAsIt) {
  const std::vector<std::vector<int64_t>> shapes = {
      {1, 3, 5}, {5, 3}, {16}, {7, 16}, {33}, {100, 3, 10}, {1000, 1, 7}, {257, 2, 50}, {6, 1}};
  for (const auto& shape : shapes)
    for (const auto& [mean, std] : {std::pair{0.001, 1.0}, std::pair{-0.3, 2.5}})
      for (int parts : {1, 2, 3, 7}) {
        at::Generator whole_gen = test::gen(11);
        const at::Tensor whole = at::normal(mean, std, shape, whole_gen, at::kDouble);
        const double next = at::normal(0, 1, {3}, whole_gen, at::kDouble)[2].item<double>();
        const int64_t rows = shape[0];
        for (int p = 0; p < parts; ++p) {
          const int64_t begin = rows * p / parts, end = rows * (p + 1) / parts;
          at::Generator g = test::gen(11);
          const at::Tensor mine = normal_rows(shape, begin, end, mean, std, g);
          const std::string at_ = ::testing::PrintToString(shape) + " part " + std::to_string(p) +
                                  "/" + std::to_string(parts);
          ASSERT_TRUE(at::equal(mine, whole.narrow(0, begin, end - begin))) << at_;
          EXPECT_EQ(at::normal(0, 1, {3}, g, at::kDouble)[2].item<double>(), next) << at_;
        }
      }
}

// Many rows, so that pieces are skipped and drawn in several rounds.
TEST(Init, LargeShardsAcrossPieces) {
  const std::vector<int64_t> shape = {70001, 3, 10};  // 2.1 M elements, 16 does not divide them
  at::Generator whole_gen = test::gen(3);
  const at::Tensor whole = at::normal(0.001, 1.0, shape, whole_gen, at::kDouble);
  for (const auto& [begin, end] :
       {std::pair<int64_t, int64_t>{0, 1}, {12345, 54321}, {70000, 70001}, {35000, 70001}}) {
    at::Generator g = test::gen(3);
    EXPECT_TRUE(at::equal(normal_rows(shape, begin, end, 0.001, 1.0, g),
                          whole.narrow(0, begin, end - begin)))
        << begin << ".." << end;
  }
}

// A shard of a ParticleNet holds the whole net's particles [first, last), biases included.
TEST(Init, ShardedNetEqualsTheSliceOfTheWhole) {
  const ParticleFamily f =
      test::family(6, 3, 2, Activation::ReLU, OutputKind::Gaussian, 2.0, true, true);
  at::Generator g = test::gen(5);
  const ParticleNet whole(ParticleNetOptions(300, f).init_mean(0.001), g);
  for (const auto& [first, last] : {std::pair<int64_t, int64_t>{0, 128}, {128, 256}, {256, 300}}) {
    at::Generator gs = test::gen(5);
    const ParticleNet part(ParticleNetOptions(300, f).init_mean(0.001).first(first).last(last), gs);
    EXPECT_EQ(part.size(), last - first);
    EXPECT_TRUE(test::bit_equal(part.particles(), whole.particles().slice(first, last)));
  }
}

}  // namespace
}  // namespace mmdflow
