// The dense layout (the original code's network) against autograd and the block layout.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "src/base/random.h"
#include "src/flow/flow.h"
#include "src/kernels/isa.h"
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
  EXPECT_TRUE(at::allclose(s->feature_sum(d.X).whole(), d.features(d.w).sum(2), 1e-12, 1e-12));
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
  EXPECT_TRUE(at::allclose(s->jacobian_gram(d.X).whole(), at::mm(J, J.t()), 1e-10, 1e-12));
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
  EXPECT_TRUE(at::allclose(dense->feature_sum(X).whole(), feature_sum(f, z, X), 1e-12, 1e-12));
}

// A dense network large enough for every block boundary of the CPU step: 140 output units (blocks
// of 48, outputs of 70 units straddle them), 420 hidden units (more than a chunk of 384 columns
// and than a step of 256 in U^T's product), biases on, tanh and a Laplace output.
struct BigDense {
  ParticleFamily f = test::family(5, 6, 2, Activation::Tanh, OutputKind::Laplace, 0.7, true, true);
  int64_t N = 70, B = 13;
  DenseWeights w;
  at::Tensor X, Y;
  explicit BigDense(c10::ScalarType dtype) {
    at::Generator g = test::gen(21);
    auto o = at::TensorOptions().dtype(at::kDouble);
    const int64_t NH = N * f.hidden, No = N * f.outputs;
    w.W1 = at::normal(0, 1, {NH, f.dim}, g, o).to(dtype);
    w.b1 = at::normal(0, 1, {NH}, g, o).to(dtype);
    w.W2 = at::normal(0, 0.05, {No, NH}, g, o).to(dtype);
    w.b2 = at::normal(0, 1, {No}, g, o).to(dtype);
    X = test::inputs(B, f.dim, 22, dtype);
    Y = test::inputs(B, f.outputs, 23, dtype);
  }
  at::Tensor features(const DenseWeights& v) const {  // [B, o, N]
    at::Tensor U = at::mm(at::tanh(at::mm(X, v.W1.t()) + v.b1), v.W2.t()) + v.b2;
    return at::exp(-0.7 * U.abs()).view({B, f.outputs, N});
  }
  DenseWeights clone() const { return {w.W1.clone(), w.b1.clone(), w.W2.clone(), w.b2.clone()}; }
};

// The CPU step on every instruction-set path against the original update written out with
// autograd (float64) and against float64 (float32).
TEST(DenseStudent, CpuStepIsTheOriginalUpdateOnEveryPath) {
  const double gamma = 0.3, beta = 0.2;
  const uint64_t seed = 31;
  BigDense d(at::kDouble);
  at::Tensor r = d.features(d.w).mean(2) - d.Y;
  at::Generator g = make_generator(c10::Device(c10::kCPU), seed);
  DenseWeights noisy = d.clone();
  std::vector<at::Tensor> leaves;
  for (at::Tensor* t : {&noisy.W1, &noisy.b1, &noisy.W2, &noisy.b2}) {
    *t = *t + beta * at::normal(0, 1, t->sizes(), g, at::kFloat).to(at::kDouble);
    leaves.push_back(t->requires_grad_(true));
  }
  auto grads = torch::autograd::grad(
      {0.5 * (r.unsqueeze(2) * d.features(noisy)).sum() / double(d.B)}, leaves);
  StepOptions opt;
  opt.step_size = gamma;
  opt.beta = beta;
  opt.noise_seed = seed;
  for (Isa isa : supported_isas()) {
    ScopedIsa path(isa);
    auto s = make_dense_student(d.f, d.clone());
    EXPECT_TRUE(at::allclose(s->feature_sum(d.X).whole(), d.features(d.w).sum(2), 1e-12, 1e-12))
        << std::string(name_of(isa));
    flow_step(*s, d.X, d.Y, opt);
    // To 5e-15: the original update up to the order of additions.
    const DenseWeights after = saved(*s);
    const at::Tensor* now[] = {&after.W1, &after.b1, &after.W2, &after.b2};
    const at::Tensor* was[] = {&d.w.W1, &d.w.b1, &d.w.W2, &d.w.b2};
    for (int i = 0; i < 4; ++i)
      EXPECT_LT((*now[i] - (*was[i] - 2 * gamma * grads[i])).abs().max().item<double>(), 5e-15)
          << std::string(name_of(isa)) << " weight " << i;
    // float32: the same step to float rounding.
    BigDense f(at::kFloat);
    auto sf = make_dense_student(f.f, f.clone());
    flow_step(*sf, f.X, f.Y, opt);
    const DenseWeights single = saved(*sf);
    for (auto [x, y] : {std::pair{&after.W1, &single.W1},
                        {&after.b1, &single.b1},
                        {&after.W2, &single.W2},
                        {&after.b2, &single.b2}})
      EXPECT_LT((*x - y->to(at::kDouble)).abs().max().item<double>(), 2e-5)
          << std::string(name_of(isa));
  }
}

// Diffusion's perturbation on CPU: the original code's draws (whole tensors, W1, b1, W2, b2 in
// order), drawn here a block of W2's rows at a time, on every path.
TEST(DenseStudent, CpuPerturbationDrawsTheOriginalNoise) {
  BigDense d(at::kDouble);
  at::Generator g = make_generator(c10::Device(c10::kCPU), 17);
  DenseWeights want = d.clone();
  for (at::Tensor* t : {&want.W1, &want.b1, &want.W2, &want.b2})
    *t = *t + 0.3 * at::normal(0, 1, t->sizes(), g, at::kFloat).to(at::kDouble);
  for (Isa isa : supported_isas()) {
    ScopedIsa path(isa);
    auto s = make_dense_student(d.f, d.clone());
    s->perturb_(Noise{0.3, 17});
    const DenseWeights got = saved(*s);
    for (auto [x, y] : {std::pair{&got.W1, &want.W1},
                        {&got.b1, &want.b1},
                        {&got.W2, &want.W2},
                        {&got.b2, &want.b2}})
      EXPECT_LT((*x - *y).abs().max().item<double>(), 1e-15) << name_of(isa);
  }
}

// The clean gradient's norm (no update) and the step do not depend on the number of threads.
TEST(DenseStudent, CpuStepIndependentOfThreadCount) {
  BigDense d(at::kFloat);
  StepOptions opt;
  opt.step_size = 0.3;
  opt.beta = 0.2;
  opt.noise_seed = 8;
  opt.clean_grad_sq = true;
  const int threads = at::get_num_threads();
  std::vector<DenseWeights> after;
  std::vector<double> sq;
  for (int t : {1, 2, 3}) {
    at::set_num_threads(t);
    auto s = make_dense_student(d.f, d.clone());
    StepStats st = flow_step(*s, d.X, d.Y, opt);
    after.push_back(saved(*s));
    sq.push_back(st.grad_sq.whole().item<double>());
  }
  at::set_num_threads(threads);
  for (size_t i = 1; i < after.size(); ++i) {
    EXPECT_TRUE(at::equal(after[i].W1, after[0].W1) && at::equal(after[i].b1, after[0].b1) &&
                at::equal(after[i].W2, after[0].W2) && at::equal(after[i].b2, after[0].b2))
        << i + 1 << " threads";
    EXPECT_EQ(sq[i], sq[0]) << i + 1 << " threads";
  }
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
  EXPECT_TRUE(a->diffuses_first());  // the original code: noise, then the step
}

}  // namespace
}  // namespace mmdflow
