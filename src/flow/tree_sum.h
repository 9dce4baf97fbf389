// Sums over a measure's particles whose bits do not depend on how the particles are cut into
// shards (processes), chunks or threads. The particles form blocks of kNoiseBlock; a block's sum
// (a leaf) is computed the same way wherever the block lies. Leaves are added along one fixed
// binary tree over the block index: node (level l, index j) is the sum over blocks
// [j 2^l, (j + 1) 2^l) clipped to the measure, left child + right child (a lone left child is
// its parent). A shard holding blocks [begin, end) sums its range's maximal subtrees; the ranks
// exchange those (a few per level) in one sum, and every rank completes the tree above them in
// the same order. One process computes the same tree whole: the root has the same bits at any
// process count.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace mmdflow {

// The blocks [first, second) of `total` that rank `rank` of `world` holds: contiguous ranges in
// rank order, as even as whole blocks allow.
std::pair<int64_t, int64_t> block_range(int64_t total, int rank, int world);

// A shard's part of a sum over the measure's blocks: the sums of its range's maximal subtrees.
struct TreeShare {
  int64_t begin = 0, end = 1, total = 1;  // blocks [begin, end) of total
  at::Tensor nodes;                       // [k, ...] float64, in block order
  // The whole's sum when the share covers every block (one process): [...].
  at::Tensor whole() const;
};

// The share of blocks [begin, begin + n) of `total` from their leaves [n, ...] (any dtype, summed
// in float64).
TreeShare tree_share(const at::Tensor& leaves, int64_t begin, int64_t total);
// The same share with its leaves asked for a range of at most max_blocks blocks at a time,
// leaves(b0, b1) -> [b1 - b0, ...]: the tree's subtrees of that size are summed first.
TreeShare tree_share_of(int64_t begin, int64_t end, int64_t total, int64_t max_blocks,
                        const std::function<at::Tensor(int64_t, int64_t)>& leaves);
// A whole measure's sum as a share of one block.
TreeShare whole_share(const at::Tensor& value);
// Shares of one range side by side: nodes [k, E_1 + E_2 + ...], each part flattened.
TreeShare side_by_side(const std::vector<TreeShare>& parts);

// One sum over the ranks completes a share: table() is what rank `rank` of `world` adds (its
// nodes in its row, zeros elsewhere: the sum is exact), root() the whole's sum from the summed
// table, [...] float64. Every rank must hold block_range(total, rank, world).
at::Tensor tree_table(const TreeShare& s, int rank, int world);
at::Tensor tree_root(const at::Tensor& summed, const TreeShare& s, int world);

}  // namespace mmdflow
