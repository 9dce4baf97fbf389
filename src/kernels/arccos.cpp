#include "src/kernels/arccos.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "src/kernels/gemm.h"

// The kernel and its gradient (docs/math.md, "Exact kernel"). For x ~ N(0, I_d),
//   kappa(w, w') = E[relu(w.x) relu(w'.x)] = a b J(theta) / (2 pi),
//   a = ||w||, b = ||w'||, cos theta = w.w' / (a b), J(theta) = sin theta + (pi - theta) cos theta,
// and k(z, z') = (v.v') kappa(w, w'). In w, with grad a = w/a and
// grad theta = -(w'/b - cos theta w/a) / (a sin theta), and dJ/dtheta = -(pi - theta) sin theta:
//   grad_w [a b J] = b J w/a + a b J'(theta) grad theta
//                  = b J w/a + (pi - theta) (b w'/b - b cos theta w/a)
//                  = (pi - theta) w' + b sin theta w/a,
// so grad_w kappa = [(pi - theta) w' + b sin theta w/a] / (2 pi): sin theta cancels, the gradient
// is finite at theta = 0 (pi w' / (2 pi)) and theta = pi (0). grad_v k = v' kappa. For x uniform
// on the sphere, x = g/||g|| with ||g|| independent of g/||g|| and E||g||^2 = d: all divided by d.
// At w = 0 (kappa = 0 for every w') the gradient in w is taken as 0, as the sampled flow's
// relu'(0) = 0 gives; w' = 0 gives kappa = 0 and a zero gradient term.
// The witness h(q) = sum_j c_j k(q, z_j) then has, over the sources j of a tile,
//   grad_w h(q) = sum_j alpha_j w_j + (sum_j beta_j) w/a, alpha_j = c_j (v.v_j)(pi - theta_j)/(2
//   pi),
//                 beta_j = c_j (v.v_j) b_j sin theta_j / (2 pi),
//   grad_v h(q) = sum_j c_j kappa_j v_j,
// two matrix products per tile besides the one for w.w_j.

namespace mmdflow {

at::Tensor arccos_kernel(const at::Tensor& w1, const at::Tensor& v1, const at::Tensor& w2,
                         const at::Tensor& v2, InputDist dist) {
  auto n1 = w1.norm(2, {1}, true);  // [N, 1]
  auto n2 = w2.norm(2, {1}, true);  // [M, 1]
  auto nn = n1 * n2.t();            // [N, M]
  auto cos = (at::mm(w1, w2.t()) / nn).clamp(-1.0, 1.0);
  auto theta = at::acos(cos);
  auto J = at::sin(theta) + (M_PI - theta) * cos;
  auto k = at::mm(v1, v2.t()) * nn * J / (2 * M_PI);
  return dist == InputDist::Sphere ? k / w1.size(1) : k;
}

namespace {

constexpr int64_t kTile = 128;        // queries per task
constexpr int64_t kSourceTile = 256;  // default sources per tile

void check_particles(const Particles& z, const char* what) {
  TORCH_CHECK(z.A.dim() == 3 && z.A.size(1) == 1 && z.B.dim() == 3 && z.B.size(2) == 1 &&
                  !z.a.defined() && !z.b.defined(),
              "the exact kernel needs H = 1 and no biases: ", what, " has A ", z.A.sizes(), ", B ",
              z.B.sizes(), z.a.defined() ? ", a hidden bias" : "",
              z.b.defined() ? ", an output bias" : "");
  TORCH_CHECK(z.A.device().is_cpu(), "the exact kernel runs on CPU; ", what, " is on ",
              z.A.device());
}

// acos on [-1, 1] without branches, so that the pair loop vectorises (fdlibm's e_acos / musl's
// acosf: asin(s) = s + s R(s^2) on [0, 1/2], R a rational approximation; for |x| > 1/2,
// acos |x| = 2 asin(sqrt((1 - |x|) / 2))). Within a few ulp of std::acos.
template <typename T>
inline T acos_branchless(T x) {
  const T ax = x < T(0) ? -x : x;
  const bool big = ax > T(0.5);
  const T z = big ? (T(1) - ax) * T(0.5) : ax * ax;
  const T s = big ? std::sqrt(z) : ax;
  T r;
  if constexpr (std::is_same_v<T, float>) {
    const T p = z * (1.6666586697e-01f + z * (-4.2743422091e-02f + z * -8.6563630030e-03f));
    r = p / (1.0f + z * -7.0662963390e-01f);
  } else {
    const T p =
        z * (1.66666666666666657415e-01 +
             z * (-3.25565818622400915405e-01 +
                  z * (2.01212532134862925881e-01 +
                       z * (-4.00555345006794114027e-02 +
                            z * (7.91534994289814532176e-04 + z * 3.47933107596021167570e-05)))));
    const T q = 1.0 + z * (-2.40339491173441421878e+00 +
                           z * (2.02094576023350569471e+00 + z * (-6.88283971605453293030e-01 +
                                                                  z * 7.70381505559019352791e-02)));
    r = p / q;
  }
  const T a = s + s * r;  // asin(s)
  const T pi = T(M_PI), half_pi = T(M_PI / 2);
  const T small = x < T(0) ? half_pi + a : half_pi - a;
  const T large = x < T(0) ? pi - 2 * a : 2 * a;
  return big ? large : small;
}

// C[m, n] = A[m, k] B[k, n]; A and B with row strides lda, ldb; C contiguous. Calling thread only.
template <typename T>
void product(const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t m, int64_t n,
             int64_t k) {
  if constexpr (std::is_same_v<T, float>) {
    if (gemm_f32_supported()) return gemm_f32(m, n, k, A, lda, B, ldb, C, n);
  }
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor c = at::from_blob(C, {m, n}, opts);
  at::mm_out(c, at::from_blob(const_cast<T*>(A), {m, k}, {lda, 1}, opts),
             at::from_blob(const_cast<T*>(B), {k, n}, {ldb, 1}, opts));
}

// A measure's particles as the tile loops read them.
template <typename T>
struct Rows {
  int64_t n, d, o;
  at::Tensor w, v, wt, vt;  // [n, d], [n, o], [d, n], [o, n], contiguous
  const T *pw, *pv, *pwt = nullptr, *pvt = nullptr;
  std::vector<T> norm, inv;  // ||w_j||, 1 / ||w_j|| (both 0 for w_j = 0)
  std::vector<T> mass;       // c_j, signed (sources only)

  explicit Rows(const Particles& z) : n(z.size()), d(z.A.size(2)), o(z.B.size(1)) {
    w = z.A.reshape({n, d}).contiguous();
    v = z.B.reshape({n, o}).contiguous();
    pw = w.data_ptr<T>();
    pv = v.data_ptr<T>();
    norm.resize(n);
    inv.resize(n);
    const T* p = pw;
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < d; ++k) s += double(p[j * d + k]) * double(p[j * d + k]);
      // A norm whose inverse overflows T (a subnormal float32 w) counts as 0: its kernel values
      // are below T's range anyway.
      const double r = std::sqrt(s);
      const bool usable = r > 0 && std::isfinite(T(1 / r));
      norm[j] = usable ? T(r) : T(0);
      inv[j] = usable ? T(1 / r) : T(0);
    }
  }
  void make_source(const std::vector<double>& c) {
    wt = w.t().contiguous();
    vt = v.t().contiguous();
    pwt = wt.data_ptr<T>();
    pvt = vt.data_ptr<T>();
    mass.assign(c.begin(), c.end());
  }
};

// Per-thread scratch for one tile of queries against one tile of sources.
template <typename T>
struct Scratch {
  std::vector<T> G, K, Al, VV, gw, gv;
  std::vector<double> accw, accv, beta;
  Scratch(int64_t S, int64_t d, int64_t o)
      : G(kTile * S),
        K(kTile * S),
        Al(kTile * S),
        VV(S),
        gw(kTile * d),
        gv(kTile * o),
        accw(kTile * d),
        accv(kTile * o),
        beta(kTile) {}
};

// Adds to value[i] the sum_j c_j k(q_i, z_j) over the sources of `m`, queries [i0, i0 + q); with
// Grad, the gradient's parts into the scratch accumulators.
template <typename T, bool Grad>
void against(const Rows<T>& Q, int64_t i0, int64_t q, const Rows<T>& m, int64_t S, T scale,
             Scratch<T>& s, double* value) {
  const int64_t d = Q.d, o = Q.o, n = m.n;
  const T pi = T(M_PI);
  const T* wq = Q.pw + i0 * d;
  const T* vq = Q.pv + i0 * o;
  for (int64_t j0 = 0; j0 < n; j0 += S) {
    const int64_t ns = std::min(S, n - j0);
    product(wq, d, m.pwt + j0, n, s.G.data(), q, ns, d);
    const T* __restrict b = m.norm.data() + j0;
    const T* __restrict ib = m.inv.data() + j0;
    const T* __restrict c = m.mass.data() + j0;
    const T* vt = m.pvt + j0;
    for (int64_t i = 0; i < q; ++i) {
      T* __restrict vv = s.VV.data();
      const T* vi = vq + i * o;
#pragma omp simd
      for (int64_t j = 0; j < ns; ++j) vv[j] = vi[0] * vt[j];
      for (int64_t k = 1; k < o; ++k) {
#pragma omp simd
        for (int64_t j = 0; j < ns; ++j) vv[j] += vi[k] * vt[k * n + j];
      }
      const T ai = Q.norm[i0 + i], inva = Q.inv[i0 + i];
      const T gs = ai > T(0) ? scale : T(0);  // gradient in w: 0 at w = 0
      const T* __restrict g = s.G.data() + i * ns;
      T* __restrict K = s.K.data() + i * ns;
      T* __restrict Al = s.Al.data() + i * ns;
      T val = 0, bet = 0;
#pragma omp simd reduction(+ : val, bet)
      for (int64_t j = 0; j < ns; ++j) {
        T x = g[j] * inva * ib[j];
        x = x > T(1) ? T(1) : (x < T(-1) ? T(-1) : x);
        const T th = acos_branchless(x), sn = std::sqrt((T(1) - x) * (T(1) + x));
        const T kap = scale * ai * b[j] * (sn + (pi - th) * x);
        const T cv = c[j] * vv[j];
        val += cv * kap;
        if constexpr (Grad) {
          K[j] = c[j] * kap;
          Al[j] = gs * cv * (pi - th);
          bet += gs * cv * b[j] * sn;
        }
      }
      value[i] += val;
      if constexpr (Grad) s.beta[i] += bet;
    }
    if constexpr (Grad) {
      product(s.Al.data(), ns, m.pw + j0 * d, d, s.gw.data(), q, d, ns);
      product(s.K.data(), ns, m.pv + j0 * o, o, s.gv.data(), q, o, ns);
      for (int64_t k = 0; k < q * d; ++k) s.accw[k] += s.gw[k];
      for (int64_t k = 0; k < q * o; ++k) s.accv[k] += s.gv[k];
    }
  }
}

template <typename T>
void witness_impl(const Particles& queries, const Particles& student, const Particles& teacher,
                  const ExactKernel& kernel, bool with_grad, const std::vector<double>& mass,
                  ExactWitness& out) {
  Rows<T> Q(queries), zs(student), zt(teacher);
  zs.make_source(std::vector<double>(zs.n, 1.0 / double(zs.n)));
  zt.make_source(mass);
  // Tiles of sources no longer than the larger measure: the same tiles, smaller scratch.
  const int64_t N = Q.n, d = Q.d, o = Q.o,
                S = std::min(kernel.chunk > 0 ? kernel.chunk : kSourceTile, std::max(zs.n, zt.n));
  const int64_t ntiles = (N + kTile - 1) / kTile;
  const T scale = T(1 / (2 * M_PI * (kernel.dist == InputDist::Sphere ? double(d) : 1.0)));
  std::vector<double> vs(N, 0.0), vt(N, 0.0), sq(ntiles, 0.0);
  if (with_grad) {
    out.grad.A = at::empty({N, 1, d}, queries.A.options());
    out.grad.B = at::empty({N, o, 1}, queries.B.options());
  }
  T* gA = with_grad ? out.grad.A.data_ptr<T>() : nullptr;
  T* gB = with_grad ? out.grad.B.data_ptr<T>() : nullptr;
  at::parallel_for(0, ntiles, 1, [&](int64_t t0, int64_t t1) {
    Scratch<T> s(S, d, o);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i0 = t * kTile, q = std::min(kTile, N - i0);
      if (!with_grad) {
        against<T, false>(Q, i0, q, zs, S, scale, s, vs.data() + i0);
        against<T, false>(Q, i0, q, zt, S, scale, s, vt.data() + i0);
        continue;
      }
      std::fill(s.accw.begin(), s.accw.end(), 0.0);
      std::fill(s.accv.begin(), s.accv.end(), 0.0);
      std::fill(s.beta.begin(), s.beta.end(), 0.0);
      against<T, true>(Q, i0, q, zs, S, scale, s, vs.data() + i0);
      against<T, true>(Q, i0, q, zt, S, scale, s, vt.data() + i0);
      const T* wq = Q.pw + i0 * d;
      double acc = 0;
      for (int64_t i = 0; i < q; ++i) {
        const double u = s.beta[i] * double(Q.inv[i0 + i]);
        for (int64_t k = 0; k < d; ++k) {
          const T g = T(s.accw[i * d + k] + u * double(wq[i * d + k]));
          gA[(i0 + i) * d + k] = g;
          acc += double(g) * double(g);
        }
        for (int64_t k = 0; k < o; ++k) {
          const T g = T(s.accv[i * o + k]);
          gB[(i0 + i) * o + k] = g;
          acc += double(g) * double(g);
        }
      }
      sq[t] = acc;
    }
  });
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  out.student = at::tensor(vs, f64);
  out.teacher = -at::tensor(vt, f64);
  if (with_grad) {
    double total = 0;
    for (double v : sq) total += v;  // tile order: independent of the thread count
    out.grad_sq = at::scalar_tensor(N > 0 ? total / double(N) : 0.0, f64);
  }
}

}  // namespace

at::Tensor ExactWitness::value() const { return student - teacher; }

ExactWitness exact_witness(const Particles& queries, const Particles& student,
                           const Particles& teacher, const ExactKernel& kernel, bool with_grad,
                           const at::Tensor& teacher_mass) {
  check_particles(queries, "the queries");
  check_particles(student, "the student");
  check_particles(teacher, "the teacher");
  const int64_t d = student.A.size(2), o = student.B.size(1), M = teacher.size();
  for (const Particles* z : {&queries, &teacher})
    TORCH_CHECK(z->A.size(2) == d && z->B.size(1) == o,
                "particle sizes differ: the student has (d, o) = (", d, ", ", o, "), got A ",
                z->A.sizes(), ", B ", z->B.sizes());
  for (const Particles* z : {&queries, &teacher})
    TORCH_CHECK(z->A.scalar_type() == student.A.scalar_type() &&
                    z->B.scalar_type() == student.A.scalar_type(),
                "particles of one dtype expected: the student is ", student.A.scalar_type(),
                ", got ", z->A.scalar_type(), " and ", z->B.scalar_type());
  TORCH_CHECK(student.size() > 0 && M > 0, "empty measure: N = ", student.size(), ", M = ", M);
  std::vector<double> mass(M, -1.0 / double(M));
  if (teacher_mass.defined()) {
    TORCH_CHECK(teacher_mass.dim() == 1 && teacher_mass.size(0) == M, "teacher_mass must be [", M,
                "], got ", teacher_mass.sizes());
    const at::Tensor c = teacher_mass.to(at::kDouble).contiguous();
    for (int64_t m = 0; m < M; ++m) mass[m] = -c.data_ptr<double>()[m];
  }
  ExactWitness out;
  AT_DISPATCH_FLOATING_TYPES(student.A.scalar_type(), "exact_witness", [&] {
    witness_impl<scalar_t>(queries, student, teacher, kernel, with_grad, mass, out);
  });
  return out;
}

at::Tensor exact_mmd2(const Particles& student, const Particles& teacher, InputDist dist,
                      int64_t chunk) {
  const ExactKernel kernel{dist, chunk};
  const ExactWitness s = exact_witness(student, student, teacher, kernel, false);
  const ExactWitness t = exact_witness(teacher, student, teacher, kernel, false);
  return s.student.mean() - s.teacher.mean() - t.student.mean() + t.teacher.mean();
}

at::Tensor exact_grad_sq(const Particles& student, const Particles& teacher,
                         const ExactKernel& kernel, const Noise& noise) {
  const Particles q = noise.beta != 0.0 ? perturb(student, noise) : student;
  return exact_witness(q, student, teacher, kernel).grad_sq;
}

}  // namespace mmdflow
