#include "src/kernels/dense.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "src/base/random.h"
#include "src/kernels/blocks.h"

namespace mmdflow {
namespace {

constexpr int64_t kUnits = 48;   // output units per block (a multiple of the tiles' 6 rows)
constexpr int64_t kDepth = 256;  // hidden units per step of a block's U^T: [kDepth, B] of S1^T
constexpr int64_t kCols = 384;   // columns of [B, N H] per parallel chunk

template <typename T>
const DenseKernels<T>& dense_kernels() {
  const PathKernels& k = path_kernels(active_isa());
  if constexpr (std::is_same_v<T, float>) {
    return k.dense_f32;
  } else {
    return k.dense_f64;
  }
}

// C[m, n] (+)= op(A)[m, k] B[k, n] on the calling thread: the path's tiles, else BLAS.
template <typename T>
void product(const DenseKernels<T>& dk, bool trans_a, bool acc, int64_t m, int64_t n, int64_t k,
             const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc) {
  if (dk.gemm) return dk.gemm(trans_a, acc, m, n, k, A, lda, B, ldb, C, ldc);
  const auto o = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  T* a_ptr = const_cast<T*>(A);
  const at::Tensor a = trans_a ? at::from_blob(a_ptr, {k, m}, {lda, 1}, o).t()
                               : at::from_blob(a_ptr, {m, k}, {lda, 1}, o);
  const at::Tensor b = at::from_blob(const_cast<T*>(B), {k, n}, {ldb, 1}, o);
  at::Tensor c = at::from_blob(C, {m, n}, {ldc, 1}, o);
  if (acc) {
    c.addmm_(a, b);
  } else {
    at::mm_out(c, a, b);
  }
}

// fn(lo, hi) over [0, n) in parallel, in pieces of `grain`.
template <typename F>
void parallel_pieces(int64_t n, int64_t grain, const F& fn) {
  at::parallel_for(0, (n + grain - 1) / grain, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) fn(p * grain, std::min(n, (p + 1) * grain));
  });
}

// t as [sizes] in dtype, reusing its storage.
void reshape_buffer(at::Tensor& t, at::IntArrayRef sizes, at::ScalarType dtype) {
  if (!t.defined() || t.scalar_type() != dtype)
    t = at::empty({0}, at::TensorOptions().dtype(dtype));
  if (t.sizes() != sizes) t.resize_(sizes);
}

template <typename T>
T* ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// UT[rows, B] = W2[rows, NH] S1T[NH, B], in steps of kDepth hidden units (S1^T's rows stay in
// cache across the block's rows).
template <typename T>
void block_ut(const DenseKernels<T>& dk, int64_t rows, int64_t NH, int64_t B, const T* W2,
              const T* S1t, T* UT) {
  for (int64_t k0 = 0; k0 < NH; k0 += kDepth)
    product(dk, false, k0 > 0, rows, B, std::min(kDepth, NH - k0), W2 + k0, NH, S1t + k0 * B, B, UT,
            B);
}

void check_params(const DenseParams& w, const at::Tensor& X) {
  for (const at::Tensor* t : {&w.W1, &w.b1, &w.W2, &w.b2})
    TORCH_CHECK(!t->defined() || (t->is_contiguous() && t->device().is_cpu() &&
                                  t->scalar_type() == X.scalar_type()),
                "dense weights must be contiguous CPU tensors of X's dtype ", X.scalar_type(),
                ", got ", t->scalar_type(), " ", t->sizes());
}

// w + beta eps for a tensor of the first layer (the whole of it is needed at once), into buf;
// t itself when undefined or without noise.
template <typename T>
at::Tensor noisy_copy(const DenseKernels<T>& dk, const at::Tensor& t, const at::Tensor& eps,
                      double beta, at::Tensor& buf) {
  if (!t.defined() || beta == 0.0) return t;
  reshape_buffer(buf, t.sizes(), t.scalar_type());
  const T* src = t.data_ptr<T>();
  const float* e = eps.data_ptr<float>();
  T* dst = buf.data_ptr<T>();
  parallel_pieces(t.numel(), 1 << 16, [&](int64_t lo, int64_t hi) {
    dk.add_noise(src + lo, e + lo, beta, dst + lo, hi - lo);
  });
  return buf;
}

// The second layer's operands of one DenseCpu::grad: w's and the step's buffers.
template <typename T>
struct SecondLayer {
  int64_t No, NH, B, N;
  T *W2, *b2;              // w's (b2 null without bias), updated in place
  T *W2n, *b2n;            // where the gradient is taken: copies (noisy or not), or W2, b2
  const float *e2, *eb2;   // the noise of W2 and b2, null without noise
  const T *S1, *S1t, *wt;  // [B, NH], [NH, B], W^T [o, B]
  T *E, *gb2;              // [No, B], [No]
  double beta, step;
  bool update, copy;
};

// Output units r0 .. r0 + rows - 1: W2's rows at w + beta eps (or copied), E^T = dL/dU^T, then the
// block's gradient of W2 (and b2) into gW2 [rows, NH], applied to w at once when updating.
// Returns its squared norm.
template <typename T>
double second_layer_block(const DenseKernels<T>& dk, const ParticleFamily& fam,
                          const SecondLayer<T>& L, int64_t r0, int64_t rows, T* gW2) {
  const int64_t NH = L.NH, B = L.B;
  T *w2 = L.W2 + r0 * NH, *w2n = L.W2n + r0 * NH, *Eb = L.E + r0 * B;
  if (L.e2) {
    dk.add_noise(w2, L.e2 + r0 * NH, L.beta, w2n, rows * NH);
    if (L.b2) dk.add_noise(L.b2 + r0, L.eb2 + r0, L.beta, L.b2n + r0, rows);
  } else if (L.copy) {
    std::memcpy(w2n, w2, rows * NH * sizeof(T));
    if (L.b2) std::memcpy(L.b2n + r0, L.b2 + r0, rows * sizeof(T));
  }
  block_ut(dk, rows, NH, B, w2n, L.S1t, Eb);
  dk.outputs(fam.out, rows, B, r0, L.N, Eb, L.b2n ? L.b2n + r0 : nullptr, L.wt, Eb,
             L.b2 ? L.gb2 + r0 : nullptr, nullptr);
  product(dk, false, false, rows, NH, B, Eb, B, L.S1, NH, gW2, NH);
  double sq = dk.sq_then_step(gW2, L.update ? w2 : nullptr, rows * NH, L.step);
  if (L.b2) sq += dk.sq_then_step(L.gb2 + r0, L.update ? L.b2 + r0 : nullptr, rows, L.step);
  return sq;
}

// Every block of output units, in parallel, its squared norm into sq[block]. With noise, one
// thread first draws W2's noise (serial: one generator), block by block, with draw(drawn), then
// joins the others, which take each block as soon as its noise is drawn (all of it, b2's too,
// with an output bias).
template <typename T, typename Draw>
void second_layer(const DenseKernels<T>& dk, const ParticleFamily& fam, const SecondLayer<T>& L,
                  const Draw& draw, std::vector<double>& sq) {
  const int64_t nblocks = int64_t(sq.size());
  std::atomic<int64_t> drawn{L.e2 ? 0 : L.No + 1}, next{0};
  std::atomic<bool> failed{false};
  const int64_t threads = at::get_num_threads();
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t) {
    if (t0 == 0 && L.e2) {
      try {
        draw(drawn);
      } catch (...) {
        failed = true;
        throw;
      }
    }
    std::vector<T> gW2(kUnits * L.NH);
    for (int64_t blk; (blk = next.fetch_add(1)) < nblocks;) {
      const int64_t r0 = blk * kUnits, rows = std::min(kUnits, L.No - r0);
      const int64_t need = L.b2 ? L.No + 1 : r0 + rows;
      while (drawn.load(std::memory_order_acquire) < need) {
        if (failed) return;
        std::this_thread::yield();
      }
      sq[blk] = second_layer_block(dk, fam, L, r0, rows, gW2.data());
    }
  });
}

// The first layer's operands of one DenseCpu::grad.
template <typename T>
struct FirstLayer {
  int64_t d;
  const T *X, *H1;     // [B, d], [B, NH]
  T *dS1, *gW1, *gb1;  // [B, NH], [NH, d], [NH]
  T *W1, *b1;          // w's when updating, else null
  bool bias;           // w has b1
};

// dL/dS1 = E W2n [B, NH], then dL/dH1 over it and g(b1) = its column sums, and
// g(W1) = dL/dH1^T X [NH, d], applied to w when updating. Returns their squared norm.
template <typename T>
double first_layer(const DenseKernels<T>& dk, const ParticleFamily& fam, const SecondLayer<T>& L,
                   const FirstLayer<T>& F) {
  const int64_t NH = L.NH, B = L.B, d = F.d;
  parallel_pieces(NH, kCols, [&](int64_t c0, int64_t c1) {
    product(dk, true, false, B, c1 - c0, L.No, L.E, B, L.W2n + c0, NH, F.dS1 + c0, NH);
    dk.backprop(fam.activation, B, c1 - c0, NH, F.H1 + c0, F.dS1 + c0, F.gb1 + c0);
  });
  parallel_pieces(NH, kCols, [&](int64_t j0, int64_t j1) {
    product(dk, true, false, j1 - j0, d, B, F.dS1 + j0, NH, F.X, d, F.gW1 + j0 * d, d);
  });
  double sq = dk.sq_then_step(F.gW1, F.W1, NH * d, L.step);
  if (F.bias) sq += dk.sq_then_step(F.gb1, F.b1, NH, L.step);
  return sq;
}

}  // namespace

void DenseCpu::draw_first(const DenseParams& w, at::Generator& gen) {
  for (auto [src, dst] : {std::pair{&w.W1, &eps_.W1}, {&w.b1, &eps_.b1}}) {
    if (!src->defined()) continue;
    reshape_buffer(*dst, src->sizes(), at::kFloat);
    dst->normal_(0.0, 1.0, gen);  // at::normal's draws, into a kept buffer
  }
  reshape_buffer(eps_.W2, w.W2.sizes(), at::kFloat);
  if (w.b2.defined()) reshape_buffer(eps_.b2, w.b2.sizes(), at::kFloat);
}

void DenseCpu::draw_second(const DenseParams& w, at::Generator& gen, std::atomic<int64_t>& drawn) {
  const int64_t No = w.W2.size(0), NH = w.W2.size(1);
  // Pieces of whole blocks, kUnits NH draws each (a multiple of 16): at::normal turns 16 uniforms
  // at a time into normals and redraws the last 16 of a tensor whose size is not a multiple of 16,
  // so pieces draw what the whole tensor would as long as the last one has 16 or more.
  for (int64_t r0 = 0; r0 < No;) {
    int64_t r1 = std::min(No, r0 + kUnits);
    if ((No - r1) * NH < 16) r1 = No;
    eps_.W2.narrow(0, r0, r1 - r0).normal_(0.0, 1.0, gen);
    drawn.store(r1, std::memory_order_release);
    r0 = r1;
  }
  if (w.b2.defined()) {
    eps_.b2.normal_(0.0, 1.0, gen);
    drawn.store(No + 1, std::memory_order_release);
  }
}

void DenseCpu::perturb(DenseParams& w, const Noise& noise) {
  at::Generator gen = make_generator(c10::Device(c10::kCPU), noise.seed);
  draw_first(w, gen);
  std::atomic<int64_t> drawn{0};
  draw_second(w, gen, drawn);
  const auto dtype = w.W1.scalar_type();
  AT_DISPATCH_FLOATING_TYPES(dtype, "dense_perturb", [&] {
    using T = scalar_t;
    const DenseKernels<T>& dk = dense_kernels<T>();
    for (auto [t, eps] :
         {std::pair{&w.W1, &eps_.W1}, {&w.b1, &eps_.b1}, {&w.W2, &eps_.W2}, {&w.b2, &eps_.b2}}) {
      if (!t->defined()) continue;
      T* p = t->data_ptr<T>();
      const float* e = eps->data_ptr<float>();
      parallel_pieces(t->numel(), 1 << 16, [&](int64_t lo, int64_t hi) {
        dk.add_noise(p + lo, e + lo, noise.beta, p + lo, hi - lo);
      });
    }
  });
}

void DenseCpu::hidden(const ParticleFamily& fam, const at::Tensor& W1, const at::Tensor& b1,
                      const at::Tensor& X) {
  const int64_t B = X.size(0), NH = W1.size(0), d = W1.size(1);
  const auto dtype = X.scalar_type();
  reshape_buffer(W1t_, {d, NH}, dtype);
  reshape_buffer(H1_, {B, NH}, dtype);
  reshape_buffer(S1_, {B, NH}, dtype);
  reshape_buffer(S1t_, {NH, B}, dtype);
  W1t_.copy_(W1.t());
  AT_DISPATCH_FLOATING_TYPES(dtype, "dense_hidden", [&] {
    using T = scalar_t;
    const DenseKernels<T>& dk = dense_kernels<T>();
    const T *x = X.data_ptr<T>(), *w1t = W1t_.data_ptr<T>(), *bias = ptr<T>(b1);
    T *h1 = H1_.data_ptr<T>(), *s1 = S1_.data_ptr<T>();
    parallel_pieces(NH, kCols, [&](int64_t c0, int64_t c1) {
      product(dk, false, false, B, c1 - c0, d, x, d, w1t + c0, NH, h1 + c0, NH);
      for (int64_t b = 0; b < B; ++b) {
        T* row = h1 + b * NH;
        if (bias)
          for (int64_t j = c0; j < c1; ++j) row[j] += bias[j];
        dk.activate(fam.activation, row + c0, s1 + b * NH + c0, c1 - c0);
      }
    });
  });
  S1t_.copy_(S1_.t());
}

at::Tensor DenseCpu::feature_sum(const ParticleFamily& fam, const DenseParams& w,
                                 const at::Tensor& X) {
  check_params(w, X);
  const at::Tensor Xc = X.contiguous();
  hidden(fam, w.W1, w.b1, Xc);
  const int64_t B = Xc.size(0), No = w.W2.size(0), NH = w.W2.size(1), o = fam.outputs;
  const int64_t N = No / o, nblocks = (No + kUnits - 1) / kUnits;
  reshape_buffer(E_, {No, B}, Xc.scalar_type());
  std::vector<double> part(nblocks * o * B, 0.0);
  AT_DISPATCH_FLOATING_TYPES(Xc.scalar_type(), "dense_feature_sum", [&] {
    using T = scalar_t;
    const DenseKernels<T>& dk = dense_kernels<T>();
    const T *W2 = w.W2.data_ptr<T>(), *b2 = ptr<T>(w.b2), *S1t = S1t_.data_ptr<T>();
    T* UT = E_.data_ptr<T>();
    at::parallel_for(0, nblocks, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t blk = k0; blk < k1; ++blk) {
        const int64_t r0 = blk * kUnits, rows = std::min(kUnits, No - r0);
        block_ut(dk, rows, NH, B, W2 + r0 * NH, S1t, UT + r0 * B);
        dk.outputs(fam.out, rows, B, r0, N, UT + r0 * B, b2 ? b2 + r0 : nullptr, nullptr, nullptr,
                   nullptr, part.data() + blk * o * B);
      }
    });
  });
  at::Tensor sum = at::zeros({o, B}, at::TensorOptions().dtype(at::kDouble));
  double* s = sum.data_ptr<double>();
  for (int64_t blk = 0; blk < nblocks; ++blk)  // block order: independent of the threads
    for (int64_t i = 0; i < o * B; ++i) s[i] += part[blk * o * B + i];
  return sum.t().to(Xc.scalar_type());
}

double DenseCpu::grad(const ParticleFamily& fam, DenseParams& w, const at::Tensor& X,
                      const at::Tensor& W, const Noise& noise, double step, bool update) {
  check_params(w, X);
  TORCH_CHECK(W.dim() == 2 && W.size(0) == X.size(0) && W.size(1) == fam.outputs, "W must be [",
              X.size(0), ", ", fam.outputs, "], got ", W.sizes());
  const at::Tensor Xc = X.contiguous(), Wt = W.t().contiguous().to(X.scalar_type());
  const auto dtype = Xc.scalar_type();
  const int64_t B = Xc.size(0), d = Xc.size(1), No = w.W2.size(0), NH = w.W2.size(1);
  const int64_t N = No / fam.outputs, nblocks = (No + kUnits - 1) / kUnits;
  const double beta = noise.beta;
  at::Generator gen;
  if (beta != 0.0) {
    gen = make_generator(c10::Device(c10::kCPU), noise.seed);
    draw_first(w, gen);
  }
  // The weights the gradient is taken at: noisy copies, or w itself. W2's rows are noised (or
  // copied, when w is updated before the copy's last use) block by block (second_layer).
  const bool copy_w2 = beta != 0.0 || update;
  reshape_buffer(E_, {No, B}, dtype);
  reshape_buffer(dS1_, {B, NH}, dtype);
  reshape_buffer(gW1_, {NH, d}, dtype);
  reshape_buffer(gb1_, {NH}, dtype);
  reshape_buffer(gb2_, {No}, dtype);
  if (copy_w2) reshape_buffer(W2n_, {No, NH}, dtype);
  if (copy_w2 && w.b2.defined()) reshape_buffer(b2n_, {No}, dtype);
  std::vector<double> sq(nblocks, 0.0);
  double sq_first = 0;
  AT_DISPATCH_FLOATING_TYPES(dtype, "dense_grad", [&] {
    using T = scalar_t;
    const DenseKernels<T>& dk = dense_kernels<T>();
    const at::Tensor W1n = noisy_copy(dk, w.W1, eps_.W1, beta, W1n_);
    const at::Tensor b1n = noisy_copy(dk, w.b1, eps_.b1, beta, b1n_);
    hidden(fam, W1n, b1n, Xc);
    T *W2 = w.W2.data_ptr<T>(), *b2 = ptr<T>(w.b2);
    T *W2n = copy_w2 ? W2n_.data_ptr<T>() : W2, *b2n = copy_w2 ? ptr<T>(b2n_) : b2;
    const float *e2 = beta != 0.0 ? eps_.W2.data_ptr<float>() : nullptr,
                *eb2 = beta != 0.0 ? ptr<float>(eps_.b2) : nullptr;
    const T *S1 = S1_.data_ptr<T>(), *S1t = S1t_.data_ptr<T>(), *wt = Wt.data_ptr<T>();
    T *E = E_.data_ptr<T>(), *gb2 = gb2_.data_ptr<T>();
    const SecondLayer<T> L{No, NH,  B,  N, W2,  b2,   W2n,  b2n,    e2,     eb2,
                           S1, S1t, wt, E, gb2, beta, step, update, copy_w2};
    auto draw = [&](std::atomic<int64_t>& drawn) { draw_second(w, gen, drawn); };
    second_layer(dk, fam, L, draw, sq);
    const T *x = Xc.data_ptr<T>(), *H1 = H1_.data_ptr<T>();
    T *dS1 = dS1_.data_ptr<T>(), *gb1 = gb1_.data_ptr<T>(), *gW1 = gW1_.data_ptr<T>();
    T *W1 = update ? w.W1.data_ptr<T>() : nullptr, *b1 = update ? ptr<T>(w.b1) : nullptr;
    const FirstLayer<T> F{d, x, H1, dS1, gW1, gb1, W1, b1, w.b1.defined()};
    sq_first = first_layer(dk, fam, L, F);
  });
  double total = 0;
  for (double v : sq) total += v;  // block order: independent of the threads
  return total + sq_first;
}

}  // namespace mmdflow
