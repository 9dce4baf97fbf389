// fill_normal for one instruction-set path (see normal.h): included by kernels_impl.h. Each lane
// of the loop is one Philox counter, so the loop vectorises at the path's width; the arithmetic is
// the same on every path, and avx2 and avx512 (both with FMA) draw the same bits.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace mmdflow {
namespace MMDFLOW_ISA_NS {

inline float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// log(x) for x in (0, 1] (Cephes logf: x = m 2^e, m in [sqrt(1/2), sqrt(2)), a polynomial in m-1).
inline float vlog(float x) {
  const uint32_t b = float_to_bits(x);
  int32_t e = int32_t((b >> 23) & 0xff) - 126;
  float m = bits_to_float((b & 0x7fffffu) | 0x3f000000u);  // [0.5, 1)
  const bool low = m < 0.707106781186547524f;
  e = low ? e - 1 : e;
  m = low ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const float fe = float(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  return m + y + 0.693359375f * fe;
}

// (cos, sin) of 2 pi u for u in [0, 1): quadrant, then Taylor polynomials on [0, pi/2).
inline void vsincos2pi(float u, float* c, float* s) {
  const float t = u * 4.0f;
  const int32_t q = int32_t(t);
  const float a = (t - float(q)) * 1.57079632679489662f;
  const float a2 = a * a;
  float sa = -2.50521084e-8f;
  sa = sa * a2 + 2.75573192e-6f;
  sa = sa * a2 - 1.98412698e-4f;
  sa = sa * a2 + 8.33333333e-3f;
  sa = sa * a2 - 1.66666667e-1f;
  sa = (sa * a2 + 1.0f) * a;
  float ca = 2.08767570e-9f;
  ca = ca * a2 - 2.75573192e-7f;
  ca = ca * a2 + 2.48015873e-5f;
  ca = ca * a2 - 1.38888889e-3f;
  ca = ca * a2 + 4.16666667e-2f;
  ca = ca * a2 - 0.5f;
  ca = ca * a2 + 1.0f;
  // q = 0: (ca, sa); 1: (-sa, ca); 2: (-ca, -sa); 3: (sa, -ca).
  const bool odd = q & 1;
  const float c0 = odd ? sa : ca, s0 = odd ? ca : sa;
  *c = (q == 1 || q == 2) ? -c0 : c0;
  *s = (q >= 2) ? -s0 : s0;
}

// Philox4x32-10 (Salmon et al., SC 2011) of counters g0 .. g0 + m - 1 under (key0, key1): the four
// words of counter g0 + i into w[0..3][i], for m up to kPhiloxChunk. The 32 x 32 -> 64-bit
// products are vector multiplies of even and odd lanes on avx2 and avx512.
constexpr int64_t kPhiloxChunk = 256;  // a multiple of twice the widest lanes
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

#if defined(MMDFLOW_ISA_AVX512) || defined(MMDFLOW_ISA_AVX2)
// GCC 12's AVX-512 shifts start from _mm512_undefined_epi32(), which -Wmaybe-uninitialized flags.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#if defined(MMDFLOW_ISA_AVX512)
struct PhiloxVec {
  using R = __m512i;
  static constexpr int kLanes = 16;
  static R set1(uint32_t v) { return _mm512_set1_epi32(int(v)); }
  static R iota() {
    return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }
  static R add(R a, R b) { return _mm512_add_epi32(a, b); }
  static R xor3(R a, R b, R c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }
  static R carry(R sum, R base) {  // 1 where sum < base (unsigned): the low word wrapped
    return _mm512_maskz_set1_epi32(_mm512_cmplt_epu32_mask(sum, base), 1);
  }
  // hi and lo words of m c, m a constant in every lane.
  static void mulhilo(R m, R c, R* hi, R* lo) {
    const R even = _mm512_mul_epu32(c, m), odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);
    *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  }
  static void store(uint32_t* p, R v) { _mm512_storeu_si512(p, v); }
};
#else
struct PhiloxVec {
  using R = __m256i;
  static constexpr int kLanes = 8;
  static R set1(uint32_t v) { return _mm256_set1_epi32(int(v)); }
  static R iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
  static R add(R a, R b) { return _mm256_add_epi32(a, b); }
  static R xor3(R a, R b, R c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }
  static R carry(R sum, R base) {  // unsigned sum < base as signed compares with the sign flipped
    const R flip = _mm256_set1_epi32(int(0x80000000u));
    const R lt = _mm256_cmpgt_epi32(_mm256_xor_si256(base, flip), _mm256_xor_si256(sum, flip));
    return _mm256_srli_epi32(lt, 31);
  }
  static void mulhilo(R m, R c, R* hi, R* lo) {
    const R even = _mm256_mul_epu32(c, m), odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  }
  static void store(uint32_t* p, R v) { _mm256_storeu_si256(reinterpret_cast<R*>(p), v); }
};
#endif

inline void philox_words(uint64_t g0, int64_t m, uint32_t key0, uint32_t key1,
                         uint32_t (*w)[kPhiloxChunk]) {
  using V = PhiloxVec;
  using R = typename V::R;
  const R m0 = V::set1(kPhiloxM0), m1 = V::set1(kPhiloxM1), zero = V::set1(0);
  R k0[10], k1[10];  // the key schedule, the same for every counter
  for (int r = 0; r < 10; ++r) {
    k0[r] = V::set1(key0 + uint32_t(r) * kPhiloxW0);
    k1[r] = V::set1(key1 + uint32_t(r) * kPhiloxW1);
  }
  // Two vectors of counters at a time: their rounds interleave, hiding the multiplies' latency.
  // kPhiloxChunk is a multiple of 2 kLanes, so w has room for the last pair.
  for (int64_t i = 0; i < m; i += 2 * V::kLanes) {
    R c0[2], c1[2], c2[2], c3[2];
    for (int v = 0; v < 2; ++v) {
      const uint64_t first = g0 + uint64_t(i + v * V::kLanes);
      const R base = V::set1(uint32_t(first));
      c0[v] = V::add(base, V::iota());
      c1[v] = V::add(V::set1(uint32_t(first >> 32)), V::carry(c0[v], base));
      c2[v] = c3[v] = zero;
    }
#pragma GCC unroll 10
    for (int r = 0; r < 10; ++r) {
#pragma GCC unroll 2
      for (int v = 0; v < 2; ++v) {
        R hi0, lo0, hi1, lo1;
        V::mulhilo(m0, c0[v], &hi0, &lo0);
        V::mulhilo(m1, c2[v], &hi1, &lo1);
        c0[v] = V::xor3(hi1, c1[v], k0[r]);
        c1[v] = lo1;
        c2[v] = V::xor3(hi0, c3[v], k1[r]);
        c3[v] = lo0;
      }
    }
    for (int v = 0; v < 2; ++v) {
      const int64_t at = i + v * V::kLanes;
      V::store(w[0] + at, c0[v]);
      V::store(w[1] + at, c1[v]);
      V::store(w[2] + at, c2[v]);
      V::store(w[3] + at, c3[v]);
    }
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else
inline void philox_words(uint64_t g0, int64_t m, uint32_t key0, uint32_t key1,
                         uint32_t (*w)[kPhiloxChunk]) {
  for (int64_t i = 0; i < m; ++i) {
    const uint64_t ctr = g0 + uint64_t(i);
    uint32_t c0 = uint32_t(ctr), c1 = uint32_t(ctr >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = key0, k1 = key1;
    for (int r = 0; r < 10; ++r) {
      const uint64_t p0 = uint64_t(kPhiloxM0) * c0, p1 = uint64_t(kPhiloxM1) * c2;
      c0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
      c1 = uint32_t(p1);
      c2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
      c3 = uint32_t(p0);
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    w[0][i] = c0, w[1][i] = c1, w[2][i] = c2, w[3][i] = c3;
  }
}
#endif

// out[i] ~ N(0, 1) for i < n: the stream of `key`. Counter g gives out[4g .. 4g+3]: Box-Muller on
// its four words, the top 24 bits of each, u1 in (0, 1] for the log, u2 in [0, 1) for the angle.
void fill_normal(float* out, int64_t n, uint64_t key) {
  const uint32_t key0 = uint32_t(key), key1 = uint32_t(key >> 32);
  const int64_t groups = (n + 3) / 4;
  alignas(64) uint32_t w[4][kPhiloxChunk];
  alignas(64) float tail[4 * kPhiloxChunk];
  for (int64_t g0 = 0; g0 < groups; g0 += kPhiloxChunk) {
    const int64_t m = std::min(kPhiloxChunk, groups - g0);
    philox_words(uint64_t(g0), m, key0, key1, w);
    const bool whole = 4 * (g0 + m) <= n;
    float* __restrict o = whole ? out + 4 * g0 : tail;
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) {
      const float scale = 1.0f / 16777216.0f;
      const float u1a = float((w[0][i] >> 8) + 1) * scale, u2a = float(w[1][i] >> 8) * scale;
      const float u1b = float((w[2][i] >> 8) + 1) * scale, u2b = float(w[3][i] >> 8) * scale;
      const float ra = std::sqrt(-2.0f * vlog(u1a)), rb = std::sqrt(-2.0f * vlog(u1b));
      float ca, sa, cb, sb;
      vsincos2pi(u2a, &ca, &sa);
      vsincos2pi(u2b, &cb, &sb);
      o[4 * i] = ra * ca;
      o[4 * i + 1] = ra * sa;
      o[4 * i + 2] = rb * cb;
      o[4 * i + 3] = rb * sb;
    }
    if (!whole) std::memcpy(out + 4 * g0, tail, (n - 4 * g0) * sizeof(float));
  }
}

}  // namespace MMDFLOW_ISA_NS
}  // namespace mmdflow
