// The avx512 path's loop: 512-bit FMA (see bench_fma_impl.h).
#if defined(__x86_64__) || defined(__i386__)
#define MMDFLOW_ISA_NS avx512
#if defined(__clang__)
#define MMDFLOW_ISA_TARGET "avx512f,avx2,fma"
#else
#define MMDFLOW_ISA_TARGET "avx512f,avx2,fma,prefer-vector-width=512"
#endif
#define MMDFLOW_FMA_LANES 16
#include "src/cli/bench_fma_impl.h"
#endif
