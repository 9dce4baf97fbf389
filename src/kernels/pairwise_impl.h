// The fused pair loops of one instruction-set path, compiled by pairwise_<isa>.cpp, which defines
//   MMDFLOW_ISA_NS      the path's namespace (generic, avx2, avx512)
//   MMDFLOW_ISA_TARGET  the target of its code, e.g. "avx2,fma" (none for generic).
// Rows of P against tiles of sources laid out structure-of-arrays (St [d, ldS]): the loop over the
// sources j is the inner one and vectorises, exp included (pair_exp). Each row's sums run in a
// fixed order (tiles in turn, each tile's partial sums in T, added into double accumulators),
// whatever the rows around it: the results of a row never depend on how P is split.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "src/kernels/pairwise.h"
// The path's code from here on.
#include "src/kernels/isa_target_push.h"

namespace mmdflow {
namespace MMDFLOW_ISA_NS {
namespace {

// exp without branches or calls, so that the loops vectorise: x = n ln 2 + r, n = round(x / ln 2)
// by adding 1.5 2^p (p the mantissa's bits), |r| <= ln 2 / 2 with ln 2 in two parts (n ln2_hi
// exact), exp(r) = 1 + (r + r^2 P(r)), P from the Taylor series of (exp(r) - 1 - r) / r^2, then 2^n
// from the low bits of n + 1.5 2^p. Arguments clamped to the normal range. Measured maximum errors:
// float (P of degree 5, truncation below 6e-9) 1.03 ulp; double (degree 11, below 4e-18) 0.99 ulp.
inline float pair_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float shift = 12582912.0f;  // 1.5 2^23
  const float k = x * 1.44269504088896341f + shift;
  const float n = k - shift;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;  // 1/7!
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  const float e = 1.0f + (r + (r * r) * p);
  int32_t bits;
  std::memcpy(&bits, &k, sizeof bits);
  bits = (bits - 0x4B400000 + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}
inline double pair_exp(double x) {
  x = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
  const double shift = 6755399441055744.0;  // 1.5 2^52
  const double k = x * 1.4426950408889634 + shift;
  const double n = k - shift;
  const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  const double e = 1.0 + (r + (r * r) * p);
  int64_t bits;
  std::memcpy(&bits, &k, sizeof bits);
  bits = (bits - int64_t(0x4338000000000000) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}

// Per kernel: part(e) is a coordinate difference e's share of the pair's statistic t (e^2, or |e|
// for laplace); eval(t, &c) returns k and sets c, with grad_1 k = c dir(e) coordinatewise.
template <typename T>
struct GaussianPair {
  T a, b;  // 1 / (2 s^2), 1 / s^2
  explicit GaussianPair(const PairKernelSpec& k)
      : a(T(0.5 / (k.bandwidth * k.bandwidth))), b(T(1 / (k.bandwidth * k.bandwidth))) {}
  static T part(T e) { return e * e; }
  static T dir(T e) { return e; }
  T eval(T t, T* c) const {
    const T v = pair_exp(-t * a);
    *c = -b * v;
    return v;
  }
};
template <typename T>
struct LaplacePair {
  T a;  // 1 / s
  explicit LaplacePair(const PairKernelSpec& k) : a(T(1 / k.bandwidth)) {}
  static T part(T e) { return std::abs(e); }
  static T dir(T e) { return e != T(0) ? std::copysign(T(1), e) : T(0); }  // sign(e)
  T eval(T t, T* c) const {
    const T v = pair_exp(-t * a);
    *c = -a * v;
    return v;
  }
};
template <typename T>
struct ImqPair {
  T c2, b;  // c^2, 1 / s^2
  explicit ImqPair(const PairKernelSpec& k)
      : c2(T(k.c * k.c)), b(T(1 / (k.bandwidth * k.bandwidth))) {}
  static T part(T e) { return e * e; }
  static T dir(T e) { return e; }
  T eval(T t, T* c) const {
    const T v = T(1) / std::sqrt(c2 + t * b);
    *c = -b * v * v * v;
    return v;
  }
};
template <typename T>
struct EnergyPair {
  explicit EnergyPair(const PairKernelSpec&) {}
  static T part(T e) { return e * e; }
  static T dir(T e) { return e; }
  T eval(T t, T* c) const {
    const T r = std::sqrt(t);
    *c = r > T(0) ? T(-1) / r : T(0);
    return -r;
  }
};

constexpr int64_t kRowBlock = 32;  // rows that share a tile of sources
constexpr int64_t kMaxSourceTile = 1024;

// Sources per tile, a multiple of 16 set by d alone: a tile of St stays in cache, and a float32
// tile's partial sums add at most 1024 terms.
inline int64_t source_tile(int64_t d) {
  return std::clamp<int64_t>((int64_t(1) << 15) / d / 16 * 16, 64, kMaxSourceTile);
}

// One row p [D] against the nj sources at St [D, ldS] (from the tile's first): out [1 + D] gets
// the tile's sum of k, then of grad_1 k (with Grad).
template <typename T, int D, bool Grad, typename K>
inline void tile_fixed(const K& ker, const T* p, const T* St, int64_t ldS, int64_t nj, T* out) {
  static_assert(D >= 1 && D <= 3, "D in 1..3");
  const T p0 = p[0], p1 = D > 1 ? p[1] : T(0), p2 = D > 2 ? p[2] : T(0);
  const T* __restrict s0 = St;
  const T* __restrict s1 = St + (D > 1 ? ldS : 0);
  const T* __restrict s2 = St + (D > 2 ? 2 * ldS : 0);
  T v = 0, g0 = 0, g1 = 0, g2 = 0;
#pragma omp simd reduction(+ : v, g0, g1, g2)
  for (int64_t j = 0; j < nj; ++j) {
    const T e0 = p0 - s0[j];
    T e1 = 0, e2 = 0, t = K::part(e0);
    if constexpr (D > 1) {
      e1 = p1 - s1[j];
      t += K::part(e1);
    }
    if constexpr (D > 2) {
      e2 = p2 - s2[j];
      t += K::part(e2);
    }
    T c;
    v += ker.eval(t, &c);
    if constexpr (Grad) {
      g0 += c * K::dir(e0);
      if constexpr (D > 1) g1 += c * K::dir(e1);
      if constexpr (D > 2) g2 += c * K::dir(e2);
    }
  }
  const T g[3] = {g0, g1, g2};
  out[0] = v;
  for (int k = 0; k < (Grad ? D : 0); ++k) out[1 + k] = g[k];
}

// The same for any d, in passes over the tile, each vectorised over j: the statistics into w
// [nj] (64-byte aligned), k's sum with the coefficients c into w, then each coordinate's sum.
template <typename T, bool Grad, typename K>
inline void tile_any(const K& ker, const T* p, int64_t d, const T* St, int64_t ldS, int64_t nj,
                     T* __restrict w, T* out) {
  {
    const T p0 = p[0];
    const T* __restrict s = St;
#pragma omp simd
    for (int64_t j = 0; j < nj; ++j) w[j] = K::part(p0 - s[j]);
  }
  for (int64_t k = 1; k < d; ++k) {
    const T pk = p[k];
    const T* __restrict s = St + k * ldS;
#pragma omp simd
    for (int64_t j = 0; j < nj; ++j) w[j] += K::part(pk - s[j]);
  }
  T v = 0;
#pragma omp simd reduction(+ : v)
  for (int64_t j = 0; j < nj; ++j) {
    T c;
    v += ker.eval(w[j], &c);
    w[j] = c;
  }
  out[0] = v;
  if constexpr (Grad) {
    for (int64_t k = 0; k < d; ++k) {
      const T pk = p[k];
      const T* __restrict s = St + k * ldS;
      T g = 0;
#pragma omp simd reduction(+ : g)
      for (int64_t j = 0; j < nj; ++j) g += w[j] * K::dir(pk - s[j]);
      out[1 + k] = g;
    }
  }
}

// Rows [i0, i1) in blocks of kRowBlock; D = 0: any d.
template <typename T, int D, bool Grad, typename K>
void rows_of(const K& ker, const PairRows<T>& a, int64_t i0, int64_t i1) {
  const int64_t d = a.d, width = Grad ? 1 + d : 1, J = source_tile(d);
  alignas(64) T w[kMaxSourceTile];
  std::vector<T> out(1 + d);
  std::vector<double> acc(kRowBlock * width);
  for (int64_t r0 = i0; r0 < i1; r0 += kRowBlock) {
    const int64_t nr = std::min(kRowBlock, i1 - r0);
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t j0 = 0; j0 < a.m; j0 += J) {
      const int64_t nj = std::min(J, a.m - j0);
      for (int64_t r = 0; r < nr; ++r) {
        const T* p = a.P + (r0 + r) * d;
        if constexpr (D > 0) {
          tile_fixed<T, D, Grad>(ker, p, a.St + j0, a.ldS, nj, out.data());
        } else {
          tile_any<T, Grad>(ker, p, d, a.St + j0, a.ldS, nj, w, out.data());
        }
        double* ar = acc.data() + r * width;
        for (int64_t k = 0; k < width; ++k) ar[k] += double(out[k]);
      }
    }
    for (int64_t r = 0; r < nr; ++r) {
      const double* ar = acc.data() + r * width;
      a.value[r0 + r] = T(ar[0]);
      if constexpr (Grad) {
        for (int64_t k = 0; k < d; ++k) a.grad[(r0 + r) * d + k] = T(ar[1 + k]);
      }
    }
  }
}

template <typename T, bool Grad, typename K>
void rows_by_dim(const K& ker, const PairRows<T>& a, int64_t i0, int64_t i1) {
  switch (a.d) {
    case 1: return rows_of<T, 1, Grad>(ker, a, i0, i1);
    case 2: return rows_of<T, 2, Grad>(ker, a, i0, i1);
    case 3: return rows_of<T, 3, Grad>(ker, a, i0, i1);
    default: return rows_of<T, 0, Grad>(ker, a, i0, i1);
  }
}

template <typename T>
void pair_rows(const PairKernelSpec& k, const PairRows<T>& a, int64_t i0, int64_t i1) {
  auto run = [&](const auto& ker) {
    if (a.grad) {
      rows_by_dim<T, true>(ker, a, i0, i1);
    } else {
      rows_by_dim<T, false>(ker, a, i0, i1);
    }
  };
  switch (k.kind) {
    case PairKernel::Gaussian: return run(GaussianPair<T>(k));
    case PairKernel::Laplace: return run(LaplacePair<T>(k));
    case PairKernel::Imq: return run(ImqPair<T>(k));
    case PairKernel::Energy: return run(EnergyPair<T>(k));
  }
}

}  // namespace

// Addresses only: a constant initialiser, so no code of this path runs before it is chosen.
extern const PairLoops kPairLoops;
const PairLoops kPairLoops = {&pair_rows<float>, &pair_rows<double>};

}  // namespace MMDFLOW_ISA_NS
}  // namespace mmdflow

#include "src/kernels/isa_target_pop.h"
