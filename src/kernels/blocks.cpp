#include "src/kernels/blocks.h"

namespace mmdflow {

// Each path's table, from its kernels_<isa>.cpp.
namespace generic {
extern const PathKernels kKernels;
}
#if defined(__x86_64__) || defined(__i386__)
namespace avx2 {
extern const PathKernels kKernels;
}
namespace avx512 {
extern const PathKernels kKernels;
}
#endif

const PathKernels& path_kernels(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::Avx512) return avx512::kKernels;
  if (isa == Isa::Avx2) return avx2::kKernels;
#endif
  return generic::kKernels;
}

}  // namespace mmdflow
