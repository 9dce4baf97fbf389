// The comparison of a student with its teacher: the loss on fresh inputs, the zero student's,
// and each teacher particle's nearest student particles modulo the order of their hidden units,
// whole or gathered from shards.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "src/train/compare.h"
#include "src/train/trainer.h"
#include "tests/cli.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

// Writes particle `from` of z with its hidden units in the order `order` into particle `to` of
// out: unit h of the copy is unit order[h] of the original (a row of A, its entry of a, its
// column of B; b is copied as is).
void copy_permuted(const Particles& z, int64_t from, const std::vector<int64_t>& order,
                   Particles& out, int64_t to) {
  const at::Tensor idx = at::tensor(order, at::kLong);
  out.A[to].copy_(z.A[from].index_select(0, idx));
  if (z.a.defined()) out.a[to].copy_(z.a[from].index_select(0, idx));
  out.B[to].copy_(z.B[from].index_select(1, idx));
  if (z.b.defined()) out.b[to].copy_(z.b[from]);
}

// A student holding copies of the teacher's particles at known places, shifted by known amounts.
struct Placed {
  ParticleFamily f = test::family(3, 2, 1, Activation::ReLU, OutputKind::Gaussian, 2, false, false);
  Particles teacher = test::random_net(f, 2, 7).particles();
  Particles student = test::random_net(f, 300, 8, at::kDouble, 3.0).particles();
  Placed() {
    // Teacher 0 sits at student 131 with its two units swapped, and 0.1 (in A[0][0]) from
    // student 7; teacher 1 sits 0.2 from student 250, units swapped.
    copy_permuted(teacher, 0, {1, 0}, student, 131);
    copy_permuted(teacher, 0, {0, 1}, student, 7);
    student.A[7][0][0] += 0.1;
    copy_permuted(teacher, 1, {1, 0}, student, 250);
    student.B[250][0][1] -= 0.2;
  }
};

TEST(Compare, NearestParticlesAndLossOnFreshInputs) {
  Placed p;
  auto student = test::block(p.f, p.student);
  const ParticleNet teacher(p.f, p.teacher);
  auto comm = single_process();
  at::Generator g1 = test::gen(3), g2 = test::gen(3);
  const Comparison c = compare(*student, teacher, InputDist::Sphere, 500, 2, g1, *comm);
  ASSERT_TRUE(c.nearest);
  ASSERT_EQ(c.nearest->size(), 2u);
  const auto& m = *c.nearest;
  EXPECT_EQ(m[0].student, (std::vector<int64_t>{131, 7}));
  EXPECT_EQ(m[0].distance[0], 0.0);
  EXPECT_NEAR(m[0].distance[1], 0.1, 1e-12);
  EXPECT_EQ(m[1].student[0], 250);
  EXPECT_NEAR(m[1].distance[0], 0.2, 1e-12);
  const at::Tensor X = sample_inputs(InputDist::Sphere, 500, 3, g2, at::kDouble);
  EXPECT_DOUBLE_EQ(c.half_mmd2, half_mse(*student, X, teacher.forward(X), 1000).item<double>());
  const std::string table = format_table(c);
  EXPECT_NE(table.find("       1      1       250"), std::string::npos) << table;
  EXPECT_NE(table.find("distance mod unit order"), std::string::npos) << table;
  // Particles of another size (a misspecified teacher) are not compared.
  ParticleFamily wide = p.f;
  wide.hidden = 3;
  const ParticleNet other(wide, test::random_net(wide, 2, 9).particles());
  at::Generator g3 = test::gen(3);
  EXPECT_FALSE(compare(*student, other, InputDist::Sphere, 50, 2, g3, *comm).nearest);
}

// By hand: H = 2, d = 1, o = 1. Teacher units (A, B) (1, 0) and (0, 2), student's (0, 1) and
// (3, 0): in the stored order 2 + 13 = 15, swapped 4 + 1 = 5.
TEST(Compare, DistanceModuloUnitOrderByHand) {
  const ParticleFamily f =
      test::family(1, 2, 1, Activation::ReLU, OutputKind::Identity, 1, false, false);
  Particles t = test::random_net(f, 1, 1).particles(), s = test::random_net(f, 1, 2).particles();
  t.A.copy_(at::tensor({1.0, 0.0}, at::kDouble).view({1, 2, 1}));
  t.B.copy_(at::tensor({0.0, 2.0}, at::kDouble).view({1, 1, 2}));
  s.A.copy_(at::tensor({0.0, 3.0}, at::kDouble).view({1, 2, 1}));
  s.B.copy_(at::tensor({1.0, 0.0}, at::kDouble).view({1, 1, 2}));
  EXPECT_DOUBLE_EQ(unit_order_distances(t, s).item<double>(), std::sqrt(5.0));
  EXPECT_DOUBLE_EQ((t.flat() - s.flat()).norm().item<double>(), std::sqrt(15.0));
}

// Every order of the units of every particle, with biases, at H = 3 (brute force) and H = 7
// (Hungarian): a permuted copy is at distance exactly 0, a shifted one at the shift.
TEST(Compare, PermutedCopiesAreAtDistanceZero) {
  for (int64_t H : {3, 7}) {
    const ParticleFamily f =
        test::family(4, H, 2, Activation::Tanh, OutputKind::Identity, 1, true, true);
    const Particles t = test::random_net(f, 3, 5).particles();
    Particles s = test::random_net(f, 3, 6).particles();
    at::Generator g = test::gen(uint64_t(H));
    for (int64_t m = 0; m < 3; ++m) {
      const at::Tensor perm = at::randperm(H, g, at::kLong);
      copy_permuted(
          t, m, std::vector<int64_t>(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + H), s, m);
    }
    s.b[2][1] += 0.25;
    s.a[1][H - 1] -= 0.5;
    const at::Tensor D = unit_order_distances(t, s);  // [3, 3]
    EXPECT_EQ(D[0][0].item<double>(), 0.0) << "H = " << H;
    EXPECT_NEAR(D[1][1].item<double>(), 0.5, 1e-14) << "H = " << H;
    EXPECT_NEAR(D[2][2].item<double>(), 0.25, 1e-14) << "H = " << H;
    // The plain distance of the copies is not 0, and modulo order is never more than plain.
    EXPECT_GT((t.flat()[0] - s.flat()[0]).norm().item<double>(), 0.1) << "H = " << H;
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 3; ++j)
        EXPECT_LE(D[i][j].item<double>(),
                  (t.flat()[i] - s.flat()[j]).norm().item<double>() * (1 + 1e-12));
  }
}

TEST(Compare, HungarianEqualsBruteForce) {
  // By hand: rows take columns 1, 0, 2 (1 + 2 + 2).
  const std::vector<double> C3{4, 1, 3, 2, 0, 5, 3, 2, 2};
  EXPECT_EQ(min_assignment_brute_force(C3, 3), 5.0);
  EXPECT_EQ(min_assignment_hungarian(C3, 3), 5.0);
  at::Generator g = test::gen(11);
  for (int trial = 0; trial < 600; ++trial) {
    const int64_t H = 1 + trial % 6;
    // Continuous costs (one optimum), then small integers (many ties).
    const at::Tensor U = at::rand({H * H}, g, at::kDouble);
    const at::Tensor I = at::randint(0, 4, {H * H}, g, at::kDouble);
    for (const at::Tensor& t : {U, I}) {
      const std::vector<double> C(t.data_ptr<double>(), t.data_ptr<double>() + H * H);
      EXPECT_EQ(min_assignment_hungarian(C, H), min_assignment_brute_force(C, H))
          << "H = " << H << ", trial " << trial;
    }
  }
}

// 1/2 E_x ||f_teacher(x)||^2 by hand on the same fresh inputs; a student of all-zero particles
// with the identity output is the zero function, so its loss is the same number, ratio 1.
TEST(Compare, ZeroStudentLossByHand) {
  const ParticleFamily f =
      test::family(2, 2, 2, Activation::ReLU, OutputKind::Identity, 1, true, true);
  const Particles t = test::random_net(f, 3, 21).particles();
  Particles zero = test::random_net(f, 4, 22).particles();
  for (at::Tensor* x : zero.tensors()) x->zero_();
  auto student = test::block(f, zero);
  const ParticleNet teacher(f, t);
  auto comm = single_process();
  at::Generator g1 = test::gen(5), g2 = test::gen(5);
  const Comparison c = compare(*student, teacher, InputDist::Gaussian, 7, 1, g1, *comm);
  const at::Tensor X = sample_inputs(InputDist::Gaussian, 7, 2, g2, at::kDouble);
  double want = 0;
  for (int64_t n = 0; n < 7; ++n)
    for (int64_t j = 0; j < 2; ++j) {
      double y = 0;  // (1/M) sum_m sum_h B_m[j][h] relu(A_m[h] . x + a_m[h]) + b_m[j]
      for (int64_t m = 0; m < 3; ++m) {
        y += t.b[m][j].item<double>() / 3;
        for (int64_t h = 0; h < 2; ++h) {
          const double pre = t.A[m][h][0].item<double>() * X[n][0].item<double>() +
                             t.A[m][h][1].item<double>() * X[n][1].item<double>() +
                             t.a[m][h].item<double>();
          y += t.B[m][j][h].item<double>() * std::max(pre, 0.0) / 3;
        }
      }
      want += 0.5 * y * y / 7;
    }
  ASSERT_TRUE(c.zero_half_mmd2);
  EXPECT_NEAR(*c.zero_half_mmd2, want, 1e-14 * want);
  EXPECT_NEAR(c.half_mmd2, want, 1e-14 * want);
  EXPECT_NE(format_table(c).find("ratio 1.000e+00"), std::string::npos) << format_table(c);
}

// summary.json's "compare" reads back; one written before the zero student and the distance
// modulo unit order (a plain "nearest") reads with both absent.
TEST(Compare, SummaryFieldsReadBackAndOlderSummariesRead) {
  Comparison c;
  c.samples = 10;
  c.half_mmd2 = 0.5;
  c.zero_half_mmd2 = 2.0;
  c.nearest = {{1, {4, 2}, {0.0, 0.25}}};
  const Comparison back = nlohmann::json(c).get<Comparison>();
  EXPECT_EQ(back.zero_half_mmd2, 2.0);
  ASSERT_TRUE(back.nearest);
  EXPECT_EQ((*back.nearest)[0].student, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ((*back.nearest)[0].distance, (std::vector<double>{0.0, 0.25}));
  const auto old = nlohmann::json::parse(
      R"({"samples": 10, "half_mmd2": 0.5, "exact_half_mmd2": null, "target_half_mmd2": null,
          "nearest": [{"teacher": 0, "student": [3], "distance": [4.73]}]})");
  const Comparison o = old.get<Comparison>();
  EXPECT_EQ(o.half_mmd2, 0.5);
  EXPECT_FALSE(o.zero_half_mmd2);
  EXPECT_FALSE(o.nearest);
}

// Shards (ranks as threads) gather the same comparison as the whole student.
TEST(Compare, ShardsGatherTheWholeComparison) {
  Placed p;
  auto whole = test::block(p.f, p.student);
  const ParticleNet teacher(p.f, p.teacher);
  auto one = single_process();
  at::Generator g = test::gen(4);
  const Comparison c1 = compare(*whole, teacher, InputDist::Gaussian, 200, 3, g, *one);
  ASSERT_TRUE(c1.nearest);
  const int world = 3, port = test::free_port();
  std::vector<Comparison> got(world);
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r)
    ranks.emplace_back([&, r] {
      auto comm = connect({r, world, r, "127.0.0.1", port, "test", ""}, 30, Backend::Gloo,
                          c10::Device(c10::kCPU));
      Config cfg;
      cfg.student.particles = 300;
      const Shard s = shard_of(cfg, r, world);
      auto part =
          make_block_student(ParticleNet(p.f, p.student.slice(s.begin, s.end)), 0, Impl::Auto, s);
      at::Generator gr = test::gen(4);
      got[r] = compare(*part, teacher, InputDist::Gaussian, 200, 3, gr, *comm);
    });
  for (auto& t : ranks) t.join();
  for (const Comparison& c : got) {
    EXPECT_NEAR(c.half_mmd2, c1.half_mmd2, 1e-12 * c1.half_mmd2);
    EXPECT_EQ(c.zero_half_mmd2, c1.zero_half_mmd2);
    ASSERT_TRUE(c.nearest);
    ASSERT_EQ(c.nearest->size(), c1.nearest->size());
    // The swapped copy of teacher 0, held by the second rank, is found at 0.
    EXPECT_EQ((*c.nearest)[0].student[0], 131);
    EXPECT_EQ((*c.nearest)[0].distance[0], 0.0);
    for (size_t m = 0; m < c1.nearest->size(); ++m) {
      EXPECT_EQ((*c.nearest)[m].student, (*c1.nearest)[m].student);
      EXPECT_EQ((*c.nearest)[m].distance, (*c1.nearest)[m].distance);
    }
  }
}

}  // namespace
}  // namespace mmdflow
