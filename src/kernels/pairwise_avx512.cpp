// The avx512 path's pair loops: AVX-512F, 512-bit vectors (see pairwise_impl.h).
#if defined(__x86_64__) || defined(__i386__)
#define MMDFLOW_ISA_NS avx512
#if defined(__clang__)
#define MMDFLOW_ISA_TARGET "avx512f,avx2,fma"
#else
#define MMDFLOW_ISA_TARGET "avx512f,avx2,fma,prefer-vector-width=512"
#endif
#include "src/kernels/pairwise_impl.h"
#endif
