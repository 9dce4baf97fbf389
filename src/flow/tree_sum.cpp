#include "src/flow/tree_sum.h"

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>

#include <algorithm>
#include <functional>
#include <map>
#include <tuple>

namespace mmdflow {
namespace {

struct Node {
  int level;
  int64_t index;  // blocks [index 2^level, (index + 1) 2^level), clipped to the measure
  bool operator<(const Node& o) const {
    return std::tie(level, index) < std::tie(o.level, o.index);
  }
};

int levels(int64_t total) {  // the root's level
  int L = 0;
  while ((int64_t(1) << L) < total) ++L;
  return L;
}

bool within(int level, int64_t index, int64_t begin, int64_t end, int64_t total) {
  const int64_t lo = index << level, hi = std::min((index + 1) << level, total);
  return lo >= begin && hi <= end;
}

// The maximal subtrees of blocks [begin, end), in block order, level by level from the leaves;
// with leaves V ([end - begin, E]) also their sums. A level's first and last node may be
// maximal; the others pair up into the next level (a lone left child is its parent).
std::vector<Node> sweep(int64_t begin, int64_t end, int64_t total, at::Tensor V,
                        std::vector<at::Tensor>* sums) {
  std::vector<Node> left, right;
  std::vector<at::Tensor> left_sums, right_sums;
  const int L = levels(total);
  int64_t lo = begin, hi = end;
  for (int l = 0; lo < hi; ++l) {
    auto maximal = [&](int64_t j) { return l == L || !within(l + 1, j >> 1, begin, end, total); };
    if (maximal(lo)) {
      left.push_back({l, lo++});
      if (sums) left_sums.push_back(V[0]), V = V.narrow(0, 1, V.size(0) - 1);
    }
    if (lo < hi && maximal(hi - 1)) {
      right.push_back({l, --hi});
      if (sums) right_sums.push_back(V[V.size(0) - 1]), V = V.narrow(0, 0, V.size(0) - 1);
    }
    if (lo >= hi) break;
    if (sums) {  // lo is even: (lo, lo + 1), (lo + 2, lo + 3), ...
      const int64_t n = hi - lo, pairs = n / 2;
      at::Tensor P = V.narrow(0, 0, 2 * pairs).view({pairs, 2, V.size(1)});
      at::Tensor next = P.select(1, 0) + P.select(1, 1);
      V = n % 2 ? at::cat({next, V.narrow(0, n - 1, 1)}) : next;
    }
    lo >>= 1;
    hi = (hi + 1) >> 1;
  }
  left.insert(left.end(), right.rbegin(), right.rend());
  if (sums) {
    *sums = std::move(left_sums);
    sums->insert(sums->end(), right_sums.rbegin(), right_sums.rend());
  }
  return left;
}

std::vector<Node> nodes_of(int64_t begin, int64_t end, int64_t total) {
  return sweep(begin, end, total, at::Tensor(), nullptr);
}

// t [n, ...] as [n, E] (n may be 0).
at::Tensor rows_of(const at::Tensor& t) {
  return t.reshape({t.size(0), c10::multiply_integers(t.sizes().slice(1))});
}
at::Tensor flat(const TreeShare& s) { return rows_of(s.nodes); }

}  // namespace

std::pair<int64_t, int64_t> block_range(int64_t total, int rank, int world) {
  return {total * rank / world, total * (rank + 1) / world};
}

at::Tensor TreeShare::whole() const {
  TORCH_CHECK(begin == 0 && end == total && nodes.size(0) == 1, "a share of blocks [", begin, ", ",
              end, ") of ", total, " is not the whole sum");
  return nodes[0];
}

TreeShare tree_share(const at::Tensor& leaves, int64_t begin, int64_t total) {
  const int64_t n = leaves.size(0);
  TORCH_CHECK(0 <= begin && begin + n <= total, "leaves [", begin, ", ", begin + n,
              ") do not lie within ", total, " blocks");
  std::vector<at::Tensor> sums;
  const at::Tensor V = rows_of(leaves.to(at::kDouble));
  sweep(begin, begin + n, total, V, &sums);
  std::vector<int64_t> shape = leaves.sizes().vec();
  shape[0] = int64_t(sums.size());
  at::Tensor nodes = sums.empty() ? at::empty(shape, V.options()) : at::stack(sums).view(shape);
  return {begin, begin + n, total, nodes};
}

TreeShare tree_share_of(int64_t begin, int64_t end, int64_t total, int64_t max_blocks,
                        const std::function<at::Tensor(int64_t, int64_t)>& leaves) {
  TORCH_CHECK(max_blocks > 0, "tree_share_of needs max_blocks > 0");
  const std::function<at::Tensor(int, int64_t)> value = [&](int l, int64_t j) -> at::Tensor {
    const int64_t lo = j << l, hi = std::min((j + 1) << l, total);
    if (hi - lo <= max_blocks) {  // the node's leaves at once: their sweep is the node
      std::vector<at::Tensor> sums;
      const at::Tensor V = leaves(lo, hi);
      sweep(lo, hi, total, rows_of(V.to(at::kDouble)), &sums);
      return sums.at(0).view(V.sizes().slice(1));
    }
    const at::Tensor left = value(l - 1, 2 * j);
    return ((2 * j + 1) << (l - 1)) < total ? left + value(l - 1, 2 * j + 1) : left;
  };
  std::vector<at::Tensor> sums;
  for (const Node& n : nodes_of(begin, end, total)) sums.push_back(value(n.level, n.index));
  at::Tensor nodes;
  if (sums.empty()) {
    nodes = leaves(begin, begin).to(at::kDouble);
  } else {
    nodes = at::stack(sums);
  }
  return {begin, end, total, nodes};
}

TreeShare whole_share(const at::Tensor& value) {
  return {0, 1, 1, value.to(at::kDouble).unsqueeze(0)};
}

TreeShare side_by_side(const std::vector<TreeShare>& parts) {
  TORCH_CHECK(!parts.empty(), "side_by_side needs a share");
  std::vector<at::Tensor> rows;
  for (const TreeShare& p : parts) {
    TORCH_CHECK(p.begin == parts[0].begin && p.end == parts[0].end && p.total == parts[0].total,
                "shares side by side must hold one range of blocks");
    rows.push_back(flat(p));
  }
  TreeShare s = parts[0];
  s.nodes = at::cat(rows, 1);
  return s;
}

namespace {

// The most nodes any rank's range has.
int64_t max_nodes(int64_t total, int world) {
  int64_t k = 0;
  for (int r = 0; r < world; ++r) {
    const auto [b0, b1] = block_range(total, r, world);
    k = std::max<int64_t>(k, int64_t(nodes_of(b0, b1, total).size()));
  }
  return k;
}

}  // namespace

at::Tensor tree_table(const TreeShare& s, int rank, int world) {
  const auto [b0, b1] = block_range(s.total, rank, world);
  TORCH_CHECK(s.begin == b0 && s.end == b1, "rank ", rank, " of ", world, " holds blocks [",
              s.begin, ", ", s.end, ") of ", s.total, ", not its range [", b0, ", ", b1, ")");
  const at::Tensor rows = flat(s);
  at::Tensor table = at::zeros({world, max_nodes(s.total, world), rows.size(1)}, rows.options());
  table[rank].narrow(0, 0, rows.size(0)).copy_(rows);
  return table.view(-1);
}

at::Tensor tree_root(const at::Tensor& summed, const TreeShare& s, int world) {
  const int64_t K = max_nodes(s.total, world), E = flat(s).size(1);
  const at::Tensor table = summed.view({world, K, E});
  std::map<Node, at::Tensor> known;
  for (int r = 0; r < world; ++r) {
    const auto [b0, b1] = block_range(s.total, r, world);
    const std::vector<Node> nodes = nodes_of(b0, b1, s.total);
    for (size_t i = 0; i < nodes.size(); ++i) known.emplace(nodes[i], table[r][int64_t(i)]);
  }
  const std::function<at::Tensor(int, int64_t)> value = [&](int l, int64_t j) -> at::Tensor {
    if (auto it = known.find({l, j}); it != known.end()) return it->second;
    TORCH_CHECK(l > 0, "block ", j, " of ", s.total, " is in no rank's range");
    const at::Tensor left = value(l - 1, 2 * j);
    return ((2 * j + 1) << (l - 1)) < s.total ? left + value(l - 1, 2 * j + 1) : left;
  };
  std::vector<int64_t> shape = s.nodes.sizes().vec();
  shape.erase(shape.begin());
  return value(levels(s.total), 0).view(shape);
}

}  // namespace mmdflow
