// The named choices of a flow: its method, the student's layout and how its witness is computed
// (the key flow.kernel: the MMD's kernel, not a compute kernel of src/kernels; leaf: no Torch).
#pragma once
#include "src/base/names.h"

namespace mmdflow {

enum class Method {
  MMD,        // W = r / B; gradient at theta + beta w (noise injection; beta = 0: plain flow)
  Diffusion,  // block: theta - gamma grad h(theta) + beta w; dense: noise first, then the step
  Sobolev,    // W = alpha / B, alpha = (S + eps I)^{-1} r, S = gram / (N B); o = 1, no noise
  DrMMD,      // W = ((1 + lambda) / lambda) (r - Phi_X beta) / B, with noise injection
};

// What the particles are: the hidden units of a two-layer student network trained toward a
// teacher (network), or points of R^d flowing toward a target known by its samples (samples).
enum class Problem { Network, Samples };

// block: N independent particles z_n (the mean-field network); dense: the original code's
// network, whose N o output units all read the N H hidden units.
enum class Layout { Block, Dense };

// How the witness h is computed (flow.kernel). sampled: from minibatches of inputs (random
// features); exact: from the closed-form kernel of the family H = 1, ReLU, identity output, no
// biases (the population flow, no data).
enum class Witness { Sampled, Exact };

template <>
struct Names<Method> {
  static constexpr const char* what = "flow method";
  static constexpr std::array<std::pair<Method, const char*>, 4> table{
      {{Method::MMD, "mmd"},
       {Method::Diffusion, "diffusion"},
       {Method::Sobolev, "sobolev"},
       {Method::DrMMD, "drmmd"}}};
};
template <>
struct Names<Problem> {
  static constexpr const char* what = "problem";
  static constexpr std::array<std::pair<Problem, const char*>, 2> table{
      {{Problem::Network, "network"}, {Problem::Samples, "samples"}}};
};
template <>
struct Names<Layout> {
  static constexpr const char* what = "layout";
  static constexpr std::array<std::pair<Layout, const char*>, 2> table{
      {{Layout::Block, "block"}, {Layout::Dense, "dense"}}};
};
template <>
struct Names<Witness> {
  static constexpr const char* what = "kernel";
  static constexpr std::array<std::pair<Witness, const char*>, 2> table{
      {{Witness::Sampled, "sampled"}, {Witness::Exact, "exact"}}};
};

}  // namespace mmdflow
