// The GPU against the CPU in float64: flow steps (ATen ops on the GPU, the fused kernel on CPU)
// and a few epochs of training agree; fresh inputs drawn on the GPU resume exactly; and no step
// waits for the GPU (c10's sync debug mode). Every test skips without a GPU.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "src/comm/comm.h"
#include "src/flow/flow.h"
#include "src/flow/samples.h"
#include "src/kernels/pairwise.h"
#include "src/train/checkpoint.h"
#include "src/train/trainer.h"
#include "tests/helpers.h"

#if defined(MMDFLOW_CUDA) && __has_include(<c10/cuda/CUDAFunctions.h>) && \
    __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDAFunctions.h>
#define MMDFLOW_SYNC_DEBUG 1
#endif

namespace mmdflow {
namespace {

const c10::Device kGpu(c10::kCUDA, 0);
const c10::Device kCpu(c10::kCPU);

class Cuda : public testing::Test {
 protected:
  void SetUp() override {
    if (!at::hasCUDA()) GTEST_SKIP() << "no GPU visible (or a CPU-only LibTorch): CUDA not tested";
#ifndef MMDFLOW_CUDA
    GTEST_SKIP() << "built without -DMMDFLOW_CUDA=ON: --device cuda is rejected";
#endif
  }
};

// N = 300 particles (three blocks of the fused kernel), H = 3, d = 10, o = 1, B = 50, biases.
struct Problem : test::Problem {
  Problem()
      : test::Problem(test::family(10, 3, 1, Activation::ReLU, OutputKind::Gaussian, 2, true, true),
                      300, 50) {}
};

at::TensorOptions on(c10::Device dev) { return at::TensorOptions().device(dev); }

// All-zero particles shaped like z, on dev: perturb() of them is beta w alone.
Particles zeros_on(const Particles& z, c10::Device dev) {
  Particles out = z.to(on(dev));
  for (at::Tensor* t : out.tensors()) *t = at::zeros_like(*t);
  return out;
}

struct Stepped {
  Particles z;  // after the step, on CPU
  double loss, grad_sq, noisy_grad_sq;
};

// One step on dev from the problem's particles (Impl::Auto: fused on CPU, ATen ops on the GPU).
Stepped step_on(c10::Device dev, const Problem& p, StepOptions opt) {
  opt.clean_grad_sq = true;
  Particles z = p.z.clone().to(on(dev));  // the step updates z in place
  at::Tensor X = p.X.to(dev), Y = p.Y.to(dev);
  at::Tensor target = opt.method == Method::DrMMD
                          ? particle_features(p.f, p.teacher.to(on(dev)), X)  // [M, B, o]
                          : at::Tensor();
  StepStats st = flow_step(*test::block(p.f, z), X, Y, opt, target);
  return {z.to(on(kCpu)), st.loss.item<double>(), st.grad_sq.whole().item<double>(),
          st.noisy_grad_sq.whole().item<double>()};
}

// The difference of two updates from the same particles z0, relative to the reference b - z0.
double update_diff(const Particles& a, const Particles& b, const Particles& z0) {
  const at::Tensor da = a.flat() - z0.flat(), db = b.flat() - z0.flat();
  return (da - db).abs().max().item<double>() / db.abs().max().item<double>();
}

void expect_agree(const Stepped& gpu, const Stepped& cpu, const Particles& z0,
                  const std::string& what) {
  EXPECT_LT(update_diff(gpu.z, cpu.z, z0), 1e-9) << what;
  EXPECT_NEAR(gpu.loss, cpu.loss, 1e-9 * cpu.loss) << what;
  EXPECT_NEAR(gpu.grad_sq, cpu.grad_sq, 1e-9 * cpu.grad_sq) << what;
  EXPECT_NEAR(gpu.noisy_grad_sq, cpu.noisy_grad_sq, 1e-9 * cpu.noisy_grad_sq) << what;
}

TEST_F(Cuda, PlainStepsAgreeWithTheCpu) {
  Problem p;
  for (Method m : {Method::MMD, Method::Diffusion, Method::Sobolev, Method::DrMMD}) {
    StepOptions opt;
    opt.method = m;
    opt.step_size = 1.0;
    opt.drmmd_lambda = 0.5;
    expect_agree(step_on(kGpu, p, opt), step_on(kCpu, p, opt), p.z, name_of(m));
  }
}

// The GPU draws its noise with ATen's generator, the CPU with its own (features.h, Noise), so a
// noisy step is compared with the CPU's maths at the GPU's draw: z - gamma grad h(z + beta w) for
// noise injection, z - gamma grad h(z) + beta w for diffusion. DrMMD with noise takes the noise
// injection's gradient call with its own W, which PlainStepsAgreeWithTheCpu compares.
TEST_F(Cuda, NoisyStepsAgreeWithTheCpuAtTheGpuNoise) {
  Problem p;
  const double beta = 0.5, gamma = 1.0;
  const Noise noise{beta, 11};
  StepOptions opt;
  opt.step_size = gamma;
  opt.beta = beta;
  opt.noise_seed = noise.seed;
  const int64_t B = p.X.size(0);
  const at::Tensor W = residual(*test::block(p.f, p.z), p.X, p.Y) / double(B);  // clean particles
  const Particles clean = weighted_grad(p.f, p.z, p.X, W);

  const Stepped injected = step_on(kGpu, p, opt);
  const Particles noisy = perturb(p.z.to(on(kGpu)), noise).to(on(kCpu));  // the step's draw
  const Particles g = weighted_grad(p.f, noisy, p.X, W);
  Particles expect = p.z.clone();
  auto et = expect.tensors();
  auto gt = g.tensors();
  for (size_t i = 0; i < et.size(); ++i) et[i]->add_(*gt[i], -gamma);
  EXPECT_LT(update_diff(injected.z, expect, p.z), 1e-9);
  EXPECT_NEAR(injected.noisy_grad_sq, block_sq_norms(g).sum().item<double>() / double(g.size()),
              1e-9 * injected.noisy_grad_sq);
  EXPECT_NEAR(injected.grad_sq, block_sq_norms(clean).sum().item<double>() / double(clean.size()),
              1e-9 * injected.grad_sq);

  opt.method = Method::Diffusion;
  const Stepped diffused = step_on(kGpu, p, opt);
  const Particles bw = perturb(zeros_on(p.z, kGpu), noise).to(on(kCpu));  // beta w
  expect = p.z.clone();
  et = expect.tensors();
  auto ct = clean.tensors();
  auto nt = bw.tensors();
  for (size_t i = 0; i < et.size(); ++i) et[i]->add_(*ct[i], -gamma).add_(*nt[i]);
  EXPECT_LT(update_diff(diffused.z, expect, p.z), 1e-9);
}

// The GPU's w: standard normal, drawn in float32 as on CPU, set by the seed alone.
TEST_F(Cuda, NoiseIsStandardNormalInFloat32AndSetBySeed) {
  Problem p;
  const Particles zero = zeros_on(p.z, kGpu);
  auto draw = [&](uint64_t seed) { return perturb(zero, Noise{1.0, seed}).flat().cpu(); };
  const at::Tensor w = draw(5);
  const double n = double(w.numel());  // 11 100
  EXPECT_LT(std::abs(w.mean().item<double>()), 5 / std::sqrt(n));
  EXPECT_LT(std::abs(w.std().item<double>() - 1), 5 / std::sqrt(2 * n));
  EXPECT_TRUE(at::equal(w.to(at::kFloat).to(at::kDouble), w));
  EXPECT_TRUE(at::equal(draw(5), w));
  EXPECT_GT((draw(6) - w).abs().max().item<double>(), 0.5);
}

Config small(Method method) {
  Config c;
  c.dtype = at::kDouble;
  c.student.particles = 300;
  c.train.epochs = 3;  // 10 steps of 50 inputs an epoch
  c.flow.method = method;
  // Sobolev descent at gamma = 1 is chaotic on these minibatches: a 1e-16 difference grows to
  // 5e-2 in 30 steps (fused kernel against ATen ops, on CPU); at 0.1 it stays below 1e-15.
  c.flow.step_size = method == Method::Sobolev ? 0.1 : 1.0;
  c.noise.beta0 = 0;
  return c;
}

std::vector<EpochLog> train_on(Config c, c10::Device device, NamedTensors* weights) {
  c.device = device;
  Trainer t(c);
  std::vector<EpochLog> logs;
  EXPECT_EQ(t.run([&](const EpochLog& l) { logs.push_back(l); }), Trainer::End::Done);
  *weights = t.state().student;
  return logs;
}

// Teacher, data, student and minibatch order come from the same CPU draws on both devices.
TEST_F(Cuda, TrainingAgreesWithTheCpu) {
  for (Method method : {Method::MMD, Method::Sobolev, Method::DrMMD}) {
    NamedTensors wg, wc;
    const auto gpu = train_on(small(method), kGpu, &wg);
    const auto cpu = train_on(small(method), kCpu, &wc);
    ASSERT_EQ(gpu.size(), cpu.size()) << name_of(method);
    for (size_t e = 0; e < cpu.size(); ++e) {
      EXPECT_NEAR(gpu[e].train_loss, cpu[e].train_loss, 1e-9 * cpu[e].train_loss)
          << name_of(method) << e;
      EXPECT_NEAR(gpu[e].valid_loss, cpu[e].valid_loss, 1e-9 * cpu[e].valid_loss)
          << name_of(method) << e;
      EXPECT_NEAR(gpu[e].grad_sq, cpu[e].grad_sq, 1e-9 * cpu[e].grad_sq) << name_of(method) << e;
    }
    ASSERT_EQ(wg.size(), wc.size());
    for (size_t i = 0; i < wc.size(); ++i) {
      const at::Tensor& c = wc[i].second;
      EXPECT_LT((wg[i].second - c).abs().max().item<double>(), 1e-9 * c.abs().max().item<double>())
          << name_of(method) << " " << wc[i].first;
    }
  }
}

// Fresh inputs are drawn on the GPU from a generator reseeded every step, so a run stopped
// mid-epoch and resumed from its checkpoint draws the same inputs as an uninterrupted one.
TEST_F(Cuda, FreshInputsDrawnOnTheGpuResumeExactly) {
  Config c = small(Method::MMD);
  c.device = kGpu;
  c.data.fresh = true;
  c.noise.beta0 = 0.5;
  std::vector<EpochLog> straight, logs;
  Trainer full(c);
  ASSERT_EQ(full.run([&](const EpochLog& l) { straight.push_back(l); }), Trainer::End::Done);
  Trainer stopped(c);
  int64_t calls = 0;
  ASSERT_EQ(
      stopped.run([&](const EpochLog& l) { logs.push_back(l); }, [&] { return ++calls > 15; }),
      Trainer::End::Stopped);  // before step 5 of epoch 2
  Trainer resumed(c);
  const std::string dir = testing::TempDir() + "/mmdflow_cuda_ckpt";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const Shard all{0, c.student.particles, c.student.particles};
  auto comm = single_process();
  save_checkpoint(dir, c, stopped.state(), all, 1, *comm);
  resumed.restore(load_checkpoint(dir, c, all)->state);
  ASSERT_EQ(resumed.run([&](const EpochLog& l) { logs.push_back(l); }), Trainer::End::Done);
  ASSERT_EQ(logs.size(), straight.size());
  for (size_t e = 0; e < logs.size(); ++e) {
    // Bitwise unless a GPU reduction is not deterministic; other inputs would differ by far more.
    EXPECT_NEAR(logs[e].train_loss, straight[e].train_loss, 1e-12 * straight[e].train_loss) << e;
    EXPECT_NEAR(logs[e].valid_loss, straight[e].valid_loss, 1e-12 * straight[e].valid_loss) << e;
  }
}

#ifdef MMDFLOW_SYNC_DEBUG
// While alive, any synchronising CUDA call through c10 (a device-to-host read, a blocking copy, a
// stream synchronisation) throws.
struct SyncIsError {
  SyncIsError() {
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
  }
  ~SyncIsError() {
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
  }
};

// What f raised with synchronising calls made errors; empty when nothing.
template <typename F>
std::string sync_error(F&& f) {
  SyncIsError guard;
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
}

// The same for one epoch of c on the GPU, around its steps 1 to batches - 2: stop() is asked
// before each step, and the first and last steps border the epoch's copy and reads.
std::string epoch_sync_error(Config c) {
  c.device = kGpu;
  c.train.epochs = 1;
  const int64_t batches = c.data.train_size / c.train.batch;
  Trainer t(c);
  std::optional<SyncIsError> guard;
  int64_t calls = 0;
  try {
    t.run([](const EpochLog&) {},
          [&] {
            if (++calls == 2) guard.emplace();
            if (calls == batches) guard.reset();
            return false;
          });
  } catch (const c10::Error& e) {
    guard.reset();
    return "step " + std::to_string(calls - 1) + ": " + e.what_without_backtrace();
  }
  return "";
}
#endif

// pair_sums on the GPU (ATen ops in tiles) against the CPU's fused loops, float64, over several
// tiles (n m d > 2^22).
TEST_F(Cuda, PairSumsAgreeWithTheCpu) {
  for (PairKernel kind :
       {PairKernel::Gaussian, PairKernel::Laplace, PairKernel::Imq, PairKernel::Energy}) {
    for (int64_t d : {2, 17}) {
      const at::Tensor P = 2 * test::inputs(700, d, 1), S = 2 * test::inputs(5000, d, 2);
      const PairKernelSpec k{kind, 0.5 * std::sqrt(double(d))};
      const PairSums cpu = pair_sums(k, P, S, true);
      const PairSums gpu = pair_sums(k, P.to(kGpu), S.to(kGpu), true);
      EXPECT_EQ(gpu.value.device(), kGpu);
      const double v = cpu.value.abs().max().item<double>();
      const double g = cpu.grad.abs().max().item<double>() + v;
      EXPECT_LT((gpu.value.cpu() - cpu.value).abs().max().item<double>(), 1e-12 * v)
          << name_of(kind) << " d = " << d;
      EXPECT_LT((gpu.grad.cpu() - cpu.grad).abs().max().item<double>(), 1e-12 * g)
          << name_of(kind) << " d = " << d;
    }
  }
}

// A samples step of every flow on the GPU against the CPU's, float64, noise injection on: the
// points and the gradient norm agree to rounding.
TEST_F(Cuda, SamplesStepsAgreeWithTheCpu) {
  const at::Tensor Z = test::inputs(300, 2, 3), U = test::inputs(200, 2, 4) + 0.5;
  for (Method m : {Method::MMD, Method::Diffusion, Method::Sobolev, Method::DrMMD}) {
    const PairKernelSpec k{PairKernel::Gaussian, 0.7};
    StepOptions o;
    o.method = m;
    o.step_size = 0.5;
    o.beta = m == Method::Sobolev ? 0 : 0.3;
    o.noise_seed = 11;
    o.drmmd_lambda = 0.1;
    Points cpu(Z.clone()), gpu(Z.to(kGpu));
    const StepStats a = samples_step(cpu, make_sample_target(U, k, m, 0.1), o);
    const StepStats b = samples_step(gpu, make_sample_target(U.to(kGpu), k, m, 0.1), o);
    EXPECT_EQ(gpu.whole().device(), kGpu);
    EXPECT_LT((gpu.whole().cpu() - cpu.whole()).abs().max().item<double>(), 1e-10) << name_of(m);
    EXPECT_NEAR(b.noisy_grad_sq.whole().item<double>(), a.noisy_grad_sq.whole().item<double>(),
                1e-10 * a.noisy_grad_sq.whole().item<double>())
        << name_of(m);
  }
}

TEST_F(Cuda, StepsNeverWaitForTheGpu) {
#ifndef MMDFLOW_SYNC_DEBUG
  GTEST_SKIP() << "c10/cuda/CUDAFunctions.h or cuda_runtime_api.h not found: no sync debug mode";
#else
  ASSERT_NE(sync_error([] { at::ones({}, on(kGpu)).item<double>(); }), "")
      << "the sync debug mode does not catch a read of a GPU value";
  Problem p;
  Particles z = p.z.to(on(kGpu));
  const at::Tensor X = p.X.to(kGpu), Y = p.Y.to(kGpu);
  const at::Tensor target = particle_features(p.f, p.teacher.to(on(kGpu)), X);
  auto s = test::block(p.f, z);
  for (Method m : {Method::MMD, Method::Diffusion, Method::Sobolev, Method::DrMMD}) {
    StepOptions opt;
    opt.method = m;
    opt.beta = m == Method::Sobolev ? 0.0 : 0.5;
    opt.clean_grad_sq = true;
    const at::Tensor t = m == Method::DrMMD ? target : at::Tensor();
    flow_step(*s, X, Y, opt, t);  // first calls: library handles, workspaces
    EXPECT_EQ(sync_error([&] { flow_step(*s, X, Y, opt, t); }), "") << name_of(m);
  }
  for (Layout layout : {Layout::Block, Layout::Dense})
    for (Method method : {Method::MMD, Method::Diffusion, Method::Sobolev, Method::DrMMD})
      for (bool fresh : {false, true})
        for (c10::ScalarType dtype : {at::kFloat, at::kDouble}) {
          Config c = small(method);
          c.student.layout = layout;
          c.data.fresh = fresh;
          c.dtype = dtype;
          c.noise.beta0 = method == Method::Sobolev ? 0.0 : 0.5;
          EXPECT_EQ(epoch_sync_error(c), "") << name_of(layout) << " " << name_of(method)
                                             << " fresh " << fresh << " " << name_of(dtype);
        }
#endif
}

}  // namespace
}  // namespace mmdflow
