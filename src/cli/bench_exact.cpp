#include "src/cli/bench_exact.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "src/base/random.h"

namespace mmdflow {

ExactBenchNets exact_bench_nets(int64_t N, int64_t M, int64_t d, c10::ScalarType dtype,
                                uint64_t seed) {
  ParticleFamily fam;
  fam.dim = d;
  fam.hidden = 1;
  fam.outputs = 1;
  fam.activation = Activation::ReLU;
  fam.out = {OutputKind::Identity, 1.0};
  at::Generator gen = make_generator(c10::Device(c10::kCPU), seed);
  ParticleNet teacher(ParticleNetOptions(M, fam).dtype(dtype), gen);
  ParticleNet student(ParticleNetOptions(N, fam).dtype(dtype), gen);
  return {std::move(teacher), std::move(student)};
}

double exact_step_ms(Particles& z, const Particles& teacher, InputDist dist, StepOptions opt,
                     int64_t repeats, uint64_t seed) {
  std::vector<double> ms;
  for (int64_t r = 0; r <= repeats; ++r) {
    opt.noise_seed = sub_seed(seed, uint64_t(r));
    const auto t = std::chrono::steady_clock::now();
    exact_step(z, teacher, dist, opt);
    const std::chrono::duration<double, std::milli> dt = std::chrono::steady_clock::now() - t;
    if (r > 0) ms.push_back(dt.count());
  }
  std::sort(ms.begin(), ms.end());
  return ms.empty() ? 0.0 : ms[ms.size() / 2];
}

}  // namespace mmdflow
