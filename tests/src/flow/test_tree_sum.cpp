// The block tree: its order by hand, and the same bits from every cut of the blocks into ranks.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "src/flow/tree_sum.h"

namespace mmdflow {
namespace {

at::Tensor doubles(std::vector<double> v) {
  return at::tensor(v, at::TensorOptions().dtype(at::kDouble));
}

// Five leaves whose sum depends on the order: the root is ((a + b) + (c + d)) + e.
TEST(TreeSum, FiveLeavesAddInTheTreesOrder) {
  const double a = 1e16, b = 2, c = 1, d = -1e16, e = 3;
  const TreeShare s = tree_share(doubles({a, b, c, d, e}), 0, 5);
  EXPECT_EQ(s.nodes.size(0), 1);
  EXPECT_EQ(s.whole().item<double>(), ((a + b) + (c + d)) + e);
  EXPECT_NE(((((a + b) + c) + d) + e), ((a + b) + (c + d)) + e);  // the order shows
  // Blocks [1, 4) of 5: the maximal subtrees are block 1, blocks [2, 4).
  const TreeShare mid = tree_share(doubles({b, c, d}), 1, 5);
  ASSERT_EQ(mid.nodes.size(0), 2);
  EXPECT_EQ(mid.nodes[0].item<double>(), b);
  EXPECT_EQ(mid.nodes[1].item<double>(), c + d);
}

// Every total of 1..19 blocks cut over 1..6 ranks (some holding none): the ranks' tables, added
// up, give one process's root bit for bit; so do leaves asked for a few blocks at a time.
TEST(TreeSum, EveryCutIntoRanksGivesTheSameBits) {
  at::Generator gen = at::detail::createCPUGenerator(7);
  for (int64_t total = 1; total < 20; ++total) {
    // [total, 2, 3] leaves of mixed scales: sums whose order shows in the last bits.
    const at::Tensor leaves = at::randn({total, 2, 3}, gen, at::kDouble) *
                              at::pow(10.0, at::randint(-8, 9, {total, 1, 1}, gen, at::kDouble));
    const at::Tensor one = tree_share(leaves, 0, total).whole();
    for (int64_t max_blocks : {1, 2, 3, 5}) {
      const TreeShare s = tree_share_of(0, total, total, max_blocks, [&](int64_t b0, int64_t b1) {
        return leaves.narrow(0, b0, b1 - b0);
      });
      EXPECT_TRUE(at::equal(s.whole(), one)) << total << " blocks, " << max_blocks << " at a time";
    }
    for (int world = 1; world <= 6; ++world) {
      at::Tensor summed;
      TreeShare any;
      for (int r = 0; r < world; ++r) {
        const auto [b0, b1] = block_range(total, r, world);
        const TreeShare s = tree_share(leaves.narrow(0, b0, b1 - b0), b0, total);
        const at::Tensor t = tree_table(s, r, world);
        summed = r == 0 ? t.clone() : summed + t;
        any = s;
      }
      EXPECT_TRUE(at::equal(tree_root(summed, any, world), one))
          << total << " blocks on " << world << " ranks";
    }
  }
}

TEST(TreeSum, SharesSideBySideAndMisplacedSharesAreRefused) {
  const TreeShare a = tree_share(doubles({1, 2, 3}), 0, 3),
                  b = tree_share(doubles({4, 5, 6}), 0, 3);
  const at::Tensor both = side_by_side({a, b}).whole();
  EXPECT_TRUE(at::equal(both, doubles({6, 15})));
  EXPECT_THROW(side_by_side({a, tree_share(doubles({1}), 0, 1)}), c10::Error);
  // Rank 1 of 2 holds blocks [1, 3) of 3, not [0, 2).
  EXPECT_THROW(tree_table(tree_share(doubles({1, 2}), 0, 3), 1, 2), c10::Error);
  EXPECT_THROW(tree_share(doubles({1, 2}), 0, 3).whole(), c10::Error);
}

}  // namespace
}  // namespace mmdflow
