#include "models/particle_net.h"

#include <ATen/ATen.h>

#include "models/init.h"
#include "models/weights.h"

namespace mmdflow {

std::vector<at::Tensor*> Particles::tensors() {
  std::vector<at::Tensor*> out;
  for (at::Tensor* t : {&A, &a, &B, &b})
    if (t->defined()) out.push_back(t);
  return out;
}

std::vector<const at::Tensor*> Particles::tensors() const {
  std::vector<const at::Tensor*> out;
  for (const at::Tensor* t : {&A, &a, &B, &b})
    if (t->defined()) out.push_back(t);
  return out;
}

namespace {
template <typename F>
Particles map(const Particles& z, F f) {
  Particles r;
  r.A = f(z.A);
  r.B = f(z.B);
  if (z.a.defined()) r.a = f(z.a);
  if (z.b.defined()) r.b = f(z.b);
  return r;
}
}  // namespace

Particles Particles::slice(int64_t begin, int64_t end) const {
  return map(*this, [&](const at::Tensor& t) { return t.narrow(0, begin, end - begin); });
}

Particles Particles::clone() const {
  return map(*this, [](const at::Tensor& t) { return t.clone(); });
}

Particles Particles::to(const at::TensorOptions& opts) const {
  return map(*this, [&](const at::Tensor& t) { return t.to(opts); });
}

at::Tensor Particles::flat() const {
  std::vector<at::Tensor> parts;
  for (const at::Tensor* t : tensors()) parts.push_back(t->flatten(1));
  return at::cat(parts, 1);
}

Particles particles_of(const NamedTensors& w) {
  Particles z;
  for (const auto& [name, t] : w) {
    at::Tensor* dst = name == "A" ? &z.A : name == "a" ? &z.a : name == "B" ? &z.B : &z.b;
    TORCH_CHECK(name == "A" || name == "a" || name == "B" || name == "b", "no particle tensor ",
                name);
    *dst = t;
  }
  return z;
}

ParticleNet::ParticleNet(const ParticleNetOptions& options, at::Generator& gen)
    : options_(options), family_(options.family()) {
  reset(gen);
}

ParticleNet::ParticleNet(const ParticleFamily& family, Particles z)
    : options_(z.size(), family), family_(family), z_(std::move(z)) {
  const int64_t N = z_.size(), H = family.hidden, d = family.dim, o = family.outputs;
  TORCH_CHECK(z_.A.dim() == 3 && z_.A.size(1) == H && z_.A.size(2) == d, "A must be [N, ", H, ", ",
              d, "], got ", z_.A.sizes());
  TORCH_CHECK(z_.B.dim() == 3 && z_.B.size(0) == N && z_.B.size(1) == o && z_.B.size(2) == H,
              "B must be [", N, ", ", o, ", ", H, "], got ", z_.B.sizes());
  TORCH_CHECK(z_.a.defined() == family.hidden_bias, "hidden bias a given: ", z_.a.defined(),
              ", family expects: ", family.hidden_bias);
  TORCH_CHECK(z_.b.defined() == family.output_bias, "output bias b given: ", z_.b.defined(),
              ", family expects: ", family.output_bias);
  if (z_.a.defined())
    TORCH_CHECK(z_.a.sizes() == at::IntArrayRef({N, H}), "a must be [", N, ", ", H, "], got ",
                z_.a.sizes());
  if (z_.b.defined())
    TORCH_CHECK(z_.b.sizes() == at::IntArrayRef({N, o}), "b must be [", N, ", ", o, "], got ",
                z_.b.sizes());
}

void ParticleNet::reset(at::Generator& gen) {
  const int64_t N = options_.particles(), H = family_.hidden, d = family_.dim, o = family_.outputs;
  const int64_t first = options_.first(), last = options_.last() < 0 ? N : options_.last();
  // Draw on CPU in double from the trainer's generator, then convert: the same seed gives the
  // same particles whatever the dtype, device or sharding.
  auto draw = [&](at::IntArrayRef sizes) {
    auto t = normal_rows(sizes, first, last, options_.init_mean(), options_.init_std(), gen);
    return t.to(at::TensorOptions().dtype(options_.dtype()).device(options_.device()));
  };
  z_ = Particles{};
  z_.A = draw({N, H, d});
  if (family_.hidden_bias) z_.a = draw({N, H});
  z_.B = draw({N, o, H});
  if (family_.output_bias) z_.b = draw({N, o});
}

at::Tensor particle_features(const ParticleFamily& fam, const Particles& z, const at::Tensor& X) {
  auto P = at::matmul(z.A, X.t());  // [N, H, Bt]
  if (z.a.defined()) P = P + z.a.unsqueeze(2);
  auto S = activate(fam.activation, P);  // [N, H, Bt]
  auto U = at::bmm(z.B, S);              // [N, o, Bt]
  if (z.b.defined()) U = U + z.b.unsqueeze(2);
  return output(fam.out, U).transpose(1, 2);  // [N, Bt, o]
}

at::Tensor ParticleNet::forward(const at::Tensor& X) const {
  return particle_features(family_, z_, X).mean(0);
}

Dataset make_dataset(InputDist dist, int64_t n, const ParticleNet& teacher, at::Generator& gen) {
  return make_dataset(
      dist, n, teacher.family().dim, [&](const at::Tensor& X) { return teacher.forward(X); }, gen,
      teacher.particles().A.options());
}

NamedTensors ParticleNet::named_tensors() const {
  std::vector<at::Tensor> ts;
  for (const at::Tensor* t : z_.tensors()) ts.push_back(t->detach().cpu().contiguous());
  return named(block_weights(family_, size()), ts);
}

}  // namespace mmdflow
