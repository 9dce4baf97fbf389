// Initial draws of particles that a shard can make alone: the rows it owns of a tensor drawn
// N(mean, std^2) whole from a generator, without ever holding the whole tensor.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

namespace mmdflow {

// Rows [begin, end) (along dim 0) of at::normal(mean, std, sizes, gen) in float64 on CPU, equal
// to them bit for bit, and gen left as that whole draw leaves it. Holds at most about 2^20
// elements besides the rows; skipping the other rows costs one generator draw per element.
at::Tensor normal_rows(at::IntArrayRef sizes, int64_t begin, int64_t end, double mean, double std,
                       at::Generator& gen);

}  // namespace mmdflow
