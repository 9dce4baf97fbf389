// The avx2 path's pair loops: AVX2 and FMA, 256-bit vectors (see pairwise_impl.h).
#if defined(__x86_64__) || defined(__i386__)
#define MMDFLOW_ISA_NS avx2
#define MMDFLOW_ISA_TARGET "avx2,fma"
#include "src/kernels/pairwise_impl.h"
#endif
