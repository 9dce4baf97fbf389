// The dense layout (the original code's network) against autograd and the block layout.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "src/base/random.h"
#include "src/flow/flow.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

struct Dense {
  ParticleFamily f = test::family(4, 2, 2, Activation::ReLU, OutputKind::Gaussian, 2, true, true);
  int64_t N = 5;
  DenseWeights w;
  at::Tensor X = test::inputs(7, 4, 3);
  Dense() {
    at::Generator g = test::gen(11);
    auto o = at::TensorOptions().dtype(at::kDouble);
    w.W1 = at::normal(0, 1, {N * 2, 4}, g, o);
    w.b1 = at::normal(0, 1, {N * 2}, g, o);
    w.W2 = at::normal(0, 0.5, {N * 2, N * 2}, g, o);
    w.b2 = at::normal(0, 1, {N * 2}, g, o);
  }
  // phi [B, o, N] written out: output unit k N + n reads every hidden unit.
  at::Tensor features(const DenseWeights& v) const {
    at::Tensor S1 = at::relu(at::mm(X, v.W1.t()) + v.b1);
    at::Tensor U = at::mm(S1, v.W2.t()) + v.b2;
    return at::exp(-U * U / 4.0).view({X.size(0), f.outputs, N});
  }
  std::vector<at::Tensor> leaves(DenseWeights& v) const {
    return {v.W1.requires_grad_(true), v.b1.requires_grad_(true), v.W2.requires_grad_(true),
            v.b2.requires_grad_(true)};
  }
  DenseWeights clone() const { return {w.W1.clone(), w.b1.clone(), w.W2.clone(), w.b2.clone()}; }
};

void expect_moved(const DenseWeights& after, const DenseWeights& before,
                  const std::vector<at::Tensor>& g, double lr) {
  const at::Tensor* a[] = {&after.W1, &after.b1, &after.W2, &after.b2};
  const at::Tensor* b[] = {&before.W1, &before.b1, &before.W2, &before.b2};
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE(at::allclose(*a[i], *b[i] - lr * g[i], 1e-10, 1e-12)) << "weight " << i;
}

DenseWeights saved(const Student& s) {
  DenseWeights w;
  for (auto& [name, t] : s.named_tensors()) {
    if (name == "W1") w.W1 = t;
    if (name == "b1") w.b1 = t;
    if (name == "W2") w.W2 = t;
    if (name == "b2") w.b2 = t;
  }
  return w;
}

TEST(DenseStudent, FeatureSumMatchesTheWrittenOutNetwork) {
  Dense d;
  auto s = make_dense_student(d.f, d.clone());
  EXPECT_EQ(s->size(), d.N);
  EXPECT_TRUE(at::allclose(s->feature_sum(d.X), d.features(d.w).sum(2), 1e-12, 1e-12));
}

// The original code's MMD flow: theta <- theta - lr 1/2 grad[(1/B) sum_b r_b^T sum_n
// phi_n(x_b; theta + beta eps)], r at the clean weights, lr = 2 gamma.
TEST(DenseStudent, MmdStepIsTheOriginalUpdateWithLrTwoGamma) {
  Dense d;
  const double gamma = 0.05, beta = 0.4;
  const uint64_t seed = 77;
  at::Tensor Y = at::rand({7, 2}, at::kDouble);
  at::Tensor r = d.features(d.w).mean(2) - Y;
  // theta + beta eps with the generator the dense student draws from (W1, b1, W2, b2 in order,
  // in float32).
  at::Generator g = make_generator(c10::Device(c10::kCPU), seed);
  DenseWeights noisy = d.clone();
  for (at::Tensor* t : {&noisy.W1, &noisy.b1, &noisy.W2, &noisy.b2})
    *t = *t + beta * at::normal(0, 1, t->sizes(), g, at::kFloat).to(at::kDouble);
  auto leaves = d.leaves(noisy);
  at::Tensor obj = 0.5 * (r.unsqueeze(2) * d.features(noisy)).sum() / 7.0;
  auto grads = torch::autograd::grad({obj}, leaves);
  auto s = make_dense_student(d.f, d.clone());
  StepOptions opt;
  opt.step_size = gamma;
  opt.beta = beta;
  opt.noise_seed = seed;
  StepStats st = flow_step(*s, d.X, Y, opt);
  expect_moved(saved(*s), d.w, grads, 2 * gamma);
  EXPECT_NEAR(st.loss.item<double>(), 0.5 * r.square().sum().item<double>() / 7, 1e-14);
}

// Diffusion in the original code: noise added to the weights, then a step (lr = gamma) at them.
TEST(DenseStudent, DiffusionNoisesThenSteps) {
  Dense d;
  const double gamma = 0.05, beta = 0.2;
  at::Tensor Y = at::rand({7, 2}, at::kDouble);
  at::Generator g = make_generator(c10::Device(c10::kCPU), 5);
  DenseWeights noisy = d.clone();
  for (at::Tensor* t : {&noisy.W1, &noisy.b1, &noisy.W2, &noisy.b2})
    *t = *t + beta * at::normal(0, 1, t->sizes(), g, at::kFloat).to(at::kDouble);
  DenseWeights base = {noisy.W1.clone(), noisy.b1.clone(), noisy.W2.clone(), noisy.b2.clone()};
  auto leaves = d.leaves(noisy);
  at::Tensor r = (d.features(noisy).mean(2) - Y).detach();
  auto grads = torch::autograd::grad({(r.unsqueeze(2) * d.features(noisy)).sum() / 7.0}, leaves);
  auto s = make_dense_student(d.f, d.clone());
  StepOptions opt;
  opt.method = Method::Diffusion;
  opt.step_size = gamma;
  opt.beta = beta;
  opt.noise_seed = 5;
  flow_step(*s, d.X, Y, opt);
  expect_moved(saved(*s), base, grads, gamma);
}

// J_b = grad of sum_n phi_n(x_b) over all weights, one input at a time (the original code).
TEST(DenseStudent, JacobianGramMatchesAutograd) {
  Dense d;
  d.f.outputs = 1;
  d.w.W2 = d.w.W2.narrow(0, 0, d.N).contiguous();
  d.w.b2 = d.w.b2.narrow(0, 0, d.N).contiguous();
  std::vector<at::Tensor> rows;
  for (int64_t b = 0; b < 7; ++b) {
    DenseWeights v = d.clone();
    auto leaves = d.leaves(v);
    at::Tensor S1 = at::relu(at::mm(d.X.narrow(0, b, 1), v.W1.t()) + v.b1);
    at::Tensor U = at::mm(S1, v.W2.t()) + v.b2;
    auto g = torch::autograd::grad({at::exp(-U * U / 4.0).sum()}, leaves);
    std::vector<at::Tensor> flat;
    for (auto& t : g) flat.push_back(t.reshape({-1}));
    rows.push_back(at::cat(flat));
  }
  at::Tensor J = at::stack(rows);
  auto s = make_dense_student(d.f, d.clone());
  EXPECT_TRUE(at::allclose(s->jacobian_gram(d.X), at::mm(J, J.t()), 1e-10, 1e-12));
}

// A dense network whose W2 is block-diagonal is the block-layout network.
TEST(DenseStudent, BlockDiagonalDenseEqualsBlockLayout) {
  ParticleFamily f = test::family(4, 3, 2, Activation::ReLU, OutputKind::Gaussian, 2, false, false);
  const int64_t N = 6, H = 3, o = 2;
  Particles z = test::random_net(f, N, 2).particles();
  DenseWeights w;
  w.W1 = z.A.reshape({N * H, 4}).clone();
  w.W2 = at::zeros({N * o, N * H}, at::kDouble);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < o; ++k) w.W2[k * N + n].narrow(0, n * H, H).copy_(z.B[n][k]);
  at::Tensor X = test::inputs(9, 4, 1);
  auto dense = make_dense_student(f, w);
  EXPECT_TRUE(at::allclose(dense->feature_sum(X), feature_sum(f, z, X), 1e-12, 1e-12));
}

TEST(DenseStudent, SeededInitAndShapes) {
  ParticleFamily f = test::family(5, 3, 1, Activation::ReLU, OutputKind::Gaussian, 2, false, false);
  at::Generator g1 = test::gen(4), g2 = test::gen(4);
  auto o = at::TensorOptions().dtype(at::kFloat);
  auto a = make_dense_student(f, 10, 0.001, 1.0, o, g1);
  auto b = make_dense_student(f, 10, 0.001, 1.0, o, g2);
  auto ta = a->named_tensors();
  auto tb = b->named_tensors();
  ASSERT_EQ(ta.size(), 2u);
  EXPECT_EQ(ta[0].second.sizes(), at::IntArrayRef({30, 5}));
  EXPECT_EQ(ta[1].second.sizes(), at::IntArrayRef({10, 30}));
  EXPECT_TRUE(at::equal(ta[1].second, tb[1].second));
  EXPECT_EQ(a->layout(), Layout::Dense);
}

}  // namespace
}  // namespace mmdflow
