// The exact arc-cosine kernel: values against the dense reference and Monte Carlo, the hand-derived
// gradient against autograd and finite differences (float64), hand values, invariances.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "data/dataset.h"
#include "src/kernels/arccos.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

ParticleFamily exact_family(int64_t d, int64_t o) {
  return test::family(d, 1, o, Activation::ReLU, OutputKind::Identity, 1, false, false);
}

Particles make(const std::vector<std::vector<double>>& w,
               const std::vector<std::vector<double>>& v) {
  const int64_t n = int64_t(w.size()), d = int64_t(w[0].size()), o = int64_t(v[0].size());
  Particles z;
  z.A = at::empty({n, 1, d}, at::kDouble);
  z.B = at::empty({n, o, 1}, at::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < d; ++k) z.A[i][0][k] = w[i][k];
    for (int64_t k = 0; k < o; ++k) z.B[i][k][0] = v[i][k];
  }
  return z;
}

at::Tensor W(const Particles& z) { return z.A.squeeze(1); }
at::Tensor V(const Particles& z) { return z.B.squeeze(2); }

// h(q) by the dense reference: (1/N) sum_n k(q, z_n) - (1/M) sum_m k(q, u_m), [Q].
at::Tensor dense_witness(const at::Tensor& wq, const at::Tensor& vq, const Particles& s,
                         const Particles& t, InputDist dist) {
  return arccos_kernel(wq, vq, W(s), V(s), dist).mean(1) -
         arccos_kernel(wq, vq, W(t), V(t), dist).mean(1);
}

struct Measures {
  ParticleFamily f = exact_family(4, 2);
  Particles student = test::random_net(f, 7, 1).particles();
  Particles teacher = test::random_net(f, 3, 2).particles();
};

// Queries: random, the student's own particles (theta = 0 exactly against themselves), near-
// parallel (theta ~ 1e-4 and 1e-7), antiparallel and orthogonal to a source.
Particles hard_queries(const Measures& s) {
  Particles q = test::random_net(s.f, 4, 3).particles();
  at::Generator g = test::gen(4);
  const at::Tensor w0 = W(s.student)[0], w1 = W(s.teacher)[1];
  const at::Tensor e = at::normal(0, 1, {s.f.dim}, g, at::TensorOptions().dtype(at::kDouble));
  const at::Tensor ortho = e - (e.dot(w1) / w1.dot(w1)) * w1;
  const at::Tensor rows = at::stack({w0 + 1e-4 * e, 2.0 * w0 + 1e-7 * e, -0.5 * w1, ortho});
  Particles out;
  out.A = at::cat({q.A, s.student.A, rows.unsqueeze(1)});
  out.B = at::cat({q.B, s.student.B, test::random_net(s.f, 4, 5).particles().B});
  return out;
}

TEST(Arccos, KernelHandValues) {
  auto o = at::TensorOptions().dtype(at::kDouble);
  at::Tensor w = at::tensor({1.0, 0.0}, o).view({1, 2}), v = at::ones({1, 1}, o);
  // theta = 0: J = pi, k = 1 * 1 * pi / (2 pi) = 1/2 (Gaussian inputs; E relu(x)^2 = 1/2).
  EXPECT_NEAR(arccos_kernel(w, v, w, v, InputDist::Gaussian).item<double>(), 0.5, 1e-15);
  EXPECT_NEAR(arccos_kernel(w, v, w, v, InputDist::Sphere).item<double>(), 0.25, 1e-15);
  // Orthogonal: J = 1, k = 1 / (2 pi).
  at::Tensor w2 = at::tensor({0.0, 2.0}, o).view({1, 2});
  EXPECT_NEAR(arccos_kernel(w, v, w2, v, InputDist::Gaussian).item<double>(), 2 / (2 * M_PI),
              1e-15);
}

// Student z1 = (e1, 1), z2 = (e2, 1), teacher u = (e1, 1), Gaussian inputs. With
// grad_w kappa(w, w') = [(pi - theta) w' + ||w'|| sin theta w/||w||] / (2 pi):
//   kappa(e1, e1) = 1/2, grad = e1/2;  kappa(e1, e2) = 1/(2 pi), grad = e2/4 + e1/(2 pi).
//   h(z1) = (1/2)(1/2 + 1/(2 pi)) - 1/2 = -1/4 + 1/(4 pi) = grad_v h(z1),
//   grad_w h(z1) = (1/2)(e1/2 + e2/4 + e1/(2 pi)) - e1/2 = (-1/4 + 1/(4 pi)) e1 + e2/8,
//   h(z2) = (1/2)(1/(2 pi) + 1/2) - 1/(2 pi) = 1/4 - 1/(4 pi) = grad_v h(z2),
//   grad_w h(z2) = (1/2)(e1/4 + e2/(2 pi) + e2/2) - (e1/4 + e2/(2 pi)) = -e1/8 + (1/4 - 1/(4 pi))
//   e2, MMD^2 = (1 + 1/pi)/4 - 2 (1 + 1/pi)/4 + 1/2 = 1/4 - 1/(4 pi). Sphere (d = 2): all halved.
TEST(Arccos, TwoParticlesByHand) {
  const Particles s = make({{1, 0}, {0, 1}}, {{1}, {1}}), t = make({{1, 0}}, {{1}});
  const double a = 0.25 - 0.25 / M_PI;
  for (InputDist dist : {InputDist::Gaussian, InputDist::Sphere}) {
    const double c = dist == InputDist::Sphere ? 0.5 : 1.0;
    ExactWitness h = exact_witness(s, s, t, {dist, 0});
    const at::Tensor gA = h.grad.A.squeeze(1), gB = h.grad.B.squeeze(2);
    EXPECT_NEAR(h.value()[0].item<double>(), -a * c, 1e-15);
    EXPECT_NEAR(h.value()[1].item<double>(), a * c, 1e-15);
    EXPECT_NEAR(h.student[0].item<double>(), c * (0.25 + 0.25 / M_PI), 1e-15);
    EXPECT_NEAR(h.teacher[1].item<double>(), c * 0.5 / M_PI, 1e-15);
    EXPECT_NEAR(gA[0][0].item<double>(), -a * c, 1e-15);
    EXPECT_NEAR(gA[0][1].item<double>(), c / 8, 1e-15);
    EXPECT_NEAR(gA[1][0].item<double>(), -c / 8, 1e-15);
    EXPECT_NEAR(gA[1][1].item<double>(), a * c, 1e-15);
    EXPECT_NEAR(gB[0][0].item<double>(), -a * c, 1e-15);
    EXPECT_NEAR(gB[1][0].item<double>(), a * c, 1e-15);
    EXPECT_NEAR(h.grad_sq.item<double>(), c * c * (2 * a * a + 1.0 / 64), 1e-15);
    EXPECT_NEAR(exact_mmd2(s, t, dist).item<double>(), a * c, 1e-15) << name_of(dist);
  }
}

TEST(Arccos, WitnessAndMmdMatchTheDenseReference) {
  Measures s;
  const Particles q = hard_queries(s);
  for (InputDist dist : {InputDist::Gaussian, InputDist::Sphere}) {
    ExactWitness h = exact_witness(q, s.student, s.teacher, {dist, 0}, false);
    const at::Tensor ref = dense_witness(W(q), V(q), s.student, s.teacher, dist);
    EXPECT_TRUE(at::allclose(h.value(), ref, 1e-13, 1e-15)) << (h.value() - ref).abs().max();
    EXPECT_FALSE(h.grad.A.defined());
    const double dense =
        arccos_kernel(W(s.student), V(s.student), W(s.student), V(s.student), dist)
            .mean()
            .item<double>() -
        2 * arccos_kernel(W(s.student), V(s.student), W(s.teacher), V(s.teacher), dist)
                .mean()
                .item<double>() +
        arccos_kernel(W(s.teacher), V(s.teacher), W(s.teacher), V(s.teacher), dist)
            .mean()
            .item<double>();
    EXPECT_NEAR(exact_mmd2(s.student, s.teacher, dist).item<double>(), dense, 1e-14);
  }
}

// The gradient against autograd through the dense reference, where acos' is finite: random
// queries, theta ~ 1e-4 to a student and to a teacher particle, theta = pi/2.
TEST(Arccos, GradientMatchesAutograd) {
  Measures s;
  const Particles hard = hard_queries(s);
  const at::Tensor rows = at::tensor({0, 1, 2, 3, 11, 14}, at::kLong);
  Particles q{hard.A.index_select(0, rows), {}, hard.B.index_select(0, rows), {}};
  q.A[0][0] = W(s.teacher)[0] * 3.0 + 1e-4;
  for (InputDist dist : {InputDist::Gaussian, InputDist::Sphere}) {
    at::Tensor wq = W(q).clone().requires_grad_(true), vq = V(q).clone().requires_grad_(true);
    auto g =
        torch::autograd::grad({dense_witness(wq, vq, s.student, s.teacher, dist).sum()}, {wq, vq});
    ExactWitness h = exact_witness(q, s.student, s.teacher, {dist, 0});
    EXPECT_TRUE(at::allclose(W(h.grad), g[0], 1e-9, 1e-12)) << (W(h.grad) - g[0]).abs().max();
    EXPECT_TRUE(at::allclose(V(h.grad), g[1], 1e-12, 1e-14)) << (V(h.grad) - g[1]).abs().max();
  }
}

// Central differences of the exact witness at every query, [Q, d + o] (w's coordinates first).
at::Tensor fd_grad(const Particles& q, const Particles& s, const Particles& t,
                   const ExactKernel& kernel, double eps) {
  const int64_t d = q.A.size(2), o = q.B.size(1);
  std::vector<at::Tensor> cols;
  for (int64_t k = 0; k < d + o; ++k) {
    Particles plus = q.clone(), minus = q.clone();
    auto coord = [&](Particles& z) { return k < d ? z.A.select(2, k) : z.B.select(1, k - d); };
    coord(plus).add_(eps);
    coord(minus).sub_(eps);
    cols.push_back((exact_witness(plus, s, t, kernel, false).value() -
                    exact_witness(minus, s, t, kernel, false).value()) /
                   (2 * eps));
  }
  return at::stack(cols, 1);
}

at::Tensor flat_grad(const ExactWitness& h) {
  return at::cat({h.grad.A.flatten(1), h.grad.B.flatten(1)}, 1);  // [Q, d + o]
}

// At every query, including theta = 0 exactly (the student's own particles), theta ~ 1e-4 and
// 1e-7, theta = pi and pi/2, where the gradient must be the limit of its neighbours'.
TEST(Arccos, GradientMatchesFiniteDifferences) {
  Measures s;
  const Particles q = hard_queries(s);
  for (InputDist dist : {InputDist::Gaussian, InputDist::Sphere}) {
    const ExactKernel kernel{dist, 0};
    const at::Tensor g = flat_grad(exact_witness(q, s.student, s.teacher, kernel));
    const at::Tensor fd = fd_grad(q, s.student, s.teacher, kernel, 1e-5);
    EXPECT_TRUE(at::allclose(g, fd, 1e-7, 1e-9)) << name_of(dist) << ": " << (g - fd).abs().max();
  }
}

// w = 0 (a query or a source): kappa = 0 and no NaN; the query's gradient in w is 0 (the sampled
// flow's relu'(0) = 0). Elsewhere, values by the reference and gradients by differences.
TEST(Arccos, ZeroNormIsFinite) {
  const Particles s = make({{0, 0, 0}, {1, 2, 0}}, {{1}, {-2}}), t = make({{0, 1, 1}}, {{1}});
  const Particles q = make({{0, 0, 0}, {0.5, 1, 0}, {-1, -2, 0}, {1, 0, 0}}, {{3}, {1}, {1}, {2}});
  const ExactKernel kernel{InputDist::Gaussian, 0};
  ExactWitness h = exact_witness(q, s, t, kernel);
  EXPECT_TRUE(at::isfinite(flat_grad(h)).all().item<bool>());
  EXPECT_EQ(h.value()[0].item<double>(), 0.0);
  EXPECT_EQ(h.grad.A[0].abs().max().item<double>(), 0.0);
  EXPECT_EQ(h.grad.B[0].abs().max().item<double>(), 0.0);
  const at::Tensor wq = W(q).narrow(0, 1, 3), vq = V(q).narrow(0, 1, 3);
  const at::Tensor ref =
      0.5 * arccos_kernel(wq, vq, W(s).narrow(0, 1, 1), V(s).narrow(0, 1, 1), InputDist::Gaussian)
                .squeeze(1) -
      arccos_kernel(wq, vq, W(t), V(t), InputDist::Gaussian).squeeze(1);
  EXPECT_TRUE(at::allclose(h.value().narrow(0, 1, 3), ref, 1e-14, 1e-15));
  const Particles rest{q.A.narrow(0, 1, 3), {}, q.B.narrow(0, 1, 3), {}};
  EXPECT_TRUE(at::allclose(flat_grad(exact_witness(rest, s, t, kernel)),
                           fd_grad(rest, s, t, kernel, 1e-5), 1e-7, 1e-9));
  // float32: a subnormal w, whose inverse norm overflows, as a query and a source.
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  Particles tiny = q.to(f32);
  tiny.A[0][0][0] = 1e-39f;
  const ExactWitness h32 = exact_witness(tiny, tiny, t.to(f32), kernel);
  EXPECT_TRUE(at::isfinite(flat_grad(h32)).all().item<bool>());
  EXPECT_TRUE(at::isfinite(h32.value()).all().item<bool>());
}

// k(z, z') against (1/B) sum_b phi_z(x_b)^T phi_z'(x_b) on 10^6 inputs, within 5 standard errors,
// for both input laws.
TEST(Arccos, KernelMatchesMonteCarlo) {
  const ParticleFamily f = exact_family(5, 2);
  const Particles z = test::random_net(f, 4, 6).particles();
  const int64_t B = 1000000;
  for (InputDist dist : {InputDist::Gaussian, InputDist::Sphere}) {
    at::Generator g = test::gen(7);
    const at::Tensor X = sample_inputs(dist, B, f.dim, g, at::TensorOptions().dtype(at::kDouble));
    const at::Tensor F = particle_features(f, z, X);  // [N, B, o]
    const at::Tensor K = arccos_kernel(W(z), V(z), W(z), V(z), dist);
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = i; j < 4; ++j) {
        const at::Tensor p = (F[i] * F[j]).sum(1);  // [B]
        const double mc = p.mean().item<double>(), se = p.std().item<double>() / std::sqrt(B);
        EXPECT_NEAR(K[i][j].item<double>(), mc, 5 * se) << name_of(dist) << " " << i << j;
      }
    // The chunked kernel's value at a point mass: h(z_0) with student {z_0} and a far teacher.
    const Particles z0{z.A.narrow(0, 0, 1), {}, z.B.narrow(0, 0, 1), {}};
    const Particles z1{z.A.narrow(0, 1, 1), {}, z.B.narrow(0, 1, 1), {}};
    ExactWitness h = exact_witness(z0, z0, z1, {dist, 0}, false);
    EXPECT_NEAR(h.student.item<double>(), K[0][0].item<double>(), 1e-15);
    EXPECT_NEAR(h.teacher.item<double>(), K[0][1].item<double>(), 1e-15);
  }
}

// Tiles of queries go to threads whole: the result is the same bit for bit for any thread count;
// the source tile (chunk) only regroups the sums.
TEST(Arccos, IndependentOfThreadsAndChunk) {
  const ParticleFamily f = exact_family(6, 2);
  const Particles s = test::random_net(f, 700, 8).particles();
  const Particles t = test::random_net(f, 5, 9).particles();
  const Particles q = test::random_net(f, 300, 10).particles();
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  ExactWitness one = exact_witness(q, s, t, {InputDist::Gaussian, 0});
  at::set_num_threads(std::max(2, threads));
  ExactWitness many = exact_witness(q, s, t, {InputDist::Gaussian, 0});
  at::set_num_threads(threads);
  EXPECT_TRUE(test::bit_equal(one.grad, many.grad));
  EXPECT_TRUE(at::equal(one.student, many.student) && at::equal(one.teacher, many.teacher));
  EXPECT_EQ(one.grad_sq.item<double>(), many.grad_sq.item<double>());
  for (int64_t chunk : {1, 37, 256, 5000}) {
    ExactWitness c = exact_witness(q, s, t, {InputDist::Gaussian, chunk});
    EXPECT_LT(test::max_abs_diff(c.grad, one.grad), 1e-14) << chunk;
    EXPECT_TRUE(at::allclose(c.value(), one.value(), 1e-12, 1e-15)) << chunk;
    EXPECT_NEAR(c.grad_sq.item<double>(), one.grad_sq.item<double>(), 1e-13) << chunk;
  }
}

TEST(Arccos, Float32AgreesWithFloat64) {
  const ParticleFamily f = exact_family(10, 1);
  const Particles s = test::random_net(f, 500, 11).particles();
  const Particles t = test::random_net(f, 3, 12).particles();
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  for (InputDist dist : {InputDist::Gaussian, InputDist::Sphere}) {
    ExactWitness h64 = exact_witness(s, s, t, {dist, 0});
    ExactWitness h32 = exact_witness(s.to(f32), s.to(f32), t.to(f32), {dist, 0});
    EXPECT_EQ(h32.grad.A.scalar_type(), at::kFloat);
    const double scale = h64.grad.A.abs().max().item<double>();
    EXPECT_LT(test::max_abs_diff(h32.grad, h64.grad), 1e-5 * scale) << name_of(dist);
    EXPECT_TRUE(at::allclose(h32.value(), h64.value(), 1e-4, 1e-5 * scale));
    EXPECT_NEAR(h32.grad_sq.item<double>(), h64.grad_sq.item<double>(),
                1e-5 * h64.grad_sq.item<double>());
    const auto m64 = exact_mmd2(s, t, dist).item<double>();
    EXPECT_NEAR(exact_mmd2(s.to(f32), t.to(f32), dist).item<double>(), m64, 1e-5 * m64);
  }
}

// The noisy second moment is the witness's at perturb(z): the flow's own noise.
TEST(Arccos, GradSqAtTheNoisyParticles) {
  Measures s;
  const ExactKernel kernel{InputDist::Sphere, 0};
  const Noise noise{0.7, 13};
  const double clean = exact_grad_sq(s.student, s.teacher, kernel).item<double>();
  const double noisy = exact_grad_sq(s.student, s.teacher, kernel, noise).item<double>();
  EXPECT_EQ(clean, exact_witness(s.student, s.student, s.teacher, kernel).grad_sq.item<double>());
  const Particles zn = perturb(s.student, noise);
  EXPECT_EQ(noisy, exact_witness(zn, s.student, s.teacher, kernel).grad_sq.item<double>());
  EXPECT_NE(clean, noisy);
  EXPECT_NEAR(noisy,
              flat_grad(exact_witness(zn, s.student, s.teacher, kernel))
                  .square()
                  .sum(1)
                  .mean()
                  .item<double>(),
              1e-15);
}

TEST(Arccos, RefusesOtherFamilies) {
  const ParticleFamily f =
      test::family(4, 3, 1, Activation::ReLU, OutputKind::Identity, 1, false, false);
  const Particles z = test::random_net(f, 5, 1).particles();
  const Particles ok = test::random_net(exact_family(4, 1), 5, 1).particles();
  EXPECT_THROW(exact_witness(z, z, z, {}), c10::Error);
  EXPECT_THROW(exact_witness(ok, ok, ok.to(at::TensorOptions().dtype(at::kFloat)), {}), c10::Error);
  const Particles wide = test::random_net(exact_family(5, 1), 5, 1).particles();
  EXPECT_THROW(exact_witness(ok, ok, wide, {}), c10::Error);
}

}  // namespace
}  // namespace mmdflow
