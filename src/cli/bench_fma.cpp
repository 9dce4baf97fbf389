#include "src/cli/bench_fma.h"

namespace mmdflow {

// Each path's loop, from its bench_fma_<isa>.cpp.
namespace generic {
extern const FmaLoop kFmaLoop;
}
#if defined(__x86_64__) || defined(__i386__)
namespace avx2 {
extern const FmaLoop kFmaLoop;
}
namespace avx512 {
extern const FmaLoop kFmaLoop;
}
#endif

const FmaLoop& fma_loop(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::Avx512) return avx512::kFmaLoop;
  if (isa == Isa::Avx2) return avx2::kFmaLoop;
#endif
  return generic::kFmaLoop;
}

}  // namespace mmdflow
