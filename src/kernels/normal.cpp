#include "src/kernels/normal.h"

#include <stdexcept>

#include "src/kernels/blocks.h"

namespace mmdflow {

void fill_normal(float* out, int64_t n, uint64_t key) { fill_normal(active_isa(), out, n, key); }

void fill_normal(Isa isa, float* out, int64_t n, uint64_t key) {
  if (!isa_supported(isa))
    throw std::invalid_argument("fill_normal: this CPU cannot run the " +
                                std::string(name_of(isa)) + " path");
  path_kernels(isa).fill_normal(out, n, key);
}

}  // namespace mmdflow
