#include "src/kernels/features.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/accumulate.h>

#include <type_traits>
#include <vector>

#include "src/base/random.h"
#include "src/kernels/blocks.h"

namespace mmdflow {
namespace {

// Chunks hold whole blocks, so noise blocks line up whatever the chunk size.
int64_t resolve_chunk(int64_t chunk, int64_t N) {
  if (chunk <= 0 || chunk >= N) return N;
  return (chunk + kBlock - 1) / kBlock * kBlock;
}

// The fused kernel's loops over inputs vectorise for a compile-time H: it takes H <= kFusedHidden
// and leaves wider particles to the generic path.
bool use_fused(Impl impl, const ParticleFamily& fam, const at::Tensor& t) {
  const bool fits = fam.hidden <= kFusedHidden;
  if (impl == Impl::Auto) return t.device().is_cpu() && fits;
  TORCH_CHECK(impl != Impl::Fused || t.device().is_cpu(), "the fused kernel runs on CPU only");
  TORCH_CHECK(impl != Impl::Fused || fits, "the fused kernel takes H <= ", kFusedHidden,
              ", got H = ", fam.hidden);
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
  auto dP = activate_backprop(fam.activation, h.P, at::bmm(z.B.transpose(1, 2), E));  // [C, H, Bt]
  if (g.a.defined()) g.a.copy_(dP.sum(2));                                            // [C, H]
  g.A.copy_(at::matmul(dP, X));                                                       // [C, H, d]
}

// ---- fused CPU path --------------------------------------------------------------------------
// Particles are cut into blocks of kBlock; each thread takes whole blocks and runs them on the
// active instruction-set path's block kernels (blocks.h, kernels_impl.h): per block, P = A X^T
// ([n H, Bt], cache-resident) by one single-threaded product, then one pass over P per output;
// for the gradient, one pass per hidden unit then overwrites P with dL/dP and gA = dP X is a
// second product. Products run on the path's own tiles (avx2, avx512), else on single-threaded
// BLAS through `product` below. Partial feature sums are added in block order, so results do not
// depend on the number of threads.
static_assert(kBlock == kNoiseBlock, "noise blocks are the fused kernel's blocks");

Dims dims_of(const Particles& z) { return {z.A.size(1), z.A.size(2), z.B.size(1)}; }

template <typename T>
View<T> view_of(const Particles& z) {
  auto p = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; };
  return {p(z.A), p(z.a), p(z.B), p(z.b)};
}

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

// C[m, n] = A[m, k] B[k, n], contiguous, on the calling thread, by BLAS.
template <typename T>
void blas_product(const T* A, const T* B, T* C, int64_t m, int64_t n, int64_t k) {
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor c = at::from_blob(C, {m, n}, opts);
  at::mm_out(c, at::from_blob(const_cast<T*>(A), {m, k}, opts),
             at::from_blob(const_cast<T*>(B), {k, n}, opts));
}

// The active path's kernels for the family (H <= kFusedHidden).
template <typename T>
BlockKernels<T> block_kernels(const ParticleFamily& fam) {
  const PathKernels& k = path_kernels(active_isa());
  if constexpr (std::is_same_v<T, float>) {
    return k.blocks_f32(int(fam.hidden), fam.activation, fam.out.kind);
  } else {
    return k.blocks_f64(int(fam.hidden), fam.activation, fam.out.kind);
  }
}

template <typename T>
Perturb<T> perturb_of(const PathKernels& k) {
  if constexpr (std::is_same_v<T, float>) {
    return k.perturb_f32;
  } else {
    return k.perturb_f64;
  }
}

// The noise keys of global block `block`: tensor j (of A, a, B, b present) draws from
// sub_seed(sub_seed(seed, block), j).
struct BlockKeys {
  uint64_t k[4];
  BlockKeys(uint64_t seed, int64_t block) {
    const uint64_t key = sub_seed(seed, uint64_t(block));
    for (uint64_t j = 0; j < 4; ++j) k[j] = sub_seed(key, j);
  }
};

Particles perturb_blocks(const Particles& z, const Noise& noise) {
  Particles out = contiguous(z.clone());
  const Dims s = dims_of(z);
  const PathKernels& k = path_kernels(active_isa());
  AT_DISPATCH_FLOATING_TYPES(z.A.scalar_type(), "perturb", [&] {
    const View<scalar_t> v = view_of<scalar_t>(out);
    const Perturb<scalar_t> perturb = perturb_of<scalar_t>(k);
    std::vector<float> w;
    for (int64_t lo = 0, blk = 0; lo < z.size(); lo += kBlock, ++blk)
      perturb(v.shift(s, lo), v.shift(s, lo), s, std::min(kBlock, z.size() - lo), noise.beta,
              BlockKeys(noise.seed, noise.block0 + blk).k, w);
  });
  return out;
}

// fn(b0, b1) over blocks [0, nblocks) in parallel. Blocks are independent: chunks of C particles
// only bound how many run between two synchronisations.
template <typename F>
void parallel_blocks(int64_t nblocks, int64_t C, const F& fn) {
  const int64_t per_chunk = (C + kBlock - 1) / kBlock;
  for (int64_t c0 = 0; c0 < nblocks; c0 += per_chunk)
    at::parallel_for(c0, std::min(nblocks, c0 + per_chunk), 1, fn);
}

// The fused kernel's sums per block of kBlock particles: [nblocks, o, Bt], in parallel.
at::Tensor fused_block_sums(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                            int64_t C) {
  const at::Tensor Xt = X.t().contiguous();
  const Particles zc = contiguous(z);
  const Dims s = dims_of(z);
  const int64_t N = z.size(), o = s.o, Bt = X.size(0), nblocks = (N + kBlock - 1) / kBlock;
  at::Tensor part = at::zeros({nblocks, o, Bt}, at::TensorOptions().dtype(at::kDouble));
  double* out = part.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "feature_sum", [&] {
    using T = scalar_t;
    const BlockKernels<T> kernels = block_kernels<T>(fam);
    BlockArgs<T> args{s,   Bt,  nullptr,         Xt.data_ptr<T>(), nullptr, fam.out.param,
                      0.0, 0.0, &blas_product<T>};
    const View<T> v = view_of<T>(zc);
    parallel_blocks(nblocks, C, [&](int64_t b0, int64_t b1) {
      BlockScratch<T> scratch;
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t lo = blk * kBlock, n = std::min(N - lo, kBlock);
        kernels.feature_sum(args, v.shift(s, lo), n, scratch, out + blk * o * Bt);
      }
    });
  });
  return part;
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
  const at::Tensor part = fused_block_sums(fam, z, X, C);
  const int64_t nblocks = part.size(0), n = part.size(1) * part.size(2);
  at::Tensor acc = at::zeros({part.size(1), part.size(2)}, part.options());
  const double* p = part.data_ptr<double>();
  double* sum = acc.data_ptr<double>();
  for (int64_t blk = 0; blk < nblocks; ++blk)
    for (int64_t i = 0; i < n; ++i) sum[i] += p[blk * n + i];
  return acc.t().to(X.scalar_type());
}

at::Tensor block_rows(const at::Tensor& t) {
  const int64_t n = t.size(0), nb = (n + kBlock - 1) / kBlock;
  const at::Tensor v =
      t.to(at::kDouble).contiguous().reshape({n, c10::multiply_integers(t.sizes().slice(1))});
  const int64_t E = v.size(1);
  std::vector<int64_t> shape = t.sizes().vec();
  shape[0] = nb;
  if (!v.is_cpu()) {
    at::Tensor padded = at::zeros({nb * kBlock, E}, v.options());
    padded.narrow(0, 0, n).copy_(v);
    return padded.view({nb, kBlock, E}).sum(1).view(shape);
  }
  at::Tensor out = at::zeros({nb, E}, v.options());
  const double* src = v.data_ptr<double>();
  double* dst = out.data_ptr<double>();
  at::parallel_for(0, nb, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk)
      for (int64_t row = blk * kBlock; row < std::min(n, (blk + 1) * kBlock); ++row)
        for (int64_t e = 0; e < E; ++e) dst[blk * E + e] += src[row * E + e];
  });
  return out.view(shape);
}

at::Tensor feature_block_sums(const ParticleFamily& fam, const Particles& z, const at::Tensor& X,
                              int64_t chunk, Impl impl) {
  check_inputs(fam, z, X);
  const int64_t N = z.size(), C = resolve_chunk(chunk, N);
  at::Tensor part;  // [nblocks, o, Bt]
  if (use_fused(impl, fam, X)) {
    part = fused_block_sums(fam, z, X, C);
  } else {
    std::vector<at::Tensor> parts;
    for (int64_t lo = 0; lo < N; lo += C) {
      const Particles zc = z.slice(lo, std::min(N, lo + C));
      parts.push_back(block_rows(output(fam.out, hidden_generic(fam, zc, X).U)));
    }
    part = parts.empty() ? at::zeros({0, fam.outputs, X.size(0)}, X.options().dtype(at::kDouble))
                         : at::cat(parts);
  }
  return part.transpose(1, 2).contiguous();
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
    const BlockKernels<T> kernels = block_kernels<T>(fam);
    const BlockArgs<T> args{
        s,          Bt,   Xc.data_ptr<T>(), Xt.data_ptr<T>(), Wt.data_ptr<T>(), fam.out.param,
        noise.beta, step, &blas_product<T>};
    const View<T> zv = view_of<T>(z);
    const View<T> gv = g ? view_of<T>(*g) : View<T>{};
    parallel_blocks(nblocks, C, [&](int64_t b0, int64_t b1) {
      BlockScratch<T> scratch;
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t lo = blk * kBlock, n = std::min(N - lo, kBlock);
        sq[blk] = kernels.grad(args, zv.shift(s, lo), g ? gv.shift(s, lo) : View<T>{}, n,
                               BlockKeys(noise.seed, noise.block0 + blk).k, scratch);
      }
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
    return block_sq_norms(g);
  }
  check_inputs(fam, z, X, W);
  TORCH_CHECK(all_contiguous(z), "descend updates the particles in place: they must be contiguous");
  std::vector<double> sq;
  fused_grad(fam, z, X, W, resolve_chunk(chunk, z.size()), noise, nullptr, step, sq);
  // float64: a diverging run must reach its non-finite check, not fail converting to float32.
  return at::tensor(sq, X.options().dtype(at::kDouble));
}

at::Tensor jacobian_gram_blocks(const ParticleFamily& fam, const Particles& z,
                                const at::Tensor& X) {
  check_inputs(fam, z, X);
  TORCH_CHECK(fam.outputs == 1, "the Jacobian Gram needs o = 1, got o = ", fam.outputs);
  const int64_t N = z.size(), Bt = X.size(0), nblocks = (N + kBlock - 1) / kBlock;
  at::Tensor kx = at::mm(X, X.t());  // <grad_A, grad_A'> = (.) x_b . x_b'
  if (z.a.defined()) kx = kx + 1;
  const Hidden h = hidden_generic(fam, z, X);
  const at::Tensor gp = output_grad(fam.out, h.U);  // [N, 1, Bt] G'
  // d phi / d(A_h x + a_h) = G' B_h s'(P_h) and d phi / d B_h = G' s(P_h): [N, H, Bt] each.
  const at::Tensor dA = activate_backprop(fam.activation, h.P, gp * z.B.transpose(1, 2));
  const at::Tensor dB = gp * h.S;
  at::Tensor out = at::empty({nblocks, Bt, Bt}, X.options().dtype(at::kDouble));
  for (int64_t blk = 0; blk < nblocks; ++blk) {  // one product per block: the same bits anywhere
    const int64_t lo = blk * kBlock, n = std::min(N - lo, kBlock);
    const at::Tensor a = dA.narrow(0, lo, n).reshape({-1, Bt}),
                     b = dB.narrow(0, lo, n).reshape({-1, Bt});
    at::Tensor gram = at::mm(a.t(), a) * kx + at::mm(b.t(), b);
    if (z.b.defined()) {
      const at::Tensor g = gp.narrow(0, lo, n).squeeze(1);
      gram += at::mm(g.t(), g);
    }
    out[blk].copy_(gram);
  }
  return out;
}

at::Tensor block_sq_norms(const Particles& g) {
  const int64_t N = g.size();
  at::Tensor per = at::zeros({N}, g.A.options().dtype(at::kDouble));  // per particle
  for (const at::Tensor* t : g.tensors())
    per += t->to(at::kDouble).square().reshape({N, t->numel() / std::max<int64_t>(N, 1)}).sum(1);
  return block_rows(per);
}

}  // namespace mmdflow
