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

// Node (l, j) from its children's values, as the tree adds them: left + right, or a lone left
// child (Level::pair_up adds a level at once the same way).
at::Tensor from_children(int l, int64_t j, int64_t total,
                         const std::function<at::Tensor(int, int64_t)>& value) {
  const at::Tensor left = value(l - 1, 2 * j);
  return ((2 * j + 1) << (l - 1)) < total ? left + value(l - 1, 2 * j + 1) : left;
}

// One level's sums, row by row, as the sweep below takes them: a maximal node out (the first or
// the last row), the rest paired up into the next level. On CPU the rows are a buffer added in
// plain loops (a step's sums are small: no ATen call a level); elsewhere a tensor.
class Level {
 public:
  explicit Level(const at::Tensor& V) : E_(V.size(1)), cpu_(V.is_cpu()) {
    if (cpu_) {
      const at::Tensor c = V.contiguous();
      rows_.assign(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
    } else {
      V_ = V;
    }
  }
  void take_first() {
    if (cpu_) {
      left_.insert(left_.end(), rows_.begin(), rows_.begin() + E_);
      rows_.erase(rows_.begin(), rows_.begin() + E_);
    } else {
      left_t_.push_back(V_[0]);
      V_ = V_.narrow(0, 1, V_.size(0) - 1);
    }
  }
  void take_last() {
    if (cpu_) {
      right_.insert(right_.begin(), rows_.end() - E_, rows_.end());
      rows_.resize(rows_.size() - E_);
    } else {
      right_t_.insert(right_t_.begin(), V_[V_.size(0) - 1]);
      V_ = V_.narrow(0, 0, V_.size(0) - 1);
    }
  }
  void pair_up() {  // (0, 1), (2, 3), ...; an odd last row is its own parent
    if (!cpu_) {
      const int64_t n = V_.size(0), pairs = n / 2;
      const at::Tensor P = V_.narrow(0, 0, 2 * pairs).view({pairs, 2, E_});
      const at::Tensor next = P.select(1, 0) + P.select(1, 1);
      V_ = n % 2 ? at::cat({next, V_.narrow(0, n - 1, 1)}) : next;
      return;
    }
    const int64_t n = int64_t(rows_.size()) / E_, pairs = n / 2;
    for (int64_t p = 0; p < pairs; ++p)
      for (int64_t e = 0; e < E_; ++e)
        rows_[p * E_ + e] = rows_[2 * p * E_ + e] + rows_[(2 * p + 1) * E_ + e];
    if (n % 2) std::copy(rows_.end() - E_, rows_.end(), rows_.begin() + pairs * E_);
    rows_.resize((pairs + n % 2) * E_);
  }
  at::Tensor nodes() const {  // [k, E], in block order
    if (!cpu_) {
      std::vector<at::Tensor> all = left_t_;
      all.insert(all.end(), right_t_.begin(), right_t_.end());
      return all.empty() ? V_.new_empty({0, E_}) : at::stack(all);
    }
    at::Tensor out = at::empty({int64_t(left_.size() + right_.size()) / E_, E_},
                               at::TensorOptions().dtype(at::kDouble));
    std::copy(right_.begin(), right_.end(),
              std::copy(left_.begin(), left_.end(), out.data_ptr<double>()));
    return out;
  }

 private:
  int64_t E_;
  bool cpu_;
  std::vector<double> rows_, left_, right_;  // CPU
  at::Tensor V_;                             // elsewhere
  std::vector<at::Tensor> left_t_, right_t_;
};

// The maximal subtrees of blocks [begin, end), in block order, level by level from the leaves;
// with a level of leaves ([end - begin, E]) also their sums. A level's first and last node may be
// maximal; the others pair up into the next level.
std::vector<Node> sweep(int64_t begin, int64_t end, int64_t total, Level* level) {
  std::vector<Node> left, right;
  const int L = levels(total);
  int64_t lo = begin, hi = end;
  for (int l = 0; lo < hi; ++l) {
    auto maximal = [&](int64_t j) { return l == L || !within(l + 1, j >> 1, begin, end, total); };
    if (maximal(lo)) {
      left.push_back({l, lo++});
      if (level) level->take_first();
    }
    if (lo < hi && maximal(hi - 1)) {
      right.push_back({l, --hi});
      if (level) level->take_last();
    }
    if (lo >= hi) break;
    if (level) level->pair_up();  // lo is even
    lo >>= 1;
    hi = (hi + 1) >> 1;
  }
  left.insert(left.end(), right.rbegin(), right.rend());
  return left;
}

// The sums of the maximal subtrees of blocks [begin, begin + n) from their leaves [n, E].
at::Tensor swept(int64_t begin, int64_t total, const at::Tensor& V) {
  Level level(V);
  sweep(begin, begin + V.size(0), total, &level);
  return level.nodes();
}

std::vector<Node> nodes_of(int64_t begin, int64_t end, int64_t total) {
  return sweep(begin, end, total, nullptr);
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
  std::vector<int64_t> shape = leaves.sizes().vec();
  const at::Tensor nodes = swept(begin, total, rows_of(leaves.to(at::kDouble)));
  shape[0] = nodes.size(0);
  return {begin, begin + n, total, nodes.view(shape)};
}

TreeShare tree_share_of(int64_t begin, int64_t end, int64_t total, int64_t max_blocks,
                        const std::function<at::Tensor(int64_t, int64_t)>& leaves) {
  TORCH_CHECK(max_blocks > 0, "tree_share_of needs max_blocks > 0");
  const std::function<at::Tensor(int, int64_t)> value = [&](int l, int64_t j) -> at::Tensor {
    const int64_t lo = j << l, hi = std::min((j + 1) << l, total);
    if (hi - lo <= max_blocks) {  // the node's leaves at once: their sweep is the node
      const at::Tensor V = leaves(lo, hi);
      return swept(lo, total, rows_of(V.to(at::kDouble)))[0].view(V.sizes().slice(1));
    }
    return from_children(l, j, total, value);
  };
  std::vector<at::Tensor> sums;
  for (const Node& n : nodes_of(begin, end, total)) sums.push_back(value(n.level, n.index));
  return {begin, end, total, sums.empty() ? leaves(begin, begin).to(at::kDouble) : at::stack(sums)};
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
    return from_children(l, j, s.total, value);
  };
  std::vector<int64_t> shape = s.nodes.sizes().vec();
  shape.erase(shape.begin());
  return value(levels(s.total), 0).view(shape);
}

}  // namespace mmdflow
