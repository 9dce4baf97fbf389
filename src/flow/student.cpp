#include "src/flow/student.h"

#include <ATen/ATen.h>

#include <stdexcept>

#include "models/weights.h"
#include "src/base/random.h"
#include "src/kernels/dense.h"

namespace mmdflow {

namespace {

// Copies `weights`, named and sized by specs, into dst (one tensor per spec, in order).
void load_into(const NamedTensors& weights, const std::vector<WeightSpec>& specs,
               const std::vector<at::Tensor*>& dst) {
  TORCH_CHECK(weights.size() == specs.size(), "expected ", specs.size(), " weight tensors, got ",
              weights.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& [name, t] = weights[i];
    TORCH_CHECK(name == specs[i].name, "expected weight '", specs[i].name, "', got '", name, "'");
    TORCH_CHECK(t.sizes() == at::IntArrayRef(specs[i].sizes), "weight ", name, " is ", t.sizes(),
                ", expected ", at::IntArrayRef(specs[i].sizes));
    dst[i]->copy_(t);
  }
}

// One read back for all tensors: on a GPU, one synchronisation an epoch, not one a tensor.
bool finite(const std::vector<const at::Tensor*>& ts) {
  std::vector<at::Tensor> all;
  for (const at::Tensor* t : ts) all.push_back(at::isfinite(*t).all());
  return at::stack(all).all().item<bool>();
}

class BlockStudent : public Student {
 public:
  BlockStudent(ParticleNet net, int64_t chunk, Impl impl, Shard shard)
      : net_(std::move(net)), chunk_(chunk), impl_(impl), shard_(shard) {
    if (shard_.total == 0) shard_ = {0, net_.size(), net_.size()};
    TORCH_CHECK(shard_.size() == net_.size() && shard_.begin % kNoiseBlock == 0 &&
                    0 <= shard_.begin && shard_.begin <= shard_.end && shard_.end <= shard_.total,
                "a shard holds particles [", shard_.begin, ", ", shard_.end, ") of ", shard_.total,
                ", from a block boundary; the net holds ", net_.size());
  }
  int64_t size() const override { return shard_.total; }
  Shard shard() const override { return shard_; }
  TreeShare feature_sum(const at::Tensor& X) const override {
    return shared(feature_block_sums(net_.family(), net_.particles(), X, chunk_, impl_));
  }
  TreeShare descend(const at::Tensor& X, const at::Tensor& W, double step,
                    const Noise& noise) override {
    return shared(mmdflow::descend(net_.family(), net_.particles(), X, W, step, chunk_, impl_,
                                   placed(noise)) /
                  double(shard_.total));
  }
  TreeShare grad_sq(const at::Tensor& X, const at::Tensor& W) const override {
    return shared(
        block_sq_norms(weighted_grad(net_.family(), net_.particles(), X, W, chunk_, impl_)) /
        double(shard_.total));
  }
  // The blocks' Grams a chunk at a time.
  TreeShare jacobian_gram(const at::Tensor& X) const override {
    const int64_t begin = block_span().first, end = block_span().second;
    const int64_t at_once =
        chunk_ > 0 ? (chunk_ + kNoiseBlock - 1) / kNoiseBlock : std::max<int64_t>(1, end - begin);
    return tree_share_of(begin, end, total_blocks(), at_once, [&](int64_t lo, int64_t hi) {
      const int64_t n = net_.size(), p0 = std::min(n, (lo - begin) * kNoiseBlock),
                    p1 = std::min(n, (hi - begin) * kNoiseBlock);
      return jacobian_gram_blocks(net_.family(), net_.particles().slice(p0, p1), X);
    });
  }
  void perturb_(const Noise& noise) override {
    Particles noisy = perturb(net_.particles(), placed(noise));
    auto dst = net_.particles().tensors();
    auto src = noisy.tensors();
    for (size_t i = 0; i < dst.size(); ++i) dst[i]->copy_(*src[i]);
  }
  bool all_finite() const override {
    return finite(static_cast<const Particles&>(net_.particles()).tensors());
  }
  NamedTensors named_tensors() const override { return net_.named_tensors(); }
  void load(const NamedTensors& weights) override {
    load_into(weights, block_weights(net_.family(), net_.size()), net_.particles().tensors());
  }
  bool diffuses_first() const override { return false; }
  at::Tensor drmmd_target(const ParticleNet& teacher, const at::Tensor& X,
                          const at::Tensor&) const override {
    return particle_features(teacher.family(), teacher.particles(), X);  // [M, B, o]
  }
  double drmmd_ridge(int64_t M) const override { return double(M); }
  const Particles* particles() const override { return &net_.particles(); }
  Particles* mutable_particles() override { return &net_.particles(); }

 private:
  // The noise of the shard's particles within the whole measure's.
  Noise placed(Noise noise) const {
    noise.block0 = shard_.begin / kNoiseBlock;
    return noise;
  }
  int64_t total_blocks() const { return (shard_.total + kNoiseBlock - 1) / kNoiseBlock; }
  // The shard's blocks [begin, end) of the measure's.
  std::pair<int64_t, int64_t> block_span() const {
    const int64_t b0 = shard_.begin / kNoiseBlock;
    return {b0, b0 + (shard_.size() + kNoiseBlock - 1) / kNoiseBlock};
  }
  // The shard's share from its blocks' leaves [blocks, ...].
  TreeShare shared(const at::Tensor& leaves) const {
    return tree_share(leaves, block_span().first, total_blocks());
  }

  mutable ParticleNet net_;  // feature sums read it; descend changes it
  int64_t chunk_;
  Impl impl_;
  Shard shard_;
};

// Dense layout. Forward: H1 = X W1^T + b1 [B, N H], S1 = s(H1), U = S1 W2^T + b2 [B, N o],
// phi = G(U) viewed as [B, o, N]. Gradients derived by hand (tested against autograd).
class DenseStudent : public Student {
 public:
  DenseStudent(const ParticleFamily& fam, DenseWeights w) : fam_(fam), w_(std::move(w)) {
    for (at::Tensor* t : tensors(w_)) *t = t->contiguous();
    N_ = w_.W2.size(0) / fam_.outputs;
    TORCH_CHECK(w_.W1.dim() == 2 && w_.W1.size(0) == N_ * fam_.hidden && w_.W1.size(1) == fam_.dim,
                "W1 must be [", N_ * fam_.hidden, ", ", fam_.dim, "], got ", w_.W1.sizes());
    TORCH_CHECK(w_.W2.dim() == 2 && w_.W2.size(1) == N_ * fam_.hidden, "W2 must be [",
                N_ * fam_.outputs, ", ", N_ * fam_.hidden, "], got ", w_.W2.sizes());
  }
  int64_t size() const override { return N_; }
  Shard shard() const override { return {0, N_, N_}; }

  // The whole measure is one block.
  TreeShare feature_sum(const at::Tensor& X) const override {
    if (on_cpu()) return whole_share(cpu_.feature_sum(fam_, params(), X));
    return whole_share(
        output(fam_.out, forward(w_, X).U).view({X.size(0), fam_.outputs, N_}).sum(2));
  }
  TreeShare descend(const at::Tensor& X, const at::Tensor& W, double step,
                    const Noise& noise) override {
    if (on_cpu()) {
      DenseParams p = params();
      return whole_share(mean_of(cpu_.grad(fam_, p, X, W, noise, step, /*update=*/true)));
    }
    DenseWeights g = grad(noise.beta != 0.0 ? noisy(noise) : w_, X, W);
    auto wt = tensors(w_);
    auto gt = tensors(g);
    for (size_t i = 0; i < wt.size(); ++i) wt[i]->add_(*gt[i], -step);
    return whole_share(sq_norm(g));
  }
  TreeShare grad_sq(const at::Tensor& X, const at::Tensor& W) const override {
    if (on_cpu()) {
      DenseParams p = params();
      return whole_share(mean_of(cpu_.grad(fam_, p, X, W, Noise{}, 0.0, /*update=*/false)));
    }
    return whole_share(sq_norm(grad(w_, X, W)));
  }
  TreeShare jacobian_gram(const at::Tensor& X) const override {
    TORCH_CHECK(fam_.outputs == 1, "the Jacobian Gram needs o = 1, got o = ", fam_.outputs);
    Fwd f = forward(w_, X);
    at::Tensor Gp = output_grad(fam_.out, f.U);                                  // [B, N]
    at::Tensor C = activate_backprop(fam_.activation, f.H1, at::mm(Gp, w_.W2));  // [B, N H]
    at::Tensor gg = at::mm(Gp, Gp.t());
    at::Tensor k2 = at::mm(f.S1, f.S1.t());
    if (w_.b2.defined()) k2 = k2 + 1;
    at::Tensor k1 = at::mm(X, X.t());
    if (w_.b1.defined()) k1 = k1 + 1;
    return whole_share(gg * k2 + at::mm(C, C.t()) * k1);
  }
  void perturb_(const Noise& noise) override {
    if (on_cpu()) {
      DenseParams p = params();
      return cpu_.perturb(p, noise);
    }
    w_ = noisy(noise);
  }
  bool all_finite() const override { return finite(tensors(w_)); }
  NamedTensors named_tensors() const override {
    std::vector<at::Tensor> ts;
    for (const at::Tensor* t : tensors(w_)) ts.push_back(t->detach().cpu().contiguous());
    return named(dense_weights(fam_, N_), ts);
  }
  void load(const NamedTensors& weights) override {
    load_into(weights, dense_weights(fam_, N_), tensors(w_));
  }
  // The original code: noise, then a step; DrMMD toward Y as one particle, c = 1.
  bool diffuses_first() const override { return true; }
  at::Tensor drmmd_target(const ParticleNet&, const at::Tensor&,
                          const at::Tensor& Y) const override {
    return Y.unsqueeze(0);  // [1, B, o]
  }
  double drmmd_ridge(int64_t) const override { return 1.0; }

 private:
  struct Fwd {
    at::Tensor H1, S1, U;  // [B, N H], [B, N H], [B, N o]
  };
  Fwd forward(const DenseWeights& w, const at::Tensor& X) const {
    Fwd f;
    f.H1 = w.b1.defined() ? at::addmm(w.b1, X, w.W1.t()) : at::mm(X, w.W1.t());
    f.S1 = activate(fam_.activation, f.H1);
    f.U = w.b2.defined() ? at::addmm(w.b2, f.S1, w.W2.t()) : at::mm(f.S1, w.W2.t());
    return f;
  }
  // grad_theta sum_b W_b^T sum_n phi_n(x_b) at w.
  DenseWeights grad(const DenseWeights& w, const at::Tensor& X, const at::Tensor& W) const {
    const int64_t B = X.size(0), o = fam_.outputs;
    Fwd f = forward(w, X);
    // dL/dU[b, k N + n] = W[b, k] G'(U[b, k N + n])
    at::Tensor E = (output_grad(fam_.out, f.U).view({B, o, N_}) * W.unsqueeze(2)).view({B, o * N_});
    DenseWeights g;
    g.W2 = at::mm(E.t(), f.S1);  // [N o, N H]
    if (w.b2.defined()) g.b2 = E.sum(0);
    at::Tensor dH = activate_backprop(fam_.activation, f.H1, at::mm(E, w.W2));  // [B, N H]
    g.W1 = at::mm(dH.t(), X);                                                   // [N H, d]
    if (w.b1.defined()) g.b1 = dH.sum(0);
    return g;
  }
  DenseWeights noisy(const Noise& noise) const {
    at::Generator gen = make_generator(w_.W1.device(), noise.seed);
    DenseWeights n;
    auto add = [&](const at::Tensor& t) {  // w drawn in float32, as for the block layout
      if (!t.defined()) return at::Tensor();
      at::Tensor w = at::normal(0.0, 1.0, t.sizes(), gen, t.options().dtype(at::kFloat));
      return t + noise.beta * w.to(t.scalar_type());
    };
    n.W1 = add(w_.W1);
    n.b1 = add(w_.b1);
    n.W2 = add(w_.W2);
    n.b2 = add(w_.b2);
    return n;
  }
  static std::vector<at::Tensor*> tensors(DenseWeights& w) {
    std::vector<at::Tensor*> out;
    for (at::Tensor* t : {&w.W1, &w.b1, &w.W2, &w.b2})
      if (t->defined()) out.push_back(t);
    return out;
  }
  static std::vector<const at::Tensor*> tensors(const DenseWeights& w) {
    std::vector<const at::Tensor*> out;
    for (const at::Tensor* t : {&w.W1, &w.b1, &w.W2, &w.b2})
      if (t->defined()) out.push_back(t);
    return out;
  }
  at::Tensor sq_norm(const DenseWeights& g) const {
    at::Tensor total = at::zeros({}, g.W1.options());
    for (const at::Tensor* t : tensors(g)) total = total + t->square().sum();
    return total / double(N_);
  }

  // CPU: src/kernels/dense.h's blocked step on the active instruction-set path; elsewhere ATen.
  bool on_cpu() const { return w_.W1.device().is_cpu(); }
  DenseParams params() const { return {w_.W1, w_.b1, w_.W2, w_.b2}; }  // views: updates reach w_
  at::Tensor mean_of(double sq) const {
    return at::scalar_tensor(sq / double(N_), w_.W1.options());
  }

  ParticleFamily fam_;
  DenseWeights w_;
  int64_t N_;
  mutable DenseCpu cpu_;  // buffers reused from step to step
};

}  // namespace

std::vector<WeightSpec> WeightSchema::specs(int64_t rows) const {
  if (point_dim > 0) return {{"Z", {rows, point_dim}}};
  return by_rows ? block_weights(family, rows) : dense_weights(family, particles);
}

WeightSchema weight_schema(Layout layout, const ParticleFamily& fam, int64_t N) {
  return {fam, N, layout == Layout::Block};
}

WeightSchema point_schema(int64_t N, int64_t d) { return {ParticleFamily{}, N, true, d}; }

std::unique_ptr<Student> make_block_student(ParticleNet net, int64_t chunk, Impl impl,
                                            Shard shard) {
  return std::make_unique<BlockStudent>(std::move(net), chunk, impl, shard);
}

std::unique_ptr<Student> make_dense_student(const ParticleFamily& fam, int64_t N, double mean,
                                            double std, const at::TensorOptions& opts,
                                            at::Generator& gen) {
  const int64_t NH = N * fam.hidden, No = N * fam.outputs;
  auto draw = [&](at::IntArrayRef sizes) {
    return at::normal(mean, std, sizes, gen, at::TensorOptions().dtype(at::kDouble)).to(opts);
  };
  DenseWeights w;
  w.W1 = draw({NH, fam.dim});
  if (fam.hidden_bias) w.b1 = draw({NH});
  w.W2 = draw({No, NH});
  if (fam.output_bias) w.b2 = draw({No});
  return make_dense_student(fam, std::move(w));
}

std::unique_ptr<Student> make_dense_student(const ParticleFamily& fam, DenseWeights w) {
  return std::make_unique<DenseStudent>(fam, std::move(w));
}

}  // namespace mmdflow
