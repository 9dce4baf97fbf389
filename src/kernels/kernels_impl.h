// The fused kernels of one instruction-set path, compiled by kernels_<isa>.cpp, which defines
//   MMDFLOW_ISA_NS      the path's namespace (generic, avx2, avx512)
//   MMDFLOW_ISA_TARGET  the target of its code, e.g. "avx2,fma" (none for generic)
//   MMDFLOW_ISA_AVX2 / MMDFLOW_ISA_AVX512  which product tiles it has.
// Only the code below the target switch (isa_target_push.h) is built for the path.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "models/activation.h"
#include "src/kernels/blocks.h"
#if defined(MMDFLOW_ISA_AVX512) || defined(MMDFLOW_ISA_AVX2)
#include <immintrin.h>
#endif

// The path's code from here on.
#include "src/kernels/isa_target_push.h"
// Its product tiles and noise.
#include "src/kernels/gemm_tiles.h"
#include "src/kernels/normal_impl.h"

namespace mmdflow {
namespace MMDFLOW_ISA_NS {
namespace {

// C[m, n] = A[m, k] B[k, n], contiguous: the path's tiles, else the caller's BLAS product.
template <typename T>
inline void product(const BlockArgs<T>& args, const T* A, const T* B, T* C, int64_t m, int64_t n,
                    int64_t k) {
#ifdef MMDFLOW_TILES
  (void)args;
  gemm_tiles<T>(m, n, k, A, k, B, n, C, n);
#else
  args.product(A, B, C, m, n, k);
#endif
}

// u = b_k + sum_h B_kh s(P_h[b] + a_h): output k of one particle at input b, P [H, Bt].
template <typename T, int H, typename SFn>
inline T output_pre(const T* Bk, T bias, const T* P, const T* a, int64_t Bt, int64_t b) {
  T u = bias;
#pragma GCC unroll 4  // H is a constant: unrolled before vectorising over b
  for (int h = 0; h < H; ++h) u += Bk[h] * SFn::value(P[h * Bt + b] + a[h]);
  return u;
}

// Partial feature sums of one block of n particles: out[k, b] += sum_i G(u_ik(x_b)). H is a
// compile-time constant, so the loops over b vectorise.
template <typename T, int H, typename SFn, typename GFn>
void feature_sum_block(const BlockArgs<T>& args, const View<T>& z, int64_t n,
                       BlockScratch<T>& scratch, double* __restrict out) {
  const Dims& s = args.s;
  const int64_t o = s.o, Bt = args.Bt;
  const GFn G(args.gparam);
  const T zeros[H] = {};
  scratch.P.resize(kBlock * H * Bt);
  T* P = scratch.P.data();
  product(args, z.A, args.Xt, P, n * H, Bt, s.d);
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict p = P + i * H * Bt;
    const T* __restrict a = z.a ? z.a + i * H : zeros;
    for (int64_t k = 0; k < o; ++k) {
      const T* __restrict Bk = z.B + (i * o + k) * H;
      const T bias = z.b ? z.b[i * o + k] : T(0);
      double* __restrict ok = out + k * Bt;
#pragma omp simd
      for (int64_t b = 0; b < Bt; ++b) {
        T dg;
        ok[b] += G.eval(output_pre<T, H, SFn>(Bk, bias, p, a, Bt, b), &dg);
      }
    }
  }
}

// One hidden unit h at one input, inside single_output_pass: adds to g.B's (and, with hidden
// biases, g.a's) sums and overwrites the pre-activation with dL/dP.
template <typename T, typename SFn, bool HiddenBias>
inline void unit_grad(T& p, T a, T Bh, T e, T& sB, T& sa) {
  const T ph = p + a;
  sB += e * SFn::value(ph);
  p = SFn::backprop(ph, Bh * e);  // dL/dP
  if constexpr (HiddenBias) sa += p;
}

// weighted_grad_block's passes over the inputs for one output (o = 1), fused into one pass per
// particle: E = W G'(u), then g.b, g.B, dL/dP (over P) and g.a, each input's operations as in the
// general passes. One scalar per sum (H <= 4), so that the loop vectorises with its reductions;
// the sums of absent biases are not formed.
template <typename T, int H, typename SFn, typename GFn, bool HiddenBias, bool OutputBias>
void single_output_pass(const GFn& G, const View<T>& z, const View<T>& g, int64_t n, int64_t Bt,
                        const T* __restrict w, T* P) {
  static_assert(H >= 1 && H <= 4, "H <= 4");
  const T zeros[H] = {};
  for (int64_t i = 0; i < n; ++i) {
    T* __restrict p = P + i * H * Bt;
    const T* __restrict a = HiddenBias ? z.a + i * H : zeros;
    const T* __restrict Bi = z.B + i * H;
    const T bias = OutputBias ? z.b[i] : T(0);
    T sb = 0, sB0 = 0, sB1 = 0, sB2 = 0, sB3 = 0, sa0 = 0, sa1 = 0, sa2 = 0, sa3 = 0;
#pragma omp simd reduction(+ : sb, sB0, sB1, sB2, sB3, sa0, sa1, sa2, sa3)
    for (int64_t b = 0; b < Bt; ++b) {
      T dg;
      G.eval(output_pre<T, H, SFn>(Bi, bias, p, a, Bt, b), &dg);
      const T e = w[b] * dg;
      if constexpr (OutputBias) sb += e;
      unit_grad<T, SFn, HiddenBias>(p[b], a[0], Bi[0], e, sB0, sa0);
      if constexpr (H > 1) unit_grad<T, SFn, HiddenBias>(p[Bt + b], a[1], Bi[1], e, sB1, sa1);
      if constexpr (H > 2) unit_grad<T, SFn, HiddenBias>(p[2 * Bt + b], a[2], Bi[2], e, sB2, sa2);
      if constexpr (H > 3) unit_grad<T, SFn, HiddenBias>(p[3 * Bt + b], a[3], Bi[3], e, sB3, sa3);
    }
    const T sB[4] = {sB0, sB1, sB2, sB3}, sa[4] = {sa0, sa1, sa2, sa3};
    if constexpr (OutputBias) g.b[i] = sb;
    for (int h = 0; h < H; ++h) {
      g.B[i * H + h] = sB[h];
      if constexpr (HiddenBias) g.a[i * H + h] = sa[h];
    }
  }
}

// Gradients g of sum_b W_b^T phi_z(x_b) for one block of n particles z. P [n H, Bt], E [o, Bt]
// (dL/dU) and D [Bt] (dL/dS) are scratch.
template <typename T, int H, typename SFn, typename GFn>
void weighted_grad_block(const BlockArgs<T>& args, const View<T>& z, const View<T>& g, int64_t n,
                         T* P, T* E, T* D) {
  const Dims& s = args.s;
  const int64_t o = s.o, Bt = args.Bt;
  const GFn G(args.gparam);
  const T* W = args.W;
  const T zeros[H] = {};
  product(args, z.A, args.Xt, P, n * H, Bt, s.d);
  if (o == 1) {
    auto pass = z.a ? (z.b ? &single_output_pass<T, H, SFn, GFn, true, true>
                           : &single_output_pass<T, H, SFn, GFn, true, false>)
                    : (z.b ? &single_output_pass<T, H, SFn, GFn, false, true>
                           : &single_output_pass<T, H, SFn, GFn, false, false>);
    pass(G, z, g, n, Bt, W, P);
    product(args, P, args.X, g.A, n * H, s.d, Bt);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    T* __restrict p = P + i * H * Bt;
    const T* __restrict a = z.a ? z.a + i * H : zeros;
    const T* __restrict Bi = z.B + i * o * H;
    for (int64_t k = 0; k < o; ++k) {
      T* __restrict Ek = E + k * Bt;
      const T* __restrict wk = W + k * Bt;
      const T* __restrict Bk = Bi + k * H;
      const T bias = z.b ? z.b[i * o + k] : T(0);
      T sb = 0;
#pragma omp simd reduction(+ : sb)
      for (int64_t b = 0; b < Bt; ++b) {
        T dg;
        G.eval(output_pre<T, H, SFn>(Bk, bias, p, a, Bt, b), &dg);
        Ek[b] = wk[b] * dg;
        sb += Ek[b];
      }
      if (g.b) g.b[i * o + k] = sb;
      for (int h = 0; h < H; ++h) {
        const T* __restrict ph = p + h * Bt;
        const T ah = a[h];
        T sB = 0;
#pragma omp simd reduction(+ : sB)
        for (int64_t b = 0; b < Bt; ++b) sB += Ek[b] * SFn::value(ph[b] + ah);
        g.B[(i * o + k) * H + h] = sB;
      }
    }
    for (int h = 0; h < H; ++h) {
      // dL/dS_h = sum_k B_kh E_k: E_0 scaled for o = 1, else summed into D first.
      const T* __restrict dS = E;
      T scale = Bi[h];
      if (o > 1) {
#pragma omp simd
        for (int64_t b = 0; b < Bt; ++b) D[b] = Bi[h] * E[b];
        for (int64_t k = 1; k < o; ++k) {
          const T bkh = Bi[k * H + h];
          const T* __restrict Ek = E + k * Bt;
#pragma omp simd
          for (int64_t b = 0; b < Bt; ++b) D[b] += bkh * Ek[b];
        }
        dS = D;
        scale = T(1);
      }
      T* __restrict ph = p + h * Bt;
      const T ah = a[h];
      T sa = 0;
#pragma omp simd reduction(+ : sa)
      for (int64_t b = 0; b < Bt; ++b) {
        ph[b] = SFn::backprop(ph[b] + ah, scale * dS[b]);  // dL/dP
        sa += ph[b];
      }
      if (g.a) g.a[i * H + h] = sa;
    }
  }
  product(args, P, args.X, g.A, n * H, s.d, Bt);
}

// A view of kBlock particles shaped like `like` (same biases) on `data`, sized here.
template <typename T>
View<T> block_view(const Dims& s, const View<T>& like, std::vector<T>& data) {
  const int64_t nA = kBlock * s.H * s.d, na = like.a ? kBlock * s.H : 0, nB = kBlock * s.o * s.H;
  data.resize(nA + na + nB + (like.b ? kBlock * s.o : 0));
  T* p = data.data();
  return {p, like.a ? p + nA : nullptr, p + nA + na, like.b ? p + nA + na + nB : nullptr};
}

// dst = src + beta w for n particles (dst may be src): tensor j draws its w from keys[j].
template <typename T>
void perturb_block(const View<T>& src, const View<T>& dst, const Dims& s, int64_t n, double beta,
                   const uint64_t* keys, std::vector<float>& w) {
  const T bt = T(beta);
  int j = 0;
  auto add = [&](const T* from, T* to, int64_t len) {
    if (!from) return;
    w.resize(len);
    fill_normal(w.data(), len, keys[j++]);
    for (int64_t i = 0; i < len; ++i) to[i] = from[i] + bt * T(w[i]);
  };
  add(src.A, dst.A, n * s.H * s.d);
  add(src.a, dst.a, n * s.H);
  add(src.B, dst.B, n * s.o * s.H);
  add(src.b, dst.b, n * s.o);
}

// Returns sum_k g_k^2 and, given z, applies z += st g.
template <typename T>
double sq_then_step(const T* __restrict gp, T* __restrict zp, int64_t len, T st) {
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t k = 0; k < len; ++k) acc += double(gp[k]) * double(gp[k]);
  if (zp) {
#pragma omp simd
    for (int64_t k = 0; k < len; ++k) zp[k] += st * gp[k];
  }
  return acc;
}

template <typename T, int H, typename SFn, typename GFn>
double grad_block(const BlockArgs<T>& args, const View<T>& z, const View<T>& g, int64_t n,
                  const uint64_t* keys, BlockScratch<T>& scratch) {
  const Dims& s = args.s;
  const int64_t Bt = args.Bt;
  scratch.P.resize(kBlock * H * Bt);
  scratch.E.resize(s.o * Bt);
  scratch.D.resize(Bt);
  const bool keep = g.A != nullptr;
  const View<T> gb = keep ? g : block_view(s, z, scratch.grad);
  View<T> at = z;
  if (args.beta != 0.0) {
    at = block_view(s, z, scratch.noisy);
    perturb_block(z, at, s, n, args.beta, keys, scratch.w);
  }
  weighted_grad_block<T, H, SFn, GFn>(args, at, gb, n, scratch.P.data(), scratch.E.data(),
                                      scratch.D.data());
  double sq = 0;
  auto apply = [&](const T* gp, T* zp, int64_t len) {
    if (gp) sq += sq_then_step(gp, keep ? nullptr : zp, len, T(-args.step));
  };
  apply(gb.A, z.A, n * s.H * s.d);
  apply(gb.a, z.a, n * s.H);
  apply(gb.B, z.B, n * s.o * s.H);
  apply(gb.b, z.b, n * s.o);
  return sq;
}

// ---- the dense layout's pieces -------------------------------------------------------------

template <typename T, typename GFn>
void outputs_of(const GFn& G, int64_t rows, int64_t B, int64_t r0, int64_t N, const T* UT,
                const T* bias, const T* Wt, T* E, T* gb, double* fs) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t k = (r0 + r) / N;
    const T c = bias ? bias[r] : T(0);
    const T* __restrict u = UT + r * B;
    if (fs) {
      double* __restrict f = fs + k * B;
#pragma omp simd
      for (int64_t b = 0; b < B; ++b) {
        T dg;
        f[b] += G.eval(u[b] + c, &dg);
      }
    }
    if (E) {
      const T* __restrict w = Wt + k * B;
      T* e = E + r * B;  // may be u
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t b = 0; b < B; ++b) {
        T dg;
        G.eval(u[b] + c, &dg);
        e[b] = w[b] * dg;
        sum += e[b];
      }
      if (gb) gb[r] = sum;
    }
  }
}

template <typename T>
void dense_outputs(const OutputFn& g, int64_t rows, int64_t B, int64_t r0, int64_t N, const T* UT,
                   const T* bias, const T* Wt, T* E, T* gb, double* fs) {
  dispatch_nonlinearities<T>(Activation::ReLU, g, [&](auto, auto gfn) {
    outputs_of<T>(gfn, rows, B, r0, N, UT, bias, Wt, E, gb, fs);
  });
}

template <typename T, typename SFn>
void activate_of(const T* __restrict H, T* __restrict S, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) S[i] = SFn::value(H[i]);
}

template <typename T>
void dense_activate(Activation s, const T* H, T* S, int64_t len) {
  if (s == Activation::ReLU) return activate_of<T, ReLUFn<T>>(H, S, len);
  activate_of<T, TanhFn<T>>(H, S, len);
}

template <typename T, typename SFn>
void backprop_of(int64_t rows, int64_t cols, int64_t ld, const T* H, T* D, T* colsum) {
  for (int64_t j = 0; j < cols; ++j) colsum[j] = T(0);
  for (int64_t r = 0; r < rows; ++r) {
    const T* __restrict h = H + r * ld;
    T* __restrict d = D + r * ld;
    T* __restrict cs = colsum;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) {
      d[j] = SFn::backprop(h[j], d[j]);
      cs[j] += d[j];
    }
  }
}

template <typename T>
void dense_backprop(Activation s, int64_t rows, int64_t cols, int64_t ld, const T* H, T* D,
                    T* colsum) {
  if (s == Activation::ReLU) return backprop_of<T, ReLUFn<T>>(rows, cols, ld, H, D, colsum);
  backprop_of<T, TanhFn<T>>(rows, cols, ld, H, D, colsum);
}

template <typename T>
void add_noise(const T* src, const float* __restrict w, double beta, T* dst, int64_t len) {
  const T bt = T(beta);
#pragma omp simd  // dst may be src: element i only reads src[i]
  for (int64_t i = 0; i < len; ++i) dst[i] = src[i] + bt * T(w[i]);
}

template <typename T>
double dense_sq_then_step(const T* g, T* z, int64_t len, double step) {
  return sq_then_step(g, z, len, T(-step));
}

// The block kernels of (H, s, G) at compile time.
template <typename T, int H, typename SFn, typename GFn>
BlockKernels<T> kernels_of() {
  return {&feature_sum_block<T, H, SFn, GFn>, &grad_block<T, H, SFn, GFn>};
}

template <typename T, int H, typename SFn>
BlockKernels<T> with_output(OutputKind g) {
  switch (g) {
    case OutputKind::Identity: return kernels_of<T, H, SFn, IdentityOut<T>>();
    case OutputKind::Gaussian: return kernels_of<T, H, SFn, GaussianOut<T>>();
    case OutputKind::Laplace: return kernels_of<T, H, SFn, LaplaceOut<T>>();
    case OutputKind::IMQ: return kernels_of<T, H, SFn, IMQOut<T>>();
    case OutputKind::Cosine: return kernels_of<T, H, SFn, CosineOut<T>>();
    case OutputKind::Power: return kernels_of<T, H, SFn, PowerOut<T>>();
  }
  return {};
}

template <typename T, int H>
BlockKernels<T> with_activation(Activation s, OutputKind g) {
  return s == Activation::ReLU ? with_output<T, H, ReLUFn<T>>(g) : with_output<T, H, TanhFn<T>>(g);
}

template <typename T>
BlockKernels<T> blocks(int H, Activation s, OutputKind g) {
  switch (H) {
    case 1: return with_activation<T, 1>(s, g);
    case 2: return with_activation<T, 2>(s, g);
    case 3: return with_activation<T, 3>(s, g);
    case 4: return with_activation<T, 4>(s, g);
    default: return {};
  }
}

}  // namespace

#ifdef MMDFLOW_TILES
#define MMDFLOW_TILED(f) &f
#else
#define MMDFLOW_TILED(f) nullptr
#endif

// Addresses only: a constant initialiser, so no code of this path runs before it is chosen.
extern const PathKernels kKernels;
const PathKernels kKernels = {
    MMDFLOW_TILED(gemm_tiles<float>),
    MMDFLOW_TILED(gemm_tiles<double>),
    &fill_normal,
    &blocks<float>,
    &blocks<double>,
    &perturb_block<float>,
    &perturb_block<double>,
    {MMDFLOW_TILED(gemm_flags<float>), &dense_outputs<float>, &dense_activate<float>,
     &dense_backprop<float>, &add_noise<float>, &dense_sq_then_step<float>},
    {MMDFLOW_TILED(gemm_flags<double>), &dense_outputs<double>, &dense_activate<double>,
     &dense_backprop<double>, &add_noise<double>, &dense_sq_then_step<double>},
};

}  // namespace MMDFLOW_ISA_NS
}  // namespace mmdflow

#include "src/kernels/isa_target_pop.h"
