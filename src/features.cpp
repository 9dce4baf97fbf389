#include "src/features.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "src/device.h"
#include "src/normal.h"

namespace mmdflow {
namespace {

// Particles per block of the fused path: P for one block ([kBlock H, Bt]) stays in cache.
constexpr int64_t kBlock = kNoiseBlock;

// Chunks hold whole blocks, so noise blocks line up whatever the chunk size.
int64_t resolve_chunk(int64_t chunk, int64_t N) {
  if (chunk <= 0 || chunk >= N) return N;
  return (chunk + kBlock - 1) / kBlock * kBlock;
}

// z + beta w for particles [0, n) of z, the first of which is global block `first_block`.
// Tensor j of block k draws its w from fill_normal with key sub_seed(sub_seed(seed, k), j).
Particles perturb_blocks(const Particles& z, const Noise& noise, int64_t first_block) {
  Particles out = z.clone();
  const int64_t n = z.size();
  std::vector<float> w;
  for (int64_t lo = 0, k = first_block; lo < n; lo += kBlock, ++k) {
    const uint64_t block_key = sub_seed(noise.seed, uint64_t(k));
    Particles blk = out.slice(lo, std::min(n, lo + kBlock));
    uint64_t j = 0;
    for (at::Tensor* t : blk.tensors()) {
      const int64_t len = t->numel();
      w.resize(len);
      fill_normal(w.data(), len, sub_seed(block_key, j++));
      AT_DISPATCH_FLOATING_TYPES(t->scalar_type(), "perturb", [&] {
        scalar_t* p = t->data_ptr<scalar_t>();  // contiguous: a clone's slice of whole particles
        const scalar_t beta = scalar_t(noise.beta);
        for (int64_t i = 0; i < len; ++i) p[i] += beta * scalar_t(w[i]);
      });
    }
  }
  return out;
}

bool use_fused(Impl impl, const at::Tensor& t) {
  if (impl == Impl::Auto) return t.device().is_cpu();
  TORCH_CHECK(impl != Impl::Fused || t.device().is_cpu(), "the fused kernel runs on CPU only");
  return impl == Impl::Fused;
}

void check_inputs(const ParticleFamily& fam, const Particles& z, const at::Tensor& X) {
  TORCH_CHECK(X.dim() == 2 && X.size(1) == fam.dim, "X must be [Bt, ", fam.dim, "], got ",
              X.sizes());
  TORCH_CHECK(z.A.scalar_type() == X.scalar_type(), "particles are ", z.A.scalar_type(),
              " but X is ", X.scalar_type());
}

void check_inputs(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                  const at::Tensor& W) {
  check_inputs(fam, z, X);
  TORCH_CHECK(W.dim() == 2 && W.size(0) == X.size(0) && W.size(1) == fam.outputs, "W must be [",
              X.size(0), ", ", fam.outputs, "], got ", W.sizes());
}

// ---- generic path: ATen ops on [C, H, Bt] tensors -------------------------------------------

struct Hidden {
  at::Tensor P;  // [C, H, Bt] pre-activations
  at::Tensor S;  // [C, H, Bt]
  at::Tensor U;  // [C, o, Bt]
};

Hidden hidden_generic(const ParticleFamily& fam, const Particles& z, const at::Tensor& X) {
  Hidden h;
  h.P = at::matmul(z.A, X.t());
  if (z.a.defined()) h.P = h.P + z.a.unsqueeze(2);
  h.S = activate(fam.activation, h.P);
  h.U = at::bmm(z.B, h.S);
  if (z.b.defined()) h.U = h.U + z.b.unsqueeze(2);
  return h;
}

at::Tensor feature_sum_generic(const ParticleFamily& fam, const Particles& z, const at::Tensor& X) {
  return output(fam.out, hidden_generic(fam, z, X).U).sum(0).t();  // [Bt, o]
}

void weighted_grad_generic(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                           const at::Tensor& W, Particles& g) {
  Hidden h = hidden_generic(fam, z, X);
  auto E = output_grad(fam.out, h.U) * W.t().unsqueeze(0);  // [C, o, Bt] dL/dU
  g.B.copy_(at::bmm(E, h.S.transpose(1, 2)));               // [C, o, H]
  if (g.b.defined()) g.b.copy_(E.sum(2));                   // [C, o]
  auto dP = at::bmm(z.B.transpose(1, 2), E) * activate_grad(fam.activation, h.P);  // [C, H, Bt]
  if (g.a.defined()) g.a.copy_(dP.sum(2));                                         // [C, H]
  g.A.copy_(at::matmul(dP, X));                                                    // [C, H, d]
}

// ---- fused CPU path --------------------------------------------------------------------------
// Particles are cut into blocks of kBlock; each thread takes whole blocks. Per block: P = A X^T by
// a single-threaded BLAS product ([kBlock H, Bt], cache-resident), then one pass for the
// per-particle part (H, o small). For the gradient, dP overwrites P in place and gA = dP X is a
// second BLAS product. Partial feature sums are added in block order, so results do not depend
// on the number of threads.

struct Raw {  // contiguous views of one chunk's particles
  at::Tensor A, a, B, b;
  explicit Raw(const Particles& z)
      : A(z.A.contiguous()),
        a(z.a.defined() ? z.a.contiguous() : at::Tensor()),
        B(z.B.contiguous()),
        b(z.b.defined() ? z.b.contiguous() : at::Tensor()) {}
  template <typename T>
  static const T* ptr(const at::Tensor& t) {
    return t.defined() ? t.data_ptr<T>() : nullptr;
  }
};

// S[h, b] = s(P[h, b] + a_h) for one particle; P gets the full pre-activation.
template <typename T, typename SFn>
inline void hidden_pass(T* __restrict pn, const T* __restrict an, T* __restrict S, int64_t H,
                        int64_t Bt) {
  for (int64_t h = 0; h < H; ++h) {
    const T ah = an ? an[h] : T(0);
    T* __restrict ph = pn + h * Bt;
    T* __restrict sh = S + h * Bt;
#pragma omp simd
    for (int64_t b = 0; b < Bt; ++b) {
      ph[b] += ah;
      sh[b] = SFn::value(ph[b]);
    }
  }
}

// U[b] = B_k . S[:, b] + b_k for output k of one particle.
template <typename T>
inline void output_pre(const T* __restrict Bk, T bias, const T* __restrict S, T* __restrict U,
                       int64_t H, int64_t Bt) {
#pragma omp simd
  for (int64_t b = 0; b < Bt; ++b) U[b] = bias;
  for (int64_t h = 0; h < H; ++h) {
    const T w = Bk[h];
    const T* __restrict sh = S + h * Bt;
#pragma omp simd
    for (int64_t b = 0; b < Bt; ++b) U[b] += w * sh[b];
  }
}

template <typename T, typename SFn, typename GFn>
void feature_sum_block(const Raw& z, const at::Tensor& Xt, int64_t lo, int64_t hi, int64_t H,
                       int64_t o, GFn G, double* __restrict out /* [o, Bt] */) {
  const int64_t Bt = Xt.size(1), n = hi - lo;
  at::Tensor P = at::mm(z.A.narrow(0, lo, n).view({n * H, -1}), Xt);  // [n H, Bt]
  T* p = P.data_ptr<T>();
  const T* av = Raw::ptr<T>(z.a);
  const T* Bw = Raw::ptr<T>(z.B);
  const T* bv = Raw::ptr<T>(z.b);
  std::vector<T> S(H * Bt), U(Bt);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t gi = lo + i;
    hidden_pass<T, SFn>(p + i * H * Bt, av ? av + gi * H : nullptr, S.data(), H, Bt);
    for (int64_t k = 0; k < o; ++k) {
      output_pre<T>(Bw + (gi * o + k) * H, bv ? bv[gi * o + k] : T(0), S.data(), U.data(), H, Bt);
      double* __restrict ok = out + k * Bt;
#pragma omp simd
      for (int64_t b = 0; b < Bt; ++b) {
        T dg;
        ok[b] += G.eval(U[b], &dg);
      }
    }
  }
}

// Gradients for one block: zb holds the block's (possibly noisy) particles, gb its gradients.
template <typename T, typename SFn, typename GFn>
void weighted_grad_block(const Raw& zb, const at::Tensor& X, const at::Tensor& Xt,
                         const T* __restrict w /* [o, Bt] */, int64_t H, int64_t o, GFn G,
                         Particles& g) {
  const int64_t Bt = X.size(0), d = X.size(1), n = zb.A.size(0);
  at::Tensor P = at::mm(zb.A.view({n * H, d}), Xt);  // [n H, Bt], becomes dP
  T* p = P.data_ptr<T>();
  const T* av = Raw::ptr<T>(zb.a);
  const T* Bw = Raw::ptr<T>(zb.B);
  const T* bv = Raw::ptr<T>(zb.b);
  T* gB = g.B.data_ptr<T>();  // contiguous: allocated by weighted_grad
  T* gb = g.b.defined() ? g.b.data_ptr<T>() : nullptr;
  T* ga = g.a.defined() ? g.a.data_ptr<T>() : nullptr;
  std::vector<T> Sv(H * Bt), Ev(o * Bt), Uv(Bt), Dv(Bt);
  T* __restrict S = Sv.data();
  T* __restrict E = Ev.data();
  T* __restrict U = Uv.data();
  T* __restrict D = Dv.data();
  for (int64_t i = 0; i < n; ++i) {
    T* __restrict pn = p + i * H * Bt;
    hidden_pass<T, SFn>(pn, av ? av + i * H : nullptr, S, H, Bt);
    for (int64_t k = 0; k < o; ++k) {
      const T* Bk = Bw + (i * o + k) * H;
      output_pre<T>(Bk, bv ? bv[i * o + k] : T(0), S, U, H, Bt);
      T* __restrict Ek = E + k * Bt;
      const T* __restrict wk = w + k * Bt;
#pragma omp simd
      for (int64_t b = 0; b < Bt; ++b) {
        T dg;
        G.eval(U[b], &dg);
        Ek[b] = wk[b] * dg;  // dL/dU
      }
      if (gb) {
        T sb = 0;
#pragma omp simd reduction(+ : sb)
        for (int64_t b = 0; b < Bt; ++b) sb += Ek[b];
        gb[i * o + k] = sb;
      }
      for (int64_t h = 0; h < H; ++h) {
        const T* __restrict sh = S + h * Bt;
        T s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t b = 0; b < Bt; ++b) s += Ek[b] * sh[b];
        gB[(i * o + k) * H + h] = s;
      }
    }
    for (int64_t h = 0; h < H; ++h) {
      T* __restrict ph = pn + h * Bt;
#pragma omp simd
      for (int64_t b = 0; b < Bt; ++b) D[b] = Bw[(i * o) * H + h] * E[b];
      for (int64_t k = 1; k < o; ++k) {
        const T bkh = Bw[(i * o + k) * H + h];
        const T* __restrict Ek = E + k * Bt;
#pragma omp simd
        for (int64_t b = 0; b < Bt; ++b) D[b] += bkh * Ek[b];
      }
      T sa = 0;
#pragma omp simd reduction(+ : sa)
      for (int64_t b = 0; b < Bt; ++b) {
        ph[b] = SFn::backprop(ph[b], D[b]);  // dL/dP
        sa += ph[b];
      }
      if (ga) ga[i * H + h] = sa;
    }
  }
  at::Tensor gA = g.A.view({n * H, d});
  at::mm_out(gA, P, X);  // [n H, d]
}

Particles empty_like(const Particles& z) {
  Particles g;
  g.A = at::empty(z.A.sizes(), z.A.options());
  g.B = at::empty(z.B.sizes(), z.B.options());
  if (z.a.defined()) g.a = at::empty(z.a.sizes(), z.a.options());
  if (z.b.defined()) g.b = at::empty(z.b.sizes(), z.b.options());
  return g;
}

}  // namespace

at::Tensor feature_sum(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                       int64_t chunk, Impl impl) {
  check_inputs(fam, z, X);
  const int64_t N = z.size(), C = resolve_chunk(chunk, N);
  if (!use_fused(impl, X)) {
    at::Tensor sum = at::zeros({X.size(0), fam.outputs}, X.options());
    for (int64_t lo = 0; lo < N; lo += C)
      sum += feature_sum_generic(fam, z.slice(lo, std::min(N, lo + C)), X);
    return sum;
  }
  at::Tensor Xt = X.t().contiguous();
  const int64_t o = fam.outputs, Bt = X.size(0);
  std::vector<double> acc(o * Bt, 0.0);
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "feature_sum", [&] {
    dispatch_nonlinearities<scalar_t>(fam.activation, fam.out, [&](auto s, auto g) {
      using SFn = decltype(s);
      for (int64_t lo = 0; lo < N; lo += C) {
        const int64_t n = std::min(N, lo + C) - lo, nblocks = (n + kBlock - 1) / kBlock;
        Raw raw(z.slice(lo, lo + n));
        std::vector<double> part(nblocks * o * Bt, 0.0);
        at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
          for (int64_t blk = b0; blk < b1; ++blk)
            feature_sum_block<scalar_t, SFn>(raw, Xt, blk * kBlock, std::min(n, (blk + 1) * kBlock),
                                             fam.hidden, o, g, part.data() + blk * o * Bt);
        });
        for (int64_t blk = 0; blk < nblocks; ++blk)
          for (int64_t i = 0; i < o * Bt; ++i) acc[i] += part[blk * o * Bt + i];
      }
    });
  });
  return at::from_blob(acc.data(), {o, Bt}, at::TensorOptions().dtype(at::kDouble))
      .t()
      .to(X.scalar_type(), /*non_blocking=*/false, /*copy=*/true);  // acc dies here
}

Particles perturb(const Particles& z, const Noise& noise) {
  if (z.A.device().is_cpu()) return perturb_blocks(z, noise, 0);
  at::Generator gen = make_generator(z.A.device(), noise.seed);
  Particles out = z.clone();
  for (at::Tensor* t : out.tensors())
    t->add_(at::normal(0.0, 1.0, t->sizes(), gen, t->options().dtype(at::kFloat)), noise.beta);
  return out;
}

namespace {

// The fused gradient, block by block, in parallel. With `g` (shaped like z) each block's
// gradient is stored there; without, it is applied at once, z_blk -= step g_blk, and never
// stored whole. sq[blk] receives the block's sum of squared gradient coordinates.
void fused_grad(const ParticleFamily& fam, Particles& z, const at::Tensor& X, const at::Tensor& W,
                int64_t C, const Noise& noise, Particles* g, double step, std::vector<double>& sq) {
  const int64_t N = z.size(), nblocks = (N + kBlock - 1) / kBlock;
  sq.assign(nblocks, 0.0);
  at::Tensor Xc = X.contiguous(), Xt = X.t().contiguous(), Wt = W.t().contiguous();
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "weighted_grad", [&] {
    dispatch_nonlinearities<scalar_t>(fam.activation, fam.out, [&](auto s, auto gfn) {
      using SFn = decltype(s);
      // Blocks are independent: chunks only bound how many run between two synchronisations.
      const int64_t per_chunk = (C + kBlock - 1) / kBlock;
      for (int64_t c0 = 0; c0 < nblocks; c0 += per_chunk) {
        const int64_t c1 = std::min(nblocks, c0 + per_chunk);
        at::parallel_for(c0, c1, 1, [&](int64_t b0, int64_t b1) {
          for (int64_t blk = b0; blk < b1; ++blk) {
            const int64_t lo = blk * kBlock, hi = std::min(N, lo + kBlock);
            Particles zb = z.slice(lo, hi);
            Particles gb = g ? g->slice(lo, hi) : empty_like(zb);
            weighted_grad_block<scalar_t, SFn>(
                Raw(noise.beta != 0.0 ? perturb_blocks(zb, noise, blk) : zb), Xc, Xt,
                Wt.data_ptr<scalar_t>(), fam.hidden, fam.outputs, gfn, gb);
            auto gt = gb.tensors();
            auto zt = zb.tensors();
            for (size_t i = 0; i < gt.size(); ++i) {  // raw loops: no ATen dispatch per block
              const scalar_t* gp = gt[i]->data_ptr<scalar_t>();
              scalar_t* zp = zt[i]->data_ptr<scalar_t>();  // contiguous: slices of whole blocks
              const int64_t len = gt[i]->numel();
              const scalar_t st = scalar_t(-step);
              double acc = 0;
              _Pragma("omp simd reduction(+ : acc)")  // (inside a macro argument)
                  for (int64_t k = 0; k < len; ++k) acc += double(gp[k]) * double(gp[k]);
              sq[blk] += acc;
              if (!g) {
                _Pragma("omp simd") for (int64_t k = 0; k < len; ++k) zp[k] += st * gp[k];
              }
            }
          }
        });
      }
    });
  });
}

}  // namespace

Particles weighted_grad(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                        const at::Tensor& W, int64_t chunk, Impl impl, const Noise& noise) {
  check_inputs(fam, z, X, W);
  const int64_t N = z.size(), C = resolve_chunk(chunk, N);
  Particles g = empty_like(z);
  if (!use_fused(impl, X)) {
    // Noise is drawn once for all particles, so chunks see the same w as a whole step.
    const Particles zn = noise.beta != 0.0 ? perturb(z, noise) : z;
    for (int64_t lo = 0; lo < N; lo += C) {
      const int64_t hi = std::min(N, lo + C);
      Particles gc = g.slice(lo, hi);
      weighted_grad_generic(fam, zn.slice(lo, hi), X, W, gc);
    }
    return g;
  }
  std::vector<double> sq;
  Particles zv = z;  // handles: fused_grad only reads z when it is given g
  fused_grad(fam, zv, X, W, C, noise, &g, 0.0, sq);
  return g;
}

at::Tensor descend(const ParticleFamily& fam, Particles& z, const at::Tensor& X,
                   const at::Tensor& W, double step, int64_t chunk, Impl impl, const Noise& noise) {
  if (!use_fused(impl, X)) {
    Particles g = weighted_grad(fam, z, X, W, chunk, impl, noise);
    auto gt = g.tensors();
    auto zt = z.tensors();
    for (size_t i = 0; i < zt.size(); ++i) zt[i]->add_(*gt[i], -step);
    return mean_sq_norm(g);
  }
  check_inputs(fam, z, X, W);
  std::vector<double> sq;
  fused_grad(fam, z, X, W, resolve_chunk(chunk, z.size()), noise, nullptr, step, sq);
  double total = 0;
  for (double v : sq) total += v;  // block order: independent of the thread count
  // float64: a diverging run must reach its non-finite check, not fail converting to float32.
  return at::scalar_tensor(total / double(z.size()), X.options().dtype(at::kDouble));
}

at::Tensor jacobian_gram(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                         int64_t chunk) {
  check_inputs(fam, z, X);
  TORCH_CHECK(fam.outputs == 1, "the Jacobian Gram needs o = 1, got o = ", fam.outputs);
  const int64_t N = z.size(), C = resolve_chunk(chunk, N), Bt = X.size(0);
  at::Tensor kx = at::mm(X, X.t());  // <grad_A, grad_A'> = (.) x_b . x_b'
  if (z.a.defined()) kx = kx + 1;
  at::Tensor gram = at::zeros({Bt, Bt}, X.options());
  for (int64_t lo = 0; lo < N; lo += C) {
    const Particles zc = z.slice(lo, std::min(N, lo + C));
    Hidden h = hidden_generic(fam, zc, X);
    at::Tensor gp = output_grad(fam.out, h.U);  // [C, 1, Bt] G'
    // d phi / d(A_h x + a_h) = G' B_h s'(P_h) and d phi / d B_h = G' s(P_h): [C, H, Bt] each.
    at::Tensor dA =
        (gp * zc.B.transpose(1, 2) * activate_grad(fam.activation, h.P)).reshape({-1, Bt});
    at::Tensor dB = (gp * h.S).reshape({-1, Bt});
    gram += at::mm(dA.t(), dA) * kx + at::mm(dB.t(), dB);
    if (z.b.defined()) gram += at::mm(gp.squeeze(1).t(), gp.squeeze(1));
  }
  return gram;
}

at::Tensor mean_sq_norm(const Particles& g) {
  at::Tensor total = at::zeros({}, g.A.options());
  for (const at::Tensor* t : g.tensors()) total = total + t->square().sum();
  return total / g.size();
}

double first_layer_flops(const ParticleFamily& fam, int64_t N, int64_t Bt) {
  return 2.0 * double(N) * double(fam.hidden) * double(fam.dim) * double(Bt);
}

}  // namespace mmdflow
