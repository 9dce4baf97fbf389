#include "src/features.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

namespace mmdflow {
namespace {

// Particles per block of the fused forward: partial sums are formed per block and added in
// block order, so feature_sum does not depend on the number of threads.
constexpr int64_t kBlock = 32;

int64_t resolve_chunk(int64_t chunk, int64_t N) { return chunk > 0 ? std::min(chunk, N) : N; }

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
  auto E = output_grad(fam.out, h.U) * W.t().unsqueeze(0);   // [C, o, Bt] dL/dU
  g.B.copy_(at::bmm(E, h.S.transpose(1, 2)));               // [C, o, H]
  if (g.b.defined()) g.b.copy_(E.sum(2));                   // [C, o]
  auto dP = at::bmm(z.B.transpose(1, 2), E) * activate_grad(fam.activation, h.P);  // [C, H, Bt]
  if (g.a.defined()) g.a.copy_(dP.sum(2));                  // [C, H]
  g.A.copy_(at::matmul(dP, X));                             // [C, H, d]
}

// ---- fused CPU path --------------------------------------------------------------------------
// P = A X^T by BLAS ([C H, Bt]); the per-particle part (H, o small) in one pass over P; for the
// gradient, dP overwrites P in place and gA = dP X is a second BLAS product.

template <typename T, typename SFn, typename GFn>
void feature_sum_fused(const ParticleFamily& fam, const Particles& z, const at::Tensor& Xt,
                       SFn, GFn G, at::Tensor& acc /* [o, Bt] double */) {
  const int64_t C = z.size(), H = fam.hidden, o = fam.outputs, Bt = Xt.size(1);
  at::Tensor P = at::mm(z.A.reshape({C * H, fam.dim}), Xt);  // [C H, Bt]
  const T* p = P.data_ptr<T>();
  at::Tensor Bc = z.B.contiguous();
  const T* Bw = Bc.data_ptr<T>();
  at::Tensor ac = z.a.defined() ? z.a.contiguous() : at::Tensor();
  at::Tensor bc = z.b.defined() ? z.b.contiguous() : at::Tensor();
  const T* av = ac.defined() ? ac.data_ptr<T>() : nullptr;
  const T* bv = bc.defined() ? bc.data_ptr<T>() : nullptr;
  const int64_t nblocks = (C + kBlock - 1) / kBlock;
  std::vector<double> part(nblocks * o * Bt, 0.0);
  at::parallel_for(0, nblocks, 1, [&](int64_t blo, int64_t bhi) {
    std::vector<T> S(H * Bt), U(Bt);
    for (int64_t blk = blo; blk < bhi; ++blk) {
      double* out = part.data() + blk * o * Bt;
      for (int64_t n = blk * kBlock; n < std::min(C, (blk + 1) * kBlock); ++n) {
        const T* pn = p + n * H * Bt;
        for (int64_t h = 0; h < H; ++h) {
          const T ah = av ? av[n * H + h] : T(0);
          for (int64_t b = 0; b < Bt; ++b) S[h * Bt + b] = SFn::value(pn[h * Bt + b] + ah);
        }
        for (int64_t k = 0; k < o; ++k) {
          const T* Bk = Bw + (n * o + k) * H;
          const T bias = bv ? bv[n * o + k] : T(0);
          for (int64_t b = 0; b < Bt; ++b) U[b] = bias;
          for (int64_t h = 0; h < H; ++h)
            for (int64_t b = 0; b < Bt; ++b) U[b] += Bk[h] * S[h * Bt + b];
          T dg;
          for (int64_t b = 0; b < Bt; ++b) out[k * Bt + b] += G.eval(U[b], &dg);
        }
      }
    }
  });
  double* a = acc.data_ptr<double>();
  for (int64_t blk = 0; blk < nblocks; ++blk)
    for (int64_t i = 0; i < o * Bt; ++i) a[i] += part[blk * o * Bt + i];
}

template <typename T, typename SFn, typename GFn>
void weighted_grad_fused(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                         const at::Tensor& Xt, const at::Tensor& Wt /* [o, Bt] */, SFn, GFn G,
                         Particles& g) {
  const int64_t C = z.size(), H = fam.hidden, o = fam.outputs, d = fam.dim, Bt = X.size(0);
  at::Tensor P = at::mm(z.A.reshape({C * H, d}), Xt);  // [C H, Bt], becomes dP
  T* p = P.data_ptr<T>();
  at::Tensor Bc = z.B.contiguous();
  const T* Bw = Bc.data_ptr<T>();
  at::Tensor ac = z.a.defined() ? z.a.contiguous() : at::Tensor();
  at::Tensor bc = z.b.defined() ? z.b.contiguous() : at::Tensor();
  const T* av = ac.defined() ? ac.data_ptr<T>() : nullptr;
  const T* bv = bc.defined() ? bc.data_ptr<T>() : nullptr;
  const T* w = Wt.data_ptr<T>();
  T* gB = g.B.data_ptr<T>();  // contiguous: allocated by weighted_grad
  T* gb = g.b.defined() ? g.b.data_ptr<T>() : nullptr;
  T* ga = g.a.defined() ? g.a.data_ptr<T>() : nullptr;
  at::parallel_for(0, C, 16, [&](int64_t lo, int64_t hi) {
    std::vector<T> S(H * Bt), E(o * Bt), U(Bt);
    for (int64_t n = lo; n < hi; ++n) {
      T* pn = p + n * H * Bt;
      for (int64_t h = 0; h < H; ++h) {
        const T ah = av ? av[n * H + h] : T(0);
        T* ph = pn + h * Bt;
        for (int64_t b = 0; b < Bt; ++b) {
          ph[b] += ah;  // P now holds the full pre-activation
          S[h * Bt + b] = SFn::value(ph[b]);
        }
      }
      for (int64_t k = 0; k < o; ++k) {
        const T* Bk = Bw + (n * o + k) * H;
        const T bias = bv ? bv[n * o + k] : T(0);
        for (int64_t b = 0; b < Bt; ++b) U[b] = bias;
        for (int64_t h = 0; h < H; ++h)
          for (int64_t b = 0; b < Bt; ++b) U[b] += Bk[h] * S[h * Bt + b];
        T* Ek = E.data() + k * Bt;
        const T* wk = w + k * Bt;
        T sb = 0;
        for (int64_t b = 0; b < Bt; ++b) {
          T dg;
          G.eval(U[b], &dg);
          Ek[b] = wk[b] * dg;  // dL/dU
          sb += Ek[b];
        }
        if (gb) gb[n * o + k] = sb;
        for (int64_t h = 0; h < H; ++h) {
          T s = 0;
          for (int64_t b = 0; b < Bt; ++b) s += Ek[b] * S[h * Bt + b];
          gB[(n * o + k) * H + h] = s;
        }
      }
      for (int64_t h = 0; h < H; ++h) {
        T* ph = pn + h * Bt;
        T sa = 0;
        for (int64_t b = 0; b < Bt; ++b) {
          T ds = 0;
          for (int64_t k = 0; k < o; ++k) ds += Bw[(n * o + k) * H + h] * E[k * Bt + b];
          ph[b] = ds * SFn::grad(ph[b]);  // dL/dP
          sa += ph[b];
        }
        if (ga) ga[n * H + h] = sa;
      }
    }
  });
  at::Tensor gA = g.A.view({C * H, d});
  at::mm_out(gA, P, X);  // [C H, d]
}

Particles zeros_like(const Particles& z) {
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
  at::Tensor acc = at::zeros({fam.outputs, X.size(0)}, X.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "feature_sum", [&] {
    dispatch_nonlinearities<scalar_t>(fam.activation, fam.out, [&](auto s, auto g) {
      for (int64_t lo = 0; lo < N; lo += C)
        feature_sum_fused<scalar_t>(fam, z.slice(lo, std::min(N, lo + C)), Xt, s, g, acc);
    });
  });
  return acc.t().to(X.scalar_type());
}

Particles weighted_grad(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                        const at::Tensor& W, int64_t chunk, Impl impl) {
  check_inputs(fam, z, X);
  TORCH_CHECK(W.dim() == 2 && W.size(0) == X.size(0) && W.size(1) == fam.outputs,
              "W must be [", X.size(0), ", ", fam.outputs, "], got ", W.sizes());
  const int64_t N = z.size(), C = resolve_chunk(chunk, N);
  Particles g = zeros_like(z);
  if (!use_fused(impl, X)) {
    for (int64_t lo = 0; lo < N; lo += C) {
      const int64_t hi = std::min(N, lo + C);
      Particles gc = g.slice(lo, hi);
      weighted_grad_generic(fam, z.slice(lo, hi), X, W, gc);
    }
    return g;
  }
  at::Tensor Xc = X.contiguous(), Xt = X.t().contiguous(), Wt = W.t().contiguous();
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "weighted_grad", [&] {
    dispatch_nonlinearities<scalar_t>(fam.activation, fam.out, [&](auto s, auto gfn) {
      for (int64_t lo = 0; lo < N; lo += C) {
        const int64_t hi = std::min(N, lo + C);
        Particles gc = g.slice(lo, hi);
        weighted_grad_fused<scalar_t>(fam, z.slice(lo, hi), Xc, Xt, Wt, s, gfn, gc);
      }
    });
  });
  return g;
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
