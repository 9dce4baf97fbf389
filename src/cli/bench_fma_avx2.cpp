// The avx2 path's loop: 256-bit FMA (see bench_fma_impl.h).
#if defined(__x86_64__) || defined(__i386__)
#define MMDFLOW_ISA_NS avx2
#define MMDFLOW_ISA_TARGET "avx2,fma"
#define MMDFLOW_FMA_LANES 8
#include "src/cli/bench_fma_impl.h"
#endif
