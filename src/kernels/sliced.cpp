#include "src/kernels/sliced.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "src/base/random.h"

namespace mmdflow {
namespace {

constexpr int64_t kRowGrain = 4096;         // rows per task when adding up the directions
constexpr int64_t kChunkEntries = 1 << 22;  // h_xi' values held at once (32 MiB)

template <typename T>
using KeyOf = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

// An unsigned key in the order of the numbers: -0 and +0 share one (a tie, as x = y in the exact
// gradient); NaN sorts past every number, so the sorts stay well defined.
template <typename T>
KeyOf<T> key_of(T x) {
  using K = KeyOf<T>;
  x += T(0);  // -0 -> +0
  K u;
  std::memcpy(&u, &x, sizeof u);
  constexpr K sign = K(1) << (8 * sizeof(K) - 1);
  return u & sign ? ~u : u | sign;
}

// <x, xi>, k in order: a row of P and the same row of Z project to the same bits.
template <typename T>
T project(const T* x, const T* xi, int64_t d) {
  T s = 0;
  for (int64_t k = 0; k < d; ++k) s += x[k] * xi[k];
  return s;
}

// LSD radix sort of v by key(x) (unsigned), a byte a pass, tmp as scratch; a pass whose byte is
// the same for every element is skipped. Equal keys keep no particular order.
template <typename V, typename KeyFn>
void radix_sort(std::vector<V>& v, std::vector<V>& tmp, KeyFn key) {
  using K = decltype(key(v[0]));
  constexpr int kBytes = sizeof(K);
  const size_t n = v.size();
  if (n < 2) return;
  std::array<std::array<size_t, 256>, kBytes> count{};
  for (const V& x : v) {
    const K k = key(x);
    for (int p = 0; p < kBytes; ++p) ++count[p][(k >> (8 * p)) & 0xff];
  }
  tmp.resize(n);
  for (int p = 0; p < kBytes; ++p) {
    std::array<size_t, 256>& start = count[p];
    if (start[(key(v[0]) >> (8 * p)) & 0xff] == n) continue;
    size_t sum = 0;
    for (size_t& c : start) sum += std::exchange(c, sum);
    for (const V& x : v) tmp[start[(key(x) >> (8 * p)) & 0xff]++] = x;
    v.swap(tmp);
  }
}

// A thread's buffers, reused across directions.
template <typename T>
struct Work {
  using K = KeyOf<T>;
  std::vector<std::pair<K, uint32_t>> q, q_tmp;  // the queries' (key, row), sorted by key
  std::vector<K> a, b, tmp;                      // Z's and U's keys, sorted
};

template <typename T>
struct Slicer {
  using K = KeyOf<T>;
  const T *P, *Z, *U;
  int64_t n, N, M, d;
  int64_t self;  // P is Z's rows [self, self + n); -1: P is its own

  // g[i] = h_xi'(<p_i, xi>) for i < n.
  void direction(const T* xi, double* g, Work<T>& w) const {
    auto by_key = [](const auto& e) { return e.first; };
    auto itself = [](K k) { return k; };
    w.b.resize(size_t(M));
    for (int64_t m = 0; m < M; ++m) w.b[m] = key_of(project(U + m * d, xi, d));
    radix_sort(w.b, w.tmp, itself);
    const T* Q = self >= 0 ? Z : P;
    const int64_t nq = self >= 0 ? N : n, lo = std::max<int64_t>(self, 0);
    w.q.resize(size_t(nq));
    for (int64_t i = 0; i < nq; ++i) w.q[i] = {key_of(project(Q + i * d, xi, d)), uint32_t(i)};
    radix_sort(w.q, w.q_tmp, by_key);
    w.a.resize(size_t(N));
    if (self >= 0) {
      for (int64_t i = 0; i < N; ++i) w.a[i] = w.q[i].first;
    } else {
      for (int64_t i = 0; i < N; ++i) w.a[i] = key_of(project(Z + i * d, xi, d));
      radix_sort(w.a, w.tmp, itself);
    }
    // Queries in increasing order: [la, ua) of a and [lb, ub) of b are the keys equal to q's.
    const double inv_N = 1 / double(N), inv_M = 1 / double(M);
    int64_t la = 0, ua = 0, lb = 0, ub = 0;
    for (const auto& [key, i] : w.q) {
      while (la < N && w.a[la] < key) ++la;
      ua = std::max(ua, la);
      while (ua < N && w.a[ua] <= key) ++ua;
      while (lb < M && w.b[lb] < key) ++lb;
      ub = std::max(ub, lb);
      while (ub < M && w.b[ub] <= key) ++ub;
      if (int64_t(i) >= lo && int64_t(i) < lo + n)
        g[i - lo] = double(N - la - ua) * inv_N + double(lb + ub - M) * inv_M;
    }
  }
};

// P's first row in Z when P is a block of Z's rows (a view of them), else -1.
int64_t block_of(const at::Tensor& P, const at::Tensor& Z) {
  const int64_t d = Z.size(1);
  if (!P.is_alias_of(Z) || !P.is_contiguous() || !Z.is_contiguous()) return -1;
  const int64_t off = P.storage_offset() - Z.storage_offset();
  if (off < 0 || off % d != 0 || off / d + P.size(0) > Z.size(0)) return -1;
  return off / d;
}

template <typename T>
at::Tensor sliced(const at::Tensor& P, const at::Tensor& Z, const at::Tensor& U,
                  const at::Tensor& xi) {
  const int64_t n = P.size(0), N = Z.size(0), M = U.size(0), d = Z.size(1), L = xi.size(0);
  const at::Tensor Pc = P.contiguous(), Zc = Z.contiguous(), Uc = U.contiguous(),
                   xc = xi.contiguous(), xd = xi.to(at::kDouble).contiguous();
  const Slicer<T> s{Pc.data_ptr<T>(), Zc.data_ptr<T>(), Uc.data_ptr<T>(), n, N, M, d,
                    block_of(Pc, Zc)};
  const T* x = xc.data_ptr<T>();
  const double* x64 = xd.data_ptr<double>();
  // Directions in chunks of C, a barrier a chunk: g holds a chunk's h_xi' [C, n], C at least one a
  // thread, otherwise within kChunkEntries.
  const int64_t threads = at::get_num_threads();
  const int64_t C = std::min(L, std::max(threads, kChunkEntries / std::max<int64_t>(n, 1)));
  std::vector<Work<T>> work(static_cast<size_t>(threads));
  std::vector<double> g(static_cast<size_t>(C * n)), acc(static_cast<size_t>(n * d), 0.0);
  for (int64_t j0 = 0; j0 < L; j0 += C) {
    const int64_t c1 = std::min(C, L - j0);
    at::parallel_for(0, c1, 1, [&](int64_t b, int64_t e) {
      Work<T>& w = work[at::get_thread_num()];
      for (int64_t c = b; c < e; ++c) s.direction(x + (j0 + c) * d, g.data() + c * n, w);
    });
    at::parallel_for(0, n, kRowGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        for (int64_t c = 0; c < c1; ++c) {
          const double gi = g[c * n + i];
          const double* xj = x64 + (j0 + c) * d;
          for (int64_t k = 0; k < d; ++k) acc[i * d + k] += gi * xj[k];
        }
    });
  }
  const double scale = sliced_energy_constant(d) / double(L);
  at::Tensor out = at::empty({n, d}, P.options());
  T* o = out.data_ptr<T>();
  for (int64_t i = 0; i < n * d; ++i) o[i] = T(acc[i] * scale);
  return out;
}

}  // namespace

double sliced_energy_constant(int64_t d) {
  return std::exp(0.5 * std::log(M_PI) + std::lgamma(0.5 * double(d + 1)) -
                  std::lgamma(0.5 * double(d)));
}

at::Tensor random_directions(int64_t L, int64_t d, uint64_t seed, const at::TensorOptions& o) {
  at::Generator gen = make_generator(c10::Device(c10::kCPU), seed);
  const at::Tensor g = at::randn({L, d}, gen, at::TensorOptions().dtype(at::kDouble));
  return (g / at::linalg_vector_norm(g, 2, {1}, true)).to(o);
}

at::Tensor sliced_energy_grad(const at::Tensor& P, const at::Tensor& Z, const at::Tensor& U,
                              const at::Tensor& xi) {
  TORCH_CHECK(P.dim() == 2 && Z.dim() == 2 && U.dim() == 2 && xi.dim() == 2 && Z.size(1) > 0 &&
                  P.size(1) == Z.size(1) && U.size(1) == Z.size(1) && xi.size(1) == Z.size(1),
              "sliced energy: P [n, d], Z [N, d], U [M, d], xi [L, d] expected, got ", P.sizes(),
              ", ", Z.sizes(), ", ", U.sizes(), ", ", xi.sizes());
  TORCH_CHECK(Z.size(0) > 0 && U.size(0) > 0 && xi.size(0) > 0,
              "sliced energy: N, M and L must be positive, got ", Z.size(0), ", ", U.size(0), ", ",
              xi.size(0));
  TORCH_CHECK(std::max(P.size(0), Z.size(0)) <= std::numeric_limits<uint32_t>::max(),
              "sliced energy: at most 2^32 - 1 rows, got ", std::max(P.size(0), Z.size(0)));
  const auto type = P.scalar_type();
  TORCH_CHECK((type == at::kFloat || type == at::kDouble) && Z.scalar_type() == type &&
                  U.scalar_type() == type && xi.scalar_type() == type,
              "sliced energy: P, Z, U and xi must share one dtype, float32 or float64");
  TORCH_CHECK(P.is_cpu() && Z.is_cpu() && U.is_cpu() && xi.is_cpu(),
              "sliced energy: runs on CPU only");
  return type == at::kFloat ? sliced<float>(P, Z, U, xi) : sliced<double>(P, Z, U, xi);
}

}  // namespace mmdflow
