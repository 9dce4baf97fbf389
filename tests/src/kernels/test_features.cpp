#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "src/kernels/features.h"
#include "src/kernels/isa.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

struct Case {
  Activation s;
  OutputKind g;
  double param;
  bool hb, ob;
};

std::string label(const Case& c) {
  return std::string(name_of(c.s)) + "_" + name_of(c.g) + (c.hb ? "_a" : "") + (c.ob ? "_b" : "");
}
std::string name(const testing::TestParamInfo<Case>& info) { return label(info.param); }
void PrintTo(const Case& c, std::ostream* os) { *os << label(c); }

class WeightedGrad : public testing::TestWithParam<Case> {
 protected:
  ParticleFamily fam() const {
    const Case& c = GetParam();
    return test::family(3, 2, 2, c.s, c.g, c.param, c.hb, c.ob);
  }
};

// Objective whose per-particle gradient weighted_grad returns: sum_n sum_b W_b^T phi_{z_n}(x_b).
double objective(const ParticleFamily& f, const Particles& z, const at::Tensor& X,
                 const at::Tensor& W) {
  return (feature_sum(f, z, X, 0, Impl::Generic) * W).sum().item<double>();
}

TEST_P(WeightedGrad, EqualsAutograd) {
  const ParticleFamily f = fam();
  Particles z = test::random_net(f, 5, 1).particles();
  at::Tensor X = test::inputs(7, f.dim, 2), W = test::inputs(7, f.outputs, 3);
  Particles zr = z.clone();
  std::vector<at::Tensor> leaves;
  for (at::Tensor* t : zr.tensors()) leaves.push_back(t->requires_grad_(true));
  at::Tensor obj = (particle_features(f, zr, X) * W.unsqueeze(0)).sum();
  auto grads = torch::autograd::grad({obj}, leaves);
  for (Isa isa : supported_isas()) {
    ScopedIsa path(isa);
    for (Impl impl : {Impl::Fused, Impl::Generic}) {
      Particles g = weighted_grad(f, z, X, W, 0, impl);
      auto gt = g.tensors();
      ASSERT_EQ(gt.size(), grads.size());
      for (size_t i = 0; i < gt.size(); ++i)
        EXPECT_TRUE(at::allclose(*gt[i], grads[i], 1e-10, 1e-12))
            << "tensor " << i << " impl " << int(impl) << " path " << std::string(name_of(isa))
            << "\n"
            << *gt[i] << "\n"
            << grads[i];
    }
  }
}

TEST_P(WeightedGrad, EqualsCentralFiniteDifferences) {
  const ParticleFamily f = fam();
  Particles z = test::random_net(f, 2, 4).particles();
  at::Tensor X = test::inputs(5, f.dim, 5), W = test::inputs(5, f.outputs, 6);
  Particles g = weighted_grad(f, z, X, W);
  const double eps = 1e-6;
  auto zt = z.tensors();
  auto gt = g.tensors();
  for (size_t i = 0; i < zt.size(); ++i) {
    at::Tensor flat = zt[i]->view({-1});
    at::Tensor gflat = gt[i]->reshape({-1});
    for (int64_t k = 0; k < flat.numel(); ++k) {
      const double v = flat[k].item<double>();
      flat[k] = v + eps;
      const double up = objective(f, z, X, W);
      flat[k] = v - eps;
      const double down = objective(f, z, X, W);
      flat[k] = v;
      EXPECT_NEAR(gflat[k].item<double>(), (up - down) / (2 * eps), 1e-6)
          << "tensor " << i << " coordinate " << k;
    }
  }
}

TEST_P(WeightedGrad, FeatureSumMatchesReference) {
  const ParticleFamily f = fam();
  Particles z = test::random_net(f, 37, 7).particles();
  at::Tensor X = test::inputs(11, f.dim, 8);
  at::Tensor ref = particle_features(f, z, X).sum(0);
  for (Isa isa : supported_isas()) {
    ScopedIsa path(isa);
    EXPECT_TRUE(at::allclose(feature_sum(f, z, X, 0, Impl::Fused), ref, 1e-12, 1e-12))
        << std::string(name_of(isa));
  }
  EXPECT_TRUE(at::allclose(feature_sum(f, z, X, 0, Impl::Generic), ref, 1e-12, 1e-12));
}

INSTANTIATE_TEST_SUITE_P(
    Families, WeightedGrad,
    testing::Values(Case{Activation::ReLU, OutputKind::Identity, 1, false, false},
                    Case{Activation::ReLU, OutputKind::Gaussian, 2, false, false},
                    Case{Activation::ReLU, OutputKind::Gaussian, 2, true, true},
                    Case{Activation::Tanh, OutputKind::Laplace, 0.7, true, false},
                    Case{Activation::Tanh, OutputKind::IMQ, 1.5, false, true},
                    Case{Activation::ReLU, OutputKind::Cosine, 1, true, true},
                    Case{Activation::Tanh, OutputKind::Power, 1, true, true}),
    name);

// Hand-checked: 2 particles, d = 2 (see test_particle_net.cpp), W = (2.25, 0).
TEST(WeightedGradHand, TwoParticles) {
  ParticleFamily f = test::family(2, 1, 1, Activation::ReLU, OutputKind::Identity, 1, false, false);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  Particles z;
  z.A = at::tensor({1.0, 2.0, -1.0, 1.0}, opts).view({2, 1, 2});
  z.B = at::tensor({3.0, 0.5}, opts).view({2, 1, 1});
  auto X = at::tensor({1.0, 1.0, 2.0, -1.0}, opts).view({2, 2});
  auto W = at::tensor({2.25, 0.0}, opts).view({2, 1});
  Particles g = weighted_grad(f, z, X, W);
  // Particle 1: d/dB = 2.25 relu(3) = 6.75; d/dA = 2.25 * 3 * x1 = (6.75, 6.75).
  // Particle 2: pre-activations 0 and -3, so every gradient is 0.
  EXPECT_TRUE(at::equal(g.A, at::tensor({6.75, 6.75, 0.0, 0.0}, opts).view({2, 1, 2})));
  EXPECT_TRUE(at::equal(g.B, at::tensor({6.75, 0.0}, opts).view({2, 1, 1})));
  EXPECT_TRUE(at::allclose(feature_sum(f, z, X), at::tensor({9.0, 0.0}, opts).view({2, 1})));
}

TEST(WeightedGradInvariance, ChunkedEqualsWholeAndBlockEqualsPerParticle) {
  ParticleFamily f = test::family(6, 3, 2, Activation::ReLU, OutputKind::Gaussian, 2, true, true);
  Particles z = test::random_net(f, 50, 11).particles();
  at::Tensor X = test::inputs(9, f.dim, 12), W = test::inputs(9, f.outputs, 13);
  Particles whole = weighted_grad(f, z, X, W);
  for (int64_t chunk : {1, 7, 16, 49}) {
    EXPECT_LT(test::max_abs_diff(weighted_grad(f, z, X, W, chunk), whole), 1e-12) << chunk;
    EXPECT_TRUE(at::allclose(feature_sum(f, z, X, chunk), feature_sum(f, z, X), 1e-12, 1e-12));
  }
  for (int64_t n : {0, 17, 49}) {  // one particle alone gets the same gradient
    Particles one = weighted_grad(f, z.slice(n, n + 1), X, W);
    EXPECT_LT(test::max_abs_diff(one, whole.slice(n, n + 1)), 1e-12) << n;
  }
}

TEST(WeightedGradInvariance, FloatAgreesWithDouble) {
  ParticleFamily f =
      test::family(50, 3, 1, Activation::ReLU, OutputKind::Gaussian, 2, false, false);
  Particles z = test::random_net(f, 300, 21).particles();
  at::Tensor X = test::inputs(100, f.dim, 22), W = test::inputs(100, 1, 23) / 100;
  Particles gd = weighted_grad(f, z, X, W);
  Particles gf = weighted_grad(f, z.to(at::kFloat), X.to(at::kFloat), W.to(at::kFloat));
  auto dt = gd.tensors();
  auto ft = gf.tensors();
  for (size_t i = 0; i < dt.size(); ++i) {
    const double scale = dt[i]->abs().max().item<double>();
    EXPECT_LT((ft[i]->to(at::kDouble) - *dt[i]).abs().max().item<double>(), 1e-5 * scale);
  }
  at::Tensor sd = feature_sum(f, z, X), sf = feature_sum(f, z.to(at::kFloat), X.to(at::kFloat));
  EXPECT_TRUE(at::allclose(sf.to(at::kDouble), sd, 1e-5, 1e-5));
}

// The fused kernel takes H as a compile-time constant (H <= 4) and its own float32 products:
// against the generic path for each H and o, biases on, in both precisions. Wider particles run
// the generic path under Impl::Auto and are refused by Impl::Fused.
TEST(WeightedGradInvariance, FusedEqualsGenericForEveryHiddenWidth) {
  for (Isa isa : supported_isas())
    for (int64_t H : {1, 2, 3, 4, 5})
      for (int64_t o : {1, 3})
        for (auto dtype : {at::kDouble, at::kFloat}) {
          ParticleFamily f =
              test::family(9, H, o, Activation::ReLU, OutputKind::Gaussian, 2, true, true);
          Particles z = test::random_net(f, 150, 31).particles().to(dtype);
          at::Tensor X = test::inputs(21, f.dim, 32).to(dtype);
          at::Tensor W = test::inputs(21, o, 33).to(dtype);
          const double tol = dtype == at::kDouble ? 1e-12 : 1e-4;
          const std::string at_ =
              std::string(name_of(isa)) + " H=" + std::to_string(H) + " o=" + std::to_string(o);
          ScopedIsa path(isa);
          EXPECT_LT(test::max_abs_diff(weighted_grad(f, z, X, W, 0, Impl::Auto),
                                       weighted_grad(f, z, X, W, 0, Impl::Generic)),
                    tol)
              << at_;
          EXPECT_TRUE(at::allclose(feature_sum(f, z, X, 0, Impl::Auto),
                                   feature_sum(f, z, X, 0, Impl::Generic), tol, tol))
              << at_;
          if (H > 4) {
            EXPECT_THROW(feature_sum(f, z, X, 0, Impl::Fused), c10::Error) << at_;
          }
        }
}

// The fused descent against the generic one with noise, over every pair of non-linearities,
// H = 1, 3, 4, o = 1, 2, with and without biases, N = 261 (two full blocks and a partial one) and
// B = 13 (a partial vector of inputs), in both precisions.
TEST(WeightedGradInvariance, FusedDescentEqualsGenericEverywhere) {
  const std::vector<std::pair<OutputKind, double>> outs = {
      {OutputKind::Identity, 1}, {OutputKind::Gaussian, 2}, {OutputKind::Laplace, 0.7},
      {OutputKind::IMQ, 1.5},    {OutputKind::Cosine, 1},   {OutputKind::Power, 1}};
  int k = 0;
  for (Isa isa : supported_isas())
    for (Activation s : {Activation::ReLU, Activation::Tanh})
      for (const auto& [g, param] : outs)
        for (int64_t H : {1, 3, 4})
          for (auto dtype : {at::kDouble, at::kFloat}) {
            const int64_t o = 1 + k % 2;
            const bool biases = k++ % 3 == 0;
            ParticleFamily f = test::family(7, H, o, s, g, param, biases, biases);
            Particles z = test::random_net(f, 261, 41, dtype, 0.5).particles();
            at::Tensor X = test::inputs(13, f.dim, 42, dtype);
            at::Tensor W = test::inputs(13, o, 43, dtype) / 13;
            const Noise noise{0.3, 44};
            ScopedIsa path(isa);
            Particles a = z.clone(), b = z.clone();
            const double sa = descend(f, a, X, W, 0.5, 0, Impl::Fused, noise).sum().item<double>();
            const double sb =
                descend(f, b, X, W, 0.5, 0, Impl::Generic, noise).sum().item<double>();
            const double tol = dtype == at::kDouble ? 1e-12 : 2e-5;
            const std::string at_ = std::string(name_of(isa)) + " " + name_of(s) + "/" +
                                    name_of(g) + " H=" + std::to_string(H) +
                                    " o=" + std::to_string(o) + (biases ? " biases" : "") +
                                    (dtype == at::kDouble ? " float64" : " float32");
            EXPECT_LT(test::max_abs_diff(a, b), tol) << at_;
            EXPECT_NEAR(sa, sb, tol * std::max(1.0, sb)) << at_;
            EXPECT_GT(test::max_abs_diff(a, z), 1e-4) << at_;  // the step moved the particles
          }
}

// Every instruction-set path takes the same step at the paper's shape (d = 50, H = 3, B = 100,
// noise injection, N = 300: two full blocks and a partial one). The paths only add in different
// orders, and avx2 and avx512 draw the same noise bits: they agree to 1e-13 in float64. The
// generic path's noise rounds differently in float32 (no FMA), so it agrees to float rounding.
TEST(WeightedGradInvariance, EveryPathTakesTheSameStep) {
  ParticleFamily f =
      test::family(50, 3, 1, Activation::ReLU, OutputKind::Gaussian, 2, false, false);
  for (auto dtype : {at::kDouble, at::kFloat}) {
    Particles z = test::random_net(f, 300, 51, dtype).particles();
    at::Tensor X = test::inputs(100, f.dim, 52, dtype), W = test::inputs(100, 1, 53, dtype) / 100;
    const Noise noise{1.0, 54};
    const Isa widest = widest_isa();
    Particles ref = z.clone();
    double sq_ref;
    at::Tensor sum_ref;
    {
      ScopedIsa path(widest);
      sq_ref = descend(f, ref, X, W, 1.0, 0, Impl::Fused, noise).sum().item<double>();
      sum_ref = feature_sum(f, z, X, 0, Impl::Fused);
    }
    const double scale = 1 + ref.A.abs().max().item<double>();
    for (Isa isa : supported_isas()) {
      ScopedIsa path(isa);
      Particles a = z.clone();
      const double sq = descend(f, a, X, W, 1.0, 0, Impl::Fused, noise).sum().item<double>();
      const double tol = dtype == at::kDouble && isa != Isa::Generic ? 1e-13 : 1e-5;
      const std::string at_ = std::string(name_of(isa)) + " against " +
                              std::string(name_of(widest)) +
                              (dtype == at::kDouble ? " float64" : " float32");
      EXPECT_LT(test::max_abs_diff(a, ref), tol * scale) << at_;
      EXPECT_NEAR(sq, sq_ref, tol * sq_ref) << at_;
      const double sum_tol = dtype == at::kDouble ? 1e-13 : 1e-5;  // no noise in feature sums
      EXPECT_TRUE(at::allclose(feature_sum(f, z, X, 0, Impl::Fused), sum_ref, sum_tol, sum_tol))
          << at_;
    }
  }
}

TEST(WeightedGradChecks, RejectsMismatchedShapes) {
  ParticleFamily f = test::family(4, 2, 1, Activation::ReLU, OutputKind::Identity, 1, false, false);
  Particles z = test::random_net(f, 3, 1).particles();
  EXPECT_THROW(weighted_grad(f, z, test::inputs(5, 3, 1), test::inputs(5, 1, 2)), c10::Error);
  EXPECT_THROW(weighted_grad(f, z, test::inputs(5, 4, 1), test::inputs(4, 1, 2)), c10::Error);
}

}  // namespace
}  // namespace mmdflow

namespace mmdflow {
namespace {

// A block's sums (features, Jacobian Gram, squared gradient norms) are the same bits wherever the
// block lies: in a whole measure, in a shard that starts at it, in any chunk (the leaves of
// src/flow/tree_sum.h). N = 300: blocks of 128, 128 and 44.
TEST(BlockSums, EachBlocksSumsAreTheSameWhereverTheBlockLies) {
  for (auto dtype : {at::kDouble, at::kFloat})
    for (Impl impl : {Impl::Fused, Impl::Generic}) {
      const std::string at_ = std::string(impl == Impl::Fused ? "fused" : "generic") +
                              (dtype == at::kDouble ? " float64" : " float32");
      ParticleFamily f =
          test::family(5, 3, 1, Activation::ReLU, OutputKind::Gaussian, 2, true, true);
      const Particles z = test::random_net(f, 300, 61, dtype).particles();
      const at::Tensor X = test::inputs(7, f.dim, 62, dtype);
      const at::Tensor whole = feature_block_sums(f, z, X, 0, impl);  // [3, 7, 1]
      ASSERT_EQ(whole.sizes(), at::IntArrayRef({3, 7, 1})) << at_;
      EXPECT_EQ(whole.scalar_type(), at::kDouble);
      EXPECT_TRUE(
          at::equal(feature_block_sums(f, z.slice(128, 300), X, 0, impl), whole.narrow(0, 1, 2)))
          << at_;
      EXPECT_TRUE(at::equal(feature_block_sums(f, z, X, 128, impl), whole)) << at_;
      const double tol = dtype == at::kDouble ? 1e-12 : 1e-4;
      EXPECT_TRUE(at::allclose(whole.sum(0).to(dtype), feature_sum(f, z, X), tol, tol)) << at_;

      const at::Tensor gram = jacobian_gram_blocks(f, z, X);  // [3, 7, 7]
      EXPECT_TRUE(at::equal(jacobian_gram_blocks(f, z.slice(256, 300), X), gram.narrow(0, 2, 1)));
      const Particles g = weighted_grad(f, z, X, X.narrow(1, 0, 1) / 7, 0, impl);
      const at::Tensor sq = block_sq_norms(g);  // [3]
      EXPECT_TRUE(at::equal(block_sq_norms(g.slice(128, 256)), sq.narrow(0, 1, 1))) << at_;
      Particles a = z.clone(), b = z.slice(128, 300).clone();
      const at::Tensor W = X.narrow(1, 0, 1) / 7;
      EXPECT_TRUE(at::equal(descend(f, b, X, W, 0.1, 0, impl, Noise{0.5, 63, 1}),
                            descend(f, a, X, W, 0.1, 0, impl, Noise{0.5, 63}).narrow(0, 1, 2)))
          << at_;
    }
}

}  // namespace
}  // namespace mmdflow
