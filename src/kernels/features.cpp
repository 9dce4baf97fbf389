#include "src/kernels/features.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <type_traits>
#include <vector>

#include "src/base/random.h"
#include "src/kernels/gemm.h"
#include "src/kernels/normal.h"

namespace mmdflow {
namespace {

// Particles per block of the fused path: P for one block ([kBlock H, Bt]) stays in cache.
constexpr int64_t kBlock = kNoiseBlock;

// Chunks hold whole blocks, so noise blocks line up whatever the chunk size.
int64_t resolve_chunk(int64_t chunk, int64_t N) {
  if (chunk <= 0 || chunk >= N) return N;
  return (chunk + kBlock - 1) / kBlock * kBlock;
}

// The fused kernel's loops over inputs vectorise for a compile-time H: it takes H <= kFusedHidden
// and leaves wider particles to the generic path.
constexpr int64_t kFusedHidden = 4;

bool use_fused(Impl impl, const ParticleFamily& fam, const at::Tensor& t) {
  const bool fits = fam.hidden <= kFusedHidden;
  if (impl == Impl::Auto) return t.device().is_cpu() && fits;
  TORCH_CHECK(impl != Impl::Fused || t.device().is_cpu(), "the fused kernel runs on CPU only");
  TORCH_CHECK(impl != Impl::Fused || fits, "the fused kernel takes H <= ", kFusedHidden,
              ", got H = ", fam.hidden);
  return impl == Impl::Fused;
}

// f(integral_constant<int, H>, SFn, GFn) for the family's H and non-linearities.
template <typename T, typename F>
void dispatch_fused(const ParticleFamily& fam, F&& f) {
  dispatch_nonlinearities<T>(fam.activation, fam.out, [&](auto sfn, auto gfn) {
    switch (fam.hidden) {
      case 1: return f(std::integral_constant<int, 1>{}, sfn, gfn);
      case 2: return f(std::integral_constant<int, 2>{}, sfn, gfn);
      case 3: return f(std::integral_constant<int, 3>{}, sfn, gfn);
      case 4: return f(std::integral_constant<int, 4>{}, sfn, gfn);
      default: TORCH_CHECK(false, "the fused kernel takes H <= ", kFusedHidden);
    }
  });
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
  auto dP = activate_backprop(fam.activation, h.P, at::bmm(z.B.transpose(1, 2), E));  // [C, H, Bt]
  if (g.a.defined()) g.a.copy_(dP.sum(2));                                            // [C, H]
  g.A.copy_(at::matmul(dP, X));                                                       // [C, H, d]
}

// ---- fused CPU path --------------------------------------------------------------------------
// Particles are cut into blocks of kBlock; each thread takes whole blocks. Per block: P = A X^T
// ([n H, Bt], cache-resident) by one single-threaded product, then one pass over P per output.
// For the gradient, one pass per hidden unit then overwrites P with dL/dP and gA = dP X is a
// second product. Products run on gemm_f32 (float32 with AVX2; then nothing inside a block goes
// through ATen's dispatcher) or else on single-threaded BLAS. Partial feature sums are added in
// block order, so results do not depend on the number of threads.

struct Dims {
  int64_t H, d, o;
};

Dims dims_of(const Particles& z) { return {z.A.size(1), z.A.size(2), z.B.size(1)}; }

// Raw pointers to contiguous particles; a and b are null without biases.
template <typename T>
struct View {
  T *A, *a, *B, *b;  // [n, H, d], [n, H], [n, o, H], [n, o]

  View shift(const Dims& s, int64_t i) const {  // from particle i on
    auto at = [](T* p, int64_t k) { return p ? p + k : nullptr; };
    return {A + i * s.H * s.d, at(a, i * s.H), B + i * s.o * s.H, at(b, i * s.o)};
  }
};

template <typename T>
View<T> view_of(const Particles& z) {
  auto p = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; };
  return {p(z.A), p(z.a), p(z.B), p(z.b)};
}

// Storage for kBlock particles shaped like `like` (same biases), and its view.
template <typename T>
struct BlockBuffer {
  std::vector<T> data;
  View<T> v{};
  BlockBuffer(const Dims& s, const View<T>& like) {
    const int64_t nA = kBlock * s.H * s.d, na = like.a ? kBlock * s.H : 0, nB = kBlock * s.o * s.H;
    data.resize(nA + na + nB + (like.b ? kBlock * s.o : 0));
    T* p = data.data();
    v = {p, like.a ? p + nA : nullptr, p + nA + na, like.b ? p + nA + na + nB : nullptr};
  }
};

bool all_contiguous(const Particles& z) {
  for (const at::Tensor* t : z.tensors())
    if (!t->is_contiguous()) return false;
  return true;
}

Particles contiguous(const Particles& z) {
  Particles c;
  c.A = z.A.contiguous();
  c.B = z.B.contiguous();
  if (z.a.defined()) c.a = z.a.contiguous();
  if (z.b.defined()) c.b = z.b.contiguous();
  return c;
}

// C[m, n] = A[m, k] B[k, n], all contiguous, on the calling thread.
template <typename T>
void product(const T* A, const T* B, T* C, int64_t m, int64_t n, int64_t k) {
  if constexpr (std::is_same_v<T, float>) {
    if (gemm_f32_supported()) return gemm_f32(m, n, k, A, k, B, n, C, n);
  }
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor c = at::from_blob(C, {m, n}, opts);
  at::mm_out(c, at::from_blob(const_cast<T*>(A), {m, k}, opts),
             at::from_blob(const_cast<T*>(B), {k, n}, opts));
}

// dst = src + beta w for the n particles of global block `block` (dst may be src): tensor j of the
// block draws its w with key sub_seed(sub_seed(seed, block), j). w is scratch.
template <typename T>
void noisy_block(const View<T>& src, const View<T>& dst, const Dims& s, int64_t n,
                 const Noise& noise, int64_t block, std::vector<float>& w) {
  const uint64_t key = sub_seed(noise.seed, uint64_t(block));
  const T beta = T(noise.beta);
  uint64_t j = 0;
  auto add = [&](const T* from, T* to, int64_t len) {
    if (!from) return;
    w.resize(len);
    fill_normal(w.data(), len, sub_seed(key, j++));
    for (int64_t i = 0; i < len; ++i) to[i] = from[i] + beta * T(w[i]);
  };
  add(src.A, dst.A, n * s.H * s.d);
  add(src.a, dst.a, n * s.H);
  add(src.B, dst.B, n * s.o * s.H);
  add(src.b, dst.b, n * s.o);
}

Particles perturb_blocks(const Particles& z, const Noise& noise) {
  Particles out = contiguous(z.clone());
  const Dims s = dims_of(z);
  AT_DISPATCH_FLOATING_TYPES(z.A.scalar_type(), "perturb", [&] {
    const View<scalar_t> v = view_of<scalar_t>(out);
    std::vector<float> w;
    for (int64_t lo = 0, k = 0; lo < z.size(); lo += kBlock, ++k)
      noisy_block(v.shift(s, lo), v.shift(s, lo), s, std::min(kBlock, z.size() - lo), noise,
                  noise.block0 + k, w);
  });
  return out;
}

// u = b_k + sum_h B_kh s(P_h[b] + a_h): output k of one particle at input b, P [H, Bt].
template <typename T, int H, typename SFn>
inline T output_pre(const T* Bk, T bias, const T* P, const T* a, int64_t Bt, int64_t b) {
  T u = bias;
#pragma GCC unroll 4  // H is a constant: unrolled before vectorising over b
  for (int h = 0; h < H; ++h) u += Bk[h] * SFn::value(P[h * Bt + b] + a[h]);
  return u;
}

// fn(b0, b1) over blocks [0, nblocks) in parallel. Blocks are independent: chunks of C particles
// only bound how many run between two synchronisations.
template <typename F>
void parallel_blocks(int64_t nblocks, int64_t C, const F& fn) {
  const int64_t per_chunk = (C + kBlock - 1) / kBlock;
  for (int64_t c0 = 0; c0 < nblocks; c0 += per_chunk)
    at::parallel_for(c0, std::min(nblocks, c0 + per_chunk), 1, fn);
}

// Partial feature sums of one block of n particles: out[k, b] += sum_i G(u_ik(x_b)). H is a
// compile-time constant, so the loops over b vectorise. P [n H, Bt] is scratch.
template <typename T, int H, typename SFn, typename GFn>
void feature_sum_block(const View<T>& z, int64_t n, const Dims& s, const T* Xt /* [d, Bt] */,
                       int64_t Bt, GFn G, T* P, double* __restrict out) {
  const int64_t o = s.o;
  const T zeros[H] = {};
  product(z.A, Xt, P, n * H, Bt, s.d);
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

// Gradients g of sum_b W_b^T phi_z(x_b) for one block of n particles z. P [n H, Bt], E [o, Bt]
// (dL/dU) and D [Bt] (dL/dS) are scratch.
template <typename T, int H, typename SFn, typename GFn>
void weighted_grad_block(const View<T>& z, const View<T>& g, int64_t n, const Dims& s,
                         const T* X /* [Bt, d] */, const T* Xt /* [d, Bt] */,
                         const T* W /* [o, Bt] */, int64_t Bt, GFn G, T* P, T* E, T* D) {
  const int64_t o = s.o;
  const T zeros[H] = {};
  product(z.A, Xt, P, n * H, Bt, s.d);
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
  product(P, X, g.A, n * H, s.d, Bt);
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

}  // namespace

at::Tensor feature_sum(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                       int64_t chunk, Impl impl) {
  check_inputs(fam, z, X);
  const int64_t N = z.size(), C = resolve_chunk(chunk, N);
  if (!use_fused(impl, fam, X)) {
    at::Tensor sum = at::zeros({X.size(0), fam.outputs}, X.options());
    for (int64_t lo = 0; lo < N; lo += C)
      sum += feature_sum_generic(fam, z.slice(lo, std::min(N, lo + C)), X);
    return sum;
  }
  const at::Tensor Xt = X.t().contiguous();
  const Particles zc = contiguous(z);
  const Dims s = dims_of(z);
  const int64_t o = s.o, Bt = X.size(0), nblocks = (N + kBlock - 1) / kBlock;
  std::vector<double> part(nblocks * o * Bt, 0.0);
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "feature_sum", [&] {
    dispatch_fused<scalar_t>(fam, [&](auto hc, auto sfn, auto gfn) {
      constexpr int kH = decltype(hc)::value;
      using SFn = decltype(sfn);
      const View<scalar_t> v = view_of<scalar_t>(zc);
      const scalar_t* xt = Xt.data_ptr<scalar_t>();
      parallel_blocks(nblocks, C, [&](int64_t b0, int64_t b1) {
        std::vector<scalar_t> P(kBlock * s.H * Bt);
        for (int64_t blk = b0; blk < b1; ++blk) {
          const int64_t lo = blk * kBlock, n = std::min(N - lo, kBlock);
          feature_sum_block<scalar_t, kH, SFn>(v.shift(s, lo), n, s, xt, Bt, gfn, P.data(),
                                               part.data() + blk * o * Bt);
        }
      });
    });
  });
  at::Tensor acc = at::zeros({o, Bt}, at::TensorOptions().dtype(at::kDouble));
  double* sum = acc.data_ptr<double>();
  for (int64_t blk = 0; blk < nblocks; ++blk)
    for (int64_t i = 0; i < o * Bt; ++i) sum[i] += part[blk * o * Bt + i];
  return acc.t().to(X.scalar_type());
}

Particles perturb(const Particles& z, const Noise& noise) {
  if (z.A.device().is_cpu()) return perturb_blocks(z, noise);
  // A device generator draws for all particles at once: a shard keys its draw by its first block.
  at::Generator gen = make_generator(
      z.A.device(), noise.block0 == 0 ? noise.seed : sub_seed(noise.seed, uint64_t(noise.block0)));
  Particles out = z.clone();
  for (at::Tensor* t : out.tensors())
    t->add_(at::normal(0.0, 1.0, t->sizes(), gen, t->options().dtype(at::kFloat)), noise.beta);
  return out;
}

namespace {

// The fused gradient, block by block, in parallel, at z + beta w when noise.beta > 0. With `g`
// (shaped like z) each block's gradient is stored there; without, it is applied at once,
// z_blk -= step g_blk, and never stored whole. z is contiguous. sq[blk] receives the block's sum
// of squared gradient coordinates.
void fused_grad(const ParticleFamily& fam, Particles& z, const at::Tensor& X, const at::Tensor& W,
                int64_t C, const Noise& noise, Particles* g, double step, std::vector<double>& sq) {
  const int64_t N = z.size(), nblocks = (N + kBlock - 1) / kBlock, Bt = X.size(0);
  const Dims s = dims_of(z);
  sq.assign(nblocks, 0.0);
  const at::Tensor Xc = X.contiguous(), Xt = X.t().contiguous(), Wt = W.t().contiguous();
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "weighted_grad", [&] {
    using T = scalar_t;
    dispatch_fused<T>(fam, [&](auto hc, auto sfn, auto gfn) {
      constexpr int kH = decltype(hc)::value;
      using SFn = decltype(sfn);
      const View<T> zv = view_of<T>(z);
      const View<T> gv = g ? view_of<T>(*g) : View<T>{};
      parallel_blocks(nblocks, C, [&](int64_t b0, int64_t b1) {
        std::vector<T> P(kBlock * s.H * Bt), E(s.o * Bt), D(Bt);
        std::vector<float> w;
        BlockBuffer<T> noisy(s, zv), grad(s, zv);
        for (int64_t blk = b0; blk < b1; ++blk) {
          const int64_t lo = blk * kBlock, n = std::min(N - lo, kBlock);
          const View<T> zb = zv.shift(s, lo);
          const View<T> gb = g ? gv.shift(s, lo) : grad.v;
          if (noise.beta != 0.0) noisy_block(zb, noisy.v, s, n, noise, noise.block0 + blk, w);
          weighted_grad_block<T, kH, SFn>(noise.beta != 0.0 ? noisy.v : zb, gb, n, s,
                                          Xc.data_ptr<T>(), Xt.data_ptr<T>(), Wt.data_ptr<T>(), Bt,
                                          gfn, P.data(), E.data(), D.data());
          auto apply = [&](const T* gp, T* zp, int64_t len) {
            if (gp) sq[blk] += sq_then_step(gp, g ? nullptr : zp, len, T(-step));
          };
          apply(gb.A, zb.A, n * s.H * s.d);
          apply(gb.a, zb.a, n * s.H);
          apply(gb.B, zb.B, n * s.o * s.H);
          apply(gb.b, zb.b, n * s.o);
        }
      });
    });
  });
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

Particles weighted_grad(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                        const at::Tensor& W, int64_t chunk, Impl impl, const Noise& noise) {
  check_inputs(fam, z, X, W);
  const int64_t N = z.size(), C = resolve_chunk(chunk, N);
  Particles g = empty_like(z);
  if (!use_fused(impl, fam, X)) {
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
  Particles zc = contiguous(z);  // only read: fused_grad is given g
  fused_grad(fam, zc, X, W, C, noise, &g, 0.0, sq);
  return g;
}

at::Tensor descend(const ParticleFamily& fam, Particles& z, const at::Tensor& X,
                   const at::Tensor& W, double step, int64_t chunk, Impl impl, const Noise& noise) {
  if (!use_fused(impl, fam, X)) {
    Particles g = weighted_grad(fam, z, X, W, chunk, impl, noise);
    auto gt = g.tensors();
    auto zt = z.tensors();
    for (size_t i = 0; i < zt.size(); ++i) zt[i]->add_(*gt[i], -step);
    return mean_sq_norm(g);
  }
  check_inputs(fam, z, X, W);
  TORCH_CHECK(all_contiguous(z), "descend updates the particles in place: they must be contiguous");
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
        activate_backprop(fam.activation, h.P, gp * zc.B.transpose(1, 2)).reshape({-1, Bt});
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
